//! Writes only: one action at a time, each one IAM (or EKS) call (an audience wib
//! adds is tagged as wib's in the same action, just before).

use std::collections::BTreeMap;

use super::Clients;
use super::eks::NewAssociation;
use super::iam::NewRole;
use super::plan::Action;
use crate::CloudError;
use crate::steps::Execute;

impl Execute<Clients> for Action {
    async fn execute(&self, clients: &Clients) -> Result<(), CloudError> {
        let action = self;
        let iam = &clients.iam;
        match action {
            Action::CreateOidcProvider {
                issuer,
                audience,
                tags,
            } => iam
                .create_oidc_provider(issuer, audience, tags)
                .await
                .map(drop),
            Action::AddAudience { arn, audience, tag } => {
                // Tagged first: prune then recognises the client ID as wib's
                // even if adding it is all that happened.
                if let Some((key, value)) = tag {
                    let tags = BTreeMap::from([(key.clone(), value.clone())]);
                    iam.tag_oidc_provider(arn, &tags).await?;
                }
                iam.add_audience(arn, audience).await
            }
            Action::CreateRole {
                name,
                path,
                trust,
                max_session,
                boundary,
                description,
                tags,
            } => iam
                .create_role(NewRole {
                    name,
                    path,
                    trust,
                    max_session_duration: *max_session,
                    permissions_boundary: boundary.as_deref(),
                    description,
                    tags,
                })
                .await
                .map(drop),
            Action::TagRole { role, tags, .. } => iam.tag_role(role, tags).await,
            Action::UntagRole { role, keys } => {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                iam.untag_role(role, &keys).await
            }
            Action::PutTrust { role, trust, .. } => iam.update_trust(role, trust).await,
            Action::SetMaxSession { role, seconds } => iam.update_max_session(role, *seconds).await,
            Action::SetBoundary { role, arn } => iam.put_boundary(role, arn).await,
            Action::Attach { role, arn } => iam.attach(role, arn).await,
            Action::PutInline {
                role,
                name,
                document,
            } => iam.put_inline(role, name, document).await,
            Action::Detach { role, arn } => iam.detach(role, arn).await,
            Action::DeleteInline { role, name } => iam.delete_inline(role, name).await,
            Action::DeleteRole { role } => iam.delete_role(role).await,
            Action::CreateAssociation {
                cluster,
                namespace,
                service_account,
                role_arn,
                target_role_arn,
                token,
                tags,
            } => clients
                .eks
                .create(NewAssociation {
                    cluster,
                    namespace,
                    service_account,
                    role_arn,
                    target_role_arn: target_role_arn.as_deref(),
                    token,
                    tags,
                })
                .await
                .map(drop),
            Action::UpdateAssociation {
                cluster,
                id,
                role_arn,
                target_role_arn,
            } => {
                clients
                    .eks
                    .update(cluster, id, role_arn, target_role_arn.as_deref())
                    .await
            }
            Action::DeleteAssociation { cluster, id } => clients.eks.delete(cluster, id).await,
        }
    }
}
