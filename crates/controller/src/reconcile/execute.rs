//! Execute: the writes a plan calls for, in order, and nothing more.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use wib_api::WorkloadIdentityBinding;
use wib_api::conditions::Reason;

use super::plan::ServiceAccountPlan;
use super::status::ServiceAccountStep;
use crate::context::Context;
use crate::error::Error;
use crate::serviceaccount::{self, Cleanup};

/// Applies the ServiceAccount plan with the binding's own field manager.
pub async fn service_account(
    binding: &WorkloadIdentityBinding,
    plan: &ServiceAccountPlan,
    ctx: &Context,
) -> ServiceAccountStep {
    match plan {
        ServiceAccountPlan::InSync(_) => ServiceAccountStep::Ready,
        ServiceAccountPlan::Missing { .. } => ServiceAccountStep::Missing,
        ServiceAccountPlan::Apply {
            desired,
            resource_version,
        } => {
            let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &desired.namespace);
            let manager = serviceaccount::field_manager(&binding.name_any());
            // force: wib's own fields win over a conflicting manager (the
            // desired state is declared in the binding); other fields are
            // never in the body, so they are never touched.
            let applied = api
                .patch(
                    &desired.name,
                    &PatchParams::apply(&manager).force(),
                    &Patch::Apply(desired.apply_body(resource_version.as_deref())),
                )
                .await;
            match applied {
                Ok(_) => {
                    tracing::info!(service_account = %desired.name, "applied ServiceAccount fields");
                    ServiceAccountStep::Ready
                }
                // The cloud step has already run: its outcome must reach the
                // status together with the reason this step failed.
                Err(error) => {
                    tracing::warn!(service_account = %desired.name, %error, "ServiceAccount write failed");
                    refused(error)
                }
            }
        }
    }
}

/// What the binding says when its ServiceAccount write fails: the API
/// server's own words for a refusal (admission policy, webhook, quota), and
/// a transient error for the rest. Both are retried with backoff; a refusal
/// clears when whoever owns the policy lifts it.
fn refused(error: kube::Error) -> ServiceAccountStep {
    match error {
        kube::Error::Api(response) => ServiceAccountStep::Failed {
            reason: Reason::ServiceAccountRefused,
            message: format!(
                "the API server refused it ({}): {}",
                response.code, response.message
            ),
        },
        other => ServiceAccountStep::Failed {
            reason: Reason::TransientError,
            message: other.to_string(),
        },
    }
}

/// Removes the binding's fields from its ServiceAccount, or the
/// ServiceAccount itself when the binding created it and owns it alone.
pub async fn release_service_account(
    binding: &WorkloadIdentityBinding,
    ctx: &Context,
) -> Result<(), Error> {
    let namespace = binding
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = binding.service_account_name();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    let existing = api.get_opt(&name).await?;
    let manager = serviceaccount::field_manager(&binding.name_any());
    match serviceaccount::cleanup(
        existing.as_ref(),
        &binding.uid().unwrap_or_default(),
        &manager,
    ) {
        Cleanup::Nothing => {}
        Cleanup::Delete => {
            let preconditions = Preconditions {
                uid: existing.as_ref().and_then(|sa| sa.uid()),
                resource_version: existing.as_ref().and_then(|sa| sa.resource_version()),
            };
            let params = DeleteParams {
                preconditions: Some(preconditions),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {
                    tracing::info!(service_account = %name, "deleted the ServiceAccount this binding created")
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Cleanup::Release => {
            let rv = existing.as_ref().and_then(|sa| sa.resource_version());
            api.patch(
                &name,
                &PatchParams::apply(&manager).force(),
                &Patch::Apply(serviceaccount::release_body(
                    &name,
                    &namespace,
                    rv.as_deref(),
                )),
            )
            .await?;
            tracing::info!(service_account = %name, "removed this binding's ServiceAccount fields");
        }
    }
    Ok(())
}
