//! The ClusterIdentityProvider controller: resolves the issuer (spec or
//! discovered from the API server) and reports whether a cloud could read its
//! discovery document and JWKS.

pub mod in_use;
pub mod issuer;
pub mod prune;
pub mod resolve;

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use tracing::{Instrument, info_span};
use wib_api::conditions::{
    self, CLOUD_CREDENTIALS_READY, Desired, ISSUER_READY, READY, RECONCILING, Reason, STALLED,
};
use wib_api::keys::PROVIDER_FINALIZER;
use wib_api::{ClusterIdentityProvider, ClusterIdentityProviderStatus};

use crate::context::Context;
use crate::error::Error;
use crate::publish;

const CONTROLLER: &str = "clusteridentityprovider";

/// The provider controller. Bindings wake the providers waiting for their
/// users to leave through the shared binding watch (see
/// `reconcile::triggers`).
pub fn controller(client: kube::Client) -> Controller<ClusterIdentityProvider> {
    Controller::new(Api::all(client), watcher::Config::default())
}

pub async fn run(
    controller: Controller<ClusterIdentityProvider>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "provider reconcile did not complete");
            }
        })
        .await;
}

/// What checking the issuer found.
#[derive(Debug)]
pub enum IssuerState {
    Ready {
        issuer: String,
        check: issuer::IssuerCheck,
    },
    Unreachable {
        issuer: Option<String>,
        message: String,
    },
}

async fn reconcile(
    provider: Arc<ClusterIdentityProvider>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let span = info_span!("reconcile", provider = %provider.name_any());
    async move {
        let name = provider.name_any();
        let api: Api<ClusterIdentityProvider> = Api::all(ctx.client.clone());
        let result = finalizer(&api, PROVIDER_FINALIZER, provider, |event| async {
            match event {
                Finalizer::Apply(p) => apply(&p, &ctx).await,
                Finalizer::Cleanup(p) => release(&p, &ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)));
        if result.is_ok() {
            ctx.reset_backoff(&name);
        }
        result
    }
    .instrument(span)
    .await
}

async fn apply(provider: &ClusterIdentityProvider, ctx: &Context) -> Result<Action, Error> {
    let started = Instant::now();
    let state = observe(provider, ctx).await;
    let credentials = check_credentials(provider, ctx).await;
    let next = status(provider, &state, &credentials, (ctx.clock)());
    let api: Api<ClusterIdentityProvider> = Api::all(ctx.client.clone());
    let result = publish::status(
        &api,
        &ctx.recorder,
        provider,
        provider.status.as_ref(),
        &next,
    )
    .await;
    ctx.metrics.reconciled(
        CONTROLLER,
        if result.is_ok() { "success" } else { "error" },
        started.elapsed(),
    );
    result?;
    prune::prune(provider, ctx, None).await;
    Ok(match state {
        IssuerState::Ready { .. } => Action::requeue(ctx.settings.provider_resync()),
        IssuerState::Unreachable { .. } => Action::requeue(std::time::Duration::from_secs(15)),
    })
}

/// A provider being deleted keeps its finalizer while bindings resolve to
/// it, and says which; the bindings cache must have synced first, or an
/// empty cache would let it go at start-up.
async fn release(provider: &ClusterIdentityProvider, ctx: &Context) -> Result<Action, Error> {
    if !ctx.caches_synced() {
        return Ok(Action::requeue(std::time::Duration::from_secs(1)));
    }
    let users = in_use::users(provider, &ctx.bindings.state(), &ctx.providers.state());
    if users.is_empty() {
        tracing::info!("no binding uses the provider any more; releasing it");
        return Ok(Action::await_change());
    }
    let message = in_use::waiting_for(&users);
    let mut next = provider.status.clone().unwrap_or_default();
    next.conditions = conditions::waiting(
        &next.conditions,
        Reason::ProviderInUse,
        &message,
        provider.metadata.generation,
        (ctx.clock)(),
    );
    let api: Api<ClusterIdentityProvider> = Api::all(ctx.client.clone());
    publish::status(
        &api,
        &ctx.recorder,
        provider,
        provider.status.as_ref(),
        &next,
    )
    .await?;
    Err(Error::InUse(message))
}

fn error_policy(
    provider: Arc<ClusterIdentityProvider>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let wait = ctx.next_backoff(&provider.name_any());
    tracing::warn!(provider = %provider.name_any(), %error, retry_in = ?wait, "provider reconcile failed");
    Action::requeue(wait)
}

async fn observe(provider: &ClusterIdentityProvider, ctx: &Context) -> IssuerState {
    let issuer = match &provider.spec.issuer {
        Some(issuer) => issuer.clone(),
        None => match issuer::discover(&ctx.client).await {
            Ok(issuer) => issuer,
            Err(e) => {
                return IssuerState::Unreachable {
                    issuer: None,
                    message: e.to_string(),
                };
            }
        },
    };
    match issuer::check(&ctx.issuer_http, &issuer).await {
        Ok(check) => IssuerState::Ready { issuer, check },
        Err(e) => IssuerState::Unreachable {
            issuer: Some(issuer),
            message: e.to_string(),
        },
    }
}

/// A cloud whose credentials failed the provider's check, and why.
#[derive(Debug)]
pub struct CredentialFailure {
    pub cloud: wib_api::Cloud,
    pub reason: Reason,
    pub message: String,
}

/// One cheap read per cloud the provider configures, with wib's own
/// credentials; what fails, fails here before any binding tries.
async fn check_credentials(
    provider: &ClusterIdentityProvider,
    ctx: &Context,
) -> Vec<CredentialFailure> {
    let mut failures = Vec::new();
    for cloud in wib_api::Cloud::ALL {
        if !provider.spec.configures(cloud) {
            continue;
        }
        let implementation = match ctx.clouds.lookup(cloud) {
            wib_cloud::Lookup::Ready(implementation) => implementation,
            wib_cloud::Lookup::Unavailable(error) => {
                failures.push(CredentialFailure {
                    cloud,
                    reason: Reason::CloudUnavailable,
                    message: format!("wib's {cloud} client did not start: {error}"),
                });
                continue;
            }
            wib_cloud::Lookup::NotImplemented => {
                failures.push(CredentialFailure {
                    cloud,
                    reason: Reason::CloudNotImplemented,
                    message: format!("this build of wib cannot reach {cloud}"),
                });
                continue;
            }
        };
        let outcome = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            implementation.check(provider),
        )
        .await;
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some((e.reason, e.message)),
            Err(_) => Some((Reason::TransientError, "no answer within 20s".to_string())),
        };
        if let Some((reason, message)) = failure {
            failures.push(CredentialFailure {
                cloud,
                reason,
                message,
            });
        }
    }
    failures
}

