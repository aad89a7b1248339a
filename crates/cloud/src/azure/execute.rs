//! Writes only: one action at a time. Every write is idempotent (a PUT of
//! a fixed name, a delete that takes 404 as done), so a round interrupted
//! by a crash or an error is simply planned again.

use super::Clients;
use super::plan::Action;
use crate::CloudError;
use crate::steps::Execute;

/// Each write's error carries the `Retry-After` ARM last asked for.
impl Execute<Clients> for Action {
    async fn execute(&self, clients: &Clients) -> Result<(), CloudError> {
        super::observed::with_retry_after(write(clients, self)).await
    }
}

async fn write(clients: &Clients, action: &Action) -> Result<(), CloudError> {
    let arm = &clients.arm;
    match action {
        Action::PutIdentity {
            at, location, tags, ..
        } => arm.put_identity(at, location, tags).await.map(drop),
        Action::DeleteIdentity { at } => arm.delete_identity(at).await,
        Action::PutCredential { at, credential, .. } => arm.put_credential(at, credential).await,
        Action::DeleteCredential { at, name } => arm.delete_credential(at, name).await,
        // The same assignment under another name (`RoleAssignmentExists`)
        // counts as made.
        Action::CreateAssignment {
            scope,
            name,
            definition,
            principal_id,
            ..
        } => arm
            .create_assignment(scope, name, definition, principal_id)
            .await
            .map(drop),
        Action::DeleteAssignment { scope, name } => arm.delete_assignment(scope, name).await,
        Action::UpdateAccessPolicy {
            vault,
            merge,
            entry,
            ..
        } => arm.update_access_policy(vault, *merge, entry).await,
    }
}
