//! Thin calls to Key Vault's management API (`Microsoft.KeyVault/vaults`,
//! 2019-09-01) for vault access policies. A vault holds its policies as one
//! array; wib only ever changes its own principal's entry, through
//! `accessPolicies/add` and `accessPolicies/remove`, which the vault merges
//! into that array entry by entry, so concurrent writers for other
//! principals keep theirs. (`replace` is not used: it is the one kind whose
//! effect on the rest of the array the REST spec leaves unsaid.)

use std::collections::BTreeSet;

use azure_mgmt_keyvault::profile_hybrid_2020_09_01 as kv;

use super::arm::{Clients, error, status};
use crate::CloudError;

/// A vault's coordinates, from its ARM ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultRef {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
}

impl VaultRef {
    /// `/subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.KeyVault/vaults/<name>`,
    /// case-insensitive as ARM is; anything else is `None`.
    pub fn parse(id: &str) -> Option<Self> {
        let segments: Vec<&str> = id.trim_start_matches('/').split('/').collect();
        let is = |i: usize, want: &str| {
            segments
                .get(i)
                .is_some_and(|s| s.eq_ignore_ascii_case(want))
        };
        let fixed = segments.len() == 8
            && is(0, "subscriptions")
            && is(2, "resourceGroups")
            && is(4, "providers")
            && is(5, "Microsoft.KeyVault")
            && is(6, "vaults");
        let non_empty = segments.iter().all(|s| !s.is_empty());
        (fixed && non_empty).then(|| Self {
            subscription: segments[1].to_string(),
            resource_group: segments[3].to_string(),
            name: segments[7].to_string(),
        })
    }
}

/// Permissions of one access policy entry, lower-cased: Key Vault compares
/// them without regard to case (the portal writes `Get`, templates `get`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    pub secrets: BTreeSet<String>,
    pub keys: BTreeSet<String>,
    pub certificates: BTreeSet<String>,
}

impl Permissions {
    pub fn of<'a>(
        secrets: impl IntoIterator<Item = &'a String>,
        keys: impl IntoIterator<Item = &'a String>,
        certificates: impl IntoIterator<Item = &'a String>,
    ) -> Self {
        Self {
            secrets: lowered(secrets),
            keys: lowered(keys),
            certificates: lowered(certificates),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.keys.is_empty() && self.certificates.is_empty()
    }

    /// What `self` holds that `other` does not.
    pub fn minus(&self, other: &Permissions) -> Permissions {
        let diff = |a: &BTreeSet<String>, b: &BTreeSet<String>| a.difference(b).cloned().collect();
        Permissions {
            secrets: diff(&self.secrets, &other.secrets),
            keys: diff(&self.keys, &other.keys),
            certificates: diff(&self.certificates, &other.certificates),
        }
    }

    /// `kind/permission` for each, e.g. `secrets/get`.
    pub fn qualified(&self) -> impl Iterator<Item = String> + '_ {
        self.secrets
            .iter()
            .map(|p| format!("secrets/{p}"))
            .chain(self.keys.iter().map(|p| format!("keys/{p}")))
            .chain(
                self.certificates
                    .iter()
                    .map(|p| format!("certificates/{p}")),
            )
    }
}

fn lowered<'a>(list: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    list.into_iter().map(|p| p.to_ascii_lowercase()).collect()
}

impl std::fmt::Display for Permissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.qualified().collect();
        f.write_str(&list.join(", "))
    }
}

/// One entry of a vault's access policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyEntry {
    pub tenant_id: String,
    pub object_id: String,
    pub permissions: Permissions,
}

/// What wib reads of a vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vault {
    pub id: String,
    pub tenant_id: String,
    /// `enableRbacAuthorization`: the vault ignores its access policies.
    pub rbac: bool,
    /// Entries with an application ID (compound identities) are left out:
    /// wib never writes one.
    pub entries: Vec<PolicyEntry>,
}

impl Vault {
    /// The entry of `principal` in `tenant`, if any.
    pub fn entry_of(&self, tenant: &str, principal: &str) -> Option<&PolicyEntry> {
        self.entries.iter().find(|e| {
            e.object_id.eq_ignore_ascii_case(principal) && e.tenant_id.eq_ignore_ascii_case(tenant)
        })
    }
}

/// How an access policy update merges into the vault's array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// The permissions join the principal's entry (made if missing).
    Add,
    /// The permissions leave it; an entry left with none goes.
    Remove,
}

