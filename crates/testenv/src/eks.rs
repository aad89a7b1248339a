//! The EKS Pod Identity fake (`wib-fake-eks`) as a process: the EKS
//! associations API, EKS Auth `AssumeRoleForPodIdentity` and a node agent
//! stand-in, for clusters that trust the local control plane's
//! ServiceAccount issuer. Roles and credentials are moto's, so the fake is
//! started with moto's URL; it reads each role's trust policy from moto and
//! refuses a pod the policy does not let in.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::fakes::{get_json, post_json, spawn_listening};
use crate::moto::{ACCOUNT, REGION};
use crate::process::Process;
use crate::{ClusterRef, ControlPlane};

/// The EKS cluster the harness's control plane stands for.
pub const CLUSTER: &str = "wib-local";
/// The audience of a pod's token for EKS Pod Identity (and the service
/// principal its roles trust).
pub const AUDIENCE: &str = "pods.eks.amazonaws.com";

pub struct EksFake {
    _process: Option<Process>,
    pub url: String,
    /// What the operator needs to reach the fake (EKS and EKS Auth), when
    /// the harness started it.
    pub operator_env: Vec<(String, String)>,
    http: reqwest::Client,
}

/// A cluster's ARN in the fake (moto's account and region).
pub fn cluster_arn(cluster: &str) -> String {
    format!("arn:aws:eks:{REGION}:{ACCOUNT}:cluster/{cluster}")
}

impl EksFake {
    /// The fake at `url`, owning its process when the harness started it.
    fn at(process: Option<Process>, url: &str) -> Self {
        Self {
            _process: process,
            url: url.trim_end_matches('/').to_string(),
            operator_env: Vec::new(),
            http: reqwest::Client::new(),
        }
    }

    /// Starts the fake with one cluster, [`CLUSTER`], whose pods' tokens
    /// are the control plane's; IAM and STS are moto's at `moto_url`.
    pub async fn start(cp: &ControlPlane, moto_url: &str) -> Result<Self> {
        Self::start_with_clusters(cp, moto_url, &[CLUSTER]).await
    }

    /// Starts the fake with these clusters (all trusting the control
    /// plane's issuer; the node agent serves the first).
    pub async fn start_with_clusters(
        cp: &ControlPlane,
        moto_url: &str,
        clusters: &[&str],
    ) -> Result<Self> {
        let issuer = cp.cluster_ref().await?.issuer;
        let binary = crate::operator::workspace_binary("wib-fake-eks")?;
        let mut cmd = Command::new(binary);
        cmd.arg("--issuer-ca-file")
            .arg(cp.ca_cert_path())
            .arg("--moto-url")
            .arg(moto_url)
            .arg("--account")
            .arg(ACCOUNT)
            .arg("--region")
            .arg(REGION)
            .arg("--issuer")
            .arg(&issuer);
        for cluster in clusters {
            cmd.arg("--cluster").arg(cluster);
        }
        let (process, url) = spawn_listening(cp, "wib-fake-eks", cmd).await?;
        let mut fake = Self::at(Some(process), &url);
        fake.operator_env = ["AWS_ENDPOINT_URL_EKS", "AWS_ENDPOINT_URL_EKS_AUTH"]
            .map(|var| (var.to_string(), fake.url.clone()))
            .to_vec();
        Ok(fake)
    }

    /// A fake someone else runs, emptied of its associations, with
    /// [`CLUSTER`] trusting `cluster`'s issuer (and served by its agent).
    pub async fn attach(url: &str, cluster: &ClusterRef) -> Result<Self> {
        let this = Self::at(None, url);
        this.post("/admin/reset", json!({})).await?;
        this.add_cluster(CLUSTER, &cluster.issuer, true).await?;
        Ok(this)
    }

    /// Adds (or replaces) a cluster trusting `issuer`; `agent`: the node
    /// agent (`GET /v1/credentials`) serves its pods from now on.
    pub async fn add_cluster(&self, name: &str, issuer: &str, agent: bool) -> Result<()> {
        self.post(
            "/admin/clusters",
            json!({"name": name, "issuer": issuer, "agent": agent}),
        )
        .await
        .map(drop)
    }

