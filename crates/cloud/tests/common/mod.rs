//! What the provider-level tests of every cloud share: a control plane that
//! only issues wib's own token (no CRDs, no controller), and wib's cloud
//! called as the controller calls it, for one provider and issuer.

use std::time::Duration;

use serde_json::{Value, json};
use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};
use wib_cloud::{CloudError, CloudProvider, Outcome, Request};
use wib_testenv::{ControlPlane, Options};

pub async fn issuer_only_control_plane() -> ControlPlane {
    ControlPlane::start(Options {
        install_crds: false,
        controller_manager: false,
        audit: false,
    })
    .await
    .expect("control plane")
}

/// wib's cloud `C` under a provider, with the cluster's issuer.
pub struct Wib<C> {
    pub cloud: C,
    pub provider: ClusterIdentityProvider,
    pub issuer: String,
}

impl<C: CloudProvider> Wib<C> {
    /// `spec` is the provider's, as a platform team would write it.
    pub fn new(cloud: C, provider_spec: Value, cp: &ControlPlane) -> Self {
        let provider = serde_json::from_value(json!({
            "apiVersion": "wib.dev/v1alpha1", "kind": "ClusterIdentityProvider",
            "metadata": {"name": "tier"}, "spec": provider_spec,
        }))
        .expect("provider");
        Self {
            cloud,
            provider,
            issuer: cp.issuer().to_string(),
        }
    }

    pub async fn reconcile(
        &self,
        binding: &WorkloadIdentityBinding,
    ) -> Result<Outcome, CloudError> {
        let request = Request::new(binding, &self.provider, &self.issuer);
        self.cloud.reconcile(&request).await
    }

    pub async fn cleanup(&self, binding: &WorkloadIdentityBinding) -> Result<(), CloudError> {
        let request = Request::new(binding, &self.provider, &self.issuer);
        self.cloud.cleanup(&request).await
    }

    /// One pass creating every binding, then a wait until the fleet
    /// snapshot those reads filled has expired, so the steady pass after it
    /// pays for one fresh fleet read.
    pub async fn create_all(&self, bindings: &[WorkloadIdentityBinding], snapshot_ttl: Duration) {
        for b in bindings {
            self.reconcile(b).await.expect("created");
        }
        tokio::time::sleep(snapshot_ttl).await;
    }

    /// One pass over settled bindings: each reports no write.
    pub async fn steady_pass(&self, bindings: &[WorkloadIdentityBinding]) {
        for b in bindings {
            let outcome = self.reconcile(b).await.expect("steady");
            assert!(
                outcome.writes.is_empty(),
                "{:?} wrote in a steady state: {:?}",
                b.metadata.name,
                outcome.writes
            );
        }
    }
}

/// A binding of namespace `namespace` with `spec`.
pub fn binding(name: &str, namespace: &str, uid: &str, spec: Value) -> WorkloadIdentityBinding {
    serde_json::from_value(json!({
        "apiVersion": "wib.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
        "metadata": {"name": name, "namespace": namespace, "uid": uid}, "spec": spec,
    }))
    .expect("binding")
}
