//! Every GCP decision, without I/O: ownership and adoption of the account,
//! its federation, the roles to grant and revoke on each project, what
//! deletion leaves, and the outcome the binding reports.

use std::collections::BTreeMap;
use std::fmt;

use google_cloud_iam_v1::model::Policy;
use wib_api::binding::{GcpStatus, RoleAssignmentStatus};
use wib_api::conditions::Reason;

use super::iam::Resource;
use super::observe::Observed;
use super::target::{Target, description};
use super::{WORKLOAD_IDENTITY_USER, naming, policy};
use crate::ownership::{self, Claim, Release};
use crate::steps::{Decide, Intent, Plan};
use crate::{CloudError, GrantsRefused, Outcome, Request};

/// One change to an IAM policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    Grant { role: String, member: String },
    Revoke { role: String, member: String },
}

/// Why wib rewrites an account's name and description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patch {
    /// It takes an untagged account over (the owner consented).
    Adopted,
    /// Its display name or ownership marker drifted.
    Repaired,
    /// Its maker is gone while other bindings still act as it.
    Released,
    /// An adopted account is given back: wib's marker goes.
    GivenBack,
}

/// One GCP write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    CreateAccount {
        project: String,
        account_id: String,
        email: String,
        display_name: String,
        description: String,
    },
    PatchAccount {
        name: String,
        email: String,
        display_name: String,
        description: String,
        why: Patch,
    },
    DeleteAccount {
        name: String,
        email: String,
    },
    EditPolicy {
        resource: Resource,
        edits: Vec<Edit>,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreateAccount { email, .. } => write!(f, "created service account {email}"),
            Action::PatchAccount { email, why, .. } => {
                let verb = match why {
                    Patch::Adopted => "adopted",
                    Patch::Repaired => "repaired",
                    Patch::Released => "released",
                    Patch::GivenBack => "gave back",
                };
                write!(f, "{verb} service account {email}")
            }
            Action::DeleteAccount { email, .. } => write!(f, "deleted service account {email}"),
            Action::EditPolicy { resource, edits } => {
                let described: Vec<String> = edits
                    .iter()
                    .map(|edit| match edit {
                        Edit::Grant { role, member } => format!("granted {role} to {member}"),
                        Edit::Revoke { role, member } => format!("revoked {role} from {member}"),
                    })
                    .collect();
                write!(f, "{} on {}", described.join(", "), resource.name())
            }
        }
    }
}

impl Decide for Observed {
    type Action = Action;

    fn plan(&self, request: &Request<'_>, intent: Intent) -> Result<Plan<Action>, CloudError> {
        let observed = self;
        let target = Target::of(request)?;
        if target.direct {
            return super::direct::plan(request, &target, observed, intent);
        }
        match intent {
            Intent::Reconcile => reconcile(request, &target, observed),
            Intent::Cleanup => Ok(Plan::finished(cleanup(request, &target, observed))),
            Intent::Revoke => Ok(Plan::finished(revoke(&target, observed))),
        }
    }
}

fn is_adopted(tags: &BTreeMap<String, String>) -> bool {
    tags.get(ownership::TAG_ADOPTED).map(String::as_str) == Some("true")
}

/// The edit of `policy` that makes `wanted` hold, if any: `Grant`s for what
/// is missing and `Revoke`s for the member's roles `keep` does not keep.
pub(super) fn edits_for(
    policy: Option<&Policy>,
    member: &str,
    wanted: &[String],
    keep: impl Fn(&str) -> bool,
) -> Vec<Edit> {
    let empty = Policy::default();
    let policy = policy.unwrap_or(&empty);
    let held = policy::roles_of(policy, member);
    let grants = wanted
        .iter()
        .filter(|r| !held.contains(r))
        .map(|role| Edit::Grant {
            role: role.clone(),
            member: member.to_string(),
        });
    let revokes = held
        .iter()
        .filter(|r| !wanted.contains(r) && !keep(r))
        .map(|role| Edit::Revoke {
            role: role.clone(),
            member: member.to_string(),
        });
    grants.chain(revokes).collect()
}

