//! Mode Direct's decisions, without I/O: the roles go straight to the
//! Kubernetes ServiceAccount's federated principal, with no Google service
//! account between. The principal carries no tags, so what is wib's is
//! what this binding lists and what its status records it granted (only
//! wib writes the status); a role someone else granted the same principal
//! is never revoked. Deletion, and a binding its provider no longer admits,
//! revoke wib's roles: there is no federation to cut short of them.

use std::collections::BTreeMap;

use wib_api::binding::GcpStatus;

use super::iam::Resource;
use super::observe::Observed;
use super::plan::{Action, edit_policy, edits_for, role_statuses};
use super::target::Target;
use crate::steps::{Intent, Plan};
use crate::{CloudError, GrantsRefused, Outcome, Request};

pub fn plan(
    request: &Request<'_>,
    target: &Target<'_>,
    observed: &Observed,
    intent: Intent,
) -> Result<Plan<Action>, CloudError> {
    match intent {
        Intent::Reconcile => {
            let refused = target.judge_grants(request)?;
            let actions = match refused {
                Some(_) => Vec::new(),
                None => edits(request, target, observed, true),
            };
            Ok(Plan::done(actions, outcome(target, refused)))
        }
        // Only a binding that granted this principal anything takes it back:
        // another binding of the same ServiceAccount (refused as a conflict)
        // never did.
        Intent::Cleanup | Intent::Revoke if granted_before(request, target) => {
            Ok(Plan::finished(edits(request, target, observed, false)))
        }
        Intent::Cleanup | Intent::Revoke => Ok(Plan::finished(Vec::new())),
    }
}

/// The policy edits that make the principal hold the spec's roles (or,
/// when `!keep_spec`, none of wib's), revoking only roles this binding
/// lists or recorded.
fn edits(
    request: &Request<'_>,
    target: &Target<'_>,
    observed: &Observed,
    keep_spec: bool,
) -> Vec<Action> {
    let recorded = recorded(request);
    target
        .role_resources(request)
        .into_iter()
        .filter_map(|resource| {
            let listed = target.roles_on(&resource);
            let wibs = |role: &str| {
                listed.iter().any(|l| l == role)
                    || recorded.iter().any(|(r, at)| r == role && *at == resource)
            };
            let wanted = if keep_spec {
                listed.clone()
            } else {
                Vec::new()
            };
            let changes = edits_for(
                observed.projects.get(&resource),
                &target.member,
                &wanted,
                |role| !wibs(role),
            );
            edit_policy(Resource::Project(resource), changes)
        })
        .collect()
}

/// (role, resource) of each grant the status records as made.
fn recorded(request: &Request<'_>) -> Vec<(String, String)> {
    request
        .binding
        .status
        .iter()
        .flat_map(|s| &s.role_assignments)
        .filter(|a| a.ready)
        .filter_map(|a| Some((a.role.clone(), a.scope.clone()?)))
        .collect()
}

/// Whether this binding's status says it reached the cloud for this
/// principal (only wib writes the status).
pub(super) fn granted_before(request: &Request<'_>, target: &Target<'_>) -> bool {
    request
        .binding
        .status
        .as_ref()
        .and_then(|s| s.gcp.as_ref())
        .and_then(|g| g.member.as_deref())
        == Some(target.member.as_str())
}

