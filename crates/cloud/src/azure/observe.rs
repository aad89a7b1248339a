//! Reads only: the definitions of the roles the binding asks for, the
//! identity, its federated credentials and its role assignments wherever
//! they live.

use std::collections::HashMap;
use std::sync::Mutex;

use std::future::Future;

use super::arm::{Assignment, Credential, Identity, IdentityRef, RoleDefinition};
use super::fleet::Recalled;
use super::plan;
use super::target::Target;
use super::vaults::Vault;
use super::{Clients, access_policies};
use crate::ownership::Release;
use crate::steps::{Intent, Observe};
use crate::{CloudError, Request};

/// What Azure holds for one binding.
#[derive(Debug, Default)]
pub struct Observed {
    /// The definition of each role the spec lists, in its order (`None`:
    /// ARM knows no such role); empty unless a reconcile may grant them.
    pub roles: Vec<Option<RoleDefinition>>,
    pub identity: Option<Identity>,
    /// The identity's federated credentials; empty when it does not exist
    /// or when a deletion may touch nothing of it.
    pub credentials: Vec<Credential>,
    /// The identity's principal's role assignments, when they are at stake.
    pub assignments: Option<Vec<Assignment>>,
    /// The vaults whose access policy entry for the identity is at stake,
    /// by the ID the binding names.
    pub vaults: super::access_policies::ObservedVaults,
}

/// Built-in role definitions by (subscription, name as asked): they never
/// change, so each is read once.
#[derive(Default)]
pub struct BuiltInRoles(Mutex<HashMap<(String, String), RoleDefinition>>);

impl BuiltInRoles {
    fn get(&self, key: &(String, String)) -> Option<RoleDefinition> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn remember(&self, key: (String, String), definition: &RoleDefinition) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, definition.clone());
    }
}

/// The reads observe makes of the binding's identity: live, or recalled
/// from the fleet snapshot (see [`super::fleet`]); one list for both.
pub trait Reads: Send + Sync {
    fn identity(
        &self,
        at: &IdentityRef,
    ) -> impl Future<Output = Result<Option<Identity>, CloudError>> + Send;
    fn credentials(
        &self,
        at: &IdentityRef,
    ) -> impl Future<Output = Result<Vec<Credential>, CloudError>> + Send;
    fn assignments(
        &self,
        scope: &str,
        principal_id: &str,
    ) -> impl Future<Output = Result<Vec<Assignment>, CloudError>> + Send;
    /// Always live: no listing holds access policies across vaults.
    fn vault(&self, id: &str) -> impl Future<Output = Result<Option<Vault>, CloudError>> + Send;
}

impl Reads for Clients {
    async fn identity(&self, at: &IdentityRef) -> Result<Option<Identity>, CloudError> {
        self.arm.get_identity(at).await
    }

    async fn credentials(&self, at: &IdentityRef) -> Result<Vec<Credential>, CloudError> {
        self.arm.list_credentials(at).await
    }

    async fn assignments(
        &self,
        scope: &str,
        principal_id: &str,
    ) -> Result<Vec<Assignment>, CloudError> {
        self.arm.list_assignments(scope, principal_id).await
    }

    async fn vault(&self, id: &str) -> Result<Option<Vault>, CloudError> {
        self.arm.get_vault(id).await
    }
}

/// Each read's error carries the `Retry-After` ARM last asked for.
impl Observe<Clients> for Observed {
    async fn observe(
        clients: &Clients,
        request: &Request<'_>,
        intent: Intent,
    ) -> Result<Observed, CloudError> {
        super::observed::with_retry_after(read(clients, clients, request, intent)).await
    }

    async fn recall(
        clients: &Clients,
        request: &Request<'_>,
    ) -> Result<Option<Observed>, CloudError> {
        let recalled = Recalled(clients);
        let observed =
            super::observed::with_retry_after(read(&recalled, clients, request, Intent::Reconcile))
                .await?;
        // An identity the listing does not hold is new, or was deleted: a
        // live pass will create it.
        Ok(observed.identity.is_some().then_some(observed))
    }
}

async fn read(
    reads: &impl Reads,
    clients: &Clients,
    request: &Request<'_>,
    intent: Intent,
) -> Result<Observed, CloudError> {
    let target = Target::of(request)?;
    let grants_at_stake = intent == Intent::Reconcile && target.grants_refused(request).is_none();
    let mut roles = Vec::new();
    if grants_at_stake {
        for wanted in &target.spec.role_assignments {
            roles.push(resolve_role(clients, &wanted.role, &target.at.subscription).await?);
        }
    }
    let Some(identity) = reads.identity(&target.at).await? else {
        // A vault the spec names is judged before the identity is made.
        let vaults = match grants_at_stake {
            true => read_vaults(reads, access_policies::vaults_at_stake(&target, request)).await?,
            false => Vec::new(),
        };
        return Ok(Observed {
            roles,
            vaults,
            ..Observed::default()
        });
    };
    // A deletion that may touch nothing of the identity reads nothing more;
    // only the maker or the last survivor may remove its assignments.
    let release = (intent == Intent::Cleanup).then(|| plan::release(request, &identity));
    let credentials = match release {
        Some(Release::Nothing) => Vec::new(),
        _ => reads.credentials(&target.at).await?,
    };
    let assignments_at_stake =
        grants_at_stake || matches!(release, Some(Release::Maker | Release::Survivor));
    let assignments = if assignments_at_stake {
        Some(list_assignments(reads, request, &target, &identity).await?)
    } else {
        None
    };
    let vaults = match assignments_at_stake {
        true => read_vaults(reads, access_policies::vaults_at_stake(&target, request)).await?,
        false => Vec::new(),
    };
    Ok(Observed {
        roles,
        identity: Some(identity),
        credentials,
        assignments,
        vaults,
    })
}

async fn read_vaults(
    reads: &impl Reads,
    ids: Vec<String>,
) -> Result<access_policies::ObservedVaults, CloudError> {
    let mut vaults = Vec::with_capacity(ids.len());
    for id in ids {
        let vault = reads.vault(&id).await?;
        vaults.push((id, vault));
    }
    Ok(vaults)
}

/// The definition of a role given by name, GUID or ID, as ARM has it: the
/// guardrails judge what a role is, never the binding's spelling. Custom
/// roles are read each time, since their actions can change.
async fn resolve_role(
    clients: &Clients,
    role: &str,
    subscription: &str,
) -> Result<Option<RoleDefinition>, CloudError> {
    let scope = format!("/subscriptions/{subscription}");
    if let Some(guid) = super::naming::role_guid(role) {
        return clients.arm.get_role(&scope, guid).await;
    }
    let key = (subscription.to_ascii_lowercase(), role.to_string());
    if let Some(found) = clients.roles.get(&key) {
        return Ok(Some(found));
    }
    let found = clients.arm.find_role(&scope, role).await?;
    if let Some(built_in) = found.as_ref().filter(|d| !d.custom) {
        clients.roles.remember(key, built_in);
    }
    Ok(found)
}

/// The identity's role assignments under every root they may lie in (see
/// [`Target::assignment_roots`]), each once.
async fn list_assignments(
    reads: &impl Reads,
    request: &Request<'_>,
    target: &Target<'_>,
    identity: &Identity,
) -> Result<Vec<Assignment>, CloudError> {
    let mut found: Vec<Assignment> = Vec::new();
    for root in target.assignment_roots(request) {
        for a in reads.assignments(&root, &identity.principal_id).await? {
            if !found.iter().any(|f| f.id.eq_ignore_ascii_case(&a.id)) {
                found.push(a);
            }
        }
    }
    Ok(found)
}
