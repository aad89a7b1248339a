//! An environment the e2e suite attaches to instead of starting its own: a
//! cluster with the operator already running in it and the cloud fakes
//! reachable from the test process. `make e2e-kind` writes one for its kind
//! cluster (operator and fakes in pods); `wib-localenv --describe` writes
//! one for the processes it starts. `WIB_E2E_CLUSTER=<file>` points the e2e
//! suite at it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const ENV_VAR: &str = "WIB_E2E_CLUSTER";

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attached {
    /// Admin kubeconfig of the cluster; `KUBECONFIG` (or
    /// `~/.kube/config`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// The fakes as the test process reaches them.
    pub azure_url: String,
    pub aws_url: String,
    /// The EKS fake (Pod Identity), when the environment runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eks_url: Option<String>,
    pub gcp_url: String,
    /// The GCP project holding the operator's own service account.
    pub gcp_project: String,
    /// The operator's /metrics, /healthz and /readyz.
    pub metrics_url: String,
    /// A command printing the operator's recent log.
    pub operator_logs: Vec<String>,
}

impl Attached {
    /// The environment named by `WIB_E2E_CLUSTER`, if set.
    pub fn from_env() -> Result<Option<Self>> {
        let Some(path) = std::env::var_os(ENV_VAR) else {
            return Ok(None);
        };
        Self::read(Path::new(&path)).map(Some)
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{ENV_VAR}: reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{ENV_VAR}: {}", path.display()))
    }

    /// Written atomically: whoever waits for the file sees all of it.
    pub fn write(&self, path: &Path) -> Result<()> {
        let partial = path.with_extension("partial");
        std::fs::write(&partial, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&partial, path)?;
        Ok(())
    }

    /// The operator's recent log, for failure messages.
    pub fn operator_log(&self) -> String {
        let Some((program, args)) = self.operator_logs.split_first() else {
            return String::new();
        };
        let mut command = std::process::Command::new(program);
        command.args(args);
        if let Some(kubeconfig) = &self.kubeconfig {
            command.env("KUBECONFIG", kubeconfig);
        }
        command
            .output()
            .map(|out| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .unwrap_or_else(|e| format!("({program}: {e})"))
    }

    pub async fn client(&self) -> Result<kube::Client> {
        let Some(path) = &self.kubeconfig else {
            return Ok(kube::Client::try_default().await?);
        };
        let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        Ok(kube::Client::try_from(config)?)
    }
}
