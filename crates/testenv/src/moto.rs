//! moto, the AWS fake nobody here wrote, as a process on a free 127.0.0.1
//! port, with AWS managed policies loaded; and the wiring that gives the
//! operator its own web identity against it (no access keys).

use crate::expiry::Expiring;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use base64::Engine;
use serde_json::Value;

use crate::process::Process;
use crate::{ClusterRef, ControlPlane};

/// moto's default account.
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";
/// The role the operator itself assumes with its projected token.
pub const OPERATOR_ROLE: &str = "wib-controller";

pub struct Moto {
    _process: Option<Process>,
    pub url: String,
    http: reqwest::Client,
    /// Operator environment: endpoint, region, web identity.
    pub operator_env: Vec<(String, String)>,
}

impl Moto {
    /// The fake at `url`, owning its process when the harness started it.
    fn at(process: Option<Process>, url: &str) -> Result<Self> {
        Ok(Self {
            _process: process,
            url: url.trim_end_matches('/').to_string(),
            http: no_pooling()?,
            operator_env: Vec::new(),
        })
    }

    pub async fn start(cp: &ControlPlane) -> Result<Self> {
        let recording = cp.dir().join("moto-recording.jsonl");
        let mut cmd = crate::binaries::moto_server()?;
        cmd.args(["-H", "127.0.0.1", "-p", "0"])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .env("MOTO_RECORDER_FILEPATH", &recording)
            .env("PYTHONUNBUFFERED", "1");
        let process = Process::spawn("moto", cmd, cp.dir())?;
        let log = cp.dir().join("moto.log");
        let started = Instant::now();
        let url = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(url) = text.lines().find_map(|l| l.split("Running on ").nth(1)) {
                break url.trim().to_string();
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("moto did not start:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut this = Self::at(Some(process), &url)?;
        this.register_operator(&cp.cluster_ref().await?).await?;
        Ok(this)
    }

    /// A moto someone else runs, reset to its initial state (managed
    /// policies only).
    pub async fn attach(url: &str, cluster: &ClusterRef) -> Result<Self> {
        let mut this = Self::at(None, url)?;
        this.post("/moto-api/reset").await?;
        this.register_operator(cluster).await?;
        Ok(this)
    }

    /// moto accepts any web identity token for any role, so the operator
    /// only needs its token file and environment.
    async fn register_operator(&mut self, cluster: &ClusterRef) -> Result<()> {
        // The token file as the kubelet first writes it (valid an hour).
        self.rotate_operator_token(cluster, 3600).await?;
        let (token_file, _) = self.operator_token(cluster);
        self.operator_env = vec![
            ("AWS_ENDPOINT_URL".into(), self.url.clone()),
            ("AWS_REGION".into(), REGION.into()),
            (
                "AWS_ROLE_ARN".into(),
                format!("arn:aws:iam::{ACCOUNT}:role/{OPERATOR_ROLE}"),
            ),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
                token_file.display().to_string(),
            ),
            ("AWS_ROLE_SESSION_NAME".into(), "wib-controller".into()),
            // aws-config would otherwise probe the EC2 metadata service.
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ];
        Ok(())
    }

    async fn post(&self, path: &str) -> Result<()> {
        let response = self.http.post(format!("{}{path}", self.url)).send().await?;
        if !response.status().is_success() {
            bail!("moto {path}: {}", response.status());
        }
        Ok(())
    }

    /// Holds the next `times` calls of an IAM `action` for `ms` before
    /// moto serves them (e2e/moto/server.py).
    pub async fn hold(&self, action: &str, ms: u64, times: u32) -> Result<()> {
        let response = self
            .http
            .post(format!("{}/wib-faults", self.url))
            .json(&serde_json::json!({"action": action, "latencyMs": ms, "times": times}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("moto /wib-faults: {}", response.status());
        }
        Ok(())
    }

    /// Answers the next `times` calls of an IAM `action` with the IAM
    /// error `code` (HTTP `status`) instead of serving them
    /// (e2e/moto/server.py).
    pub async fn fail(&self, action: &str, status: u16, code: &str, times: u32) -> Result<()> {
        let error =
            serde_json::json!({"status": status, "code": code, "message": "injected by the test"});
        let response = self
            .http
            .post(format!("{}/wib-faults", self.url))
            .json(&serde_json::json!({"action": action, "error": error, "times": times}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("moto /wib-faults: {}", response.status());
        }
        Ok(())
    }

    /// How many calls of `action` were answered with an injected error.
    pub async fn failed(&self, action: &str) -> Result<u64> {
        Ok(self.wib_faults().await?["failed"][action]
            .as_u64()
            .unwrap_or_default())
    }

    /// How many calls of `action` were held so far.
    pub async fn held(&self, action: &str) -> Result<u64> {
        Ok(self.wib_faults().await?["held"][action]
            .as_u64()
            .unwrap_or_default())
    }

    /// e2e/moto/server.py's counters: calls held or failed, expiries refused.
    async fn wib_faults(&self) -> Result<Value> {
        Ok(self
            .http
            .get(format!("{}/wib-faults", self.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Starts moto's request recorder afresh.
    pub async fn start_recording(&self) -> Result<()> {
        self.post("/moto-api/recorder/reset-recording").await?;
        self.post("/moto-api/recorder/start-recording").await
    }

    /// Stops the recorder and counts the recorded requests to `service`
    /// (by their SigV4 credential scope) per `Action`.
    pub async fn recorded_actions(&self, service: &str) -> Result<BTreeMap<String, u64>> {
        let scope = format!("/{service}/aws4_request");
        self.post("/moto-api/recorder/stop-recording").await?;
        // Downloaded rather than read from disk: moto may run in a pod.
        let text = self
            .http
            .get(format!("{}/moto-api/recorder/download-recording", self.url))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let mut counts = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let request: Value = serde_json::from_str(line)?;
            let authorization = request["headers"]["Authorization"]
                .as_str()
                .or_else(|| request["headers"]["authorization"].as_str())
                .unwrap_or_default();
            if !authorization.contains(&scope) {
                continue;
            }
            let raw = request["body"].as_str().unwrap_or_default();
            let body = if request["body_encoded"].as_bool() == Some(true) {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .unwrap_or_default();
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                raw.to_string()
            };
            let url = request["url"].as_str().unwrap_or_default();
            let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
            let action = form_field(&body, "Action").or_else(|| form_field(query, "Action"));
            if let Some(action) = action {
                *counts.entry(action).or_default() += 1;
            }
        }
        Ok(counts)
    }
}

/// moto's development server closes every connection after answering; a
/// pooled connection would fail the next request.
fn no_pooling() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?)
}

fn form_field(form: &str, key: &str) -> Option<String> {
    form.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

impl crate::expiry::Expiring for Moto {
    /// e2e/moto/server.py's clock: web identity tokens and the sessions
    /// moto issued expire by it.
    async fn advance_clock(&self, seconds: u64) -> Result<()> {
        self.http
            .post(format!("{}/wib-clock", self.url))
            .json(&serde_json::json!({"advanceSeconds": seconds}))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    fn operator_token(&self, cluster: &ClusterRef) -> (std::path::PathBuf, String) {
        (
            cluster.dir.join("aws-web-identity-token"),
            STS_AUDIENCE.to_string(),
        )
    }

    async fn expiry_refusals(&self) -> Result<(u64, u64)> {
        Ok(crate::expiry::refusals_in(&self.wib_faults().await?))
    }
}
