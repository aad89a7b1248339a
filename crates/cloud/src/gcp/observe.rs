//! Reads only: the service account, its own IAM policy (who may act as it)
//! and the project policies that may hold its roles.

use std::collections::BTreeMap;

use google_cloud_iam_admin_v1::model::ServiceAccount;
use google_cloud_iam_v1::model::Policy;

use super::iam::{Clients, Resource};
use super::target::Target;
use crate::steps::{Intent, Observe};
use crate::{CloudError, Request};

/// What GCP holds for one binding.
#[derive(Debug, Default)]
pub struct Observed {
    pub account: Option<ServiceAccount>,
    /// The account's own policy; `None` when the account does not exist.
    pub account_policy: Option<Policy>,
    /// Project policies that may hold the account's roles, by resource; empty
    /// when the account does not exist, when only its federation is at stake
    /// (revoke) or when the guardrails refuse every grant.
    pub projects: BTreeMap<String, Policy>,
}

impl Observe<Clients> for Observed {
    async fn observe(
        clients: &Clients,
        request: &Request<'_>,
        intent: Intent,
    ) -> Result<Observed, CloudError> {
        let target = Target::of(request)?;
        let Some(account) = clients.get_account(&target.name).await? else {
            return Ok(Observed::default());
        };
        let account_policy = clients
            .get_policy(&Resource::Account(target.name.clone()))
            .await?;
        let grants_at_stake = match intent {
            Intent::Revoke => false,
            Intent::Cleanup => true,
            Intent::Reconcile => target.judge_grants(request)?.is_none(),
        };
        let mut projects = BTreeMap::new();
        if grants_at_stake {
            for resource in target.role_resources(request) {
                let policy = clients
                    .get_policy(&Resource::Project(resource.clone()))
                    .await?;
                projects.insert(resource, policy);
            }
        }
        Ok(Observed {
            account: Some(account),
            account_policy: Some(account_policy),
            projects,
        })
    }
}
