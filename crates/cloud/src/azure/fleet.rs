//! The fleet snapshot: every identity of a resource group and every role
//! assignment under a scope, listed at most once per TTL. A steady-state
//! resync of a binding then reads only its identity's federated
//! credentials and the vaults it names, which no list returns across
//! identities. Like the other
//! clouds', it only confirms a steady state (see
//! [`crate::steps::Observe::recall`]).

use std::collections::HashMap;
use std::time::Duration;

use super::Clients;
use super::arm::{Assignment, Credential, Identity, IdentityRef};
use super::observe::Reads;
use crate::CloudError;
use crate::recent::Listings;

pub struct Fleet {
    /// By resource group ID; identities by lower-cased name.
    identities: Listings<HashMap<String, Identity>>,
    /// By scope; assignments by lower-cased principal ID.
    assignments: Listings<HashMap<String, Vec<Assignment>>>,
}

impl Fleet {
    pub fn new(ttl: Duration) -> Self {
        Self {
            identities: Listings::new(ttl),
            assignments: Listings::new(ttl),
        }
    }
}

/// Observe's reads answered from the fleet snapshot, except the
/// identity's federated credentials.
pub struct Recalled<'a>(pub &'a Clients);

impl Reads for Recalled<'_> {
    async fn identity(&self, at: &IdentityRef) -> Result<Option<Identity>, CloudError> {
        let group = format!(
            "/subscriptions/{}/resourceGroups/{}",
            at.subscription, at.resource_group
        );
        let arm = &self.0.arm;
        let listing = self
            .0
            .fleet
            .identities
            .get(&group, async {
                let all = arm
                    .list_identities(&at.subscription, &at.resource_group)
                    .await?;
                Ok(all
                    .into_iter()
                    .filter_map(|i| {
                        let name = i.id.rsplit('/').next()?.to_ascii_lowercase();
                        Some((name, i))
                    })
                    .collect())
            })
            .await?;
        Ok(listing.get(&at.name.to_ascii_lowercase()).cloned())
    }

    async fn credentials(&self, at: &IdentityRef) -> Result<Vec<Credential>, CloudError> {
        self.0.arm.list_credentials(at).await
    }

    async fn vault(&self, id: &str) -> Result<Option<super::vaults::Vault>, CloudError> {
        self.0.arm.get_vault(id).await
    }

    async fn assignments(
        &self,
        scope: &str,
        principal_id: &str,
    ) -> Result<Vec<Assignment>, CloudError> {
        let arm = &self.0.arm;
        let listing = self
            .0
            .fleet
            .assignments
            .get(scope, async {
                let mut by_principal: HashMap<String, Vec<Assignment>> = HashMap::new();
                for (principal, assignment) in arm.list_assignments_of(scope, None).await? {
                    by_principal.entry(principal).or_default().push(assignment);
                }
                Ok(by_principal)
            })
            .await?;
        Ok(listing
            .get(&principal_id.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default())
    }
}
