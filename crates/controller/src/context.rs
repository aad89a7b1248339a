//! What every reconcile shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};

use crate::metrics::Metrics;
use crate::settings::Settings;

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub settings: Settings,
    pub clouds: wib_cloud::Registry,
    /// Anonymous https client for reading OIDC issuers.
    pub issuer_http: reqwest::Client,
    pub providers: Store<ClusterIdentityProvider>,
    pub bindings: Store<WorkloadIdentityBinding>,
    pub metrics: Metrics,
    pub clock: fn() -> Time,
    backoff: Mutex<HashMap<String, u32>>,
}

pub const CONTROLLER_NAME: &str = "wib-controller";

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        settings: Settings,
        clouds: wib_cloud::Registry,
        issuer_http: reqwest::Client,
        providers: Store<ClusterIdentityProvider>,
        bindings: Store<WorkloadIdentityBinding>,
        metrics: Metrics,
    ) -> Arc<Self> {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            clouds,
            issuer_http,
            providers,
            bindings,
            metrics,
            clock: || Time(Timestamp::now()),
            backoff: Mutex::new(HashMap::new()),
        })
    }

    /// The next wait after a transient failure of `key`: 1 s doubling to 5 min.
    pub fn next_backoff(&self, key: &str) -> Duration {
        let mut attempts = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let n = attempts.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300))
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn reset_backoff(&self, key: &str) {
        self.backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}
