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

    /// Elect a leader on a Lease so only one replica reconciles.
    #[arg(long, env = "WIB_LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,

    /// Namespace of the leader election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "wib-system")]
    pub lease_namespace: String,

    /// Name of the leader election Lease.
    #[arg(long, env = "WIB_LEASE_NAME", default_value = "wib-controller")]
    pub lease_name: String,

    /// How long a lease is valid without renewal.
    #[arg(long, env = "WIB_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,

    /// How long the leader keeps trying to renew before it gives up.
    #[arg(long, env = "WIB_LEASE_RENEW_DEADLINE_SECONDS", default_value_t = 10)]
    pub lease_renew_deadline_seconds: u64,

    /// How often candidates retry and the leader renews.
    #[arg(long, env = "WIB_LEASE_RETRY_SECONDS", default_value_t = 2)]
    pub lease_retry_seconds: u64,

    /// PEM bundle trusted, besides the system roots and the cluster CA, when
    /// reading the OIDC issuer.
    #[arg(long, env = "WIB_ISSUER_CA_FILE")]
    pub issuer_ca_file: Option<std::path::PathBuf>,

    /// Let bindings with `restartWorkloads: OnIdentityChange` roll their
    /// workloads (the chart grants the RBAC for it with this).
    #[arg(long, env = "WIB_ALLOW_WORKLOAD_RESTARTS", default_value_t = false)]
    pub allow_workload_restarts: bool,

    #[command(flatten)]
    pub webhook: crate::webhook::WebhookSettings,
}

impl Settings {
    pub fn resync(&self) -> Duration {
        Duration::from_secs(self.resync_seconds.max(1))
    }

    pub fn lease_timing(&self) -> crate::leader::Timing {
        crate::leader::Timing {
            lease_duration: Duration::from_secs(self.lease_duration_seconds.max(1)),
            renew_deadline: Duration::from_secs(self.lease_renew_deadline_seconds.max(1)),
            retry_period: Duration::from_secs(self.lease_retry_seconds.max(1)),
        }
    }

    /// This replica's identity in the election: the pod name when the
    /// Deployment passes it, else host name and pid.
    pub fn identity() -> String {
        std::env::var("POD_NAME").unwrap_or_else(|_| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        })
    }

    /// Pods are watched (and reported on bindings) where the webhook runs:
    /// only its admitted pods carry what the report reads.
    pub fn tracks_pods(&self) -> bool {
        self.webhook.webhook_addr.is_some()
    }

    pub fn provider_resync(&self) -> Duration {
        Duration::from_secs(self.provider_resync_seconds.max(1))
    }
}
