//! The clouds behind one trait, so the controller stays cloud-agnostic. Each
//! cloud is a folder of steps (see [`steps`]: target, observe, plan,
//! execute) and one line in [`Registry::with_defaults`]; its API block lives
//! in `wib-api` (`spec.<cloud>`, `ClusterIdentityProviderSpec::configures`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use wib_api::{Cloud, ClusterIdentityProvider, WorkloadIdentityBinding};

pub mod aws;
pub mod azure;
pub mod calls;
pub mod error;
pub mod exchange;
pub mod gcp;
pub mod guardrails;
pub mod http;
pub mod limiter;
pub mod ownership;
pub mod protected;
pub mod recent;
pub mod steps;
#[cfg(test)]
pub(crate) mod testing;

pub use error::CloudError;

/// A boxed future, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything a cloud needs to reconcile one binding.
pub struct Request<'a> {
    pub binding: &'a WorkloadIdentityBinding,
    pub provider: &'a ClusterIdentityProvider,
    /// The cluster's OIDC issuer in effect.
    pub issuer: &'a str,
    pub namespace: String,
    /// The binding's name and uid, and the provider's `clusterName`: what
    /// every ownership tag and generated name is made of.
    pub binding_name: String,
    pub uid: String,
    pub cluster: String,
    pub service_account: String,
    /// `system:serviceaccount:<namespace>:<name>`, the federated subject.
    pub subject: String,
    /// Whether the binding passes its provider's admission now. A cleanup
    /// for one that does not removes only what carries its own uid.
    pub admitted: bool,
    /// Uids of bindings in other namespaces that share the identities they
    /// made with this binding's namespace (`spec.sharing`, both providers
    /// allowing it): the only way to another namespace's identity.
    pub granted_by: BTreeSet<String>,
}

impl<'a> Request<'a> {
    pub fn new(
        binding: &'a WorkloadIdentityBinding,
        provider: &'a ClusterIdentityProvider,
        issuer: &'a str,
    ) -> Self {
        let namespace = binding.metadata.namespace.clone().unwrap_or_default();
        let service_account = binding.service_account_name();
        Self {
            binding,
            provider,
            issuer,
            subject: format!("system:serviceaccount:{namespace}:{service_account}"),
            namespace,
            binding_name: binding.metadata.name.clone().unwrap_or_default(),
            uid: binding.metadata.uid.clone().unwrap_or_default(),
            cluster: provider.spec.cluster_name.clone(),
            service_account,
            admitted: true,
            granted_by: BTreeSet::new(),
        }
    }
}

impl<'a> Request<'a> {
    /// This cloud's block of the binding's spec and of its provider's;
    /// either missing is `CloudNotConfigured`.
    pub fn blocks<B, P>(
        &self,
        cloud: Cloud,
        binding: impl FnOnce(&'a wib_api::WorkloadIdentityBindingSpec) -> Option<&'a B>,
        provider: impl FnOnce(&'a wib_api::ClusterIdentityProviderSpec) -> Option<&'a P>,
    ) -> Result<(&'a B, &'a P), CloudError> {
        let spec = binding(&self.binding.spec).ok_or_else(|| {
            error::not_configured(format!("the binding has no spec.{}", cloud.as_str()))
        })?;
        let defaults = provider(&self.provider.spec).ok_or_else(|| {
            error::not_configured(format!("the provider has no spec.{}", cloud.as_str()))
        })?;
        Ok((spec, defaults))
    }
}

impl Request<'_> {
    /// The name of the identity this binding's status records (the last
    /// path segment of `pick`'s ID, or what precedes `@` in an email): an
    /// identity made before wib's default names changed keeps its name.
    /// Only wib writes a binding's status.
    pub fn recorded_identity(
        &self,
        pick: impl Fn(&wib_api::WorkloadIdentityBindingStatus) -> Option<&str>,
    ) -> Option<String> {
        let id = pick(self.binding.status.as_ref()?)?;
        let last = id.rsplit('/').next().unwrap_or(id);
        let name = last.split('@').next().unwrap_or(last);
        (!name.is_empty()).then(|| name.to_string())
    }
}

/// What a cloud reports after reconciling a binding.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Annotations the ServiceAccount must carry for this cloud.
    pub annotations: BTreeMap<String, String>,
    /// Labels the ServiceAccount must carry for this cloud.
    pub labels: BTreeMap<String, String>,
    /// Status fields for the binding.
    pub status: wib_api::WorkloadIdentityBindingStatus,
    /// Cloud writes this reconcile made (drift repairs and creations), for
    /// Events and metrics; empty in a steady state.
    pub writes: Vec<String>,
    /// The role grants the guardrails refused while the identity and its
    /// federation were reconciled (default deny); none were made.
    pub grants_refused: Option<GrantsRefused>,
}

/// Why a binding's grants were refused although its identity is in place.
#[derive(Clone, Debug, PartialEq)]
pub struct GrantsRefused {
    pub reason: wib_api::conditions::Reason,
    pub message: String,
}

