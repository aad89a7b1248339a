//! The shape every cloud follows: **observe** (reads only) → **plan** (pure:
//! every decision — guardrails, ownership, sharing, limits, drift, deletion
//! order) → **execute** (writes only, one action at a time). A cloud
//! implements [`Steps`]; the blanket impl below makes it a
//! [`CloudProvider`], so the controller never sees the difference.
//!
//! A plan that can only be finished once its writes are done (Azure's role
//! assignments are named after the principal ID that creating the identity
//! returns) says so with [`Next::ObserveAgain`]; the runner then observes and
//! plans again, at most [`MAX_ROUNDS`] times.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};

use wib_api::{Cloud, ClusterIdentityProvider};

use crate::{BoxFuture, CloudError, CloudProvider, InUse, Outcome, Request};

/// What a binding asks of its cloud this time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Bring the cloud to the spec.
    Reconcile,
    /// The binding is being deleted: remove what wib made for it, per its
    /// `deletionPolicy`.
    Cleanup,
    /// The binding is refused now: remove only its federation entry.
    Revoke,
}

/// What a plan says happens once its actions are written.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// The actions finish the intent; a reconcile reports this outcome.
    Done(Box<Outcome>),
    /// Done, nothing to report (cleanup, revoke).
    Finished,
    /// Observe and plan again once the actions are written: some of what
    /// must be decided depends on what the cloud answers to them.
    ObserveAgain,
}

/// A plan: the writes, in order, and what follows them.
#[derive(Debug, PartialEq)]
pub struct Plan<A> {
    pub actions: Vec<A>,
    pub next: Next,
}

impl<A> Plan<A> {
    pub fn done(actions: Vec<A>, outcome: Outcome) -> Self {
        Self {
            actions,
            next: Next::Done(Box::new(outcome)),
        }
    }

    pub fn finished(actions: Vec<A>) -> Self {
        Self {
            actions,
            next: Next::Finished,
        }
    }
}

/// Rounds of observe → plan → execute one request may take.
pub const MAX_ROUNDS: usize = 3;

/// Step one: what the cloud holds that the plan needs, read once per round;
/// writes nothing.
pub trait Observe<C>: Sized + Send + Sync {
    fn observe(
        clients: &C,
        request: &Request<'_>,
        intent: Intent,
    ) -> impl Future<Output = Result<Self, CloudError>> + Send;

    /// A reconcile's observation from what a recent read of the whole
    /// fleet holds, without a read of the binding's own objects; `None`
    /// when the fleet read does not cover it (the runner then observes).
    /// Trusted only to confirm a steady state: a plan made from it that
    /// would write is dropped and made again from [`Observe::observe`].
    fn recall(
        _clients: &C,
        _request: &Request<'_>,
    ) -> impl Future<Output = Result<Option<Self>, CloudError>> + Send {
        async { Ok(None) }
    }
}

/// Step two: every decision, from what was observed, without I/O (no
/// client required).
pub trait Decide {
    type Action;
    fn plan(&self, request: &Request<'_>, intent: Intent)
    -> Result<Plan<Self::Action>, CloudError>;
}

/// Step three: one write; its `Display` is what Events and metrics report.
pub trait Execute<C>: Display + Send + Sync {
    fn execute(&self, clients: &C) -> impl Future<Output = Result<(), CloudError>> + Send;
}

/// One cloud, as three steps: its `Observed` observes and decides, its
/// `Action`s execute.
pub trait Steps: Send + Sync + 'static {
    /// Everything the cloud's calls need (SDK clients, limiter, observer).
    type Clients: Send + Sync;
    type Observed: Observe<Self::Clients> + Decide<Action = Self::Action>;
    type Action: Execute<Self::Clients>;

    const CLOUD: Cloud;

    /// The clients, built on first use (client required).
    fn clients(&self) -> impl Future<Output = Result<Arc<Self::Clients>, CloudError>> + Send;

    /// Refuses what can be refused without a read (spec, guardrails,
    /// protected names), before any client is needed, and names the cloud
    /// identity the request is about: requests naming the same one run one
    /// at a time (its federation and grants are shared by every binding
    /// that names it). No client required.
    fn validate(request: &Request<'_>, intent: Intent) -> Result<String, CloudError>;

    /// One cheap read proving wib's own credentials work.
    fn check<'a>(
        &'a self,
        provider: &'a ClusterIdentityProvider,
    ) -> impl Future<Output = Result<(), CloudError>> + Send + 'a;

