//! The ClusterIdentityProvider controller: resolves the issuer (spec or
//! discovered from the API server) and reports whether a cloud could read its
//! discovery document and JWKS.

pub mod issuer;
pub mod resolve;

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use tracing::{Instrument, info_span};
use wib_api::conditions::{self, Desired, ISSUER_READY, READY, RECONCILING, Reason, STALLED};
use wib_api::{ClusterIdentityProvider, ClusterIdentityProviderStatus};

use crate::context::Context;
use crate::error::Error;
use crate::publish;

const CONTROLLER: &str = "clusteridentityprovider";

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
        let started = Instant::now();
        let state = observe(&provider, &ctx).await;
        let next = status(&provider, &state, (ctx.clock)());
        let api: Api<ClusterIdentityProvider> = Api::all(ctx.client.clone());
        let result = publish::status(
            &api,
            &ctx.recorder,
            &*provider,
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
        Ok(match state {
            IssuerState::Ready { .. } => Action::requeue(ctx.settings.provider_resync()),
            IssuerState::Unreachable { .. } => Action::requeue(std::time::Duration::from_secs(15)),
        })
    }
    .instrument(span)
    .await
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

/// Pure: the provider's status from the issuer state.
pub fn status(
    provider: &ClusterIdentityProvider,
    state: &IssuerState,
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