/// One cloud's implementation: observe the cloud, put back what differs from
/// the spec, and clean up on deletion. Both must be idempotent.
pub trait CloudProvider: Send + Sync + 'static {
    fn cloud(&self) -> Cloud;

    /// Brings the cloud to the binding's spec and reports what is there.
    fn reconcile<'a>(
        &'a self,
        request: &'a Request<'a>,
    ) -> BoxFuture<'a, Result<Outcome, CloudError>>;

    /// Removes what wib created for the binding, honouring its `deletionPolicy`.
    fn cleanup<'a>(&'a self, request: &'a Request<'a>) -> BoxFuture<'a, Result<(), CloudError>>;

    /// One cheap read in the provider's account, subscription or project
    /// (of something that need not exist), proving wib's own credentials work.
    fn check<'a>(
        &'a self,
        provider: &'a ClusterIdentityProvider,
    ) -> BoxFuture<'a, Result<(), CloudError>>;

    /// Revokes a binding that is refused now: removes its federation entry
    /// (by issuer and subject) from the identity it names, if there; the
    /// identity and its grants stay, so allowing the binding again restores
    /// it as it was. Says what it removed.
    fn revoke<'a>(
        &'a self,
        request: &'a Request<'a>,
    ) -> BoxFuture<'a, Result<Vec<String>, CloudError>>;

    /// The audience of the token the binding's pods exchange, when wib can
    /// verify that exchange (see [`exchange`]); `None` by default.
    fn exchange_audience(&self, _request: &Request<'_>, _outcome: &Outcome) -> Option<String> {
        None
    }

    /// Exchanges the bound ServiceAccount's `token` as its pods would.
    fn verify_exchange<'a>(
        &'a self,
        _request: &'a Request<'a>,
        _outcome: &'a Outcome,
        _token: &'a str,
        _endpoints: &'a exchange::Endpoints,
    ) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(async { Ok(()) })
    }

    /// Removes what wib added to the provider's shared cloud objects that
    /// nothing uses any more (see [`InUse`]); says what it removed. Nothing
    /// to do by default.
    fn prune<'a>(
        &'a self,
        _provider: &'a ClusterIdentityProvider,
        _issuer: &'a str,
        _in_use: &'a InUse,
    ) -> BoxFuture<'a, Result<Vec<String>, CloudError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// What the cluster still uses of a cloud's shared objects, as the
/// controller's caches see it once synced.
#[derive(Clone, Debug, Default)]
pub struct InUse {
    /// The audiences the cluster's bindings of this cloud ask for.
    pub audiences: BTreeSet<String>,
    /// The issuers of every provider with this provider's `clusterName`:
    /// an issuer the cluster no longer has (its provider's `issuer` changed)
    /// leaves behind what wib made for it.
    pub issuers: BTreeSet<String>,
}

/// The name wib reads to check its credentials; it never exists.
pub const CREDENTIALS_PROBE: &str = "wib-credentials-check";

/// The clouds this build of wib can reconcile, and those whose client could
/// not start here (their bindings must say so, and must not be deleted as
/// if the cloud had nothing: that would orphan what wib made there).
#[derive(Clone, Default)]
pub struct Registry {
    implemented: BTreeMap<Cloud, Arc<dyn CloudProvider>>,
    unavailable: BTreeMap<Cloud, String>,
}

/// What the registry holds for one cloud.
pub enum Lookup<'a> {
    Ready(&'a Arc<dyn CloudProvider>),
    /// The client failed to start; the error, in words.
    Unavailable(&'a str),
    /// This build has no implementation of the cloud.
    NotImplemented,
}

impl Registry {
    /// Every cloud implemented in this build, configured from the
    /// environment; each reports its API calls to `observer`.
    /// `fleet_snapshot_ttl`: how old a cloud's fleet-wide read may be for a
    /// steady-state check (see [`steps::Observe::recall`]).
    pub async fn with_defaults(
        observer: calls::Observer,
        fleet_snapshot_ttl: std::time::Duration,
    ) -> Self {
        let mut registry = Self::default();
        match azure::from_env(observer.clone(), fleet_snapshot_ttl) {
            Ok(cloud) => registry.register(Arc::new(cloud)),
            Err(error) => registry.unavailable(Cloud::Azure, &error),
        }
        registry.register(Arc::new(gcp::from_env(
            observer.clone(),
            fleet_snapshot_ttl,
        )));
        match aws::from_env(observer, fleet_snapshot_ttl).await {
            Ok(cloud) => registry.register(Arc::new(cloud)),
            Err(error) => registry.unavailable(Cloud::Aws, &error),
        }
        registry
    }

    pub fn register(&mut self, implementation: Arc<dyn CloudProvider>) {
        self.unavailable.remove(&implementation.cloud());
        self.implemented
            .insert(implementation.cloud(), implementation);
    }

    /// Records that `cloud`'s client could not start.
    pub fn unavailable(&mut self, cloud: Cloud, error: &CloudError) {
        tracing::error!(%cloud, %error, "the cloud client did not start; its bindings report CloudUnavailable and their deletion waits");
        self.implemented.remove(&cloud);
        self.unavailable.insert(cloud, error::chain(error));
    }

    pub fn lookup(&self, cloud: Cloud) -> Lookup<'_> {
        match (self.implemented.get(&cloud), self.unavailable.get(&cloud)) {
            (Some(implementation), _) => Lookup::Ready(implementation),
            (None, Some(error)) => Lookup::Unavailable(error),
            (None, None) => Lookup::NotImplemented,
        }
    }

    pub fn get(&self, cloud: Cloud) -> Option<&Arc<dyn CloudProvider>> {
        self.implemented.get(&cloud)
    }
}
