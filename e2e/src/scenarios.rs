//! The scenarios every cloud must pass, written once: each cloud's test
//! file implements [`CloudUnderTest`] and runs them. What only one cloud
//! does stays in its own file.

use std::time::Duration;

use kube::ResourceExt;
use wib_api::conditions::READY;

use crate::{Env, WAIT, poll_until};

/// What a cloud holds for one binding, as the scenarios compare it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Cloud identities of the binding's name (never more than one).
    pub identities: usize,
    /// Whether the binding's ServiceAccount may act as it.
    pub federated: bool,
    /// Grants the identity holds of those the binding lists.
    pub grants: usize,
}

impl Snapshot {
    pub const COMPLETE: Snapshot = Snapshot {
        identities: 1,
        federated: true,
        grants: 1,
    };
}

/// One cloud, as the shared scenarios drive it.
#[allow(async_fn_in_trait)]
pub trait CloudUnderTest {
    /// The namespace its bindings live in.
    const NAMESPACE: &'static str;
    /// The ServiceAccount annotation a Ready binding sets, and its value
    /// when the scenario's binding fixes it.
    const ANNOTATION: (&'static str, Option<&'static str>);

    /// An environment with the cloud's provider applied and the namespace made.
    async fn start() -> Env;
    /// A binding with one grant; `extra` is added under `spec:`.
    fn binding(name: &str, extra: &str) -> String;
    /// What the cloud holds for the binding `name`.
    async fn snapshot(env: &Env, name: &str) -> Snapshot;
    /// Removes, as someone else, the binding's federation and its grant.
    async fn remove_federation_and_grant(env: &Env, name: &str);
    /// Makes the fake hold the next grant write for a few seconds.
    async fn hold_grant_write(env: &Env);
    /// Whether the held grant write has been reached.
    async fn grant_write_reached(env: &Env) -> bool;
    /// Bindings the cloud refuses at reconcile time (arranging in the cloud
    /// what they need first), each with its reason and a word its message
    /// must name.
    async fn refusals(env: &Env) -> Vec<Refusal>;
    /// Cloud writes served so far.
    async fn writes(env: &Env) -> u64;
}

/// A binding the cloud must refuse.
pub struct Refusal {
    pub name: &'static str,
    pub yaml: String,
    pub reason: &'static str,
    pub names: &'static str,
}

async fn ready(env: &Env, namespace: &str, name: &str) {
    env.wait_condition(namespace, name, READY, "True", "Provisioned")
        .await
        .expect("Ready");
}

async fn settles_at<C: CloudUnderTest>(env: &Env, name: &str, want: Snapshot) {
    poll_until(
        WAIT,
        &format!("{name} holds {want:?}"),
        async || match C::snapshot(env, name).await {
            found if found == want => Ok(()),
            found => Err(format!("{found:?}")),
        },
    )
    .await
    .expect("cloud state");
}

/// Federation and grant removed out of band are put back, with a
/// `DriftRepaired` Event.
pub async fn drift_is_put_back_with_an_event<C: CloudUnderTest>() {
    let env = C::start().await;
    env.apply(&C::binding("drifty", "")).await.expect("binding");
    ready(&env, C::NAMESPACE, "drifty").await;
    assert_eq!(C::snapshot(&env, "drifty").await, Snapshot::COMPLETE);
    C::remove_federation_and_grant(&env, "drifty").await;
    settles_at::<C>(&env, "drifty", Snapshot::COMPLETE).await;
    env.wait_events(C::NAMESPACE, "drifty", &["DriftRepaired"])
        .await
        .expect("Event");
}

/// The operator killed while the cloud holds its grant write: the next one
/// finishes without a second identity or grant.
pub async fn a_crash_while_a_grant_is_written_leaves_no_duplicates<C: CloudUnderTest>() {
    let mut env = C::start().await;
    C::hold_grant_write(&env).await;
    env.apply(&C::binding("crashy", "")).await.expect("binding");
    poll_until(
        WAIT,
        "the grant write reached",
        async || match C::grant_write_reached(&env).await {
            true => Ok(()),
            false => Err("not yet".to_string()),
        },
    )
    .await
    .expect("held");
    let at_the_crash = C::snapshot(&env, "crashy").await;
    assert_eq!(at_the_crash.identities, 1, "{at_the_crash:?}");
    env.operator_mut().kill();
    env.operator_mut().restart().expect("restart");
    ready(&env, C::NAMESPACE, "crashy").await;
    // A few resyncs later, still exactly one of each.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(C::snapshot(&env, "crashy").await, Snapshot::COMPLETE);
}

/// `deletionPolicy: Retain`: deleting the binding keeps the identity and its
/// grant and removes only the federation.
pub async fn retain_keeps_the_identity_and_grant_and_drops_only_the_federation<
    C: CloudUnderTest,
>() {
    let env = C::start().await;
    env.apply(&C::binding("kept", "  deletionPolicy: Retain\n"))
        .await
        .expect("binding");
    ready(&env, C::NAMESPACE, "kept").await;
    let sa = env
        .service_accounts(C::NAMESPACE)
        .get("kept")
        .await
        .expect("ServiceAccount");
    let (key, value) = C::ANNOTATION;
    let found = sa.annotations().get(key).map(String::as_str);
    match value {
        Some(value) => assert_eq!(found, Some(value), "{key}"),
        None => assert!(found.is_some_and(|v| !v.is_empty()), "{key}: {found:?}"),
    }
    env.delete_binding(C::NAMESPACE, "kept")
        .await
        .expect("deleted");
    assert_eq!(
        C::snapshot(&env, "kept").await,
        Snapshot {
            identities: 1,
            federated: false,
            grants: 1
        }
    );
}

/// Input only the cloud can judge (a role that does not exist, an
/// administrator role, an identity wib does not own): `Ready=False` and
/// `Stalled=True` with the precise reason and an Event, no cloud write, and
/// each refused binding deletes without touching anything.
pub async fn bad_input_is_refused_with_nothing_written<C: CloudUnderTest>() {
    let env = C::start().await;
    let refusals = C::refusals(&env).await;
    let before = C::writes(&env).await;
    for refusal in &refusals {
        env.apply(&refusal.yaml).await.expect("binding");
        let b = env
            .wait_condition(C::NAMESPACE, refusal.name, READY, "False", refusal.reason)
            .await
            .expect("refused");
        let ready = crate::condition(&b, READY).map(|c| c.message.clone());
        assert!(
            ready.as_deref().is_some_and(|m| m.contains(refusal.names)),
            "{}: {ready:?}",
            refusal.name
        );
        let stalled = crate::condition(&b, wib_api::conditions::STALLED).map(|c| c.status.clone());
        assert_eq!(stalled.as_deref(), Some("True"), "{}", refusal.name);
        env.wait_events(C::NAMESPACE, refusal.name, &[refusal.reason])
            .await
            .expect("Event");
    }
    assert_eq!(
        C::writes(&env).await,
        before,
        "refused bindings wrote nothing"
    );
    for refusal in &refusals {
        env.delete_binding(C::NAMESPACE, refusal.name)
            .await
            .expect("deleted");
    }
    assert_eq!(
        C::writes(&env).await,
        before,
        "their deletion wrote nothing"
    );
}
