//! The fleet snapshot: every identity of a resource group and every role
//! assignment under a scope, listed at most once per TTL. A steady-state
//! resync of a binding then reads only its identity's federated
//! credentials, which no list returns across identities. Like the other
//! clouds', it only confirms a steady state (see
//! [`crate::steps::Observe::recall`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Clients;
use super::arm::{Assignment, Credential, Identity, IdentityRef};
use super::observe::Reads;
use crate::CloudError;

struct Listing<T> {
    taken: Instant,
    items: T,
}

/// One listing per key, read again when older than the TTL; one read at a
/// time per kind, so a thousand bindings re-verified together make one.
struct Listings<T> {
    ttl: Duration,
    by_key: tokio::sync::Mutex<HashMap<String, Arc<Listing<T>>>>,
}

impl<T> Listings<T> {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            by_key: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    async fn get<F>(&self, key: &str, read: F) -> Result<Arc<Listing<T>>, CloudError>
    where
        F: std::future::Future<Output = Result<T, CloudError>>,
    {
        let key = key.to_ascii_lowercase();
        let mut by_key = self.by_key.lock().await;
        if let Some(listing) = by_key.get(&key).filter(|l| l.taken.elapsed() < self.ttl) {
            return Ok(listing.clone());
        }
        let taken = Instant::now();
        let listing = Arc::new(Listing {
            taken,
            items: read.await?,
        });
        by_key.insert(key, listing.clone());
        Ok(listing)
    }
}

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
        Ok(listing.items.get(&at.name.to_ascii_lowercase()).cloned())
    }

    async fn credentials(&self, at: &IdentityRef) -> Result<Vec<Credential>, CloudError> {
        self.0.arm.list_credentials(at).await
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
            .items
            .get(&principal_id.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default())
    }
}
