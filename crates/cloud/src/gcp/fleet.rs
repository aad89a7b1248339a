//! The fleet snapshot: every service account of a project, listed a hundred
//! at a time, and each project's IAM policy, read at most once per TTL. A
//! steady-state resync of a binding then reads only its account's own
//! policy (who may act as it), which no list returns. Like AWS's, it only
//! confirms a steady state (see [`crate::steps::Observe::recall`]).

use std::collections::HashMap;
use std::time::Duration;

use google_cloud_iam_admin_v1::model::ServiceAccount;
use google_cloud_iam_v1::model::Policy;

use super::iam::{Clients, Resource};
use super::observe::Reads;
use crate::CloudError;
use crate::recent::{Listings, Recent};

pub struct Fleet {
    /// By project; accounts by resource name.
    accounts: Listings<HashMap<String, ServiceAccount>>,
    /// Project policies, by resource (`projects/<p>`); wib's own writes to
    /// one forget it.
    policies: Recent<Policy>,
}

impl Fleet {
    pub fn new(ttl: Duration) -> Self {
        Self {
            accounts: Listings::new(ttl),
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
        let listing = self
            .accounts
            .get(project, async {
                Ok(clients
                    .list_accounts(project)
                    .await?
                    .into_iter()
                    .map(|a| (a.name.clone(), a))
                    .collect())
            })
            .await?;
        Ok(listing.get(name).cloned())
    }

    async fn project_policy(
        &self,
        clients: &Clients,
        resource: &str,
    ) -> Result<Policy, CloudError> {
        self.policies
            .get_or_read(
                resource,
                clients.get_policy(&Resource::Project(resource.to_string())),
            )
            .await
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
