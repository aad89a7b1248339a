//! The Azure fake (`wib-fake-azure`) as a process, and the operator's own
//! workload identity against it: a federated token file, tenant and client
//! ID, as on AKS (no secrets).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::expiry::Expiring;
use crate::fakes::{
    OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, get_json, listening_url, spawn_listening,
};
use crate::process::Process;
use crate::{ClusterRef, ControlPlane};

pub const AZURE_TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const AZURE_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The operator's own Entra application in the fake.
pub const OPERATOR_CLIENT_ID: &str = "0b5e4f3a-7d1c-4c2e-9f6a-1a2b3c4d5e6f";

/// The Azure fake (`wib-fake-azure`): a process on a free 127.0.0.1 port,
/// or one already running that the harness attaches to.
pub struct AzureFake {
    _process: Option<Process>,
    pub url: String,
    /// The same fake over https (the control plane's serving certificate),
    /// for SDKs that refuse a plain-http authority; not on an attached one.
    pub https_url: Option<String>,
    http: reqwest::Client,
    /// Operator environment: token file, tenant, client ID, endpoints.
    pub operator_env: Vec<(String, String)>,
}

impl AzureFake {
    /// The fake at `url`, owning its process when the harness started it.
    fn at(process: Option<Process>, url: &str) -> Self {
        Self {
            _process: process,
            url: url.trim_end_matches('/').to_string(),
            https_url: None,
            http: reqwest::Client::new(),
            operator_env: Vec::new(),
        }
    }

    /// Starts the fake, registers the operator's application with a
    /// federated credential for `wib-system/wib-controller`, and writes that
    /// ServiceAccount's projected token where the operator will read it.
    pub async fn start(cp: &ControlPlane) -> Result<Self> {
        let binary = crate::operator::workspace_binary("wib-fake-azure")?;
        let mut cmd = Command::new(binary);
        cmd.arg("--tenant-id")
            .arg(AZURE_TENANT)
            .arg("--issuer-ca-file")
            .arg(cp.ca_cert_path())
            .arg("--tls-cert-file")
            .arg(cp.dir().join("apiserver.crt"))
            .arg("--tls-key-file")
            .arg(cp.dir().join("apiserver.key"));
        let (process, url) = spawn_listening(cp, "wib-fake-azure", cmd).await?;
        let mut this = Self::at(Some(process), &url);
        this.https_url = Some(listening_url(cp, "wib-fake-azure", "https://").await?);
        this.register_operator(&cp.cluster_ref().await?).await?;
        Ok(this)
    }

    /// A fake someone else runs, emptied of everything but the operator's
    /// own application.
    pub async fn attach(url: &str, cluster: &ClusterRef) -> Result<Self> {
        let mut this = Self::at(None, url);
        this.admin_post("/admin/reset", json!({})).await?;
        this.register_operator(cluster).await?;
        Ok(this)
    }