    /// The node agent's endpoint, for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub fn credentials_url(&self) -> String {
        format!("{}/v1/credentials", self.url)
    }

    /// The node agent's endpoint for one cluster's pods.
    pub fn cluster_credentials_url(&self, cluster: &str) -> String {
        format!("{}/agent/{cluster}/v1/credentials", self.url)
    }

    /// What EKS puts in a pod with an association: the agent's URL and the
    /// token file the SDKs send it.
    pub fn container_credentials_env(&self, token_file: &Path) -> Vec<(String, String)> {
        vec![
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
                self.credentials_url(),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
                token_file.display().to_string(),
            ),
        ]
    }

    /// A pod's projected token for EKS Pod Identity (audience
    /// `pods.eks.amazonaws.com`).
    pub async fn pod_token(
        cluster: &ClusterRef,
        namespace: &str,
        service_account: &str,
    ) -> Result<String> {
        cluster
            .service_account_token(namespace, service_account, AUDIENCE)
            .await
    }

    /// Creates an association as someone else would (the platform team, an
    /// EKS add-on when `owner_arn` is given): `body` is
    /// `CreatePodIdentityAssociation`'s (`namespace`, `serviceAccount`,
    /// `roleArn`, optional `tags`, `targetRoleArn`, `disableSessionTags`,
    /// `clientRequestToken`). Returns the association.
    pub async fn create_association_as(
        &self,
        owner_arn: Option<&str>,
        cluster: &str,
        mut body: Value,
    ) -> Result<Value> {
        body["clusterName"] = json!(cluster);
        if let Some(owner) = owner_arn {
            body["ownerArn"] = json!(owner);
        }
        let created = self.post("/admin/associations", body).await?;
        Ok(created["association"].clone())
    }

    /// Every association of every cluster, with all its fields.
    pub async fn associations(&self) -> Result<Vec<Value>> {
        let listed = get_json(&self.http, &format!("{}/admin/associations", self.url)).await?;
        Ok(listed["associations"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Everything the fake holds: clusters, associations, refusal counters.
    pub async fn state(&self) -> Result<Value> {
        get_json(&self.http, &format!("{}/admin/state", self.url)).await
    }

    /// Exchanges refused by a role's trust policy (or a missing role).
    pub async fn trust_refusals(&self) -> Result<u64> {
        Ok(self.state().await?["trustRefusals"]
            .as_u64()
            .unwrap_or_default())
    }

    /// Per-operation call counters (SDK operation names) and the number
    /// of writes.
    pub async fn calls(&self) -> Result<Value> {
        get_json(&self.http, &format!("{}/admin/calls", self.url)).await
    }

    /// Calls of one operation so far (`CreatePodIdentityAssociation`, …).
    pub async fn call_count(&self, operation: &str) -> Result<u64> {
        Ok(self.calls().await?["operations"][operation]
            .as_u64()
            .unwrap_or_default())
    }

    /// Forgets the call counters (not the faults).
    pub async fn reset_calls(&self) -> Result<()> {
        let response = self
            .http
            .delete(format!("{}/admin/calls", self.url))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("/admin/calls: {}", response.status());
        }
        Ok(())
    }

    /// Injects a fault: `{"operation", "status", "retryAfter", "latencyMs", "times"}`.
    pub async fn inject(&self, fault: Value) -> Result<()> {
        self.post("/admin/faults", fault).await.map(drop)
    }

    /// The next `times` calls of `operation` answer 429 ThrottlingException
    /// with `Retry-After: retry_after`.
    pub async fn throttle(&self, operation: &str, retry_after: u64, times: u32) -> Result<()> {
        self.inject(json!({
            "operation": operation,
            "status": 429,
            "retryAfter": retry_after,
            "times": times,
        }))
        .await
    }

    /// A POST to the fake; errors on non-2xx.
    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let request = self.http.post(format!("{}{path}", self.url)).json(&body);
        post_json(request, path).await
    }
}

impl crate::expiry::Expiring for EksFake {
    /// The fake's clock: pods' tokens past their `exp` are refused with
    /// ExpiredTokenException.
    async fn advance_clock(&self, seconds: u64) -> Result<()> {
        self.post("/admin/clock", json!({"advanceSeconds": seconds}))
            .await
            .map(drop)
    }

    fn operator_token(&self, cluster: &ClusterRef) -> (std::path::PathBuf, String) {
        (
            cluster.dir.join("eks-pod-identity-token"),
            AUDIENCE.to_string(),
        )
    }

    async fn expiry_refusals(&self) -> Result<(u64, u64)> {
        Ok(crate::expiry::refusals_in(&self.state().await?))
    }
}