impl Merge {
    fn kind(self) -> &'static str {
        match self {
            Merge::Add => "add",
            Merge::Remove => "remove",
        }
    }
}

fn to_sdk(entry: &PolicyEntry) -> kv::models::AccessPolicyEntry {
    let list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>();
    let mut permissions = kv::models::Permissions::new();
    permissions.secrets = list(&entry.permissions.secrets);
    permissions.keys = list(&entry.permissions.keys);
    permissions.certificates = list(&entry.permissions.certificates);
    kv::models::AccessPolicyEntry::new(
        entry.tenant_id.clone(),
        entry.object_id.clone(),
        permissions,
    )
}

fn from_sdk(entry: kv::models::AccessPolicyEntry) -> Option<PolicyEntry> {
    if entry.application_id.is_some() {
        return None;
    }
    let p = entry.permissions;
    Some(PolicyEntry {
        tenant_id: entry.tenant_id,
        object_id: entry.object_id,
        permissions: Permissions::of(&p.secrets, &p.keys, &p.certificates),
    })
}

impl Clients {
    /// The vault, or `None` when ARM knows none of that ID.
    pub async fn get_vault(&self, id: &str) -> Result<Option<Vault>, CloudError> {
        let Some(at) = VaultRef::parse(id) else {
            return Ok(None);
        };
        match self
            .kv
            .vaults_client()
            .get(&at.resource_group, &at.name, &at.subscription)
            .await
        {
            Ok(vault) => Ok(Some(Vault {
                id: vault.id.unwrap_or_else(|| id.to_string()),
                tenant_id: vault.properties.tenant_id,
                rbac: vault.properties.enable_rbac_authorization == Some(true),
                entries: vault
                    .properties
                    .access_policies
                    .into_iter()
                    .filter_map(from_sdk)
                    .collect(),
            })),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(error(&format!("reading vault {}", at.name), e)),
        }
    }

    /// Merges `entry` into the vault's access policies as `merge` says.
    pub async fn update_access_policy(
        &self,
        vault: &str,
        merge: Merge,
        entry: &PolicyEntry,
    ) -> Result<(), CloudError> {
        let Some(at) = VaultRef::parse(vault) else {
            return Err(CloudError::new(
                wib_api::conditions::Reason::KeyVaultNotUsable,
                format!("{vault} is not a vault's ARM ID"),
            ));
        };
        let parameters = kv::models::VaultAccessPolicyParameters::new(
            kv::models::VaultAccessPolicyProperties::new(vec![to_sdk(entry)]),
        );
        match self
            .kv
            .vaults_client()
            .update_access_policy(
                &at.resource_group,
                &at.name,
                merge.kind(),
                parameters,
                &at.subscription,
            )
            .await
        {
            Ok(_) => Ok(()),
            // The vault went away: nothing of it is left to remove.
            Err(e) if merge == Merge::Remove && status(&e) == Some(404) => Ok(()),
            Err(e) => Err(error(
                &format!("updating the access policies of vault {}", at.name),
                e,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_vaults_arm_id_parses_whatever_its_case() {
        let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv";
        let at = VaultRef::parse(id).expect("a vault");
        assert_eq!(
            (
                at.subscription.as_str(),
                at.resource_group.as_str(),
                at.name.as_str()
            ),
            ("s", "rg", "kv")
        );
        assert!(VaultRef::parse(&id.to_ascii_lowercase()).is_some());
        for not in [
            "/subscriptions/s/resourceGroups/rg",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/kv",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv/secrets/x",
            "/subscriptions/s/resourceGroups//providers/Microsoft.KeyVault/vaults/kv",
        ] {
            assert!(VaultRef::parse(not).is_none(), "{not}");
        }
    }

    #[test]
    fn permissions_compare_without_case_and_subtract() {
        let s = |v: &[&str]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let a = Permissions::of(&s(&["Get", "list"]), &s(&["wrapKey"]), &s(&[]));
        let b = Permissions::of(&s(&["get"]), &s(&["WRAPKEY"]), &s(&[]));
        assert_eq!(
            a.minus(&b),
            Permissions::of(&s(&["list"]), &s(&[]), &s(&[]))
        );
        assert!(b.minus(&a).is_empty());
        assert_eq!(a.to_string(), "secrets/get, secrets/list, keys/wrapkey");
    }
}
