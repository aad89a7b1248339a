//! The GCP fake (`wib-fake-gcp`) as a process, with a project, a workload
//! identity pool trusting the local cluster's issuer, and the operator's own
//! Google service account that `wib-system/wib-controller` may impersonate:
//! the operator gets an `external_account` credential file, as on a cluster
//! federated to Google Cloud (no keys).

use crate::expiry::Expiring;
use std::process::Command;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::fakes::{
    OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, get_json, post_json, spawn_listening,
};
use crate::process::Process;
use crate::{ClusterRef, ControlPlane};

pub const PROJECT_NUMBER: &str = "123456789012";
pub const POOL: &str = "wib-pool";
pub const POOL_PROVIDER: &str = "local";
/// A caller the fake allows everything (tests arrange and inspect with it).
pub const OWNER_TOKEN: &str = "wib-fake-gcp-owner";
pub const OPERATOR_ACCOUNT: &str = "wib-controller";

pub struct GcpFake {
    _process: Option<Process>,
    pub url: String,
    http: reqwest::Client,
    pub operator_env: Vec<(String, String)>,
}

/// The pool provider's resource name, and the audience a Kubernetes token
/// must carry for it.
pub fn pool_provider() -> String {
    format!(
        "projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/{POOL}/providers/{POOL_PROVIDER}"
    )
}

pub fn token_audience() -> String {
    format!("https://iam.googleapis.com/{}", pool_provider())
}

impl GcpFake {
    /// The fake at `url`, owning its process when the harness started it.
    fn at(process: Option<Process>, url: &str) -> Self {
        Self {
            _process: process,
            url: url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            operator_env: Vec::new(),
        }
    }

    /// Starts the fake with one project, `project`, holding wib's own account.
    pub async fn start(cp: &ControlPlane, project: &str) -> Result<Self> {
        let binary = crate::operator::workspace_binary("wib-fake-gcp")?;
        let mut cmd = Command::new(binary);
        cmd.arg("--issuer-ca-file").arg(cp.ca_cert_path());
        let (process, url) = spawn_listening(cp, "wib-fake-gcp", cmd).await?;
        let mut this = Self::at(Some(process), &url);
        this.register_operator(&cp.cluster_ref().await?, project)
            .await?;
        Ok(this)
    }

    /// A fake someone else runs, emptied of everything but its projects,
    /// pools and tokens, with the operator's account in `project` again.
    pub async fn attach(url: &str, cluster: &ClusterRef, project: &str) -> Result<Self> {
        let mut this = Self::at(None, url);
        let response = this
            .http
            .post(format!("{}/admin/reset", this.url))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("/admin/reset: {}", response.status());
        }
        this.register_operator(cluster, project).await?;
        Ok(this)
    }

    /// A project (by ID) in the fake, with the e2e project number.
    pub async fn add_project(&self, project: &str) -> Result<()> {
        self.post(
            "/admin/projects",
            json!({"projectId": project, "projectNumber": PROJECT_NUMBER}),
        )
        .await
        .map(drop)
    }

    /// The pool trusting the cluster's issuer, and wib's own account in
    /// `project` that its ServiceAccount may impersonate.
    async fn register_operator(&mut self, cluster: &ClusterRef, project: &str) -> Result<()> {
        self.add_project(project).await?;
        self.post(
            "/admin/pools",
            json!({"projectNumber": PROJECT_NUMBER, "pool": POOL, "provider": POOL_PROVIDER, "issuer": cluster.issuer}),
        )
        .await?;
        // wib's own Google service account, impersonable by its ServiceAccount.
        self.post(
            &format!("/v1/projects/{project}/serviceAccounts"),
            json!({"accountId": OPERATOR_ACCOUNT, "serviceAccount": {"displayName": "wib operator"}}),
        )
        .await?;
        let operator_email = format!("{OPERATOR_ACCOUNT}@{project}.iam.gserviceaccount.com");
        self.post(
            &format!("/v1/projects/{project}/serviceAccounts/{operator_email}:setIamPolicy"),
            json!({"policy": {"bindings": [{
                "role": "roles/iam.workloadIdentityUser",
                "members": [format!("principal://iam.googleapis.com/projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/{POOL}/subject/system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}")],
            }]}}),
        )
        .await?;
        // The token file as the kubelet first writes it (valid an hour).
        self.rotate_operator_token(cluster, 3600).await?;
        let (token_file, _) = self.operator_token(cluster);
        let config = self.credential_config(&token_file, &operator_email);
        let config_file = cluster.dir.join("gcp-credentials.json");
        std::fs::write(&config_file, serde_json::to_vec_pretty(&config)?)?;
        self.operator_env = vec![
            (
                "GOOGLE_APPLICATION_CREDENTIALS".into(),
                config_file.display().to_string(),
            ),
            ("WIB_GCP_IAM_ENDPOINT".into(), self.url.clone()),
            ("WIB_GCP_RESOURCE_MANAGER_ENDPOINT".into(), self.url.clone()),
        ];
        Ok(())
    }

    /// An `external_account` credential configuration (what `gcloud iam
    /// workload-identity-pools create-cred-config` writes) for a token file
    /// and the account to impersonate.
    pub fn credential_config(&self, token_file: &std::path::Path, email: &str) -> Value {
        json!({
            "type": "external_account",
            "audience": format!("//iam.googleapis.com/{}", pool_provider()),
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": format!("{}/v1/token", self.url),
            "service_account_impersonation_url": format!("{}/v1/projects/-/serviceAccounts/{email}:generateAccessToken", self.url),
            "credential_source": {"file": token_file.display().to_string(), "format": {"type": "text"}},
        })
    }

    /// A call as the project owner (for arranging a test); errors on non-2xx.
    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let request = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(OWNER_TOKEN)
            .json(&body);
        post_json(request, path).await
    }

    /// Everything the fake holds: service accounts and IAM policies.
    pub async fn state(&self) -> Result<Value> {
        get_json(&self.http, &format!("{}/admin/state", self.url)).await
    }

    /// Per-operation call counters and the number of writes.
    pub async fn calls(&self) -> Result<Value> {
        get_json(&self.http, &format!("{}/admin/calls", self.url)).await
    }

    /// Injects a fault: `{"operation", "status", "retryAfter", "latencyMs", "times"}`.
    pub async fn inject(&self, fault: Value) -> Result<()> {
        let response = self
            .http
            .post(format!("{}/admin/faults", self.url))
            .json(&fault)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("inject: {}", response.status());
        }
        Ok(())
    }
}

impl crate::expiry::Expiring for GcpFake {
    async fn advance_clock(&self, seconds: u64) -> Result<()> {
        self.post("/admin/clock", json!({"advanceSeconds": seconds}))
            .await
            .map(drop)
    }

    fn operator_token(&self, cluster: &ClusterRef) -> (std::path::PathBuf, String) {
        (cluster.dir.join("gcp-identity-token"), token_audience())
    }

    async fn expiry_refusals(&self) -> Result<(u64, u64)> {
        Ok(crate::expiry::refusals_in(&self.state().await?))
    }
}
