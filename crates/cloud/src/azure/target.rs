//! What a binding asks of Azure, worked out from the binding and its
//! provider alone (no client required): where the identity lives, its
//! federated credential, and the guardrails that need no read (placement,
//! scopes).

use wib_api::Cloud;
use wib_api::binding::AzureBinding;
use wib_api::conditions::Reason;
use wib_api::provider::AzureProvider as AzureDefaults;

use super::arm::{Credential, IdentityRef};
use super::{AUDIENCE, naming};
use crate::{CloudError, GrantsRefused, Request, guardrails};

pub struct Target<'a> {
    pub spec: &'a AzureBinding,
    pub defaults: &'a AzureDefaults,
    pub at: IdentityRef,
    pub location: String,
    pub tenant: String,
    /// The federated credential as wib would write it now.
    pub credential: Credential,
}

pub use crate::error::not_configured;

fn provider_name(request: &Request<'_>) -> String {
    request.provider.metadata.name.clone().unwrap_or_default()
}

impl<'a> Target<'a> {
    pub fn of(request: &Request<'a>) -> Result<Self, CloudError> {
        let (spec, defaults) =
            request.blocks(Cloud::Azure, |s| s.azure.as_ref(), |p| p.azure.as_ref())?;
        let name = spec
            .identity_name
            .clone()
            .or_else(|| request.recorded_identity(|s| s.azure.as_ref()?.resource_id.as_deref()))
            .unwrap_or_else(|| {
                naming::identity_name(&request.cluster, &request.namespace, &request.binding_name)
            });
        let pick = |own: &Option<String>, default: &String| own.clone().unwrap_or(default.clone());
        Ok(Target {
            at: IdentityRef {
                subscription: pick(&spec.subscription_id, &defaults.subscription_id),
                resource_group: pick(&spec.resource_group, &defaults.resource_group),
                name,
            },
            location: pick(&spec.location, &defaults.location),
            tenant: defaults.tenant_id.clone(),
            credential: Credential {
                name: naming::federated_credential_name(
                    &request.cluster,
                    &request.namespace,
                    &request.service_account,
                ),
                issuer: request.issuer.to_string(),
                subject: request.subject.clone(),
                audiences: vec![AUDIENCE.to_string()],
            },
            spec,
            defaults,
        })
    }

