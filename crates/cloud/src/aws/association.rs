//! Mode PodIdentity's decisions, pure: whether the ServiceAccount's EKS pod
//! identity association is this binding's to manage, and the writes that
//! bring it to the spec, keep it while pods move to IRSA, and remove it.
//!
//! EKS allows one association per ServiceAccount, so whose it is decides
//! everything: wib's tags name the binding that made it, and an association
//! anyone else made is a conflict, never overwritten nor deleted.

use std::collections::BTreeMap;

use wib_api::binding::AwsMode;
use wib_api::conditions::Reason;

use super::eks::Association;
use super::observe::Observed;
use super::plan::Action;
use super::target::{Target, not_configured};
use crate::ownership;
use crate::{CloudError, Request};

/// Whether this binding made `association` (its tags name it).
pub fn is_ours(request: &Request<'_>, association: &Association) -> bool {
    let tag = |key: &str| association.tags.get(key).map(String::as_str);
    tag(ownership::TAG_CLUSTER) == Some(request.cluster.as_str())
        && tag(ownership::TAG_NAMESPACE) == Some(request.namespace.as_str())
        && tag(ownership::TAG_BINDING) == Some(request.binding_name.as_str())
}

/// Refusals before any write: the EKS cluster must exist, and the
/// ServiceAccount's association, if any, must be this binding's.
pub fn refuse(
    request: &Request<'_>,
    target: &Target<'_>,
    observed: &Observed,
) -> Result<(), CloudError> {
    if target.mode != AwsMode::PodIdentity {
        return Ok(());
    }
    if observed.eks_cluster_missing {
        return Err(not_configured(format!(
            "EKS cluster {} does not exist (set aws.eksClusterName on ClusterIdentityProvider {:?} if it is named otherwise than clusterName)",
            target.eks_cluster,
            request
                .provider
                .metadata
                .name
                .as_deref()
                .unwrap_or_default()
        )));
    }
    match &observed.association {
        Some(found) if !is_ours(request, found) => Err(CloudError::new(
            Reason::AssociationConflict,
            format!(
                "EKS cluster {} already has pod identity association {} for {}/{} (role {}), not made by this binding; EKS allows one per ServiceAccount and wib does not overwrite it; nothing was changed",
                target.eks_cluster,
                found.id,
                request.namespace,
                request.service_account,
                found.role_arn
            ),
        )),
        _ => Ok(()),
    }
}

/// The association's writes for a reconcile (after the role and its trust
/// statement, which pods need first), and the ARN the status reports.
/// Leaving PodIdentity, the association stays until the move is complete
/// (the status records IRSA), then goes.
pub fn reconcile(
    request: &Request<'_>,
    target: &Target<'_>,
    role_arn: &str,
    observed: &Observed,
) -> (Vec<Action>, Option<String>) {
    let ours = observed
        .association
        .as_ref()
        .filter(|a| is_ours(request, a));
    let cluster = target.eks_cluster.clone();
    let wanted_target = target.spec.target_role_arn.clone();
    match (target.mode, ours) {
        (AwsMode::PodIdentity, None) => {
            let create = Action::CreateAssociation {
                cluster,
                namespace: request.namespace.clone(),
                service_account: request.service_account.clone(),
                role_arn: role_arn.to_string(),
                target_role_arn: wanted_target,
                token: token(request, role_arn),
                tags: tags(request),
            };
            (vec![create], None)
        }
        (AwsMode::PodIdentity, Some(found)) => {
            let drifted = found.role_arn != role_arn || found.target_role_arn != wanted_target;
            let update = drifted.then(|| Action::UpdateAssociation {
                cluster,
                id: found.id.clone(),
                role_arn: role_arn.to_string(),
                target_role_arn: wanted_target,
            });
            (update.into_iter().collect(), Some(found.arn.clone()))
        }
        (AwsMode::Irsa, Some(found)) if target.moving_from == Some(AwsMode::PodIdentity) => {
            (Vec::new(), Some(found.arn.clone()))
        }
        (AwsMode::Irsa, Some(found)) => (
            vec![Action::DeleteAssociation {
                cluster,
                id: found.id.clone(),
            }],
            None,
        ),
        (AwsMode::Irsa, None) => (Vec::new(), None),
    }
}

/// Deletion and revocation: this binding's association goes (it is the
/// federation, so `deletionPolicy: Retain` removes it too); anyone else's
/// stays.
pub fn remove(request: &Request<'_>, target: &Target<'_>, observed: &Observed) -> Vec<Action> {
    observed
        .association
        .as_ref()
        .filter(|a| is_ours(request, a))
        .map(|found| Action::DeleteAssociation {
            cluster: target.eks_cluster.clone(),
            id: found.id.clone(),
        })
        .into_iter()
        .collect()
}

fn tags(request: &Request<'_>) -> BTreeMap<String, String> {
    ownership::owner_tags(
        &request.cluster,
        &request.namespace,
        &request.binding_name,
        &request.uid,
    )
}

/// EKS's idempotency token: the same for every retry of this binding's
/// generation and role, another after a spec change (a token EKS has seen
/// with other parameters is refused).
fn token(request: &Request<'_>, role_arn: &str) -> String {
    let generation = request.binding.metadata.generation.unwrap_or_default();
    format!(
        "wib-{}",
        wib_api::naming::name_hash(&format!("{}/{generation}/{role_arn}", request.uid))
    )
}
