//! The provider's guardrails, checked before any cloud write: which roles a
//! binding may be granted and on which scopes. Grants are denied by default:
//! a provider that lists no `allowedScopes` allows none, and a built-in list
//! of roles that administer access stays denied whatever else the provider
//! allows, unless it names the role by exact ID.

mod denied;
mod roles;
mod scopes;

pub use denied::{AzureRole, aws_denial, azure_denial, gcp_denial};
pub use roles::{RoleFacts, judge_role};
pub use scopes::{scope_allowed, scope_segments};

use wib_api::conditions::Reason;

use crate::GrantsRefused;

/// Default deny: the refusal of every grant when the provider lists no
/// `allowedScopes`, naming the first scope asked for so the platform team
/// knows what to add. `None` when the provider lists scopes or the binding
/// asks for no grant.
pub fn grants_refused(
    provider: &wib_api::ClusterIdentityProvider,
    first_scope: Option<&str>,
) -> Option<GrantsRefused> {
    let scope = first_scope?;
    if provider.spec.allowed_scopes.is_some() {
        return None;
    }
    let name = provider.metadata.name.clone().unwrap_or_default();
    Some(GrantsRefused {
        reason: Reason::ScopeNotAllowed,
        message: format!(
            "ClusterIdentityProvider {name:?} lists no allowedScopes, so it allows no role grant (wib denies grants by default); the identity and its federation are in place and nothing was granted. To allow this grant, add {scope} or a prefix of it to the provider's spec.allowedScopes"
        ),
    })
}