    /// Removes what wib added to the provider's shared cloud objects that
    /// nothing uses any more. Nothing to do by default.
    fn prune<'a>(
        &'a self,
        _provider: &'a ClusterIdentityProvider,
        _issuer: &'a str,
        _in_use: &'a InUse,
    ) -> impl Future<Output = Result<Vec<String>, CloudError>> + Send + 'a {
        async { Ok(Vec::new()) }
    }

    /// Sees every failure before it is returned (a cloud that must drop a
    /// refused token does it here). Nothing by default.
    fn failed(&self, _error: &CloudError) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The per-identity locks (see [`Steps::validate`]).
    fn locks(&self) -> &Locks;

    /// The audience of the token the binding's pods exchange with the
    /// cloud, when wib can make that exchange as they would (`None`: it
    /// cannot, as on GKE's own pool).
    fn exchange_audience(_request: &Request<'_>, _outcome: &Outcome) -> Option<String> {
        None
    }

    /// Exchanges `token` (the bound ServiceAccount's, for
    /// [`Steps::exchange_audience`]) with the cloud as the binding's pods
    /// would; `WaitingForPropagation` while the cloud does not accept it.
    fn verify_exchange<'a>(
        &'a self,
        _request: &'a Request<'a>,
        _outcome: &'a Outcome,
        _token: &'a str,
        _endpoints: &'a crate::exchange::Endpoints,
    ) -> impl Future<Output = Result<(), CloudError>> + Send + 'a {
        async { Ok(()) }
    }
}

/// One async lock per key, created on first use. Locks nobody holds or
/// waits for are dropped once the map has doubled since the last sweep, so
/// the identities of deleted bindings do not stay in memory for the life of
/// the process, and a sweep costs amortised O(1) per new key.
#[derive(Default)]
pub struct Locks(Mutex<LockMap>);

#[derive(Default)]
struct LockMap {
    locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    sweep_at: usize,
}

impl Locks {
    pub fn get(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.locks.len() >= map.sweep_at {
            // Only the map holds an unused lock.
            map.locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            map.sweep_at = (map.locks.len() * 2).max(64);
        }
        map.locks.entry(key.to_string()).or_default().clone()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).locks.len()
    }
}

/// What running an intent did: the writes made (actions' `Display`) and,
/// for a reconcile, the outcome the last plan reported.
pub struct Ran {
    pub writes: Vec<String>,
    pub outcome: Option<Outcome>,
}

/// Runs `intent` for `request`: observe → plan → execute, again while the
/// plan asks for it, under the identity's lock.
pub async fn run<S: Steps>(
    steps: &S,
    request: &Request<'_>,
    intent: Intent,
) -> Result<Ran, CloudError> {
    let result = run_rounds(steps, request, intent).await;
    if let Err(error) = &result {
        steps.failed(error).await;
    }
    result
}

async fn run_rounds<S: Steps>(
    steps: &S,
    request: &Request<'_>,
    intent: Intent,
) -> Result<Ran, CloudError> {
    let key = S::validate(request, intent)?;
    let clients = steps.clients().await?;
    let lock = steps.locks().get(&key);
    let _serialized = lock.lock().await;
    if intent == Intent::Reconcile {
        match S::Observed::recall(&clients, request).await {
            Ok(Some(recalled)) => {
                if let Some(outcome) = steady(recalled.plan(request, intent)) {
                    return Ok(Ran {
                        writes: Vec::new(),
                        outcome: Some(outcome),
                    });
                }
            }
            Ok(None) => {}
            // A fleet read wib may not make (a role without the list
            // permission) or that failed costs the binding its own reads,
            // not its reconcile.
            Err(error) => {
                tracing::debug!(%error, "no fleet snapshot; observing the binding itself")
            }
        }
    }
    let mut writes = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let observed = S::Observed::observe(&clients, request, intent).await?;
        let plan = observed.plan(request, intent)?;
        for action in &plan.actions {
            writes.push(action.to_string());
            action.execute(&clients).await?;
        }
        match plan.next {
            Next::Done(outcome) => {
                return Ok(Ran {
                    writes,
                    outcome: Some(*outcome),
                });
            }
            Next::Finished => {
                return Ok(Ran {
                    writes,
                    outcome: None,
                });
            }
            Next::ObserveAgain => {}
        }
    }
    Err(CloudError::new(
        wib_api::conditions::Reason::TransientError,
        format!(
            "{} did not settle within {MAX_ROUNDS} rounds of observe, plan and execute; retried",
            S::CLOUD
        ),
    ))
}

/// The outcome of a plan made from a fleet snapshot, when it confirms a
/// steady state. A plan that would write, wants another round or refuses
/// is not acted on: the runner observes live and plans again, so neither a
/// write nor a refusal (and the revocation a refusal may bring) rests on a
/// snapshot.
fn steady<A>(plan: Result<Plan<A>, CloudError>) -> Option<Outcome> {
    match plan {
        Ok(Plan {
            actions,
            next: Next::Done(outcome),
        }) if actions.is_empty() => Some(*outcome),
        _ => None,
    }
}