/// The principal and each grant (ready unless the guardrails refused
/// them). On GKE the ServiceAccount needs no annotation; elsewhere the pool
/// provider tells the pod webhook how to build the credential
/// configuration, without impersonation.
fn outcome(target: &Target<'_>, refused: Option<GrantsRefused>) -> Outcome {
    let statuses = role_statuses(target, refused.as_ref());
    let annotations = target
        .pool_provider()
        .map(|provider| {
            BTreeMap::from([(
                "wib.dev/gcp-workload-identity-provider".to_string(),
                provider,
            )])
        })
        .unwrap_or_default();
    Outcome {
        annotations,
        labels: BTreeMap::new(),
        status: wib_api::WorkloadIdentityBindingStatus {
            identity: Some(target.member.clone()),
            gcp: Some(GcpStatus {
                email: None,
                member: Some(target.member.clone()),
            }),
            role_assignments: statuses,
            ..Default::default()
        },
        writes: Vec::new(),
        grants_refused: refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcp::plan::Edit;
    use crate::gcp::policy;
    use crate::steps::{Decide, Next};
    use crate::testing;
    use google_cloud_iam_v1::model::Policy;
    use serde_json::{Value, json};
    use wib_api::binding::RoleAssignmentStatus;
    use wib_api::conditions::Reason;
    use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};

    const GKE: &str = "principal://iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/p1.svc.id.goog/subject/ns/ns/sa/sa";

    fn provider(gcp: Value) -> ClusterIdentityProvider {
        let spec = json!({"clusterName": "c1", "allowedScopes": ["projects/p1"], "gcp": gcp});
        testing::provider("gcp", spec)
    }

    /// A Direct binding granting `roles` on the provider's project, whose
    /// status records `recorded` as granted to `member`.
    fn binding(roles: &[&str], recorded: &[&str], member: Option<&str>) -> WorkloadIdentityBinding {
        let roles: Vec<Value> = roles.iter().map(|r| json!({"role": r})).collect();
        let spec =
            json!({"serviceAccount": {"name": "sa"}, "gcp": {"mode": "Direct", "roles": roles}});
        let mut b = testing::binding("b", "ns", "u1", spec);
        b.status = Some(wib_api::WorkloadIdentityBindingStatus {
            gcp: member.map(|m| GcpStatus {
                email: None,
                member: Some(m.to_string()),
            }),
            role_assignments: recorded
                .iter()
                .map(|r| RoleAssignmentStatus {
                    role: r.to_string(),
                    scope: Some("projects/p1".into()),
                    id: None,
                    ready: true,
                })
                .collect(),
            ..Default::default()
        });
        b
    }

    fn holding(grants: &[(&str, &str)]) -> Observed {
        let mut p = Policy::default();
        for (role, member) in grants {
            policy::add_member(&mut p, role, member);
        }
        Observed {
            projects: BTreeMap::from([("projects/p1".to_string(), p)]),
            ..Observed::default()
        }
    }

    fn run(
        b: &WorkloadIdentityBinding,
        p: &ClusterIdentityProvider,
        o: &Observed,
        intent: Intent,
    ) -> Result<Plan<Action>, CloudError> {
        o.plan(&Request::new(b, p, "https://issuer"), intent)
    }

    fn edit(edits: Vec<Edit>) -> Vec<Action> {
        vec![Action::EditPolicy {
            resource: Resource::Project("projects/p1".into()),
            edits,
        }]
    }

    fn grant(role: &str) -> Edit {
        Edit::Grant {
            role: role.into(),
            member: GKE.into(),
        }
    }

    fn revoke(role: &str) -> Edit {
        Edit::Revoke {
            role: role.into(),
            member: GKE.into(),
        }
    }

    #[test]
    fn on_gke_the_principal_names_the_project_by_number_which_the_provider_must_give() {
        let b = binding(&["roles/storage.objectAdmin"], &[], None);
        let error = run(
            &b,
            &provider(json!({"projectId": "p1"})),
            &holding(&[]),
            Intent::Reconcile,
        )
        .expect_err("no project number");
        assert_eq!(
            error.reason,
            Reason::CloudNotConfigured,
            "{}",
            error.message
        );
        let p = provider(json!({"projectId": "p1", "projectNumber": "42"}));
        let plan = run(&b, &p, &holding(&[]), Intent::Reconcile).expect("planned");
        assert_eq!(plan.actions, edit(vec![grant("roles/storage.objectAdmin")]));
        let Next::Done(outcome) = plan.next else {
            panic!("a Direct plan is done in one round");
        };
        assert!(
            outcome.annotations.is_empty(),
            "GKE needs no annotation: {:?}",
            outcome.annotations
        );
        assert_eq!(outcome.status.identity.as_deref(), Some(GKE));
        let gcp = outcome.status.gcp.expect("gcp status");
        assert_eq!((gcp.email, gcp.member.as_deref()), (None, Some(GKE)));
    }

    #[test]
    fn only_roles_this_binding_lists_or_recorded_are_ever_revoked() {
        let p = provider(json!({"projectId": "p1", "projectNumber": "42"}));
        // Listed: storage.objectAdmin. Recorded before: storage.objectViewer. Someone
        // else's grant to the same principal: pubsub.subscriber.
        let b = binding(
            &["roles/storage.objectAdmin"],
            &["roles/storage.objectViewer"],
            Some(GKE),
        );
        let held = holding(&[
            ("roles/storage.objectViewer", GKE),
            ("roles/pubsub.subscriber", GKE),
            ("roles/storage.objectAdmin", "user:someone@example.com"),
        ]);
        let plan = run(&b, &p, &held, Intent::Reconcile).expect("reconcile");
        assert_eq!(
            plan.actions,
            edit(vec![
                grant("roles/storage.objectAdmin"),
                revoke("roles/storage.objectViewer")
            ])
        );
        let plan = run(&b, &p, &held, Intent::Cleanup).expect("cleanup");
        assert_eq!(
            plan.actions,
            edit(vec![revoke("roles/storage.objectViewer")])
        );
        let steady = holding(&[
            ("roles/storage.objectAdmin", GKE),
            ("roles/pubsub.subscriber", GKE),
        ]);
        let plan = run(&b, &p, &steady, Intent::Reconcile).expect("steady");
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        let plan = run(&b, &p, &steady, Intent::Revoke).expect("revoke");
        assert_eq!(
            plan.actions,
            edit(vec![revoke("roles/storage.objectAdmin")])
        );
    }

    #[test]
    fn a_binding_that_never_granted_the_principal_takes_nothing_back() {
        let p = provider(json!({"projectId": "p1", "projectNumber": "42"}));
        // Refused as a ServiceAccountConflict: it never reached the cloud.
        let b = binding(&["roles/storage.objectAdmin"], &[], None);
        let held = holding(&[("roles/storage.objectAdmin", GKE)]);
        for intent in [Intent::Cleanup, Intent::Revoke] {
            let plan = run(&b, &p, &held, intent).expect("planned");
            assert!(plan.actions.is_empty(), "{intent:?}: {:?}", plan.actions);
        }
    }
}
