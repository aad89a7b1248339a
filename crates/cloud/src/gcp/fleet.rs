//! The fleet snapshot: every service account of a project, listed a hundred
//! at a time, and each project's IAM policy, read at most once per TTL. A
//! steady-state resync of a binding then reads only its account's own
//! policy (who may act as it), which no list returns. Like AWS's, it only
//! confirms a steady state (see [`crate::steps::Observe::recall`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use google_cloud_iam_admin_v1::model::ServiceAccount;
use google_cloud_iam_v1::model::Policy;

use super::iam::{Clients, Resource};
use super::observe::Reads;
use crate::CloudError;
use crate::recent::Recent;

struct Accounts {
    taken: Instant,
    by_name: HashMap<String, ServiceAccount>,
}

pub struct Fleet {
    ttl: Duration,
    /// By project.
    accounts: tokio::sync::Mutex<HashMap<String, Arc<Accounts>>>,
    /// Project policies, by resource (`projects/<p>`); wib's own writes to
    /// one forget it.
    policies: Recent<Policy>,
}

impl Fleet {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            accounts: tokio::sync::Mutex::new(HashMap::new()),
            policies: Recent::new(ttl),
        }
    }

    /// The account named `projects/<p>/serviceAccounts/<email>` as the
    /// project's last listing holds it (listed again when older than the
    /// TTL; one listing at a time).
    async fn account(
        &self,
        clients: &Clients,
        name: &str,
    ) -> Result<Option<ServiceAccount>, CloudError> {
        let Some(project) = name
            .strip_prefix("projects/")
            .and_then(|rest| rest.split('/').next())
        else {
            return Ok(None);
        };
        let mut accounts = self.accounts.lock().await;
        let fresh = accounts
            .get(project)
            .filter(|a| a.taken.elapsed() < self.ttl)
            .cloned();
        let listing = match fresh {
            Some(listing) => listing,
            None => {
                let taken = Instant::now();
                let by_name = clients
                    .list_accounts(project)
                    .await?
                    .into_iter()
                    .map(|a| (a.name.clone(), a))
                    .collect();
                let listing = Arc::new(Accounts { taken, by_name });
                accounts.insert(project.to_string(), listing.clone());
                listing
            }
        };
        Ok(listing.by_name.get(name).cloned())
    }

    async fn project_policy(
        &self,
        clients: &Clients,
        resource: &str,
    ) -> Result<Policy, CloudError> {
        if let Some(policy) = self.policies.get(resource) {
            return Ok(policy);
        }
        let policy = clients
            .get_policy(&Resource::Project(resource.to_string()))
            .await?;
        self.policies.put(resource, policy.clone());
        Ok(policy)
    }

    /// wib wrote this project's policy: the next read goes to GCP.
    pub fn forget(&self, resource: &Resource) {
        if let Resource::Project(name) = resource {
            self.policies.forget(name);
        }
    }
}

/// Observe's reads answered from the fleet snapshot, except the account's
/// own policy.
pub struct Recalled<'a>(pub &'a Clients);

impl Reads for Recalled<'_> {
    async fn account(&self, name: &str) -> Result<Option<ServiceAccount>, CloudError> {
        self.0.fleet.account(self.0, name).await
    }

    async fn policy(&self, resource: &Resource) -> Result<Policy, CloudError> {
        match resource {
            Resource::Project(name) => self.0.fleet.project_policy(self.0, name).await,
            Resource::Account(_) => self.0.get_policy(resource).await,
        }
    }
}