impl<S: Steps> CloudProvider for S {
    fn cloud(&self) -> Cloud {
        S::CLOUD
    }

    fn reconcile<'a>(
        &'a self,
        request: &'a Request<'a>,
    ) -> BoxFuture<'a, Result<Outcome, CloudError>> {
        Box::pin(async move {
            let ran = run(self, request, Intent::Reconcile).await?;
            let mut outcome = ran.outcome.ok_or_else(|| {
                CloudError::new(
                    wib_api::conditions::Reason::TransientError,
                    format!("{} planned a reconcile without an outcome", S::CLOUD),
                )
            })?;
            outcome.writes = ran.writes;
            Ok(outcome)
        })
    }

    fn cleanup<'a>(&'a self, request: &'a Request<'a>) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(async move { run(self, request, Intent::Cleanup).await.map(drop) })
    }

    fn revoke<'a>(
        &'a self,
        request: &'a Request<'a>,
    ) -> BoxFuture<'a, Result<Vec<String>, CloudError>> {
        Box::pin(async move { Ok(run(self, request, Intent::Revoke).await?.writes) })
    }

    fn exchange_audience(&self, request: &Request<'_>, outcome: &Outcome) -> Option<String> {
        S::exchange_audience(request, outcome)
    }

    fn verify_exchange<'a>(
        &'a self,
        request: &'a Request<'a>,
        outcome: &'a Outcome,
        token: &'a str,
        endpoints: &'a crate::exchange::Endpoints,
    ) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(Steps::verify_exchange(
            self, request, outcome, token, endpoints,
        ))
    }

    fn check<'a>(
        &'a self,
        provider: &'a ClusterIdentityProvider,
    ) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(async move {
            let checked = Steps::check(self, provider).await;
            if let Err(error) = &checked {
                self.failed(error).await;
            }
            checked
        })
    }

    fn prune<'a>(
        &'a self,
        provider: &'a ClusterIdentityProvider,
        issuer: &'a str,
        in_use: &'a InUse,
    ) -> BoxFuture<'a, Result<Vec<String>, CloudError>> {
        Box::pin(Steps::prune(self, provider, issuer, in_use))
    }
}

#[cfg(test)]
mod tests {
    //! A test-only cloud held in memory: what the runner does with any
    //! [`Steps`] implementation, with no SDK behind it.

    use std::collections::BTreeMap;
    use std::fmt;

