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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wib_api::binding::AwsStatus;
    use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};

    use super::*;
    use crate::aws::iam::Role;
    use crate::aws::policy;
    use crate::steps::{Decide, Intent, Next, Plan};
    use crate::testing;

    const ISSUER: &str = "https://oidc.example/id/1";
    const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/app";

    fn provider(aws: Value) -> ClusterIdentityProvider {
        let aws = testing::merged(
            json!({"accountId": "123456789012", "createOidcProvider": true,
                "eksClusterName": "eks-1",
                "allowedTargetRoleArns": ["arn:aws:iam::222222222222:role/shared/*"]}),
            aws,
        );
        testing::provider("aws", json!({"clusterName": "c1", "aws": aws}))
    }

    /// Binding b of ns for ServiceAccount sa, naming role app; its status
    /// records `recorded` as the mode last completed.
    fn binding(aws: Value, recorded: Option<AwsMode>) -> WorkloadIdentityBinding {
        let aws = testing::merged(json!({"roleName": "app"}), aws);
        let mut b = testing::binding(
            "b",
            "ns",
            "u1",
            json!({"serviceAccount": {"name": "sa"}, "aws": aws}),
        );
        b.status = recorded.map(|mode| wib_api::WorkloadIdentityBindingStatus {
            aws: Some(AwsStatus {
                role_arn: Some(ROLE_ARN.into()),
                mode: Some(mode),
                ..Default::default()
            }),
            ..Default::default()
        });
        b
    }

    fn pods(recorded: Option<AwsMode>) -> WorkloadIdentityBinding {
        binding(json!({"mode": "PodIdentity"}), recorded)
    }

    fn irsa(recorded: Option<AwsMode>) -> WorkloadIdentityBinding {
        binding(json!({"mode": "IRSA"}), recorded)
    }

    fn ours(role_arn: &str) -> Association {
        Association {
            id: "a-1".into(),
            arn: "arn:aws:eks:us-east-1:123456789012:podidentityassociation/eks-1/a-1".into(),
            role_arn: role_arn.into(),
            target_role_arn: None,
            external_id: None,
            tags: ownership::owner_tags("c1", "ns", "b", "u1"),
        }
    }

    /// The role wib made, trusting `b` in `modes`, and `association`.
    fn observed(
        b: &WorkloadIdentityBinding,
        p: &ClusterIdentityProvider,
        modes: &[AwsMode],
        association: Option<Association>,
    ) -> Observed {
        let request = Request::new(b, p, ISSUER);
        let federation = Target::of(&request).expect("target").federation;
        let trust = modes
            .iter()
            .fold(None, |current: Option<serde_json::Value>, mode| {
                let f = policy::Federation {
                    mode: *mode,
                    ..federation.clone()
                };
                Some(policy::with_statement(
                    current.as_ref(),
                    &f,
                    false,
                    Some(match mode {
                        AwsMode::Irsa => AwsMode::PodIdentity,
                        AwsMode::PodIdentity => AwsMode::Irsa,
                    }),
                ))
            });
        Observed {
            role: Some(Role {
                arn: ROLE_ARN.into(),
                trust,
                max_session_duration: Some(crate::aws::DEFAULT_MAX_SESSION_SECONDS),
                permissions_boundary: None,
                tags: ownership::owner_tags("c1", "ns", "b", "u1"),
            }),
            oidc_provider: Some(crate::aws::iam::OidcProvider {
                client_ids: vec![crate::aws::DEFAULT_AUDIENCE.into()],
                tags: BTreeMap::new(),
            }),
            trust_policy_max_chars: policy::TRUST_POLICY_MAX_CHARS,
            association,
            ..Observed::default()
        }
    }

    fn plan(
        b: &WorkloadIdentityBinding,
        p: &ClusterIdentityProvider,
        intent: Intent,
        o: &Observed,
    ) -> Result<Plan<Action>, CloudError> {
        o.plan(&Request::new(b, p, ISSUER), intent)
    }

    fn trust_written(actions: &[Action]) -> Option<&serde_json::Value> {
        actions.iter().find_map(|a| match a {
            Action::PutTrust { trust, .. } | Action::CreateRole { trust, .. } => Some(trust),
            _ => None,
        })
    }

    fn ways(
        trust: &serde_json::Value,
        b: &WorkloadIdentityBinding,
        p: &ClusterIdentityProvider,
    ) -> (bool, bool) {
        let request = Request::new(b, p, ISSUER);
        let f = Target::of(&request).expect("target").federation;
        (
            policy::has_statement_in(Some(trust), &f, AwsMode::Irsa),
            policy::has_statement_in(Some(trust), &f, AwsMode::PodIdentity),
        )
    }

    #[test]
    fn a_new_pod_identity_binding_creates_role_then_association_and_reads_its_arn_back() {
        let p = provider(json!({}));
        let b = pods(None);
        let mut o = observed(&b, &p, &[], None);
        o.role = None;
        let planned = plan(&b, &p, Intent::Reconcile, &o).expect("plan");
        assert_eq!(planned.next, Next::ObserveAgain);
        assert!(
            matches!(planned.actions[0], Action::CreateRole { .. }),
            "{:?}",
            planned.actions
        );
        assert!(
            !planned.actions.iter().any(|a| matches!(
                a,
                Action::CreateOidcProvider { .. } | Action::AddAudience { .. }
            )),
            "Pod Identity needs no IAM OIDC provider"
        );
        let Some(Action::CreateAssociation {
            cluster,
            namespace,
            service_account,
            role_arn,
            token,
            tags,
            target_role_arn,
        }) = planned
            .actions
            .iter()
            .find(|a| matches!(a, Action::CreateAssociation { .. }))
        else {
            panic!("no association: {:?}", planned.actions);
        };
        assert_eq!(
            (
                cluster.as_str(),
                namespace.as_str(),
                service_account.as_str()
            ),
            ("eks-1", "ns", "sa")
        );
        assert_eq!(role_arn, ROLE_ARN);
        assert_eq!(target_role_arn, &None);
        assert_eq!(
            tags.get(ownership::TAG_BINDING).map(String::as_str),
            Some("b")
        );
        // A retry of the same generation sends the same token.
        let again = plan(&b, &p, Intent::Reconcile, &o).expect("plan");
        assert!(
            again
                .actions
                .iter()
                .any(|a| matches!(a, Action::CreateAssociation { token: t, .. } if t == token))
        );
        assert_eq!(
            ways(trust_written(&planned.actions).expect("trust"), &b, &p),
            (false, true)
        );
    }

    #[test]
    fn a_steady_pod_identity_binding_writes_nothing_and_reports_its_association() {
        let p = provider(json!({}));
        let b = pods(Some(AwsMode::PodIdentity));
        let o = observed(&b, &p, &[AwsMode::PodIdentity], Some(ours(ROLE_ARN)));
        let planned = plan(&b, &p, Intent::Reconcile, &o).expect("plan");
        assert_eq!(planned.actions, Vec::new());
        let Next::Done(outcome) = planned.next else {
            panic!("an outcome");
        };
        assert!(outcome.annotations.is_empty(), "{:?}", outcome.annotations);
        let aws = outcome.status.aws.expect("aws");
        assert_eq!(aws.association_arn, Some(ours(ROLE_ARN).arn));
        assert_eq!(aws.oidc_provider_arn, None);
        // An association pointed elsewhere by hand is put back.
        let o = observed(
            &b,
            &p,
            &[AwsMode::PodIdentity],
            Some(ours("arn:aws:iam::123456789012:role/other")),
        );
        let planned = plan(&b, &p, Intent::Reconcile, &o).expect("plan");
        assert!(
            matches!(&planned.actions[..], [Action::UpdateAssociation { role_arn, .. }] if role_arn == ROLE_ARN)
        );
    }

    #[test]
    fn someone_elses_association_and_a_missing_cluster_are_refused_before_any_write() {
        let p = provider(json!({}));
        let b = pods(None);
        let mut theirs = ours("arn:aws:iam::123456789012:role/theirs");
        theirs.tags = BTreeMap::new();
        let o = observed(&b, &p, &[], Some(theirs));
        let error = plan(&b, &p, Intent::Reconcile, &o).expect_err("conflict");
        assert_eq!(error.reason, Reason::AssociationConflict);
        assert!(
            error.message.contains("a-1") && error.message.contains("role/theirs"),
            "{}",
            error.message
        );
        // Deleting the binding leaves it alone.
        let cleanup = plan(&b, &p, Intent::Cleanup, &o).expect("plan");
        assert!(
            !cleanup
                .actions
                .iter()
                .any(|a| matches!(a, Action::DeleteAssociation { .. }))
        );
        let mut o = observed(&b, &p, &[], None);
        o.eks_cluster_missing = true;
        let error = plan(&b, &p, Intent::Reconcile, &o).expect_err("no cluster");
        assert_eq!(error.reason, Reason::CloudNotConfigured);
        assert!(error.message.contains("eks-1"), "{}", error.message);
    }

    #[test]
    fn from_irsa_the_old_statement_stays_until_the_switch_is_recorded_then_goes() {
        let p = provider(json!({}));
        // Moving: IRSA recorded, PodIdentity asked.
        let b = pods(Some(AwsMode::Irsa));
        let o = observed(&b, &p, &[AwsMode::Irsa], None);
        let planned = plan(&b, &p, Intent::Reconcile, &o).expect("plan");
        assert_eq!(
            ways(trust_written(&planned.actions).expect("trust"), &b, &p),
            (true, true)
        );
        assert!(
            planned
                .actions
                .iter()
                .any(|a| matches!(a, Action::CreateAssociation { .. }))
        );
        // Recorded: the IRSA statement goes, the association stays.
        let b = pods(Some(AwsMode::PodIdentity));
        let o = observed(
            &b,
            &p,
            &[AwsMode::Irsa, AwsMode::PodIdentity],
            Some(ours(ROLE_ARN)),
        );
        let planned = plan(&b, &p, Intent::Reconcile, &o).expect("plan");
        assert_eq!(
            ways(trust_written(&planned.actions).expect("trust"), &b, &p),
            (false, true)
        );
        assert!(
            !planned
                .actions
                .iter()
                .any(|a| matches!(a, Action::DeleteAssociation { .. }))
        );
    }

    #[test]
    fn to_irsa_the_association_stays_until_the_switch_is_recorded_then_goes() {
        let p = provider(json!({}));
        let b = irsa(Some(AwsMode::PodIdentity));
        let o = observed(&b, &p, &[AwsMode::PodIdentity], Some(ours(ROLE_ARN)));
        let planned = plan(&b, &p, Intent::Reconcile, &o).expect("plan");
        assert_eq!(
            ways(trust_written(&planned.actions).expect("trust"), &b, &p),
            (true, true)
        );
        assert!(
            !planned
                .actions
                .iter()
                .any(|a| matches!(a, Action::DeleteAssociation { .. }))
        );
        let Next::Done(outcome) = planned.next else {
            panic!("an outcome");
        };
        assert!(
            outcome
                .annotations
                .contains_key("eks.amazonaws.com/role-arn")
        );
        assert_eq!(
            outcome.status.aws.and_then(|a| a.association_arn),
            Some(ours(ROLE_ARN).arn)
        );
        let b = irsa(Some(AwsMode::Irsa));
        let o = observed(
            &b,
            &p,
            &[AwsMode::PodIdentity, AwsMode::Irsa],
            Some(ours(ROLE_ARN)),
        );
        let planned = plan(&b, &p, Intent::Reconcile, &o).expect("plan");
        assert_eq!(
            ways(trust_written(&planned.actions).expect("trust"), &b, &p),
            (true, false)
        );
        assert!(
            planned
                .actions
                .iter()
                .any(|a| matches!(a, Action::DeleteAssociation { id, .. } if id == "a-1"))
        );
    }

    #[test]
    fn deletion_removes_the_association_before_the_role_even_when_retained() {
        let p = provider(json!({}));
        let b = pods(Some(AwsMode::PodIdentity));
        let o = observed(&b, &p, &[AwsMode::PodIdentity], Some(ours(ROLE_ARN)));
        let actions = plan(&b, &p, Intent::Cleanup, &o).expect("plan").actions;
        assert!(
            matches!(actions.first(), Some(Action::DeleteAssociation { .. })),
            "{actions:?}"
        );
        assert!(
            matches!(actions.last(), Some(Action::DeleteRole { .. })),
            "{actions:?}"
        );
        let mut retained = b.clone();
        retained.spec.deletion_policy = wib_api::DeletionPolicy::Retain;
        let actions = plan(&retained, &p, Intent::Cleanup, &o)
            .expect("plan")
            .actions;
        assert!(
            matches!(actions.first(), Some(Action::DeleteAssociation { .. })),
            "{actions:?}"
        );
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::DeleteRole { .. })),
            "{actions:?}"
        );
    }

    #[test]
    fn target_roles_and_irsa_fields_are_judged_in_the_resolved_mode() {
        let p = provider(json!({}));
        let o = |b: &WorkloadIdentityBinding| observed(b, &p, &[], None);
        let listed = binding(
            json!({"mode": "PodIdentity", "targetRoleArn": "arn:aws:iam::222222222222:role/shared/reader"}),
            None,
        );
        let planned = plan(&listed, &p, Intent::Reconcile, &o(&listed)).expect("plan");
        assert!(planned.actions.iter().any(|a| matches!(a, Action::CreateAssociation { target_role_arn: Some(t), .. } if t.ends_with("shared/reader"))));
        for (target, why) in [
            ("arn:aws:iam::222222222222:role/admin", "unlisted"),
            (
                "arn:aws:iam::333333333333:role/shared/reader",
                "another account",
            ),
        ] {
            let b = binding(
                json!({"mode": "PodIdentity", "targetRoleArn": target}),
                None,
            );
            let error = plan(&b, &p, Intent::Reconcile, &o(&b)).expect_err(why);
            assert_eq!(error.reason, Reason::RoleNotAllowed, "{why}");
        }
        // The provider's default mode is PodIdentity: IRSA's token fields are refused.
        let p = provider(json!({"mode": "PodIdentity"}));
        let b = binding(json!({"audience": "sts.amazonaws.com"}), None);
        let error = plan(&b, &p, Intent::Reconcile, &o(&b)).expect_err("audience");
        assert_eq!(error.reason, Reason::InvalidSpec);
        assert!(error.message.contains("aws.audience"), "{}", error.message);
    }
}
