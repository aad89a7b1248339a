//! Writes only: one action at a time, each policy edit applied to a fresh
//! read of the policy (read-modify-write on the etag), so what others wrote
//! since the observation is kept; edits of one policy from concurrent
//! reconciles share that read and its write ([`super::policy_writes`]).

use super::iam::Clients;
use super::plan::{Action, Edit};
use super::policy;
use crate::CloudError;
use crate::steps::Execute;
use wib_api::conditions::Reason;

impl Execute<Clients> for Action {
    async fn execute(&self, clients: &Clients) -> Result<(), CloudError> {
        let action = self;
        match action {
            Action::CreateAccount {
                project,
                account_id,
                email,
                display_name,
                description,
            } => {
                let created = clients
                    .create_account(project, account_id, display_name, description)
                    .await?;
                // Created by an earlier, interrupted reconcile of ours or by
                // someone else at the same moment: judged on the next round.
                created.map(drop).ok_or_else(|| {
                    CloudError::new(
                        Reason::TransientError,
                        format!("service account {email} appeared meanwhile"),
                    )
                })
            }
            Action::PatchAccount {
                name,
                display_name,
                description,
                ..
            } => clients.patch_account(name, display_name, description).await,
            Action::DeleteAccount { name, .. } => clients.delete_account(name).await,
            Action::EditPolicy { resource, edits } => {
                let edits = edits.clone();
                clients
                    .modify_policy(resource, Box::new(move |p| apply(p, &edits)))
                    .await
                    .map(drop)
            }
        }
    }
}

/// Applies `edits` to `policy`; whether anything changed.
pub fn apply(policy: &mut google_cloud_iam_v1::model::Policy, edits: &[Edit]) -> bool {
    let mut changed = false;
    for edit in edits {
        changed |= match edit {
            Edit::Grant { role, member } => policy::add_member(policy, role, member),
            Edit::Revoke { role, member } => policy::remove_member(policy, role, member),
        };
    }
    changed
}