pub(super) fn edit_policy(resource: Resource, edits: Vec<Edit>) -> Option<Action> {
    (!edits.is_empty()).then_some(Action::EditPolicy { resource, edits })
}

/// What ownership allows this binding to do with the account.
struct Standing {
    adopting: bool,
    /// Whether the account's grants are this binding's (not a sharer's).
    manages_roles: bool,
    /// Adopted now or before: the roles it held are its owner's.
    adopted: bool,
}

fn standing(
    request: &Request<'_>,
    target: &Target<'_>,
    observed: &Observed,
) -> Result<Standing, CloudError> {
    let tags = observed
        .account
        .as_ref()
        .map(|a| naming::tags(&a.description));
    let claim = ownership::claim(
        tags.as_ref(),
        ownership::Asker::of(request),
        request.provider.spec.adoption,
        &format!("service account {}", target.email),
        (!target.roles.is_empty()).then_some(("roles", Reason::RoleNotAllowed)),
    )?;
    let adopting = claim == Claim::Adopt;
    Ok(Standing {
        adopting,
        manages_roles: claim != Claim::Shared,
        adopted: adopting || tags.as_ref().is_some_and(is_adopted),
    })
}

fn reconcile(
    request: &Request<'_>,
    target: &Target<'_>,
    observed: &Observed,
) -> Result<Plan<Action>, CloudError> {
    let refused = target.judge_grants(request)?;
    let standing = standing(request, target, observed)?;
    let mut actions: Vec<Action> = account(request, target, observed, &standing)
        .into_iter()
        .collect();
    // Federation: this ServiceAccount may act as the account.
    actions.extend(edit_policy(
        Resource::Account(target.name.clone()),
        edits_for(
            observed.account_policy.as_ref(),
            &target.member,
            &[WORKLOAD_IDENTITY_USER.to_string()],
            |_| true,
        ),
    ));
    if standing.manages_roles && refused.is_none() {
        actions.extend(roles(request, target, observed, standing.adopted));
    }
    Ok(Plan::done(actions, outcome(target, &standing, refused)))
}

/// The account: created, adopted, or its name and marker put back.
fn account(
    request: &Request<'_>,
    target: &Target<'_>,
    observed: &Observed,
    standing: &Standing,
) -> Option<Action> {
    let display_name = target
        .spec
        .display_name
        .clone()
        .unwrap_or_else(|| format!("wib {}/{}", request.namespace, request.binding_name));
    let Some(account) = observed.account.as_ref() else {
        return Some(Action::CreateAccount {
            project: target.defaults.project_id.clone(),
            account_id: target.account_id.clone(),
            email: target.email.clone(),
            display_name,
            description: description(request, "", false),
        });
    };
    if !standing.manages_roles {
        return None;
    }
    let base = naming::without_marker(&account.description);
    let described = description(request, &base, standing.adopted);
    let want_name = if standing.adopted && target.spec.display_name.is_none() {
        account.display_name.clone()
    } else {
        display_name
    };
    let drifted = account.description != described || account.display_name != want_name;
    drifted.then(|| Action::PatchAccount {
        name: target.name.clone(),
        email: target.email.clone(),
        display_name: want_name,
        description: described,
        why: if standing.adopting {
            Patch::Adopted
        } else {
            Patch::Repaired
        },
    })
}

/// Roles: exactly the spec on the resources it names and the provider's
/// project; on an adopted account, only added (the roles it held before are
/// its owner's).
fn roles(
    request: &Request<'_>,
    target: &Target<'_>,
    observed: &Observed,
    adopted: bool,
) -> Vec<Action> {
    let member = target.account_member();
    target
        .role_resources(request)
        .into_iter()
        .filter_map(|resource| {
            let edits = edits_for(
                observed.projects.get(&resource),
                &member,
                &target.roles_on(&resource),
                |_| adopted,
            );
            edit_policy(Resource::Project(resource), edits)
        })
        .collect()
}