    /// The identity's ARM ID, lower-cased: ARM names are case-insensitive,
    /// and Azure refuses concurrent credential writes to one identity (409),
    /// so requests naming it must meet on one key.
    pub fn key(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
            self.at.subscription, self.at.resource_group, self.at.name
        )
        .to_ascii_lowercase()
    }

    /// The identity as a binding's messages name it.
    pub fn what(&self) -> String {
        format!("identity {}", self.at.name)
    }

    /// Where the identity is created is the platform team's to decide: the
    /// provider's subscription, resource group and region, or ones it lists.
    /// Cleanup does not ask (it only ever removes what wib's tags say it made).
    pub fn check_placement(&self, request: &Request<'_>) -> Result<(), CloudError> {
        let (at, defaults) = (&self.at, self.defaults);
        let group = format!(
            "/subscriptions/{}/resourceGroups/{}",
            at.subscription, at.resource_group
        );
        let default_group = at
            .subscription
            .eq_ignore_ascii_case(&defaults.subscription_id)
            && at
                .resource_group
                .eq_ignore_ascii_case(&defaults.resource_group);
        let listed =
            |list: &[String], item: &str| list.iter().any(|l| l.eq_ignore_ascii_case(item));
        let provider = provider_name(request);
        if !default_group && !listed(&defaults.allowed_resource_groups, &group) {
            return Err(CloudError::new(
                Reason::ScopeNotAllowed,
                format!(
                    "resource group {group} is not ClusterIdentityProvider {provider:?}'s default nor in its azure.allowedResourceGroups; nothing was created"
                ),
            ));
        }
        let location = &self.location;
        if !location.eq_ignore_ascii_case(&defaults.location)
            && !listed(&defaults.allowed_locations, location)
        {
            return Err(CloudError::new(
                Reason::ScopeNotAllowed,
                format!(
                    "location {location:?} is not ClusterIdentityProvider {provider:?}'s default nor in its azure.allowedLocations; nothing was created"
                ),
            ));
        }
        Ok(())
    }

    /// Default deny: every grant refused when the provider lists no
    /// `allowedScopes` (the identity and its federation still go ahead).
    pub fn grants_refused(&self, request: &Request<'_>) -> Option<GrantsRefused> {
        let first = self.grant_scopes().next();
        guardrails::grants_refused(request.provider, first)
    }

    /// Where the spec's grants land: role assignment scopes, then vaults
    /// given access policies.
    pub fn grant_scopes(&self) -> impl Iterator<Item = &'a str> {
        let spec = self.spec;
        spec.role_assignments
            .iter()
            .map(|r| r.scope.as_str())
            .chain(
                spec.key_vault_access_policies
                    .iter()
                    .map(|p| p.vault.as_str()),
            )
    }

    /// Every scope and vault the spec lists is a plain ARM ID under the
    /// provider's `allowedScopes`, and no vault permission needs an
    /// allowance the provider did not give. The roles are judged once ARM
    /// says what they are.
    pub fn check_scopes(&self, request: &Request<'_>) -> Result<(), CloudError> {
        let allowed = request
            .provider
            .spec
            .allowed_scopes
            .as_deref()
            .unwrap_or_default();
        super::access_policies::check_sensitive(self, &provider_name(request))?;
        for scope in self.grant_scopes() {
            segments(scope)?;
            if !guardrails::scope_allowed(scope, allowed) {
                return Err(CloudError::new(
                    Reason::ScopeNotAllowed,
                    format!(
                        "scope {scope} is outside ClusterIdentityProvider {:?}'s allowedScopes; nothing was changed",
                        provider_name(request)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Where the identity's role assignments are listed: its subscription
    /// and the root (subscription or management group) of every scope the
    /// binding asks for now, asked for before (its status; only wib writes
    /// it), or may ask for (the provider's allowedScopes, so one a crash
    /// kept out of the status is still found once it leaves the spec). An
    /// assignment on a management group or in another subscription is then
    /// seen, not re-created, and removed when it leaves the spec.
    pub fn assignment_roots(&self, request: &Request<'_>) -> Vec<String> {
        let asked = self.spec.role_assignments.iter().map(|r| r.scope.as_str());
        let before = request
            .binding
            .status
            .iter()
            .flat_map(|s| s.role_assignments.iter().filter_map(|r| r.scope.as_deref()));
        let allowed = request
            .provider
            .spec
            .allowed_scopes
            .iter()
            .flatten()
            .map(String::as_str);
        let mut roots = vec![format!("/subscriptions/{}", self.at.subscription)];
        for root in asked.chain(before).chain(allowed).filter_map(scope_root) {
            if !roots.iter().any(|r| r.eq_ignore_ascii_case(&root)) {
                roots.push(root);
            }
        }
        roots
    }
}

/// A scope's path segments; a scope that is not a plain ARM ID is refused.
pub fn segments(scope: &str) -> Result<Vec<&str>, CloudError> {
    guardrails::scope_segments(scope).map_err(|why| {
        CloudError::new(
            Reason::ScopeNotAllowed,
            format!("{why}; write the scope as a plain ARM ID; nothing was changed"),
        )
    })
}

/// The subscription or management group a scope lies in.
pub fn scope_root(scope: &str) -> Option<String> {
    let segments = guardrails::scope_segments(scope).ok()?;
    match segments.as_slice() {
        [s, id, ..] if s.eq_ignore_ascii_case("subscriptions") => {
            Some(format!("/subscriptions/{id}"))
        }
        [p, ns, g, id, ..]
            if p.eq_ignore_ascii_case("providers")
                && ns.eq_ignore_ascii_case("Microsoft.Management")
                && g.eq_ignore_ascii_case("managementGroups") =>
        {
            Some(format!(
                "/providers/Microsoft.Management/managementGroups/{id}"
            ))
        }
        _ => None,
    }
}