    async fn register_operator(&mut self, cluster: &ClusterRef) -> Result<()> {
        self.admin_post(
            "/admin/apps",
            json!({"clientId": OPERATOR_CLIENT_ID, "federatedCredentials": [{
                "issuer": cluster.issuer,
                "subject": format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}"),
            }]}),
        )
        .await?;
        // The token file as the kubelet first writes it (valid an hour).
        self.rotate_operator_token(cluster, 3600).await?;
        let (token_file, _) = self.operator_token(cluster);
        self.operator_env = vec![
            ("AZURE_TENANT_ID".into(), AZURE_TENANT.into()),
            ("AZURE_CLIENT_ID".into(), OPERATOR_CLIENT_ID.into()),
            (
                "AZURE_FEDERATED_TOKEN_FILE".into(),
                token_file.display().to_string(),
            ),
            ("AZURE_AUTHORITY_HOST".into(), self.url.clone()),
            ("WIB_AZURE_ARM_ENDPOINT".into(), self.url.clone()),
        ];
        Ok(())
    }

    async fn admin_post(&self, path: &str, body: Value) -> Result<()> {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("{path}: {}", response.status());
        }
        Ok(())
    }

    /// Everything the fake holds: identities (with credentials) and role assignments.
    pub async fn state(&self) -> Result<Value> {
        get_json(&self.http, &format!("{}/admin/state", self.url)).await
    }

    /// Per-operation call counters and the number of writes.
    pub async fn calls(&self) -> Result<Value> {
        get_json(&self.http, &format!("{}/admin/calls", self.url)).await
    }

    pub async fn reset_calls(&self) -> Result<()> {
        self.http
            .delete(format!("{}/admin/calls", self.url))
            .send()
            .await?;
        Ok(())
    }

    /// Injects a fault: `{"operation", "status", "retryAfter", "latencyMs", "times"}`.
    pub async fn inject(&self, fault: Value) -> Result<()> {
        self.admin_post("/admin/faults", fault).await
    }

    /// Enforces ARM's documented rate limits from now on; `quotas` given,
    /// these instead (`{"reads"|"writes": {"perSecond", "burst"}}`).
    pub async fn enforce_limits(&self, quotas: Option<Value>) -> Result<()> {
        match quotas {
            Some(quotas) => self.admin_post("/admin/quotas", quotas).await,
            None => self.admin_post("/admin/quotas/documented", json!({})).await,
        }
    }

    /// Changes behaviour: `{"principalReplicationSeconds", "identityWritesPerSecond", "ficWriteMillis"}`.
    pub async fn configure(&self, config: Value) -> Result<()> {
        self.admin_post("/admin/config", config).await
    }

    /// Calls ARM as the operator's application (for arranging a test, e.g.
    /// an identity wib does not own); returns status and body.
    pub async fn arm(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let token_file = self
            .operator_env
            .iter()
            .find(|(k, _)| k == "AZURE_FEDERATED_TOKEN_FILE")
            .map(|(_, v)| v.clone())
            .context("operator token file")?;
        let assertion = std::fs::read_to_string(token_file)?;
        let (status, token) = self.exchange(OPERATOR_CLIENT_ID, &assertion).await?;
        if status != 200 {
            bail!("operator token exchange failed: {token}");
        }
        let access = token["access_token"].as_str().context("access_token")?;
        let mut request = self
            .http
            .request(method, format!("{}{path_and_query}", self.url))
            .bearer_auth(access);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// Exchanges a ServiceAccount token for an Entra access token, as the
    /// Azure SDK in a pod does; the raw response.
    pub async fn exchange(&self, client_id: &str, assertion: &str) -> Result<(u16, Value)> {
        entra_token(&self.http, &self.url, client_id, assertion).await
    }
}

/// The client-credentials grant with a client assertion (workload identity
/// federation) against an Entra token endpoint at `base_url`.
pub async fn entra_token(
    http: &reqwest::Client,
    base_url: &str,
    client_id: &str,
    assertion: &str,
) -> Result<(u16, Value)> {
    let form = [
        ("client_id", client_id),
        ("scope", "https://management.azure.com/.default"),
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ];
    let response = http
        .post(format!("{base_url}/{AZURE_TENANT}/oauth2/v2.0/token"))
        .form(&form)
        .send()
        .await
        .context("token endpoint")?;
    Ok((response.status().as_u16(), response.json().await?))
}

impl crate::expiry::Expiring for AzureFake {
    async fn advance_clock(&self, seconds: u64) -> Result<()> {
        self.admin_post("/admin/clock", json!({"advanceSeconds": seconds}))
            .await
    }

    fn operator_token(&self, cluster: &ClusterRef) -> (PathBuf, String) {
        (
            cluster.dir.join("azure-identity-token"),
            AZURE_AUDIENCE.to_string(),
        )
    }

    async fn expiry_refusals(&self) -> Result<(u64, u64)> {
        Ok(crate::expiry::refusals_in(&self.state().await?))
    }
}
