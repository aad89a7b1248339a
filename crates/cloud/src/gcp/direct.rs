//! Mode Direct's decisions, without I/O: the roles go straight to the
//! Kubernetes ServiceAccount's federated principal, with no Google service
//! account between. The principal carries no tags, so what is wib's is
//! what this binding lists and what its status records it granted (only
//! wib writes the status); a role someone else granted the same principal
//! is never revoked. Deletion, and a binding its provider no longer admits,
//! revoke wib's roles: there is no federation to cut short of them.

use std::collections::BTreeMap;

use wib_api::binding::{GcpStatus, RoleAssignmentStatus};

use super::iam::Resource;
use super::observe::Observed;
use super::plan::{Action, edit_policy, edits_for};
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

fn granted_before(request: &Request<'_>, target: &Target<'_>) -> bool {
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
    let statuses = target
        .roles
        .iter()
        .map(|(role, resource)| RoleAssignmentStatus {
            role: role.clone(),
            scope: Some(resource.clone()),
            id: None,
            ready: refused.is_none(),
        })
        .collect();
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