/// Pure: the provider's status from the issuer state and the credential checks.
pub fn status(
    provider: &ClusterIdentityProvider,
    state: &IssuerState,
    credentials: &[CredentialFailure],
    now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> ClusterIdentityProviderStatus {
    let generation = provider.metadata.generation;
    let (issuer, jwks_uri, keys, desired) = match state {
        IssuerState::Ready { issuer, check } => (
            Some(issuer.clone()),
            Some(check.jwks_uri.clone()),
            i32::try_from(check.keys).ok(),
            vec![
                Desired::new(
                    READY,
                    true,
                    Reason::Provisioned,
                    format!("issuer {issuer} is readable anonymously"),
                ),
                Desired::new(RECONCILING, false, Reason::AsExpected, ""),
                Desired::new(STALLED, false, Reason::AsExpected, ""),
                Desired::new(
                    ISSUER_READY,
                    true,
                    Reason::Provisioned,
                    format!(
                        "discovery document and JWKS ({} keys) at {}",
                        check.keys, check.jwks_uri
                    ),
                ),
            ],
        ),
        IssuerState::Unreachable { issuer, message } => (
            issuer.clone(),
            None,
            None,
            vec![
                Desired::new(READY, false, Reason::IssuerUnreachable, message.clone()),
                Desired::new(
                    RECONCILING,
                    true,
                    Reason::IssuerUnreachable,
                    message.clone(),
                ),
                Desired::new(STALLED, false, Reason::IssuerUnreachable, ""),
                Desired::new(
                    ISSUER_READY,
                    false,
                    Reason::IssuerUnreachable,
                    message.clone(),
                ),
            ],
        ),
    };
    let mut desired = desired;
    match credentials.first() {
        None => desired.push(Desired::new(
            CLOUD_CREDENTIALS_READY,
            true,
            Reason::Provisioned,
            "wib's own credentials work for every cloud this provider configures",
        )),
        Some(first) => {
            let message = credentials
                .iter()
                .map(|f| format!("{}: {}", f.cloud, f.message))
                .collect::<Vec<_>>()
                .join("; ");
            desired.push(Desired::new(
                CLOUD_CREDENTIALS_READY,
                false,
                first.reason,
                message.clone(),
            ));
            // The issuer's state speaks first; failing credentials make an
            // otherwise ready provider not Ready.
            if matches!(state, IssuerState::Ready { .. }) {
                let terminal = first.reason.is_terminal();
                desired.retain(|d| ![READY, RECONCILING, STALLED].contains(&d.type_));
                desired.push(Desired::new(READY, false, first.reason, message.clone()));
                desired.push(Desired::new(
                    RECONCILING,
                    !terminal,
                    first.reason,
                    if terminal {
                        String::new()
                    } else {
                        message.clone()
                    },
                ));
                desired.push(Desired::new(
                    STALLED,
                    terminal,
                    first.reason,
                    if terminal { message } else { String::new() },
                ));
            }
        }
    }
    let previous = provider
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    ClusterIdentityProviderStatus {
        observed_generation: generation,
        conditions: conditions::merge(previous, &desired, generation, now),
        issuer,
        jwks_uri,
        jwks_keys: keys,
    }
}
