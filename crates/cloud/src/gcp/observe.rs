//! Reads only: the service account, its own IAM policy (who may act as it)
//! and the project policies that may hold its roles; in mode Direct, only
//! those project policies.

use std::collections::BTreeMap;

use google_cloud_iam_admin_v1::model::ServiceAccount;
use google_cloud_iam_v1::model::Policy;

use std::future::Future;

use super::fleet::Recalled;
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

/// The reads observe makes: live, or recalled from the fleet snapshot
/// (see [`super::fleet`]); one list of reads for both.
pub trait Reads: Send + Sync {
    fn account(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<ServiceAccount>, CloudError>> + Send;
    fn policy(
        &self,
        resource: &Resource,
    ) -> impl Future<Output = Result<Policy, CloudError>> + Send;
}

impl Reads for Clients {
    async fn account(&self, name: &str) -> Result<Option<ServiceAccount>, CloudError> {
        self.get_account(name).await
    }

    async fn policy(&self, resource: &Resource) -> Result<Policy, CloudError> {
        self.get_policy(resource).await
    }
}

impl Observe<Clients> for Observed {
    async fn observe(
        clients: &Clients,
        request: &Request<'_>,
        intent: Intent,
    ) -> Result<Observed, CloudError> {
        gather(clients, request, intent).await
    }

    async fn recall(
        clients: &Clients,
        request: &Request<'_>,
    ) -> Result<Option<Observed>, CloudError> {
        let observed = gather(&Recalled(clients), request, Intent::Reconcile).await?;
        // An account the listing does not hold is new, or was deleted: a
        // live pass will create it. Mode Direct has no account: its project
        // policies are all there is to confirm.
        let direct = Target::of(request)?.direct;
        Ok((direct || observed.account.is_some()).then_some(observed))
    }
}

async fn gather(
    reads: &impl Reads,
    request: &Request<'_>,
    intent: Intent,
) -> Result<Observed, CloudError> {
    let target = Target::of(request)?;
    if target.direct {
        return gather_direct(reads, request, intent, &target).await;
    }
    let Some(account) = reads.account(&target.name).await? else {
        return Ok(Observed::default());
    };
    let account_policy = reads
        .policy(&Resource::Account(target.name.clone()))
        .await?;
    let grants_at_stake = match intent {
        Intent::Revoke => false,
        Intent::Cleanup => true,
        Intent::Reconcile => target.judge_grants(request)?.is_none(),
    };
    let projects = match grants_at_stake {
        true => project_policies(reads, target.role_resources(request)).await?,
        false => BTreeMap::new(),
    };
    Ok(Observed {
        account: Some(account),
        account_policy: Some(account_policy),
        projects,
    })
}

/// Mode Direct: only the project policies that may hold the principal's
/// roles (none while the guardrails refuse every grant).
async fn gather_direct(
    reads: &impl Reads,
    request: &Request<'_>,
    intent: Intent,
    target: &Target<'_>,
) -> Result<Observed, CloudError> {
    // A binding that never granted anything (refused as a conflict, or
    // deleted before its first grant) reads nothing to take back: its
    // deletion must not wait for a project it could not reach.
    let grants_at_stake = match intent {
        Intent::Reconcile => target.judge_grants(request)?.is_none(),
        Intent::Cleanup | Intent::Revoke => super::direct::granted_before(request, target),
    };
    let projects = match grants_at_stake {
        true => project_policies(reads, target.role_resources(request)).await?,
        false => BTreeMap::new(),
    };
    Ok(Observed {
        projects,
        ..Observed::default()
    })
}

/// The policy of each project resource, by resource.
async fn project_policies(
    reads: &impl Reads,
    resources: Vec<String>,
) -> Result<BTreeMap<String, Policy>, CloudError> {
    let mut projects = BTreeMap::new();
    for resource in resources {
        let policy = reads.policy(&Resource::Project(resource.clone())).await?;
        projects.insert(resource, policy);
    }
    Ok(projects)
}
