//! Key Vault access policy decisions, without I/O: whether each vault the
//! binding names can take an entry for the identity, and the merges that
//! make the principal's entry hold exactly the permissions asked for. Only
//! the identity's own entry is ever written; the vault's other entries are
//! not wib's.

use wib_api::conditions::Reason;

use super::plan::Action;
use super::target::Target;
use super::vaults::{Merge, Permissions, PolicyEntry, Vault};
use crate::CloudError;

/// The vaults observe read, by the ID asked for (`None`: ARM has no such vault).
pub type ObservedVaults = Vec<(String, Option<Vault>)>;

/// Why wib writes an access policy entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyWrite {
    Granted,
    /// Permissions someone added that the spec does not list.
    Trimmed,
    /// The vault left the spec, or the binding is deleted.
    Revoked,
}

/// One vault's entry as the spec asks for it.
#[derive(Debug)]
pub struct Wanted<'s> {
    pub vault: &'s str,
    pub permissions: Permissions,
}

/// The permissions only the provider's
/// `azure.allowedSensitiveKeyVaultPermissions` lets a binding grant.
pub const SENSITIVE: [&str; 5] = [
    "secrets/purge",
    "keys/purge",
    "certificates/purge",
    "keys/release",
    "keys/import",
];

/// The sensitive permissions the spec asks for that the provider does not
/// allow: checked before any call.
pub fn check_sensitive(target: &Target<'_>, provider: &str) -> Result<(), CloudError> {
    let allowed = &target.defaults.allowed_sensitive_key_vault_permissions;
    for policy in &target.spec.key_vault_access_policies {
        let asked = Permissions::of(&policy.secrets, &policy.keys, &policy.certificates);
        let refused: Vec<String> = asked
            .qualified()
            .filter(|p| SENSITIVE.contains(&p.as_str()))
            .filter(|p| !allowed.iter().any(|a| a.eq_ignore_ascii_case(p)))
            .collect();
        if !refused.is_empty() {
            return Err(CloudError::new(
                Reason::RoleNotAllowed,
                format!(
                    "{} on vault {} needs ClusterIdentityProvider {provider:?}'s azure.allowedSensitiveKeyVaultPermissions; nothing was changed",
                    refused.join(", "),
                    policy.vault
                ),
            ));
        }
    }
    Ok(())
}

fn find<'v>(vaults: &'v ObservedVaults, id: &str) -> Option<&'v Option<Vault>> {
    vaults
        .iter()
        .find(|(asked, _)| asked.eq_ignore_ascii_case(id))
        .map(|(_, v)| v)
}

/// Every vault the spec names exists, in the identities' tenant, and
/// authorizes with access policies; judged before anything is written.
pub fn judge<'s>(
    target: &Target<'s>,
    vaults: &ObservedVaults,
) -> Result<Vec<Wanted<'s>>, CloudError> {
    let mut wanted = Vec::new();
    for policy in &target.spec.key_vault_access_policies {
        let id = policy.vault.as_str();
        let vault = match find(vaults, id) {
            Some(Some(vault)) => vault,
            Some(None) => {
                return Err(CloudError::new(
                    Reason::KeyVaultNotUsable,
                    format!("vault {id} does not exist or wib cannot read it; nothing was changed"),
                ));
            }
            None => {
                return Err(CloudError::new(
                    Reason::TransientError,
                    format!("vault {id} was not read; retried"),
                ));
            }
        };
        if vault.rbac {
            return Err(CloudError::new(
                Reason::KeyVaultNotUsable,
                format!(
                    "vault {id} authorizes with Azure RBAC (enableRbacAuthorization), where access policies have no effect: grant a role such as Key Vault Secrets User on it in azure.roleAssignments instead; nothing was changed"
                ),
            ));
        }
        if !vault.tenant_id.eq_ignore_ascii_case(&target.tenant) {
            return Err(CloudError::new(
                Reason::KeyVaultNotUsable,
                format!(
                    "vault {id} belongs to tenant {}, not the identities' tenant {}; nothing was changed",
                    vault.tenant_id, target.tenant
                ),
            ));
        }
        wanted.push(Wanted {
            vault: id,
            permissions: Permissions::of(&policy.secrets, &policy.keys, &policy.certificates),
        });
    }
    Ok(wanted)
}

