//! Reads only: the role, the cluster's IAM OIDC provider, the role's
//! policies where they are the binding's to manage, and whether the
//! policies the plan would attach exist.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::Clients;
use super::iam::{OidcProvider, Role};
use super::target::{self, Target};
use crate::ownership::Claim;
use crate::steps::{Intent, Observe};
use crate::{CloudError, Request};

/// What IAM holds for one binding.
#[derive(Debug, Default)]
pub struct Observed {
    pub role: Option<Role>,
    /// The IAM OIDC provider the trust policy names; read for a reconcile
    /// whose role the binding may claim, `None` otherwise or when absent.
    pub oidc_provider: Option<OidcProvider>,
    /// Managed policies attached to the role, and its inline policies'
    /// names; read only where the plan may change them.
    pub attached: Vec<String>,
    pub inline_names: Vec<String>,
    /// The documents of the inline policies the spec lists, as the role
    /// holds them (absent: not there, or gone between list and read).
    pub inline_documents: BTreeMap<String, Value>,
    /// Policies the plan would newly name (managed policies to attach, the
    /// permissions boundary to set) that IAM says do not exist.
    pub missing_policies: BTreeSet<String>,
    /// IAM's trust-policy quota in this account, as configured: AWS raises
    /// it per account on request.
    pub trust_policy_max_chars: usize,
}

impl Observe<Clients> for Observed {
    async fn observe(
        clients: &Clients,
        request: &Request<'_>,
        intent: Intent,
    ) -> Result<Observed, CloudError> {
        let target = Target::of(request)?;
        let mut observed = Observed {
            role: clients.iam.get_role(&target.role).await?,
            trust_policy_max_chars: clients.trust_policy_max_chars,
            ..Observed::default()
        };
        match intent {
            Intent::Revoke => {}
            Intent::Cleanup => {
                let touches = observed
                    .role
                    .as_ref()
                    .is_some_and(|role| target::leaving(request, &target, role).touches_policies());
                if touches {
                    observed.attached = clients.iam.list_attached(&target.role).await?;
                    observed.inline_names = clients.iam.list_inline(&target.role).await?;
                }
            }
            Intent::Reconcile => reconcile(clients, request, &target, &mut observed).await?,
        }
        Ok(observed)
    }
}

async fn reconcile(
    clients: &Clients,
    request: &Request<'_>,
    target: &Target<'_>,
    observed: &mut Observed,
) -> Result<(), CloudError> {
    // A role the binding may not claim is refused on its tags alone.
    let Ok(claim) = target::claim(request, target, observed.role.as_ref()) else {
        return Ok(());
    };
    let iam = &clients.iam;
    observed.oidc_provider = iam
        .get_oidc_provider(&target.federation.provider_arn)
        .await?;
    if observed.role.is_some() && claim != Claim::Shared {
        observed.attached = iam.list_attached(&target.role).await?;
        observed.inline_names = iam.list_inline(&target.role).await?;
        for inline in &target.spec.inline_policies {
            if observed.inline_names.contains(&inline.name)
                && let Some(document) = iam.get_inline(&target.role, &inline.name).await?
            {
                observed
                    .inline_documents
                    .insert(inline.name.clone(), document);
            }
        }
    }
    let role = observed.role.as_ref();
    let refused = target.grants_refused(request).is_some();
    let mut new = target.managed_policies(role, &observed.attached, refused);
    new.retain(|arn| !observed.attached.contains(arn));
    if let Some(boundary) = &target.defaults.permissions_boundary_arn
        && role.is_none_or(|r| r.permissions_boundary.as_ref() != Some(boundary))
    {
        new.push(boundary.clone());
    }
    for arn in new {
        if !iam.policy_exists(&arn).await? {
            observed.missing_policies.insert(arn);
        }
    }
    Ok(())
}