/// What the binding reports: the account, its member, and each grant (ready
/// unless the guardrails refused them); a sharer reports no grants.
fn outcome(target: &Target<'_>, standing: &Standing, refused: Option<GrantsRefused>) -> Outcome {
    let statuses = match standing.manages_roles {
        true => role_statuses(target, refused.as_ref()),
        false => Vec::new(),
    };
    let mut annotations = BTreeMap::from([(
        "iam.gke.io/gcp-service-account".to_string(),
        target.email.clone(),
    )]);
    if let Some(provider) = target.pool_provider() {
        // What the pod webhook builds the credential configuration from
        // outside GKE.
        annotations.insert("wib.dev/gcp-workload-identity-provider".into(), provider);
    }
    Outcome {
        annotations,
        labels: BTreeMap::new(),
        status: wib_api::WorkloadIdentityBindingStatus {
            identity: Some(target.email.clone()),
            gcp: Some(GcpStatus {
                email: Some(target.email.clone()),
                member: Some(target.member.clone()),
            }),
            role_assignments: statuses,
            ..Default::default()
        },
        writes: Vec::new(),
        grants_refused: refused,
    }
}

/// Each role the spec lists, ready unless the guardrails refused them.
pub(super) fn role_statuses(
    target: &Target<'_>,
    refused: Option<&GrantsRefused>,
) -> Vec<RoleAssignmentStatus> {
    target
        .roles
        .iter()
        .map(|(role, resource)| RoleAssignmentStatus {
            role: role.clone(),
            scope: Some(resource.clone()),
            id: None,
            ready: refused.is_none(),
        })
        .collect()
}

/// Deletion: the binding's federation goes; the account and the maker's
/// roles go with the last binding out (per `deletionPolicy`); an adopted
/// account keeps the roles it had, losing only those the spec lists, and is
/// given back rather than deleted.
fn cleanup(request: &Request<'_>, target: &Target<'_>, observed: &Observed) -> Vec<Action> {
    let Some(account) = observed.account.as_ref() else {
        return Vec::new();
    };
    let tags = naming::tags(&account.description);
    let release = ownership::release(
        &tags,
        ownership::Asker::of(request),
        request.admitted,
        request.binding.spec.deletion_policy,
    );
    if release == Release::Nothing {
        return Vec::new();
    }
    let mut actions = revoke(target, observed);
    let adopted = is_adopted(&tags);
    // On an adopted account, members that were there before wib are its
    // owner's, not users wib must wait for.
    let mut after = observed.account_policy.clone().unwrap_or_default();
    policy::remove_member(&mut after, WORKLOAD_IDENTITY_USER, &target.member);
    let last_out = !policy::members_of(&after, WORKLOAD_IDENTITY_USER)
        .iter()
        .any(|m| !adopted || naming::is_service_account_member(m));
    let deletes = matches!(release, Release::Maker | Release::Survivor) && last_out;
    if !deletes && release != Release::Maker {
        return actions;
    }
    let member = target.account_member();
    for resource in target.role_resources(request) {
        let listed = target.roles_on(&resource);
        let edits = edits_for(observed.projects.get(&resource), &member, &[], |role| {
            adopted && !listed.iter().any(|l| l == role)
        });
        actions.extend(edit_policy(Resource::Project(resource), edits));
    }
    let patch = |why, described: String| Action::PatchAccount {
        name: target.name.clone(),
        email: target.email.clone(),
        display_name: account.display_name.clone(),
        description: described,
        why,
    };
    let base = naming::without_marker(&account.description);
    actions.push(if !deletes {
        // Others still act as the account: the last of them deletes it.
        let mut released = tags.clone();
        released.insert(ownership::TAG_RELEASED.into(), "true".into());
        patch(Patch::Released, naming::with_marker(&base, &released))
    } else if adopted {
        patch(Patch::GivenBack, base)
    } else {
        Action::DeleteAccount {
            name: target.name.clone(),
            email: target.email.clone(),
        }
    });
    actions
}