/// The principal whose entries these are, in its tenant.
#[derive(Clone, Copy)]
pub struct Principal<'a> {
    pub tenant: &'a str,
    pub object_id: &'a str,
}

impl Principal<'_> {
    fn entry(&self, permissions: Permissions) -> PolicyEntry {
        PolicyEntry {
            tenant_id: self.tenant.to_string(),
            object_id: self.object_id.to_string(),
            permissions,
        }
    }

    fn held_in(&self, vault: &Vault) -> Permissions {
        vault
            .entry_of(self.tenant, self.object_id)
            .map(|e| e.permissions.clone())
            .unwrap_or_default()
    }
}

fn update(vault: &str, merge: Merge, entry: PolicyEntry, why: PolicyWrite) -> Action {
    Action::UpdateAccessPolicy {
        vault: vault.to_string(),
        merge,
        entry,
        why,
    }
}

/// The merges that make `principal`'s entry in each wanted vault hold
/// exactly what is asked (missing permissions added, others removed) and,
/// when the binding owns the identity, that empty its entry in the vaults
/// it had before and no longer names. Returns the vaults now in place.
pub fn reconcile(
    wanted: &[Wanted<'_>],
    vaults: &ObservedVaults,
    before: &[String],
    principal: Principal<'_>,
    owns: bool,
) -> (Vec<Action>, Vec<String>) {
    let mut actions = Vec::new();
    let mut in_place = Vec::new();
    for w in wanted {
        let held = match find(vaults, w.vault) {
            Some(Some(vault)) => principal.held_in(vault),
            _ => Permissions::default(),
        };
        let missing = w.permissions.minus(&held);
        if !missing.is_empty() {
            let entry = principal.entry(missing);
            actions.push(update(w.vault, Merge::Add, entry, PolicyWrite::Granted));
        }
        let extra = held.minus(&w.permissions);
        if !extra.is_empty() {
            let entry = principal.entry(extra);
            actions.push(update(w.vault, Merge::Remove, entry, PolicyWrite::Trimmed));
        }
        in_place.push(w.vault.to_string());
    }
    if owns {
        let dropped = before
            .iter()
            .filter(|id| !wanted.iter().any(|w| w.vault.eq_ignore_ascii_case(id)));
        actions.extend(revoke(dropped, vaults, principal));
    }
    (actions, in_place)
}

/// The merges that empty `principal`'s entry in each of `ids` that holds one.
pub fn revoke<'a>(
    ids: impl IntoIterator<Item = &'a String>,
    vaults: &ObservedVaults,
    principal: Principal<'_>,
) -> Vec<Action> {
    ids.into_iter()
        .filter_map(|id| {
            let Some(Some(vault)) = find(vaults, id) else {
                return None;
            };
            let held = principal.held_in(vault);
            let entry = principal.entry(held);
            (!entry.permissions.is_empty())
                .then(|| update(id, Merge::Remove, entry, PolicyWrite::Revoked))
        })
        .collect()
}

/// The vaults whose entry the binding may hold: those it names now and
/// those its status says it had (only wib writes the status).
pub fn vaults_at_stake(target: &Target<'_>, request: &crate::Request<'_>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let named = target
        .spec
        .key_vault_access_policies
        .iter()
        .map(|p| p.vault.clone());
    for id in named.chain(before(request).iter().cloned()) {
        if !ids.iter().any(|i| i.eq_ignore_ascii_case(&id)) {
            ids.push(id);
        }
    }
    ids
}

/// The vaults the binding's status records an entry in.
pub fn before<'r>(request: &'r crate::Request<'_>) -> &'r [String] {
    request
        .binding
        .status
        .as_ref()
        .and_then(|s| s.azure.as_ref())
        .map(|a| a.key_vault_access_policies.as_slice())
        .unwrap_or_default()
}
