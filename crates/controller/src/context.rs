//! What every reconcile shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::events::Reporter;

use crate::events::Recorder;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;
use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};

use crate::reconcile::index::BindingIndex;
use crate::reconcile::triggers::Controllers;

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
    /// Namespaces by metadata: their labels decide admission.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Bindings by ServiceAccount, namespace, provider and sharing.
    pub index: Arc<BindingIndex>,
    /// Pods the webhook admitted, by namespace and ServiceAccount.
    pub pods: Arc<crate::reconcile::pods::PodIndex>,
    pub metrics: Metrics,
    pub clock: fn() -> Time,
    backoff: Mutex<HashMap<String, u32>>,
    /// Set once both caches have their first full list (see `run`).
    synced: std::sync::atomic::AtomicBool,
    /// Objects a cloud asked wib to leave alone until then (Retry-After):
    /// a reconcile their own status write triggers meanwhile does nothing.
    not_before: Mutex<HashMap<String, Instant>>,
}

pub const CONTROLLER_NAME: &str = "wib-controller";

/// A factor in [0.8, 1.2): std's per-process random hasher keys, fed the
/// current time, stand in for a random number generator.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let unit = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    0.8 + 0.4 * unit
}

/// `base` within ±20 %: bindings that settled together (a GitOps sync, a
/// restart, a leader change) drift apart over their resyncs instead of
/// reading the clouds all at once every interval.
pub fn jittered(base: std::time::Duration) -> std::time::Duration {
    base.mul_f64(jitter())
}

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        settings: Settings,
        clouds: wib_cloud::Registry,
        issuer_http: reqwest::Client,
        controllers: &Controllers,
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
            providers: controllers.providers.store(),
            bindings: controllers.binding_store.clone(),
            namespaces: controllers.namespaces.clone(),
            index: controllers.index.clone(),
            pods: controllers.pods.clone(),
            metrics,
            clock: || Time(Timestamp::now()),
            backoff: Mutex::new(HashMap::new()),
            synced: std::sync::atomic::AtomicBool::new(false),
            not_before: Mutex::new(HashMap::new()),
        })
    }

    /// The other bindings of `binding`'s ServiceAccount.
    pub fn claimants(
        &self,
        binding: &WorkloadIdentityBinding,
    ) -> Vec<Arc<WorkloadIdentityBinding>> {
        let namespace = binding.namespace().unwrap_or_default();
        self.index
            .for_service_account(&namespace, &binding.service_account_name())
            .iter()
            .filter_map(|r| self.bindings.get(r))
            .filter(|other| other.uid() != binding.uid())
            .collect()
    }

    /// The bindings that list `binding`'s namespace in `spec.sharing`.
    pub fn makers_sharing_with(
        &self,
        binding: &WorkloadIdentityBinding,
    ) -> Vec<Arc<WorkloadIdentityBinding>> {
        self.index
            .sharing_with(&binding.namespace().unwrap_or_default())
            .iter()
            .filter_map(|r| self.bindings.get(r))
            .collect()
    }

    /// A namespace's labels from the metadata cache (empty when it is gone).
    pub fn namespace_labels(&self, name: &str) -> std::collections::BTreeMap<String, String> {
        self.namespaces
            .get(&ObjectRef::new(name))
            .map(|ns| ns.labels().clone())
            .unwrap_or_default()
    }

    /// The next wait after a transient failure of `key`: 1 s doubling to 5 min,
    /// each stretched or shrunk by up to a fifth at random, so bindings that
    /// failed together (a cloud outage) do not all come back in the same second.
    pub fn next_backoff(&self, key: &str) -> Duration {
        let mut attempts = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let n = attempts.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let base = Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300));
        jittered(base)
    }

    /// Forgets the failures and any hold of `key`: it settled, or it is gone.
    pub fn reset_backoff(&self, key: &str) {
        self.backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        self.not_before
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Whether the provider and bindings caches hold a full list yet: before
    /// that, an empty provider cache reads as ProviderNotFound (and could
    /// revoke a Ready binding's federation) and a partial bindings cache
    /// misses claimants and users. Awaited once, by the readiness probe;
    /// everyone else only reads this flag (kube's `wait_until_ready` must
    /// not be polled and dropped, or later waiters may never wake).
    pub fn caches_synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn mark_caches_synced(&self) {
        self.synced
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Holds `key` for `wait`, as the cloud asked.
    pub fn hold(&self, key: &str, wait: Duration) {
        self.not_before
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), Instant::now() + wait);
    }

    /// How much longer `key` is held, if it is; a hold that ran out is dropped.
    pub fn held(&self, key: &str) -> Option<Duration> {
        let mut holds = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        let until = *holds.get(key)?;
        let left = until.checked_duration_since(Instant::now());
        if left.is_none() {
            holds.remove(key);
        }
        left
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn jitter_stays_within_a_fifth_and_varies() {
        let samples: Vec<f64> = (0..200).map(|_| super::jitter()).collect();
        assert!(
            samples.iter().all(|j| (0.8..1.2).contains(j)),
            "{samples:?}"
        );
        let first = samples[0];
        assert!(samples.iter().any(|j| (j - first).abs() > 1e-9));
        let resync = std::time::Duration::from_secs(600);
        let next = super::jittered(resync);
        assert!(
            next >= resync.mul_f64(0.8) && next < resync.mul_f64(1.2),
            "{next:?}"
        );
    }
}
