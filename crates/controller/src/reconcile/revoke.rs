//! Revocation: a binding that was federated and is refused now (its
//! namespace no longer matches, the provider's guardrails were tightened,
//! the identity is no longer shared with it) loses its federation entry and
//! its ServiceAccount's cloud annotations at once. Its identity and grants
//! stay, as `deletionPolicy` would have them, so a mistaken relabel loses
//! nothing: allowing the binding again restores both.

use std::collections::BTreeMap;

use kube::Resource;
use wib_api::WorkloadIdentityBinding;
use wib_api::conditions::{self, FEDERATION_READY, Reason};

use super::observe::Observed;
use super::{execute, plan, status};
use crate::context::Context;
use crate::error::Error;
use crate::provider::resolve;

/// Whether refusing the binding for `reason` must revoke it: it was
/// federated, and the refusal is the platform's or the owner's word, not a
/// ServiceAccount held by another binding (whose subject is the holder's).
pub fn needed(binding: &WorkloadIdentityBinding, reason: Reason) -> bool {
    let federated = binding
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, FEDERATION_READY))
        .is_some_and(|c| c.status == "True");
    federated
        && matches!(
            reason,
            Reason::NamespaceNotAllowed
                | Reason::ProviderNotFound
                | Reason::ProviderAmbiguous
                | Reason::CloudNotConfigured
                | Reason::IdentityNotShared
                | Reason::IdentityProtected
                | Reason::AdoptionNotAllowed
                | Reason::RoleNotAllowed
                | Reason::PolicyNotAllowed
                | Reason::ScopeNotAllowed
                | Reason::AudienceNotAllowed
        )
}

/// Removes the binding's federation (when its provider is still known) and
/// its ServiceAccount's cloud annotations; a failure is retried with backoff
/// and the status keeps saying the binding is federated until it succeeds.
pub async fn revoke(
    binding: &WorkloadIdentityBinding,
    observed: &Observed,
    ctx: &Context,
) -> Result<(), Error> {
    let Some(cloud) = binding.spec.cloud() else {
        return Ok(());
    };
    let provider = resolve::select(binding, &observed.providers).ok();
    let issuer = provider
        .as_ref()
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.issuer.clone());
    if let (Some(implementation), Some(provider), Some(issuer)) =
        (ctx.clouds.get(cloud), provider.as_ref(), issuer)
    {
        let request = wib_cloud::Request::new(binding, provider, &issuer);
        let removed = implementation.revoke(&request).await?;
        if !removed.is_empty() {
            tracing::warn!(?removed, "revoked the federation of a refused binding");
            crate::publish::cloud_event(
                &ctx.recorder,
                &binding.object_ref(&()),
                kube::runtime::events::EventType::Warning,
                "FederationRevoked",
                "Revoke",
                &removed,
            )
            .await;
        }
    }
    if observed.service_account.is_some() {
        let plan = plan::service_account(
            binding,
            cloud,
            observed.service_account.as_ref(),
            &BTreeMap::new(),
            &BTreeMap::new(),
        );
        if let status::ServiceAccountStep::Failed { reason, message } =
            execute::service_account(binding, &plan, ctx).await
        {
            return Err(wib_cloud::CloudError::new(reason, message).into());
        }
    }
    Ok(())
}