/// A refused binding: only its federation entry goes.
fn revoke(target: &Target<'_>, observed: &Observed) -> Vec<Action> {
    if observed.account.is_none() {
        return Vec::new();
    }
    let held = observed
        .account_policy
        .as_ref()
        .is_some_and(|p| policy::members_of(p, WORKLOAD_IDENTITY_USER).contains(&target.member));
    held.then(|| Action::EditPolicy {
        resource: Resource::Account(target.name.clone()),
        edits: vec![Edit::Revoke {
            role: WORKLOAD_IDENTITY_USER.to_string(),
            member: target.member.clone(),
        }],
    })
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::Next;
    use crate::testing::{self, merged};
    use google_cloud_iam_admin_v1::model::ServiceAccount;
    use serde_json::{Value, json};
    use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};

    const PROJECT: &str = "projects/p1";
    const EMAIL: &str = "app@p1.iam.gserviceaccount.com";
    const NAME: &str = "projects/p1/serviceAccounts/app@p1.iam.gserviceaccount.com";
    const MEMBER: &str = "serviceAccount:p1.svc.id.goog[ns/sa]";
    const ACCOUNT: &str = "serviceAccount:app@p1.iam.gserviceaccount.com";

    fn provider(extra: Value) -> ClusterIdentityProvider {
        let spec = json!({
            "clusterName": "c1",
            "allowedScopes": ["projects/p1"],
            "gcp": {"projectId": "p1"},
        });
        testing::provider("gcp", merged(spec, extra))
    }

    fn binding(gcp: Value, extra: Value) -> WorkloadIdentityBinding {
        let spec = json!({"serviceAccount": {"name": "sa"}, "gcp": gcp});
        testing::binding("b", "ns", "u1", merged(spec, extra))
    }

    fn viewer() -> Value {
        json!({"accountId": "app", "roles": [{"role": "roles/storage.objectViewer"}]})
    }

    /// The account as wib made it for binding `uid` of `namespace`.
    fn account(namespace: &str, uid: &str, extra: &[(&str, &str)]) -> ServiceAccount {
        let mut tags = ownership::owner_tags("c1", namespace, "b", uid);
        for (k, v) in extra {
            tags.insert(k.to_string(), v.to_string());
        }
        ServiceAccount::new()
            .set_display_name("wib ns/b")
            .set_description(naming::with_marker("", &tags))
    }

    fn policy_with(grants: &[(&str, &str)]) -> Policy {
        let mut p = Policy::default();
        for (role, member) in grants {
            policy::add_member(&mut p, role, member);
        }
        p
    }

    fn observed(
        account: Option<ServiceAccount>,
        federated: &[&str],
        project: &[(&str, &str)],
    ) -> Observed {
        let present = account.is_some();
        Observed {
            account,
            account_policy: present.then(|| {
                policy_with(
                    &federated
                        .iter()
                        .map(|m| (WORKLOAD_IDENTITY_USER, *m))
                        .collect::<Vec<_>>(),
                )
            }),
            projects: if present {
                BTreeMap::from([(PROJECT.to_string(), policy_with(project))])
            } else {
                BTreeMap::new()
            },
        }
    }

    fn grant(role: &str, member: &str) -> Edit {
        Edit::Grant {
            role: role.into(),
            member: member.into(),
        }
    }

    fn revoke_edit(role: &str, member: &str) -> Edit {
        Edit::Revoke {
            role: role.into(),
            member: member.into(),
        }
    }

    fn on(resource: Resource, edits: Vec<Edit>) -> Action {
        Action::EditPolicy { resource, edits }
    }

    fn project() -> Resource {
        Resource::Project(PROJECT.into())
    }

    fn own_account() -> Resource {
        Resource::Account(NAME.into())
    }

    fn run(
        binding: &WorkloadIdentityBinding,
        provider: &ClusterIdentityProvider,
        intent: Intent,
        observed: &Observed,
    ) -> Result<Plan<Action>, CloudError> {
        let request = Request::new(binding, provider, "https://issuer");
        observed.plan(&request, intent)
    }

    #[test]
    fn reconcile_plans_exactly_what_differs_from_the_spec() {
        let b = binding(viewer(), json!({}));
        let p = provider(json!({}));
        let mine = || Some(account("ns", "u1", &[]));
        let cases: Vec<(&str, Observed, Vec<Action>)> = vec![
            (
                "nothing there: create, federate, grant",
                observed(None, &[], &[]),
                vec![
                    Action::CreateAccount {
                        project: "p1".into(),
                        account_id: "app".into(),
                        email: EMAIL.into(),
                        display_name: "wib ns/b".into(),
                        description: description(&Request::new(&b, &p, "i"), "", false),
                    },
                    on(own_account(), vec![grant(WORKLOAD_IDENTITY_USER, MEMBER)]),
                    on(
                        project(),
                        vec![grant("roles/storage.objectViewer", ACCOUNT)],
                    ),
                ],
            ),
            (
                "steady state: nothing",
                observed(
                    mine(),
                    &[MEMBER],
                    &[("roles/storage.objectViewer", ACCOUNT)],
                ),
                vec![],
            ),
            (
                "federation removed by hand: put back",
                observed(mine(), &[], &[("roles/storage.objectViewer", ACCOUNT)]),
                vec![on(
                    own_account(),
                    vec![grant(WORKLOAD_IDENTITY_USER, MEMBER)],
                )],
            ),
            (
                "a role added by hand and the listed one gone",
                observed(mine(), &[MEMBER], &[("roles/owner", ACCOUNT)]),
                vec![on(
                    project(),
                    vec![
                        grant("roles/storage.objectViewer", ACCOUNT),
                        revoke_edit("roles/owner", ACCOUNT),
                    ],
                )],
            ),
            (
                "another member's grants are not wib's business",
                observed(
                    mine(),
                    &[MEMBER, "principal://elsewhere"],
                    &[
                        ("roles/storage.objectViewer", ACCOUNT),
                        ("roles/owner", "user:someone"),
                    ],
                ),
                vec![],
            ),
            (
                "display name drifted: repaired",
                {
                    let mut o = observed(
                        mine(),
                        &[MEMBER],
                        &[("roles/storage.objectViewer", ACCOUNT)],
                    );
                    if let Some(a) = o.account.as_mut() {
                        a.display_name = "renamed".into();
                    }
                    o
                },
                vec![Action::PatchAccount {
                    name: NAME.into(),
                    email: EMAIL.into(),
                    display_name: "wib ns/b".into(),
                    description: description(&Request::new(&b, &p, "i"), "", false),
                    why: Patch::Repaired,
                }],
            ),
        ];
        for (case, observed, expected) in cases {
            let planned = run(&b, &p, Intent::Reconcile, &observed).expect(case);
            assert_eq!(planned.actions, expected, "{case}");
            let Next::Done(outcome) = planned.next else {
                panic!("{case}: a reconcile reports an outcome");
            };
            assert_eq!(
                outcome.annotations.get("iam.gke.io/gcp-service-account"),
                Some(&EMAIL.to_string()),
                "{case}"
            );
        }
    }

    #[test]
    fn reconcile_refuses_before_any_write_with_the_reason_a_binding_shows() {
        let p = provider(json!({}));
        let cases: Vec<(&str, WorkloadIdentityBinding, Observed, Reason)> = vec![
            (
                "an account another namespace made",
                binding(viewer(), json!({})),
                observed(Some(account("other", "u9", &[])), &[], &[]),
                Reason::IdentityNotShared,
            ),
            (
                "an account another binding of the namespace made, with roles listed here",
                binding(viewer(), json!({})),
                observed(Some(account("ns", "u9", &[])), &[], &[]),
                Reason::RoleNotAllowed,
            ),
            (
                "an untagged account under the Deny adoption policy",
                binding(viewer(), json!({})),
                observed(Some(ServiceAccount::new()), &[], &[]),
                Reason::AdoptionNotAllowed,
            ),
            (
                "a basic role",
                binding(
                    json!({"accountId": "app", "roles": [{"role": "roles/owner"}]}),
                    json!({}),
                ),
                observed(None, &[], &[]),
                Reason::RoleNotAllowed,
            ),
            (
                "a project outside allowedScopes",
                binding(
                    json!({"accountId": "app", "roles": [{"role": "roles/storage.objectViewer", "resource": "projects/p2"}]}),
                    json!({}),
                ),
                observed(None, &[], &[]),
                Reason::ScopeNotAllowed,
            ),
        ];
        for (case, b, observed, reason) in cases {
            let error = run(&b, &p, Intent::Reconcile, &observed).expect_err(case);
            assert_eq!(error.reason, reason, "{case}: {}", error.message);
        }
    }

    #[test]
    fn default_deny_keeps_the_account_and_federation_and_grants_nothing() {
        let b = binding(viewer(), json!({}));
        let p = provider(json!({"allowedScopes": null}));
        let planned = run(&b, &p, Intent::Reconcile, &observed(None, &[], &[])).expect("plan");
        assert_eq!(planned.actions.len(), 2, "{:?}", planned.actions);
        let Next::Done(outcome) = planned.next else {
            panic!("outcome");
        };
        assert_eq!(
            outcome.grants_refused.map(|r| r.reason),
            Some(Reason::ScopeNotAllowed)
        );
        assert!(outcome.status.role_assignments.iter().all(|a| !a.ready));
    }

    #[test]
    fn an_adopted_account_keeps_the_roles_it_had_and_is_given_back_on_deletion() {
        let b = binding(viewer(), json!({}));
        let p = provider(json!({"adoption": "AllowUntagged"}));
        let consented = ServiceAccount::new()
            .set_display_name("theirs")
            .set_description(naming::with_marker(
                "owned by data",
                &BTreeMap::from([(ownership::TAG_ADOPT_INTO.to_string(), "ns".to_string())]),
            ));
        let o = observed(Some(consented), &[], &[("roles/logging.viewer", ACCOUNT)]);
        let planned = run(&b, &p, Intent::Reconcile, &o).expect("adopt");
        assert!(
            matches!(&planned.actions[0], Action::PatchAccount { why: Patch::Adopted, display_name, .. } if display_name == "theirs"),
            "{:?}",
            planned.actions
        );
        assert_eq!(
            planned.actions[2],
            on(
                project(),
                vec![grant("roles/storage.objectViewer", ACCOUNT)]
            ),
            "only added; roles/logging.viewer is its owner's"
        );

        let adopted = account("ns", "u1", &[(ownership::TAG_ADOPTED, "true")]);
        let o = observed(
            Some(adopted),
            &[MEMBER],
            &[
                ("roles/storage.objectViewer", ACCOUNT),
                ("roles/logging.viewer", ACCOUNT),
            ],
        );
        let actions = run(&b, &p, Intent::Cleanup, &o).expect("cleanup").actions;
        assert_eq!(
            actions[..2],
            [
                on(
                    own_account(),
                    vec![revoke_edit(WORKLOAD_IDENTITY_USER, MEMBER)]
                ),
                on(
                    project(),
                    vec![revoke_edit("roles/storage.objectViewer", ACCOUNT)]
                ),
            ]
        );
        assert!(
            matches!(&actions[2], Action::PatchAccount { why: Patch::GivenBack, description, .. } if naming::tags(description).is_empty()),
            "{actions:?}"
        );
    }

    #[test]
    fn deletion_follows_ownership_and_deletion_policy() {
        let p = provider(json!({}));
        let delete = binding(viewer(), json!({}));
        let retain = binding(viewer(), json!({"deletionPolicy": "Retain"}));
        let federation = on(
            own_account(),
            vec![revoke_edit(WORKLOAD_IDENTITY_USER, MEMBER)],
        );
        let roles = on(
            project(),
            vec![revoke_edit("roles/storage.objectViewer", ACCOUNT)],
        );
        let deleted = Action::DeleteAccount {
            name: NAME.into(),
            email: EMAIL.into(),
        };
        let other_sa = "serviceAccount:p1.svc.id.goog[ns/other]";
        let mine = || Some(account("ns", "u1", &[]));
        let cases: Vec<(&str, &WorkloadIdentityBinding, Observed, Vec<Action>)> = vec![
            ("already gone", &delete, observed(None, &[], &[]), vec![]),
            (
                "the maker, last out: everything goes, account last",
                &delete,
                observed(
                    mine(),
                    &[MEMBER],
                    &[("roles/storage.objectViewer", ACCOUNT)],
                ),
                vec![federation.clone(), roles.clone(), deleted.clone()],
            ),
            (
                "Retain: only the federation",
                &retain,
                observed(
                    mine(),
                    &[MEMBER],
                    &[("roles/storage.objectViewer", ACCOUNT)],
                ),
                vec![federation.clone()],
            ),
            (
                "another namespace's account: nothing",
                &delete,
                observed(Some(account("other", "u9", &[])), &[MEMBER], &[]),
                vec![],
            ),
            (
                "a sharer of the namespace: its federation only",
                &delete,
                observed(Some(account("ns", "u9", &[])), &[MEMBER, other_sa], &[]),
                vec![federation.clone()],
            ),
            (
                "a survivor of a released account, last out: the account goes",
                &delete,
                observed(
                    Some(account("ns", "u9", &[(ownership::TAG_RELEASED, "true")])),
                    &[MEMBER],
                    &[],
                ),
                vec![federation.clone(), deleted],
            ),
        ];
        for (case, b, observed, expected) in cases {
            let planned = run(b, &p, Intent::Cleanup, &observed).expect(case);
            assert_eq!(planned.actions, expected, "{case}");
            assert_eq!(planned.next, Next::Finished, "{case}");
        }

        // The maker leaves while another ServiceAccount still acts as it:
        // its roles go and the account is marked released.
        let o = observed(
            mine(),
            &[MEMBER, other_sa],
            &[("roles/storage.objectViewer", ACCOUNT)],
        );
        let actions = run(&delete, &p, Intent::Cleanup, &o).expect("plan").actions;
        assert_eq!(actions[..2], [federation, roles]);
        assert!(
            matches!(&actions[2], Action::PatchAccount { why: Patch::Released, description, .. }
                if naming::tags(description).get(ownership::TAG_RELEASED).map(String::as_str) == Some("true")),
            "{actions:?}"
        );
    }

    #[test]
    fn revoke_removes_only_the_federation_entry_when_it_is_there() {
        let b = binding(viewer(), json!({}));
        let p = provider(json!({}));
        let mine = || Some(account("ns", "u1", &[]));
        let held = observed(
            mine(),
            &[MEMBER],
            &[("roles/storage.objectViewer", ACCOUNT)],
        );
        assert_eq!(
            run(&b, &p, Intent::Revoke, &held).expect("plan").actions,
            [on(
                own_account(),
                vec![revoke_edit(WORKLOAD_IDENTITY_USER, MEMBER)]
            )]
        );
        let gone = observed(mine(), &[], &[]);
        assert!(
            run(&b, &p, Intent::Revoke, &gone)
                .expect("plan")
                .actions
                .is_empty()
        );
    }

    #[test]
    fn actions_read_as_the_events_report_them() {
        assert_eq!(
            on(
                project(),
                vec![
                    grant("roles/storage.objectViewer", ACCOUNT),
                    revoke_edit("roles/owner", ACCOUNT)
                ]
            )
            .to_string(),
            format!(
                "granted roles/storage.objectViewer to {ACCOUNT}, revoked roles/owner from {ACCOUNT} on {PROJECT}"
            )
        );
    }
}