    use serde_json::json;
    use wib_api::conditions::Reason;
    use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};

    use super::*;
    use crate::testing;

    #[test]
    fn only_a_snapshot_plan_without_writes_or_refusal_is_taken() {
        let done = |actions: Vec<u8>| Ok(Plan::done(actions, Outcome::default()));
        assert_eq!(steady(done(Vec::new())), Some(Outcome::default()));
        assert_eq!(steady(done(vec![1])), None, "it would write");
        let again: Result<Plan<u8>, CloudError> = Ok(Plan {
            actions: Vec::new(),
            next: Next::ObserveAgain,
        });
        assert_eq!(steady(again), None);
        let refused: Result<Plan<u8>, CloudError> = Err(CloudError::new(
            Reason::FederationConflict,
            "someone else's",
        ));
        assert_eq!(steady(refused), None, "a refusal is judged live");
    }

    /// An identity, then a grant named after the ID the cloud gave it: two
    /// rounds, like Azure's role assignments after the principal ID.
    #[derive(Default)]
    struct MemoryCloud {
        failures_seen: Mutex<Vec<Reason>>,
        locks: Locks,
        /// What `check` answers wib's credentials with.
        refuse: Option<Reason>,
    }

    enum Write {
        Put(String, String),
    }

    impl fmt::Display for Write {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Write::Put(key, value) => write!(f, "put {key}={value}"),
            }
        }
    }

    #[derive(Clone, Default)]
    struct Memory(BTreeMap<String, String>);

    impl Observe<Mutex<Memory>> for Memory {
        async fn observe(
            clients: &Mutex<Memory>,
            _: &Request<'_>,
            _: Intent,
        ) -> Result<Self, CloudError> {
            Ok(clients.lock().unwrap_or_else(|e| e.into_inner()).clone())
        }
    }

    impl Decide for Memory {
        type Action = Write;

        fn plan(&self, request: &Request<'_>, intent: Intent) -> Result<Plan<Write>, CloudError> {
            let name = &request.binding_name;
            if intent != Intent::Reconcile {
                return Ok(Plan::finished(Vec::new()));
            }
            let Some(id) = self.0.get(name) else {
                return Ok(Plan {
                    actions: vec![Write::Put(name.clone(), format!("id-of-{name}"))],
                    next: Next::ObserveAgain,
                });
            };
            let grant = format!("grant-for-{id}");
            let actions = match self.0.contains_key(&grant) {
                true => Vec::new(),
                false => vec![Write::Put(grant, "reader".into())],
            };
            if request.binding.spec.deletion_policy == wib_api::DeletionPolicy::Retain {
                // The test's stand-in for "never settles".
                return Ok(Plan {
                    actions,
                    next: Next::ObserveAgain,
                });
            }
            Ok(Plan::done(actions, Outcome::default()))
        }
    }

    impl Execute<Mutex<Memory>> for Write {
        async fn execute(&self, clients: &Mutex<Memory>) -> Result<(), CloudError> {
            let Write::Put(key, value) = self;
            clients
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .0
                .insert(key.clone(), value.clone());
            Ok(())
        }
    }

    impl Steps for MemoryCloud {
        type Clients = Mutex<Memory>;
        type Observed = Memory;
        type Action = Write;

        const CLOUD: Cloud = Cloud::Gcp;

        /// An empty cloud for every request.
        async fn clients(&self) -> Result<Arc<Self::Clients>, CloudError> {
            Ok(Arc::default())
        }

        fn validate(request: &Request<'_>, _: Intent) -> Result<String, CloudError> {
            Ok(request.binding_name.clone())
        }

        async fn check(&self, _: &ClusterIdentityProvider) -> Result<(), CloudError> {
            match self.refuse {
                Some(reason) => Err(CloudError::new(reason, "refused")),
                None => Ok(()),
            }
        }

        async fn failed(&self, error: &CloudError) {
            self.failures_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(error.reason);
        }

        fn locks(&self) -> &Locks {
            &self.locks
        }
    }

    fn request_parts(retain: bool) -> (WorkloadIdentityBinding, ClusterIdentityProvider) {
        let policy = if retain { "Retain" } else { "Delete" };
        let binding = testing::binding(
            "app",
            "ns",
            "u1",
            json!({"gcp": {}, "deletionPolicy": policy}),
        );
        (binding, testing::provider("p", json!({"clusterName": "c"})))
    }

    #[tokio::test]
    async fn any_steps_implementation_is_a_cloud_provider_that_plans_a_second_round_when_asked() {
        let cloud = MemoryCloud::default();
        let (binding, provider) = request_parts(false);
        let request = Request::new(&binding, &provider, "https://issuer");
        let outcome = CloudProvider::reconcile(&cloud, &request)
            .await
            .expect("two rounds");
        assert_eq!(
            outcome.writes,
            ["put app=id-of-app", "put grant-for-id-of-app=reader"],
            "the second round names the grant after what the first created"
        );
        assert_eq!(CloudProvider::cloud(&cloud), Cloud::Gcp);
        assert!(
            CloudProvider::revoke(&cloud, &request)
                .await
                .expect("revoke")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_plan_that_never_settles_stops_after_the_last_round_and_says_so() {
        let cloud = MemoryCloud::default();
        let (binding, provider) = request_parts(true);
        let request = Request::new(&binding, &provider, "https://issuer");
        let error = CloudProvider::reconcile(&cloud, &request)
            .await
            .expect_err("restless");
        assert_eq!(error.reason, Reason::TransientError);
        assert!(error.message.contains("3 rounds"), "{}", error.message);
        assert_eq!(
            *cloud
                .failures_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
            [Reason::TransientError],
            "every failure passes through Steps::failed"
        );
    }

    #[tokio::test]
    async fn a_failed_check_passes_through_failed_too() {
        let cloud = MemoryCloud {
            refuse: Some(Reason::CloudAuthenticationFailed),
            ..MemoryCloud::default()
        };
        let (_, provider) = request_parts(false);
        let error = CloudProvider::check(&cloud, &provider)
            .await
            .expect_err("refused");
        assert_eq!(error.reason, Reason::CloudAuthenticationFailed);
        assert_eq!(
            *cloud
                .failures_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
            [Reason::CloudAuthenticationFailed]
        );
    }

    #[test]
    fn locks_of_identities_nobody_uses_are_dropped_as_the_map_grows() {
        let locks = super::Locks::default();
        let held = locks.get("kept");
        for i in 0..1000 {
            drop(locks.get(&format!("gone-{i}")));
        }
        assert!(locks.len() < 130, "{} locks kept", locks.len());
        assert!(
            std::sync::Arc::ptr_eq(&held, &locks.get("kept")),
            "a lock in use is never replaced"
        );
    }
}
