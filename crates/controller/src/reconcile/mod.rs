//! The WorkloadIdentityBinding controller. `reconcile` only wraps the
//! finalizer; Apply runs observe → plan → execute → status, Cleanup releases
//! what Apply made.

pub mod execute;
pub mod index;
pub mod observe;
pub mod outputs;
pub mod plan;
pub mod pods;
pub mod restart;
pub mod revoke;
pub mod sharing;
pub mod status;
pub mod triggers;
pub mod verify;

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use tracing::{Instrument, info_span};
use wib_api::WorkloadIdentityBinding;
use wib_api::keys::FINALIZER;

use crate::context::Context;
use crate::error::Error;
use crate::publish;
use status::{CloudStep, Progress};
use wib_cloud::Lookup;

const CONTROLLER: &str = "workloadidentitybinding";

/// Runs the controller until shutdown.
pub async fn run(
    controller: Controller<WorkloadIdentityBinding>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let config = kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency);
    controller
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "binding reconcile did not complete");
            }
        })
        .await;
}

async fn reconcile(
    binding: Arc<WorkloadIdentityBinding>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let span = info_span!("reconcile", namespace = %binding.namespace().unwrap_or_default(), name = %binding.name_any());
    async move {
        let started = Instant::now();
        // Not judged against caches still filling after a start or a
        // leader change (see Context::caches_synced).
        if !ctx.caches_synced() {
            return Ok(Action::requeue(std::time::Duration::from_millis(500)));
        }
        // Someone asked for a reconcile now: past the error backoff. A
        // Retry-After the cloud sent still holds in the rate limiter,
        // which every call passes.
        if requested_now(&binding).is_some() {
            ctx.reset_backoff(&backoff_key(&binding));
        }
        // The cloud asked for a pause (Retry-After): a reconcile triggered
        // meanwhile (by this binding's own status write) waits it out.
        if let Some(left) = ctx.held(&backoff_key(&binding)) {
            return Ok(Action::requeue(left));
        }
        let namespace = binding
            .namespace()
            .ok_or(Error::MissingField("metadata.namespace"))?;
        let api: Api<WorkloadIdentityBinding> = Api::namespaced(ctx.client.clone(), &namespace);
        let result = finalizer(&api, FINALIZER, binding.clone(), |event| async {
            match event {
                Finalizer::Apply(b) => apply(&b, &ctx).await,
                Finalizer::Cleanup(b) => cleanup(&b, &ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)));
        let label = if result.is_ok() { "success" } else { "error" };
        ctx.metrics.reconciled(CONTROLLER, label, started.elapsed());
        result
    }
    .instrument(span)
    .await
}

fn error_policy(binding: Arc<WorkloadIdentityBinding>, error: &Error, ctx: Arc<Context>) -> Action {
    let backoff = ctx.next_backoff(&backoff_key(&binding));
    let wait = match error.retry_after() {
        Some(wait) => {
            ctx.hold(&backoff_key(&binding), wait);
            wait
        }
        None => backoff,
    };
    let _span = info_span!("reconcile", namespace = %binding.namespace().unwrap_or_default(), name = %binding.name_any()).entered();
    tracing::warn!(%error, kind = error.metric_label(), retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// A `wib.dev/reconcile-requested-at` value not handled yet.
fn requested_now(binding: &WorkloadIdentityBinding) -> Option<&String> {
    let requested = binding
        .annotations()
        .get(wib_api::keys::RECONCILE_REQUESTED_ANNOTATION)?;
    let handled = binding
        .status
        .as_ref()
        .and_then(|s| s.last_handled_reconcile_at.as_ref());
    (handled != Some(requested)).then_some(requested)
}

fn backoff_key(binding: &WorkloadIdentityBinding) -> String {
    format!(
        "{}/{}",
        binding.namespace().unwrap_or_default(),
        binding.name_any()
    )
}

/// Apply: observe → plan → execute → status.
async fn apply(binding: &WorkloadIdentityBinding, ctx: &Context) -> Result<Action, Error> {
    let observed = observe::observe(binding, ctx).await?;
    // How long the cloud asked to be left alone (Retry-After), if it did.
    let mut wait_asked = None;
    let progress = match plan::admit(binding, &observed) {
        Err(refusal) => {
            tracing::info!(reason = %refusal.reason, message = %refusal.message, "binding refused");
            if revoke::needed(binding, refusal.reason) {
                revoke::revoke(binding, &observed, ctx).await?;
            }
            Progress::Refused(refusal)
        }
        Ok(admitted) => {
            let (cloud_step, retry_after) = run_cloud(binding, &admitted, ctx).await;
            wait_asked = retry_after;
            if let CloudStep::Failed { reason, .. } = &cloud_step
                && revoke::needed(binding, *reason)
            {
                revoke::revoke(binding, &observed, ctx).await?;
            }
            if let CloudStep::Done(outcome) = &cloud_step {
                report_cloud_writes(binding, admitted.cloud, &outcome.writes, ctx).await;
            }
            let service_account = match &cloud_step {
                CloudStep::Failed { .. } => status::ServiceAccountStep::Skipped,
                CloudStep::NotImplemented => {
                    let plan = plan::service_account(
                        binding,
                        admitted.cloud,
                        observed.service_account.as_ref(),
                        &Default::default(),
                        &Default::default(),
                    );
                    execute::service_account(binding, &plan, ctx).await
                }
                CloudStep::Done(outcome) => {
                    let plan = plan::service_account(
                        binding,
                        admitted.cloud,
                        observed.service_account.as_ref(),
                        &outcome.annotations,
                        &outcome.labels,
                    );
                    execute::service_account(binding, &plan, ctx).await
                }
            };
            let exchange =
                verify::step(binding, &admitted, &cloud_step, &service_account, ctx).await;
            Progress::Ran {
                cloud: admitted.cloud,
                cloud_step,
                service_account,
                exchange,
            }
        }
    };
    let mut next = status::compute(binding, binding.status.as_ref(), &progress, (ctx.clock)());
    restart::step(binding, &progress, &mut next, ctx).await;
    outputs::step(binding, &progress, &mut next, ctx).await;
    next.last_handled_reconcile_at = binding
        .annotations()
        .get(wib_api::keys::RECONCILE_REQUESTED_ANNOTATION)
        .cloned();
    write_status(binding, &next, ctx).await?;
    tracing::debug!(ready = ?wib_api::conditions::find(&next.conditions, wib_api::conditions::READY).map(|c| &c.reason), "reconciled");
    if status::is_transient(&next) {
        let backoff = ctx.next_backoff(&backoff_key(binding));
        if let Some(wait) = wait_asked {
            ctx.hold(&backoff_key(binding), wait);
            return Ok(Action::requeue(wait));
        }
        if verify::waiting(&next) {
            return Ok(Action::requeue(backoff.min(verify::POLL)));
        }
        return Ok(Action::requeue(backoff));
    }
    // Only a settled binding forgets its failures: a transient one reported
    // in status is a successful reconcile too, and must keep backing off.
    ctx.reset_backoff(&backoff_key(binding));
    Ok(Action::requeue(crate::context::jittered(
        ctx.settings.resync(),
    )))
}

/// Cloud writes on a binding that was already Ready are drift repairs: an
/// Event and a metric say what was put back. Writes while provisioning get a
/// Normal Event too, so `kubectl describe` tells the story.
async fn report_cloud_writes(
    binding: &WorkloadIdentityBinding,
    cloud: wib_api::Cloud,
    writes: &[String],
    ctx: &Context,
) {
    if writes.is_empty() {
        return;
    }
    let was_ready = binding
        .status
        .as_ref()
        .and_then(|s| wib_api::conditions::find(&s.conditions, wib_api::conditions::READY))
        .is_some_and(|c| c.status == "True");
    let reason = if was_ready {
        "DriftRepaired"
    } else {
        "CloudUpdated"
    };
    if was_ready {
        ctx.metrics.drift_repaired(cloud.as_str(), writes.len());
        tracing::warn!(writes = ?writes, "repaired drift in the cloud");
    } else {
        tracing::info!(writes = ?writes, "cloud updated");
    }
    let type_ = if was_ready {
        kube::runtime::events::EventType::Warning
    } else {
        kube::runtime::events::EventType::Normal
    };
    publish::cloud_event(
        &ctx.recorder,
        &binding.object_ref(&()),
        type_,
        reason,
        "Reconcile",
        writes,
    )
    .await;
}

/// The cloud step: the registered cloud implementation, if any,
/// and the wait the cloud asked for when it failed.
async fn run_cloud(
    binding: &WorkloadIdentityBinding,
    admitted: &plan::Admitted,
    ctx: &Context,
) -> (CloudStep, Option<std::time::Duration>) {
    match cloud_step(binding, admitted, ctx).await {
        Ok(step) => (step, None),
        Err(error) => (
            CloudStep::Failed {
                reason: error.reason,
                message: error.message,
            },
            error.retry_after,
        ),
    }
}

async fn cloud_step(
    binding: &WorkloadIdentityBinding,
    admitted: &plan::Admitted,
    ctx: &Context,
) -> Result<CloudStep, wib_cloud::CloudError> {
    let cloud = match ctx.clouds.lookup(admitted.cloud) {
        Lookup::Ready(cloud) => cloud,
        Lookup::Unavailable(error) => {
            return Ok(CloudStep::Failed {
                reason: wib_api::conditions::Reason::CloudUnavailable,
                message: unavailable(admitted.cloud, error),
            });
        }
        Lookup::NotImplemented => return Ok(CloudStep::NotImplemented),
    };
    let Some(issuer) = admitted
        .provider
        .status
        .as_ref()
        .and_then(|s| s.issuer.clone())
    else {
        return Ok(issuer_not_resolved(&admitted.provider));
    };
    let mut request = wib_cloud::Request::new(binding, &admitted.provider, &issuer);
    request.granted_by = sharing::granted_by(
        binding,
        || ctx.makers_sharing_with(binding),
        &ctx.providers.state(),
    );
    let outcome = cloud.reconcile(&request).await?;
    Ok(CloudStep::Done(Box::new(outcome)))
}

fn unavailable(cloud: wib_api::Cloud, error: &str) -> String {
    format!(
        "wib's {cloud} client did not start ({error}): fix the operator's {cloud} configuration and restart it"
    )
}

/// Why a binding cannot reach its cloud yet: its provider found the issuer
/// unreachable (say so, with the provider's words), or has not checked it
/// yet (a binding applied together with its provider sees that first).
fn issuer_not_resolved(provider: &wib_api::ClusterIdentityProvider) -> CloudStep {
    use wib_api::conditions::{ISSUER_READY, Reason};
    let name = provider.name_any();
    let checked = provider.status.as_ref().and_then(|s| {
        let current = s.observed_generation == provider.metadata.generation;
        s.conditions
            .iter()
            .find(|c| c.type_ == ISSUER_READY && c.status == "False" && current)
    });
    match checked {
        Some(condition) => CloudStep::Failed {
            reason: Reason::IssuerUnreachable,
            message: format!(
                "ClusterIdentityProvider {name:?} cannot read the cluster's OIDC issuer: {}",
                condition.message
            ),
        },
        None => CloudStep::Failed {
            reason: Reason::Progressing,
            message: format!(
                "waiting for ClusterIdentityProvider {name:?} to resolve the cluster's OIDC issuer"
            ),
        },
    }
}

/// Cleanup: the cloud first (per deletionPolicy), then the ServiceAccount, so
/// no ServiceAccount keeps pointing at a half-deleted identity.
async fn cleanup(binding: &WorkloadIdentityBinding, ctx: &Context) -> Result<Action, Error> {
    if let Err(error) = cleanup_cloud(binding, ctx).await {
        // The finalizer stays until the cloud answers; say so on the binding.
        let next = status::deletion_blocked(
            binding,
            binding.status.as_ref(),
            &error.to_string(),
            (ctx.clock)(),
        );
        write_status(binding, &next, ctx).await?;
        return Err(error);
    }
    execute::release_service_account(binding, ctx).await?;
    outputs::remove(binding, ctx).await?;
    // The binding is going: nothing of it stays in memory.
    ctx.reset_backoff(&backoff_key(binding));
    Ok(Action::await_change())
}

/// Asks the binding's cloud to remove what wib made for it. Clouds find
/// their resources by deterministic name and judge them by ownership tags,
/// not by status, so a reconcile that crashed before writing status is
/// cleaned up too, and nothing another binding made is deleted.
async fn cleanup_cloud(binding: &WorkloadIdentityBinding, ctx: &Context) -> Result<(), Error> {
    let Some(cloud) = binding.spec.cloud() else {
        return Ok(());
    };
    // A cloud this build lacks has nothing of the binding's; a cloud whose
    // client did not start may: the finalizer stays until it can be asked.
    let implementation = match ctx.clouds.lookup(cloud) {
        Lookup::Ready(implementation) => implementation,
        Lookup::Unavailable(error) => {
            return Err(wib_cloud::CloudError::new(
                wib_api::conditions::Reason::CloudUnavailable,
                format!(
                    "{}; deleting now would leave the identity and its federation behind",
                    unavailable(cloud, error)
                ),
            )
            .into());
        }
        Lookup::NotImplemented => return Ok(()),
    };
    let chosen =
        crate::provider::resolve::select(binding, &ctx.providers.state()).map_err(|refusal| {
            wib_cloud::CloudError::new(
                wib_api::conditions::Reason::DeletionBlocked,
                refusal.message,
            )
        })?;
    let issuer = chosen
        .status
        .as_ref()
        .and_then(|s| s.issuer.clone())
        .unwrap_or_default();
    // A binding refused now (another namespace's selector, a ServiceAccount
    // another binding holds) removes only what carries its own uid.
    let observed = observe::observe(binding, ctx).await?;
    let mut request = wib_cloud::Request::new(binding, &chosen, &issuer);
    request.admitted = plan::admit(binding, &observed).is_ok();
    request.granted_by = sharing::granted_by(
        binding,
        || ctx.makers_sharing_with(binding),
        &observed.providers,
    );
    implementation.cleanup(&request).await?;
    if binding.spec.custom_audience().is_some() {
        crate::provider::prune::prune(&chosen, ctx, binding.uid().as_deref()).await;
    }
    Ok(())
}

async fn write_status(
    binding: &WorkloadIdentityBinding,
    next: &wib_api::WorkloadIdentityBindingStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let namespace = binding
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<WorkloadIdentityBinding> = Api::namespaced(ctx.client.clone(), &namespace);
    publish::status(&api, &ctx.recorder, binding, binding.status.as_ref(), next).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wib_api::conditions::Reason;

    fn provider(generation: i64, status: serde_json::Value) -> wib_api::ClusterIdentityProvider {
        serde_json::from_value(json!({
            "apiVersion": "wib.dev/v1alpha1",
            "kind": "ClusterIdentityProvider",
            "metadata": {"name": "p", "generation": generation},
            "spec": {"clusterName": "c1", "aws": {"accountId": "123456789012"}},
            "status": status,
        }))
        .expect("valid provider")
    }

    fn reason(step: CloudStep) -> (Reason, String) {
        match step {
            CloudStep::Failed { reason, message } => (reason, message),
            other => panic!("not a failure: {other:?}"),
        }
    }

    #[test]
    fn a_provider_that_has_not_checked_its_issuer_yet_means_waiting_not_unreachable() {
        let unchecked = provider(1, json!({}));
        assert_eq!(
            reason(issuer_not_resolved(&unchecked)).0,
            Reason::Progressing
        );

        let unreachable = json!({"observedGeneration": 1, "conditions": [{
            "type": "IssuerReady", "status": "False", "reason": "IssuerUnreachable",
            "message": "reading https://issuer/.well-known/openid-configuration: timed out",
            "lastTransitionTime": "2026-11-23T00:00:00Z",
        }]});
        let (r, message) = reason(issuer_not_resolved(&provider(1, unreachable.clone())));
        assert_eq!(r, Reason::IssuerUnreachable);
        assert!(message.contains("timed out"), "{message}");

        // The verdict was for an older spec: the new one is still being checked.
        assert_eq!(
            reason(issuer_not_resolved(&provider(2, unreachable))).0,
            Reason::Progressing
        );
    }
}
