//! Operator settings from flags and environment.

use std::time::Duration;

/// How the operator runs.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "wib-controller",
    version,
    about = "Workload Identity Binder: keeps cloud identities, federation and ServiceAccounts in the state WorkloadIdentityBindings declare"
)]
pub struct Settings {
    /// How often a Ready binding is re-read from the cloud to repair drift.
    #[arg(long, env = "WIB_RESYNC_SECONDS", default_value_t = 600)]
    pub resync_seconds: u64,

    /// How often a provider's issuer is re-checked.
    #[arg(long, env = "WIB_PROVIDER_RESYNC_SECONDS", default_value_t = 300)]
    pub provider_resync_seconds: u64,

    /// Bindings reconciled at once.
    #[arg(long, env = "WIB_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,

    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "WIB_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,

    /// `text` or `json` logs.
    #[arg(long, env = "WIB_LOG_FORMAT", default_value = "json")]
    pub log_format: crate::telemetry::LogFormat,

    /// PEM bundle trusted, besides the system roots and the cluster CA, when
    /// reading the OIDC issuer.
    #[arg(long, env = "WIB_ISSUER_CA_FILE")]
    pub issuer_ca_file: Option<std::path::PathBuf>,
}

impl Settings {
    pub fn resync(&self) -> Duration {
        Duration::from_secs(self.resync_seconds.max(1))
    }

    pub fn provider_resync(&self) -> Duration {
        Duration::from_secs(self.provider_resync_seconds.max(1))
    }
}
