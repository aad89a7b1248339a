//! Every AWS decision, without I/O: ownership and adoption of the role, its
//! trust policy (shared by every binding that names the role), the IAM OIDC
//! provider and its audiences, the policies to attach, put, detach and
//! delete, what deletion leaves, and the outcome the binding reports.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;
use wib_api::binding::{AwsBinding, AwsMode, AwsStatus, RoleAssignmentStatus};
use wib_api::conditions::Reason;

use super::association;
use super::iam::{OidcProvider, Role};
use super::observe::Observed;
use super::target::{self, Target, is_adopted, not_configured};
use super::{DEFAULT_AUDIENCE, naming, policy};
use crate::ownership::{self, Claim, Release};
use crate::steps::{Decide, Intent, Next, Plan};
use crate::{CloudError, GrantsRefused, Outcome, Request};

/// Why wib tags a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tagging {
    /// It takes an untagged role over (the owner consented).
    Adopted,
    /// Records which attachments and inline policies are wib's: IAM has no
    /// per-attachment tags.
    Marks,
    /// Its maker is gone while other bindings still use it.
    Released,
}

/// Why wib rewrites a role's trust policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The binding's statement is added or put back.
    Repaired,
    /// The statement of `subject` goes (deletion or revocation).
    Removed { subject: String },
}

/// One IAM write.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    CreateOidcProvider {
        issuer: String,
        audience: String,
        tags: BTreeMap<String, String>,
    },
    /// `tag` (key, client ID) records that wib added the client ID, so
    /// prune removes exactly those; it is written first.
    AddAudience {
        arn: String,
        audience: String,
        tag: Option<(String, String)>,
    },
    CreateRole {
        name: String,
        path: String,
        trust: Value,
        max_session: i32,
        boundary: Option<String>,
        description: String,
        tags: BTreeMap<String, String>,
    },
    TagRole {
        role: String,
        tags: BTreeMap<String, String>,
        why: Tagging,
    },
    /// An adopted role is given back: wib's tags go.
    UntagRole {
        role: String,
        keys: Vec<String>,
    },
    PutTrust {
        role: String,
        trust: Value,
        why: Trust,
    },
    SetMaxSession {
        role: String,
        seconds: i32,
    },
    SetBoundary {
        role: String,
        arn: String,
    },
    Attach {
        role: String,
        arn: String,
    },
    PutInline {
        role: String,
        name: String,
        document: Value,
    },
    Detach {
        role: String,
        arn: String,
    },
    DeleteInline {
        role: String,
        name: String,
    },
    DeleteRole {
        role: String,
    },
    /// `token`: EKS's idempotency token, the same for a retry of this
    /// binding's generation, so a lost answer makes no second association.
    CreateAssociation {
        cluster: String,
        namespace: String,
        service_account: String,
        role_arn: String,
        target_role_arn: Option<String>,
        token: String,
        tags: BTreeMap<String, String>,
    },
    UpdateAssociation {
        cluster: String,
        id: String,
        role_arn: String,
        target_role_arn: Option<String>,
    },
    DeleteAssociation {
        cluster: String,
        id: String,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreateOidcProvider { issuer, .. } => {
                write!(f, "created IAM OIDC provider for {issuer}")
            }
            Action::AddAudience { arn, audience, .. } => {
                write!(f, "added audience {audience} to {arn}")
            }
            Action::CreateRole { name, .. } => write!(f, "created role {name}"),
            Action::TagRole { role, why, .. } => match why {
                Tagging::Adopted => write!(f, "adopted role {role}"),
                Tagging::Marks => write!(f, "tagged role {role} with the policies wib manages"),
                Tagging::Released => {
                    write!(f, "released role {role} to the bindings still using it")
                }
            },
            Action::UntagRole { role, .. } => write!(f, "gave back role {role}"),
            Action::PutTrust { role, why, .. } => match why {
                Trust::Repaired => write!(f, "put the trust policy of role {role}"),
                Trust::Removed { subject } => {
                    write!(
                        f,
                        "removed the trust statement of {subject} from role {role}"
                    )
                }
            },
            Action::SetMaxSession { role, .. } => {
                write!(f, "set max session duration of {role}")
            }
            Action::SetBoundary { role, .. } => write!(f, "set permissions boundary of {role}"),
            Action::Attach { arn, .. } => write!(f, "attached {arn}"),
            Action::PutInline { name, .. } => write!(f, "put inline policy {name}"),
            Action::Detach { arn, .. } => write!(f, "detached {arn}"),
            Action::DeleteInline { name, .. } => write!(f, "deleted inline policy {name}"),
            Action::DeleteRole { role } => write!(f, "deleted role {role}"),
            Action::CreateAssociation {
                cluster,
                namespace,
                service_account,
                ..
            } => write!(
                f,
                "created the pod identity association of {namespace}/{service_account} in EKS cluster {cluster}"
            ),
            Action::UpdateAssociation { cluster, id, .. } => {
                write!(
                    f,
                    "put back pod identity association {id} in EKS cluster {cluster}"
                )
            }
            Action::DeleteAssociation { cluster, id } => {
                write!(
                    f,
                    "deleted pod identity association {id} in EKS cluster {cluster}"
                )
            }
        }
    }
}

impl Decide for Observed {
    type Action = Action;

    fn plan(&self, request: &Request<'_>, intent: Intent) -> Result<Plan<Action>, CloudError> {
        let observed = self;
        let target = Target::of(request)?;
        match intent {
            Intent::Reconcile => reconcile(request, &target, observed),
            Intent::Cleanup => Ok(Plan::finished(cleanup(request, &target, observed))),
            Intent::Revoke => Ok(Plan::finished(revoke(request, &target, observed))),
        }
    }
}

/// Every refusal comes before any write: the spec, the role's ownership,
/// its trust policy, the policies and the OIDC provider it would name.
fn reconcile(
    request: &Request<'_>,
    target: &Target<'_>,
    observed: &Observed,
) -> Result<Plan<Action>, CloudError> {
    let documents = target::check_spec(request, target)?;
    let refused = target.grants_refused(request);
    let existing = observed.role.as_ref();
    let claim = target::claim(request, target, existing)?;
    let adopting = claim == Claim::Adopt;
    let manages_policies = claim != Claim::Shared;
    let adopted = adopting || existing.is_some_and(|r| is_adopted(&r.tags));
    association::refuse(request, target, observed)?;
    let trust = trust_policy(target, existing, adopted, observed.trust_policy_max_chars)?;
    let managed = target.managed_policies(existing, &observed.attached, refused.is_some());
    refuse_missing(target, observed, &managed, existing)?;
    let mut actions: Vec<Action> = Vec::new();
    if target.mode == AwsMode::Irsa {
        actions.extend(oidc_provider(
            request,
            target,
            observed.oidc_provider.as_ref(),
        )?);
    }
    let (arn, tags) = match existing {
        None => {
            let tags = new_role_tags(request, target, &managed);
            actions.push(create_role(request, target, trust, tags.clone()));
            (target.role_arn(), tags)
        }
        Some(role) => {
            let (repairs, tags) = repair_role(request, target, role, trust, claim);
            actions.extend(repairs);
            (role.arn.clone(), tags)
        }
    };
    let (associating, association_arn) = association::reconcile(request, target, &arn, observed);
    let created = associating
        .iter()
        .any(|a| matches!(a, Action::CreateAssociation { .. }));
    actions.extend(associating);
    if manages_policies {
        actions.extend(policies(target, &tags, &managed, &documents, observed));
    }
    if created {
        // EKS names the association: its ARN is read back, then reported.
        return Ok(Plan {
            actions,
            next: Next::ObserveAgain,
        });
    }
    Ok(Plan::done(
        actions,
        outcome(target, &arn, association_arn, refused),
    ))
}

/// The trust policy with the binding's statement in place, refused when
/// another subject holds its `Sid` or when it would pass IAM's quota.
fn trust_policy(
    target: &Target<'_>,
    existing: Option<&Role>,
    adopted: bool,
    max_chars: usize,
) -> Result<Value, CloudError> {
    let current = existing.and_then(|r| r.trust.as_ref());
    if policy::sid_conflict(current, &target.federation) {
        return Err(CloudError::new(
            Reason::FederationConflict,
            format!(
                "the trust policy of {} has a statement {} for another subject; wib does not overwrite it; nothing was changed",
                target.what(),
                target.federation.sid
            ),
        ));
    }
    let trust = policy::with_statement(current, &target.federation, adopted, target.moving_from);
    let chars = policy::size(&trust);
    if chars > max_chars {
        return Err(CloudError::new(
            Reason::TrustPolicyTooLarge,
            format!(
                "the trust policy of role {} would be {chars} characters, over IAM's quota of {max_chars}; bind this ServiceAccount to another role",
                target.role
            ),
        ));
    }
    Ok(trust)
}

/// A policy the role would newly name must exist; one it names already
/// is not looked up again.
fn refuse_missing(
    target: &Target<'_>,
    observed: &Observed,
    managed: &[String],
    existing: Option<&Role>,
) -> Result<(), CloudError> {
    let missing = |arn: &String| observed.missing_policies.contains(arn);
    if let Some(arn) = managed
        .iter()
        .find(|arn| !observed.attached.contains(arn) && missing(arn))
    {
        return Err(CloudError::new(
            Reason::RoleNotFound,
            format!("managed policy {arn} does not exist; nothing was created"),
        ));
    }
    if let Some(boundary) = &target.defaults.permissions_boundary_arn
        && existing.is_none_or(|r| r.permissions_boundary.as_ref() != Some(boundary))
        && missing(boundary)
    {
        return Err(not_configured(format!(
            "the provider's permissionsBoundaryArn {boundary} does not exist"
        )));
    }
    Ok(())
}

/// The IAM OIDC provider the trust policy names: there, or created when
/// the provider asks for it (with the binding's audience), or its audience
/// added. A client ID beyond STS's is tagged as wib's.
fn oidc_provider(
    request: &Request<'_>,
    target: &Target<'_>,
    found: Option<&OidcProvider>,
) -> Result<Option<Action>, CloudError> {
    let arn = &target.federation.provider_arn;
    let audience = &target.federation.audience;
    let create = target.defaults.create_oidc_provider;
    let added_tag = (audience != DEFAULT_AUDIENCE)
        .then(|| (naming::added_client_id_tag(audience), audience.clone()));
    match found {
        Some(found) if create && !found.client_ids.contains(audience) => {
            Ok(Some(Action::AddAudience {
                arn: arn.clone(),
                audience: audience.clone(),
                tag: added_tag,
            }))
        }
        Some(_) => Ok(None),
        None if create => {
            let mut tags =
                BTreeMap::from([(ownership::TAG_CLUSTER.to_string(), request.cluster.clone())]);
            tags.extend(added_tag);
            Ok(Some(Action::CreateOidcProvider {
                issuer: request.issuer.to_string(),
                audience: audience.clone(),
                tags,
            }))
        }
        None => Err(not_configured(format!(
            "IAM OIDC provider {arn} does not exist; create it for {} or set createOidcProvider: true on the ClusterIdentityProvider",
            request.issuer
        ))),
    }
}

/// A new role's tags: this binding's, with the policies it will carry
/// marked, so a crash before they are attached leaves them recognisable.
fn new_role_tags(
    request: &Request<'_>,
    target: &Target<'_>,
    managed: &[String],
) -> BTreeMap<String, String> {
    let mut tags = ownership::owner_tags(
        &request.cluster,
        &request.namespace,
        &request.binding_name,
        &request.uid,
    );
    tags.insert(
        naming::TAG_MANAGED_POLICIES.into(),
        naming::marks(managed.iter().map(String::as_str)),
    );
    tags.insert(
        naming::TAG_INLINE_POLICIES.into(),
        naming::marks(target.spec.inline_policies.iter().map(|p| p.name.as_str())),
    );
    tags
}

fn create_role(
    request: &Request<'_>,
    target: &Target<'_>,
    trust: Value,
    tags: BTreeMap<String, String>,
) -> Action {
    Action::CreateRole {
        name: target.role.clone(),
        path: target.path.clone(),
        trust,
        max_session: target.max_session,
        boundary: target.defaults.permissions_boundary_arn.clone(),
        description: format!(
            "Managed by wib for {}/{} in cluster {}",
            request.namespace, request.binding_name, request.cluster
        ),
        tags,
    }
}

/// An existing role: adopted, and what drifted put back. Returns the role's
/// tags once written. A sharer puts back only its trust statement and the
/// boundary the provider imposes on every role.
fn repair_role(
    request: &Request<'_>,
    target: &Target<'_>,
    role: &Role,
    trust: Value,
    claim: Claim,
) -> (Vec<Action>, BTreeMap<String, String>) {
    let name = &target.role;
    let mut actions = Vec::new();
    let mut tags = role.tags.clone();
    if claim == Claim::Adopt {
        let mut adopted = ownership::owner_tags(
            &request.cluster,
            &request.namespace,
            &request.binding_name,
            &request.uid,
        );
        adopted.insert(ownership::TAG_ADOPTED.into(), "true".into());
        tags.extend(adopted.clone());
        actions.push(Action::TagRole {
            role: name.clone(),
            tags: adopted,
            why: Tagging::Adopted,
        });
    }
    if role.trust.as_ref().is_none_or(|t| !policy::same(t, &trust)) {
        actions.push(Action::PutTrust {
            role: name.clone(),
            trust,
            why: Trust::Repaired,
        });
    }
    if claim != Claim::Shared && role.max_session_duration != Some(target.max_session) {
        actions.push(Action::SetMaxSession {
            role: name.clone(),
            seconds: target.max_session,
        });
    }
    if let Some(boundary) = &target.defaults.permissions_boundary_arn
        && role.permissions_boundary.as_ref() != Some(boundary)
    {
        actions.push(Action::SetBoundary {
            role: name.clone(),
            arn: boundary.clone(),
        });
    }
    (actions, tags)
}

/// wib's marks on a role: what they hold, and what they must hold before
/// and after the policies change. Before: what is there and what will be
/// (so an attachment is never made unmarked); after: what is.
struct Marks {
    current: BTreeMap<String, String>,
    before: BTreeMap<String, String>,
    after: BTreeMap<String, String>,
}

fn marks(tags: &BTreeMap<String, String>, managed: &[String], spec: &AwsBinding) -> Marks {
    let wanted = [
        (
            naming::TAG_MANAGED_POLICIES,
            naming::marks(managed.iter().map(String::as_str)),
        ),
        (
            naming::TAG_INLINE_POLICIES,
            naming::marks(spec.inline_policies.iter().map(|p| p.name.as_str())),
        ),
    ];
    let mut marks = Marks {
        current: BTreeMap::new(),
        before: BTreeMap::new(),
        after: BTreeMap::new(),
    };
    for (key, want) in wanted {
        let current = tags.get(key).cloned().unwrap_or_default();
        marks.before.insert(key.to_string(), union(&current, &want));
        marks.current.insert(key.to_string(), current);
        marks.after.insert(key.to_string(), want);
    }
    marks
}

/// Two tag values written by [`naming::marks`], as one.
fn union(a: &str, b: &str) -> String {
    let mut all: Vec<&str> = a.split(' ').chain(b.split(' ')).collect();
    all.retain(|m| !m.is_empty());
    all.sort();
    all.dedup();
    all.join(" ")
}

/// Managed attachments and inline policies to exactly the spec: missing
/// ones added, drifted ones put back, extras removed only when wib's marks
/// say wib added them. Marks are written before an attachment and after a
/// removal, so a crash in between never leaves one wib would not recognise.
fn policies(
    target: &Target<'_>,
    tags: &BTreeMap<String, String>,
    managed: &[String],
    documents: &[Value],
    observed: &Observed,
) -> Vec<Action> {
    let role = &target.role;
    let spec = target.spec;
    let marks = marks(tags, managed, spec);
    let tag = |tags: &BTreeMap<String, String>| Action::TagRole {
        role: role.clone(),
        tags: tags.clone(),
        why: Tagging::Marks,
    };
    let mut actions = Vec::new();
    if marks.before != marks.current {
        actions.push(tag(&marks.before));
    }
    for arn in managed.iter().filter(|a| !observed.attached.contains(a)) {
        actions.push(Action::Attach {
            role: role.clone(),
            arn: arn.clone(),
        });
    }
    for (inline, document) in spec.inline_policies.iter().zip(documents) {
        let current = observed.inline_documents.get(&inline.name);
        if current.is_none_or(|c| !policy::same(c, document)) {
            actions.push(Action::PutInline {
                role: role.clone(),
                name: inline.name.clone(),
                document: document.clone(),
            });
        }
    }
    let listed: Vec<String> = spec
        .inline_policies
        .iter()
        .map(|p| p.name.clone())
        .collect();
    actions.extend(remove_marked(role, tags, observed, managed, &listed));
    if marks.after != marks.before {
        actions.push(tag(&marks.after));
    }
    actions
}

fn outcome(
    target: &Target<'_>,
    role_arn: &str,
    association_arn: Option<String>,
    refused: Option<GrantsRefused>,
) -> Outcome {
    let spec = target.spec;
    let mut policies: Vec<String> = spec.managed_policy_arns.clone();
    policies.extend(spec.inline_policies.iter().map(|p| p.name.clone()));
    let mut statuses: Vec<RoleAssignmentStatus> = spec
        .managed_policy_arns
        .iter()
        .map(|arn| RoleAssignmentStatus {
            role: arn.clone(),
            scope: None,
            id: Some(arn.clone()),
            ready: refused.is_none(),
        })
        .collect();
    statuses.extend(spec.inline_policies.iter().map(|p| RoleAssignmentStatus {
        role: p.name.clone(),
        scope: Some("inline".into()),
        id: Some(format!("{role_arn}/{}", p.name)),
        ready: true,
    }));
    Outcome {
        // Pod Identity needs no annotation: EKS finds the association.
        annotations: match target.mode {
            AwsMode::Irsa => annotations(spec, role_arn),
            AwsMode::PodIdentity => BTreeMap::new(),
        },
        labels: BTreeMap::new(),
        status: wib_api::WorkloadIdentityBindingStatus {
            identity: Some(role_arn.to_string()),
            aws: Some(AwsStatus {
                role_arn: Some(role_arn.to_string()),
                oidc_provider_arn: (target.mode == AwsMode::Irsa)
                    .then(|| target.federation.provider_arn.clone()),
                policies,
                mode: Some(target.mode),
                association_arn,
            }),
            role_assignments: statuses,
            ..Default::default()
        },
        writes: Vec::new(),
        grants_refused: refused,
    }
}

/// The ServiceAccount annotations EKS's pod identity webhook reads.
fn annotations(spec: &AwsBinding, role_arn: &str) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([(
        "eks.amazonaws.com/role-arn".to_string(),
        role_arn.to_string(),
    )]);
    if let Some(audience) = &spec.audience {
        annotations.insert("eks.amazonaws.com/audience".into(), audience.clone());
    }
    if let Some(seconds) = spec.token_expiration_seconds {
        annotations.insert(
            "eks.amazonaws.com/token-expiration".into(),
            seconds.to_string(),
        );
    }
    if let Some(regional) = spec.sts_regional_endpoints {
        annotations.insert(
            "eks.amazonaws.com/sts-regional-endpoints".into(),
            regional.to_string(),
        );
    }
    annotations
}

/// Deletion: the binding's statement goes; the role and the maker's
/// policies go with the last binding out (per `deletionPolicy`); an adopted
/// role keeps what it had before wib and is given back rather than deleted.
fn cleanup(request: &Request<'_>, target: &Target<'_>, observed: &Observed) -> Vec<Action> {
    let mut actions = association::remove(request, target, observed);
    actions.extend(cleanup_role(request, target, observed));
    actions
}

fn cleanup_role(request: &Request<'_>, target: &Target<'_>, observed: &Observed) -> Vec<Action> {
    let Some(role) = observed.role.as_ref() else {
        return Vec::new();
    };
    let leaving = target::leaving(request, target, role);
    if leaving.release == Release::Nothing {
        return Vec::new();
    }
    let name = &target.role;
    if leaving.deletes && !leaving.adopted {
        return delete_role(name, observed);
    }
    let mut actions = revoke_trust(request, target, observed);
    if leaving.touches_policies() {
        actions.extend(remove_marked(name, &role.tags, observed, &[], &[]));
    }
    if leaving.deletes {
        let keys = [
            ownership::TAG_CLUSTER,
            ownership::TAG_NAMESPACE,
            ownership::TAG_BINDING,
            ownership::TAG_UID,
            ownership::TAG_ADOPTED,
            ownership::TAG_RELEASED,
            naming::TAG_MANAGED_POLICIES,
            naming::TAG_INLINE_POLICIES,
        ];
        actions.push(Action::UntagRole {
            role: name.clone(),
            keys: keys.map(String::from).to_vec(),
        });
    } else if leaving.release == Release::Maker {
        actions.push(Action::TagRole {
            role: name.clone(),
            tags: BTreeMap::from([(ownership::TAG_RELEASED.to_string(), "true".to_string())]),
            why: Tagging::Released,
        });
    }
    actions
}

/// IAM deletes a role only once nothing is attached to it.
fn delete_role(name: &str, observed: &Observed) -> Vec<Action> {
    let detach = observed.attached.iter().map(|arn| Action::Detach {
        role: name.to_string(),
        arn: arn.clone(),
    });
    let delete = observed
        .inline_names
        .iter()
        .map(|policy| Action::DeleteInline {
            role: name.to_string(),
            name: policy.clone(),
        });
    detach
        .chain(delete)
        .chain([Action::DeleteRole {
            role: name.to_string(),
        }])
        .collect()
}

/// Detaches and deletes what wib's marks in `tags` say it put on the role,
/// but for the managed and inline policies kept.
fn remove_marked(
    name: &str,
    tags: &BTreeMap<String, String>,
    observed: &Observed,
    kept_managed: &[String],
    kept_inline: &[String],
) -> Vec<Action> {
    let managed = tags.get(naming::TAG_MANAGED_POLICIES);
    let inline = tags.get(naming::TAG_INLINE_POLICIES);
    let detach = observed
        .attached
        .iter()
        .filter(|arn| !kept_managed.contains(arn) && naming::is_marked(managed, arn))
        .map(|arn| Action::Detach {
            role: name.to_string(),
            arn: arn.clone(),
        });
    let delete = observed
        .inline_names
        .iter()
        .filter(|policy| !kept_inline.contains(policy) && naming::is_marked(inline, policy))
        .map(|policy| Action::DeleteInline {
            role: name.to_string(),
            name: policy.clone(),
        });
    detach.chain(delete).collect()
}

/// A refused binding (and every leaving one): its trust statement goes,
/// leaving a statement that lets nobody in when it was the last.
fn revoke(request: &Request<'_>, target: &Target<'_>, observed: &Observed) -> Vec<Action> {
    let mut actions = association::remove(request, target, observed);
    actions.extend(revoke_trust(request, target, observed));
    actions
}

/// The binding's trust statements (of either mode) go.
fn revoke_trust(request: &Request<'_>, target: &Target<'_>, observed: &Observed) -> Vec<Action> {
    let Some(role) = observed.role.as_ref() else {
        return Vec::new();
    };
    let trust = role.trust.clone().unwrap_or(Value::Null);
    let remaining = policy::without_statement(&trust, &target.federation);
    if policy::same(&trust, &remaining) {
        return Vec::new();
    }
    vec![Action::PutTrust {
        role: target.role.clone(),
        trust: remaining,
        why: Trust::Removed {
            subject: request.subject.clone(),
        },
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::Next;
    use crate::testing::{self, merged};
    use serde_json::json;
    use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};

    use super::super::policy::Federation;
    use super::super::{AwsProvider, DEFAULT_MAX_SESSION_SECONDS};
    use crate::steps::Steps;

    const ACCOUNT: &str = "123456789012";
    const ISSUER: &str = "https://oidc.example/id/1";
    const OIDC_ARN: &str = "arn:aws:iam::123456789012:oidc-provider/oidc.example/id/1";
    const ROLE: &str = "app";
    const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/app";
    const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
    const S3: &str = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";
    const BOUNDARY: &str = "arn:aws:iam::123456789012:policy/boundary";
    const LOGS: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"}]}"#;

    /// A provider of cluster c1 allowing AWS's and the account's policies;
    /// `spec` and `aws` override its fields.
    fn provider(spec: Value, aws: Value) -> ClusterIdentityProvider {
        let aws = merged(
            json!({"accountId": ACCOUNT, "createOidcProvider": true}),
            aws,
        );
        let spec = merged(
            json!({
                "clusterName": "c1",
                "allowedScopes": ["arn:aws:iam::aws:policy", "arn:aws:iam::123456789012:policy"],
                "aws": aws,
            }),
            spec,
        );
        testing::provider("aws", spec)
    }

    fn plain() -> ClusterIdentityProvider {
        provider(json!({}), json!({}))
    }

    /// Binding `name` (uid `uid`) of namespace ns, for ServiceAccount `sa`,
    /// naming role `app`.
    fn binding_as(name: &str, uid: &str, sa: &str, aws: Value) -> WorkloadIdentityBinding {
        let aws = merged(json!({"roleName": ROLE}), aws);
        testing::binding(
            name,
            "ns",
            uid,
            json!({"serviceAccount": {"name": sa}, "aws": aws}),
        )
    }

    /// The maker: binding b (u1) for ServiceAccount sa, listing `aws`.
    fn binding(aws: Value) -> WorkloadIdentityBinding {
        binding_as("b", "u1", "sa", aws)
    }

    /// A sharer: binding b2 (u2) of the same namespace for sa2, no policies.
    fn sharer() -> WorkloadIdentityBinding {
        binding_as("b2", "u2", "sa2", json!({}))
    }

    fn retaining(mut b: WorkloadIdentityBinding) -> WorkloadIdentityBinding {
        b.spec.deletion_policy = wib_api::DeletionPolicy::Retain;
        b
    }

    fn full() -> Value {
        json!({"managedPolicyArns": [READ_ONLY], "inlinePolicies": [{"name": "logs", "document": LOGS}]})
    }

    fn logs() -> Value {
        serde_json::from_str(LOGS).expect("json")
    }

    fn federation(b: &WorkloadIdentityBinding, p: &ClusterIdentityProvider) -> Federation {
        Target::of(&Request::new(b, p, ISSUER))
            .expect("target")
            .federation
    }

    /// A trust policy holding these statements.
    fn trust(statements: &[&Federation]) -> Value {
        statements
            .iter()
            .fold(None, |current: Option<Value>, f| {
                Some(policy::with_statement(current.as_ref(), f, false, None))
            })
            .expect("a statement")
    }

    /// wib's tags on a role made by binding `uid` of `namespace`, marking
    /// `managed` and `inline` as wib's.
    fn tags(
        namespace: &str,
        uid: &str,
        managed: &[&str],
        inline: &[&str],
        extra: &[(&str, &str)],
    ) -> BTreeMap<String, String> {
        let mut tags = ownership::owner_tags("c1", namespace, "b", uid);
        tags.insert(
            naming::TAG_MANAGED_POLICIES.into(),
            naming::marks(managed.iter().copied()),
        );
        tags.insert(
            naming::TAG_INLINE_POLICIES.into(),
            naming::marks(inline.iter().copied()),
        );
        for (k, v) in extra {
            tags.insert(k.to_string(), v.to_string());
        }
        tags
    }

    fn role(tags: BTreeMap<String, String>, trust: Value) -> Role {
        Role {
            arn: ROLE_ARN.into(),
            trust: Some(trust),
            max_session_duration: Some(DEFAULT_MAX_SESSION_SECONDS),
            permissions_boundary: None,
            tags,
        }
    }

    /// IAM with `role` and the cluster's OIDC provider (STS's audience).
    fn seen(role: Option<Role>) -> Observed {
        Observed {
            role,
            oidc_provider: Some(OidcProvider {
                client_ids: vec![DEFAULT_AUDIENCE.into()],
                tags: BTreeMap::new(),
            }),
            trust_policy_max_chars: policy::TRUST_POLICY_MAX_CHARS,
            ..Observed::default()
        }
    }

    /// The maker's role as its last reconcile left it for [`full`].
    fn steady(p: &ClusterIdentityProvider) -> Observed {
        let ours = federation(&binding(full()), p);
        let mut o = seen(Some(role(
            tags("ns", "u1", &[READ_ONLY], &["logs"], &[]),
            trust(&[&ours]),
        )));
        o.attached = vec![READ_ONLY.into()];
        o.inline_names = vec!["logs".into()];
        o.inline_documents = BTreeMap::from([("logs".into(), logs())]);
        o
    }

    fn run(
        b: &WorkloadIdentityBinding,
        p: &ClusterIdentityProvider,
        intent: Intent,
        o: &Observed,
    ) -> Result<Plan<Action>, CloudError> {
        o.plan(&Request::new(b, p, ISSUER), intent)
    }

    fn actions(
        b: &WorkloadIdentityBinding,
        p: &ClusterIdentityProvider,
        intent: Intent,
        o: &Observed,
    ) -> Vec<Action> {
        run(b, p, intent, o).expect("a plan").actions
    }

    fn outcome_of(plan: Plan<Action>) -> Outcome {
        match plan.next {
            Next::Done(outcome) => *outcome,
            other => panic!("a reconcile reports an outcome, not {other:?}"),
        }
    }

    fn tag_marks(managed: &[&str], inline: &[&str]) -> Action {
        Action::TagRole {
            role: ROLE.into(),
            tags: BTreeMap::from([
                (
                    naming::TAG_MANAGED_POLICIES.to_string(),
                    naming::marks(managed.iter().copied()),
                ),
                (
                    naming::TAG_INLINE_POLICIES.to_string(),
                    naming::marks(inline.iter().copied()),
                ),
            ]),
            why: Tagging::Marks,
        }
    }

    fn attach(arn: &str) -> Action {
        Action::Attach {
            role: ROLE.into(),
            arn: arn.into(),
        }
    }

    fn detach(arn: &str) -> Action {
        Action::Detach {
            role: ROLE.into(),
            arn: arn.into(),
        }
    }

    fn put_logs() -> Action {
        Action::PutInline {
            role: ROLE.into(),
            name: "logs".into(),
            document: logs(),
        }
    }

    fn delete_inline(name: &str) -> Action {
        Action::DeleteInline {
            role: ROLE.into(),
            name: name.into(),
        }
    }

    fn put_trust(trust: Value) -> Action {
        Action::PutTrust {
            role: ROLE.into(),
            trust,
            why: Trust::Repaired,
        }
    }

    fn removed_trust(subject_sa: &str, trust: Value) -> Action {
        Action::PutTrust {
            role: ROLE.into(),
            trust,
            why: Trust::Removed {
                subject: format!("system:serviceaccount:ns:{subject_sa}"),
            },
        }
    }

    #[test]
    fn creation_from_nothing_makes_the_oidc_provider_the_role_and_its_policies() {
        let b = binding(full());
        let p = plain();
        let mut o = seen(None);
        o.oidc_provider = None;
        let planned = run(&b, &p, Intent::Reconcile, &o).expect("plan");
        let expected = vec![
            Action::CreateOidcProvider {
                issuer: ISSUER.into(),
                audience: DEFAULT_AUDIENCE.into(),
                tags: BTreeMap::from([(ownership::TAG_CLUSTER.to_string(), "c1".to_string())]),
            },
            Action::CreateRole {
                name: ROLE.into(),
                path: "/".into(),
                trust: trust(&[&federation(&b, &p)]),
                max_session: DEFAULT_MAX_SESSION_SECONDS,
                boundary: None,
                description: "Managed by wib for ns/b in cluster c1".into(),
                tags: tags("ns", "u1", &[READ_ONLY], &["logs"], &[]),
            },
            attach(READ_ONLY),
            put_logs(),
        ];
        assert_eq!(planned.actions, expected);
        let outcome = outcome_of(planned);
        assert_eq!(
            outcome.annotations,
            BTreeMap::from([(
                "eks.amazonaws.com/role-arn".to_string(),
                ROLE_ARN.to_string()
            )])
        );
        let aws = outcome.status.aws.expect("aws status");
        assert_eq!(
            aws.role_arn.as_deref(),
            Some(ROLE_ARN),
            "known before it exists"
        );
        assert_eq!(aws.oidc_provider_arn.as_deref(), Some(OIDC_ARN));
        assert_eq!(aws.policies, [READ_ONLY, "logs"]);
        let ids: Vec<_> = outcome
            .status
            .role_assignments
            .iter()
            .map(|a| (a.id.clone(), a.ready))
            .collect();
        assert_eq!(
            ids,
            [
                (Some(READ_ONLY.to_string()), true),
                (Some(format!("{ROLE_ARN}/logs")), true)
            ]
        );
        assert_eq!(outcome.grants_refused, None);
    }

    #[test]
    fn a_role_under_a_path_in_another_partition_is_named_as_iam_names_it() {
        let b = binding(json!({"path": "/team/"}));
        let p = provider(
            json!({}),
            json!({"createOidcProvider": false, "oidcProviderArn": "arn:aws-cn:iam::123456789012:oidc-provider/oidc.example/id/1"}),
        );
        let outcome = outcome_of(run(&b, &p, Intent::Reconcile, &seen(None)).expect("plan"));
        assert_eq!(
            outcome.status.identity.as_deref(),
            Some("arn:aws-cn:iam::123456789012:role/team/app")
        );
    }

    #[test]
    fn steady_state_plans_no_write() {
        let b = binding(json!({
            "managedPolicyArns": [READ_ONLY],
            "inlinePolicies": [{"name": "logs", "document": LOGS}],
            "audience": "aud2",
            "tokenExpirationSeconds": 3600,
            "stsRegionalEndpoints": true,
        }));
        let p = provider(json!({}), json!({"allowedAudiences": ["aud2"]}));
        let mut o = steady(&p);
        if let Some(r) = o.role.as_mut() {
            r.trust = Some(trust(&[&federation(&b, &p)]));
        }
        if let Some(oidc) = o.oidc_provider.as_mut() {
            oidc.client_ids.push("aud2".into());
        }
        let planned = run(&b, &p, Intent::Reconcile, &o).expect("plan");
        assert_eq!(planned.actions, []);
        let annotations = outcome_of(planned).annotations;
        assert_eq!(annotations["eks.amazonaws.com/audience"], "aud2");
        assert_eq!(annotations["eks.amazonaws.com/token-expiration"], "3600");
        assert_eq!(
            annotations["eks.amazonaws.com/sts-regional-endpoints"],
            "true"
        );
    }

    type Drift = (&'static str, fn(&mut Observed), Vec<Action>);

    #[test]
    fn drift_of_the_role_is_put_back() {
        let b = binding(full());
        let p = plain();
        let ours = trust(&[&federation(&b, &p)]);
        let cases: Vec<Drift> = vec![
            (
                "trust policy widened to every ServiceAccount",
                |o| {
                    let r = o.role.as_mut().expect("role");
                    let t = r.trust.as_mut().expect("trust");
                    t["Statement"][0]["Condition"] = json!({"StringLike": {"oidc.example/id/1:sub": "system:serviceaccount:*:*"}});
                },
                vec![put_trust(ours.clone())],
            ),
            (
                "trust policy unreadable",
                |o| o.role.as_mut().expect("role").trust = None,
                vec![put_trust(ours.clone())],
            ),
            (
                "a statement wib did not write added to a role wib made",
                |o| {
                    let r = o.role.as_mut().expect("role");
                    let t = r.trust.as_mut().expect("trust");
                    t["Statement"].as_array_mut().expect("array").push(
                        json!({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}),
                    );
                },
                vec![put_trust(ours.clone())],
            ),
            (
                "max session changed",
                |o| o.role.as_mut().expect("role").max_session_duration = Some(7200),
                vec![Action::SetMaxSession {
                    role: ROLE.into(),
                    seconds: DEFAULT_MAX_SESSION_SECONDS,
                }],
            ),
            (
                "wib's marks removed by hand: put back before anything else",
                |o| {
                    let r = o.role.as_mut().expect("role");
                    r.tags.remove(naming::TAG_MANAGED_POLICIES);
                    r.tags.remove(naming::TAG_INLINE_POLICIES);
                },
                vec![tag_marks(&[READ_ONLY], &["logs"])],
            ),
        ];
        for (case, drift, expected) in cases {
            let mut o = steady(&p);
            drift(&mut o);
            assert_eq!(actions(&b, &p, Intent::Reconcile, &o), expected, "{case}");
        }
    }

    #[test]
    fn drift_of_the_policies_is_put_back_and_others_are_left_alone() {
        let b = binding(full());
        let p = plain();
        let cases: Vec<Drift> = vec![
            (
                "managed policy detached",
                |o| o.attached.clear(),
                vec![attach(READ_ONLY)],
            ),
            (
                "a policy wib did not attach added",
                |o| o.attached.push(S3.into()),
                vec![],
            ),
            (
                "inline policy edited",
                |o| {
                    o.inline_documents.insert(
                        "logs".into(),
                        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
                    );
                },
                vec![put_logs()],
            ),
            (
                "inline policy deleted",
                |o| {
                    o.inline_names.clear();
                    o.inline_documents.clear();
                },
                vec![put_logs()],
            ),
            (
                "inline policy listed, gone when read",
                |o| o.inline_documents.clear(),
                vec![put_logs()],
            ),
            (
                "an inline policy wib did not put added",
                |o| o.inline_names.push("theirs".into()),
                vec![],
            ),
        ];
        for (case, drift, expected) in cases {
            let mut o = steady(&p);
            drift(&mut o);
            assert_eq!(actions(&b, &p, Intent::Reconcile, &o), expected, "{case}");
        }
    }

    #[test]
    fn a_spec_change_moves_the_policies_with_marks_before_attaching_and_after_removing() {
        let p = plain();
        // S3 added to the spec: marked, then attached.
        let more = binding(
            json!({"managedPolicyArns": [READ_ONLY, S3], "inlinePolicies": [{"name": "logs", "document": LOGS}]}),
        );
        assert_eq!(
            actions(&more, &p, Intent::Reconcile, &steady(&p)),
            [tag_marks(&[READ_ONLY, S3], &["logs"]), attach(S3)]
        );
        // Everything dropped from the spec: removed, then unmarked.
        let none = binding(json!({}));
        assert_eq!(
            actions(&none, &p, Intent::Reconcile, &steady(&p)),
            [
                detach(READ_ONLY),
                delete_inline("logs"),
                tag_marks(&[], &[])
            ]
        );
        // A crash between marking and attaching: the marks are there, the
        // attachment is not; it is made, nothing else.
        let mut o = steady(&p);
        if let Some(r) = o.role.as_mut() {
            r.tags = tags("ns", "u1", &[READ_ONLY, S3], &["logs"], &[]);
        }
        assert_eq!(actions(&more, &p, Intent::Reconcile, &o), [attach(S3)]);
        // A crash between removing and unmarking: only the marks follow.
        let mut o = steady(&p);
        o.attached.clear();
        o.inline_names.clear();
        o.inline_documents.clear();
        assert_eq!(
            actions(&none, &p, Intent::Reconcile, &o),
            [tag_marks(&[], &[])]
        );
    }

    #[test]
    fn the_permissions_boundary_is_set_checked_and_lifts_the_inline_guardrail() {
        let p = provider(json!({}), json!({"permissionsBoundaryArn": BOUNDARY}));
        let b = binding(full());
        assert_eq!(
            actions(&b, &p, Intent::Reconcile, &steady(&p)),
            [Action::SetBoundary {
                role: ROLE.into(),
                arn: BOUNDARY.into()
            }]
        );
        let created = actions(&b, &p, Intent::Reconcile, &seen(None));
        assert!(
            matches!(&created[0], Action::CreateRole { boundary: Some(arn), .. } if arn == BOUNDARY),
            "{created:?}"
        );
        let mut missing = seen(None);
        missing.missing_policies.insert(BOUNDARY.into());
        let error = run(&b, &p, Intent::Reconcile, &missing).expect_err("refused");
        assert_eq!(
            error.reason,
            Reason::CloudNotConfigured,
            "{}",
            error.message
        );
        // In place already: not looked up again, so never refused.
        let mut set = steady(&p);
        if let Some(r) = set.role.as_mut() {
            r.permissions_boundary = Some(BOUNDARY.into());
        }
        set.missing_policies.insert(BOUNDARY.into());
        assert_eq!(actions(&b, &p, Intent::Reconcile, &set), []);
        let admin = binding(
            json!({"inlinePolicies": [{"name": "iam", "document": r#"{"Statement": {"Effect": "Allow", "Action": "iam:*", "Resource": "*"}}"#}]}),
        );
        assert!(run(&admin, &p, Intent::Reconcile, &seen(None)).is_ok());
    }

    /// Inline policies of `chars` characters each, `count` of them.
    fn big_inline(count: usize, chars: usize) -> Value {
        let policies: Vec<Value> = (0..count)
            .map(|i| {
                let document = json!({"Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "x".repeat(chars)}});
                json!({"name": format!("p{i}"), "document": document.to_string()})
            })
            .collect();
        json!({"inlinePolicies": policies})
    }

    #[test]
    fn the_spec_is_refused_before_any_write_with_the_reason_a_binding_shows() {
        let p = plain();
        let inline =
            |document: &str| json!({"inlinePolicies": [{"name": "p", "document": document}]});
        let cases: Vec<(&str, Value, Reason)> = vec![
            (
                "a managed policy outside allowedScopes",
                json!({"managedPolicyArns": ["arn:aws:iam::999999999999:policy/x"]}),
                Reason::ScopeNotAllowed,
            ),
            (
                "an administrator policy",
                json!({"managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}),
                Reason::PolicyNotAllowed,
            ),
            (
                "an audience the provider does not list",
                json!({"audience": "elsewhere"}),
                Reason::AudienceNotAllowed,
            ),
            (
                "an inline policy that is not JSON",
                inline("Version: 2012-10-17"),
                Reason::InvalidPolicyDocument,
            ),
            (
                "an inline policy without Statement",
                inline(r#"{"Version": "2012-10-17"}"#),
                Reason::InvalidPolicyDocument,
            ),
            (
                "an inline policy granting IAM",
                inline(r#"{"Statement": {"Effect": "Allow", "Action": "iam:*", "Resource": "*"}}"#),
                Reason::PolicyNotAllowed,
            ),
            (
                "inline policies past IAM's quota per role",
                big_inline(2, 6000),
                Reason::QuotaExceeded,
            ),
        ];
        for (case, aws, reason) in cases {
            let b = binding(aws);
            let error = run(&b, &p, Intent::Reconcile, &seen(None)).expect_err(case);
            assert_eq!(error.reason, reason, "{case}: {}", error.message);
            let validated = AwsProvider::validate(&Request::new(&b, &p, ISSUER), Intent::Reconcile);
            assert_eq!(
                validated.map_err(|e| e.reason),
                Err(reason),
                "{case}: validate"
            );
        }
        let no_aws = provider(json!({"aws": null}), json!({}));
        let error = run(&binding(json!({})), &no_aws, Intent::Reconcile, &seen(None))
            .expect_err("no spec.aws");
        assert_eq!(error.reason, Reason::CloudNotConfigured);
    }

    /// The refusal a reconcile of `b` meets, by reason.
    fn refusal(b: &WorkloadIdentityBinding, p: &ClusterIdentityProvider, o: &Observed) -> Reason {
        run(b, p, Intent::Reconcile, o).expect_err("refused").reason
    }

    #[test]
    fn a_role_the_binding_may_not_claim_is_refused_before_any_write() {
        let p = plain();
        let b = binding(full());
        let ours = trust(&[&federation(&b, &p)]);
        let with_role = |tags: BTreeMap<String, String>| seen(Some(role(tags, ours.clone())));
        let adopting = provider(json!({"adoption": "AllowUntagged"}), json!({}));
        let cases = [
            (
                "another namespace's",
                &p,
                tags("other", "u9", &[], &[], &[]),
                Reason::IdentityNotShared,
            ),
            (
                "the namespace's, whose policies are its maker's",
                &p,
                tags("ns", "u9", &[], &[], &[]),
                Reason::PolicyNotAllowed,
            ),
            (
                "wib's in another cluster",
                &p,
                ownership::owner_tags("c2", "ns", "b", "u1"),
                Reason::AdoptionNotAllowed,
            ),
            (
                "untagged, under the Deny adoption policy",
                &p,
                BTreeMap::new(),
                Reason::AdoptionNotAllowed,
            ),
            (
                "untagged, its owner not opted in",
                &adopting,
                BTreeMap::new(),
                Reason::AdoptionNotAllowed,
            ),
        ];
        for (case, p, tags, reason) in cases {
            assert_eq!(refusal(&b, p, &with_role(tags)), reason, "{case}");
        }
    }

    #[test]
    fn what_the_role_would_name_or_hold_is_refused_before_any_write() {
        let p = plain();
        let b = binding(full());
        let mut thief = federation(&sharer(), &p);
        thief.sid = federation(&b, &p).sid;
        let stolen = seen(Some(role(
            tags("ns", "u1", &[], &[], &[]),
            trust(&[&thief]),
        )));
        assert_eq!(
            refusal(&b, &p, &stolen),
            Reason::FederationConflict,
            "our Sid, another subject"
        );
        let mut tiny = steady(&p);
        tiny.trust_policy_max_chars = 100;
        assert_eq!(refusal(&b, &p, &tiny), Reason::TrustPolicyTooLarge);
        let mut missing = seen(None);
        missing.missing_policies.insert(READ_ONLY.into());
        assert_eq!(
            refusal(&b, &p, &missing),
            Reason::RoleNotFound,
            "a managed policy that does not exist"
        );
        // Only attaching needs the policy: one attached before is kept.
        let mut gone = steady(&p);
        gone.missing_policies.insert(READ_ONLY.into());
        assert!(run(&b, &p, Intent::Reconcile, &gone).is_ok());
        let fixed = provider(json!({}), json!({"createOidcProvider": false}));
        let mut no_oidc = seen(None);
        no_oidc.oidc_provider = None;
        assert_eq!(
            refusal(&b, &fixed, &no_oidc),
            Reason::CloudNotConfigured,
            "no IAM OIDC provider, none to be made"
        );
    }

    #[test]
    fn validate_refuses_protected_roles_and_judges_the_spec_only_to_reconcile() {
        let b =
            binding(json!({"managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}));
        let p = plain();
        let request = Request::new(&b, &p, ISSUER);
        assert_eq!(
            AwsProvider::validate(&request, Intent::Cleanup)
                .ok()
                .as_deref(),
            Some(ROLE),
            "locked by role"
        );
        assert_eq!(
            AwsProvider::validate(&request, Intent::Revoke)
                .ok()
                .as_deref(),
            Some(ROLE)
        );
        let guarded = provider(json!({"protectedIdentities": [ROLE_ARN]}), json!({}));
        let b = binding(json!({}));
        let error = AwsProvider::validate(&Request::new(&b, &guarded, ISSUER), Intent::Reconcile)
            .expect_err("protected by its ARN");
        assert_eq!(error.reason, Reason::IdentityProtected);
    }

    #[test]
    fn the_trust_policy_is_refused_past_the_quota_and_accepted_up_to_it() {
        let p = plain();
        let b = binding(json!({}));
        let o = steady(&p);
        let size = policy::size(
            o.role
                .as_ref()
                .and_then(|r| r.trust.as_ref())
                .expect("trust"),
        );
        let at = |max: usize| {
            let mut o = steady(&p);
            o.trust_policy_max_chars = max;
            run(&sharer(), &p, Intent::Reconcile, &o)
        };
        let shared = policy::size(&trust(&[&federation(&b, &p), &federation(&sharer(), &p)]));
        assert!(shared > size);
        assert!(at(shared).is_ok());
        let error = at(shared - 1).expect_err("one character over");
        assert_eq!(error.reason, Reason::TrustPolicyTooLarge);
        assert!(
            error.message.contains(&format!("{}", shared - 1)),
            "{}",
            error.message
        );
    }

    #[test]
    fn default_deny_keeps_the_role_and_its_federation_and_changes_no_grant() {
        let p = provider(json!({"allowedScopes": null}), json!({}));
        let b = binding(full());
        let planned = run(&b, &p, Intent::Reconcile, &seen(None)).expect("plan");
        assert!(
            matches!(&planned.actions[..], [Action::CreateRole { tags, .. }, put] if *put == put_logs()
                && tags[naming::TAG_MANAGED_POLICIES].is_empty()),
            "no attachment: {:?}",
            planned.actions
        );
        let outcome = outcome_of(planned);
        assert_eq!(
            outcome.grants_refused.map(|r| r.reason),
            Some(Reason::ScopeNotAllowed)
        );
        let ready: Vec<bool> = outcome
            .status
            .role_assignments
            .iter()
            .map(|a| a.ready)
            .collect();
        assert_eq!(
            ready,
            [false, true],
            "the managed policy refused, the inline one in place"
        );
        // Refused later: what wib attached stays, nothing is added.
        let more = binding(
            json!({"managedPolicyArns": [S3, READ_ONLY], "inlinePolicies": [{"name": "logs", "document": LOGS}]}),
        );
        assert_eq!(actions(&more, &p, Intent::Reconcile, &steady(&p)), []);
    }

    #[test]
    fn an_adopted_role_keeps_what_it_had_and_is_given_back_on_deletion() {
        let p = provider(json!({"adoption": "AllowUntagged"}), json!({}));
        let b = binding(full());
        let ec2 = json!({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"});
        let theirs = json!({"Version": "2012-10-17", "Statement": [ec2]});
        let consent = BTreeMap::from([(ownership::TAG_ADOPT_INTO.to_string(), "ns".to_string())]);
        let mut o = seen(Some(role(consent, theirs.clone())));
        o.attached = vec![S3.into()];
        let mut adopted = ownership::owner_tags("c1", "ns", "b", "u1");
        adopted.insert(ownership::TAG_ADOPTED.into(), "true".into());
        let ours = federation(&b, &p);
        let both = policy::with_statement(Some(&theirs), &ours, true, None);
        assert_eq!(
            actions(&b, &p, Intent::Reconcile, &o),
            [
                Action::TagRole {
                    role: ROLE.into(),
                    tags: adopted.clone(),
                    why: Tagging::Adopted
                },
                put_trust(both.clone()),
                tag_marks(&[READ_ONLY], &["logs"]),
                attach(READ_ONLY),
                put_logs(),
            ],
            "its own statement and attachment stay"
        );

        let mut o = seen(Some(role(
            tags(
                "ns",
                "u1",
                &[READ_ONLY],
                &["logs"],
                &[(ownership::TAG_ADOPTED, "true")],
            ),
            both,
        )));
        o.attached = vec![S3.into(), READ_ONLY.into()];
        o.inline_names = vec!["logs".into()];
        let cleanup = actions(&b, &p, Intent::Cleanup, &o);
        assert_eq!(
            cleanup[..3],
            [
                removed_trust("sa", theirs),
                detach(READ_ONLY),
                delete_inline("logs")
            ],
            "its own statement is not a user wib waits for"
        );
        assert!(
            matches!(&cleanup[3..], [Action::UntagRole { keys, .. }] if keys.len() == 8),
            "{cleanup:?}"
        );
    }

    #[test]
    fn a_sharer_adds_only_its_statement_and_keeps_the_others() {
        let p = plain();
        let mut o = steady(&p);
        if let Some(r) = o.role.as_mut() {
            r.max_session_duration = Some(7200);
        }
        // Shared roles' policies are not read: they are the maker's.
        o.attached.clear();
        o.inline_names.clear();
        let maker = federation(&binding(full()), &p);
        let planned = run(&sharer(), &p, Intent::Reconcile, &o).expect("plan");
        assert_eq!(
            planned.actions,
            [put_trust(trust(&[&maker, &federation(&sharer(), &p)]))],
            "neither max session nor policies are the sharer's"
        );
        assert_eq!(
            outcome_of(planned).status.identity.as_deref(),
            Some(ROLE_ARN)
        );
        // Another namespace shares it by its maker's grant.
        let mut granted = binding_as("b3", "u3", "sa3", json!({}));
        granted.metadata.namespace = Some("other".into());
        let mut request = Request::new(&granted, &p, ISSUER);
        assert!(o.plan(&request, Intent::Reconcile).is_err(), "not granted");
        request.granted_by.insert("u1".into());
        assert_eq!(
            o.plan(&request, Intent::Reconcile)
                .expect("granted")
                .actions
                .len(),
            1
        );
    }

    /// The maker's role, shared with sa2 when `shared`, and its maker's
    /// policies beside a foreign attachment and inline policy.
    fn at_deletion(
        p: &ClusterIdentityProvider,
        tags: BTreeMap<String, String>,
        shared: bool,
    ) -> Observed {
        let maker = federation(&binding(full()), p);
        let other = federation(&sharer(), p);
        let statements: Vec<&Federation> = if shared {
            vec![&maker, &other]
        } else {
            vec![&maker]
        };
        let mut o = seen(Some(role(tags, trust(&statements))));
        o.attached = vec![READ_ONLY.into(), S3.into()];
        o.inline_names = vec!["logs".into(), "theirs".into()];
        o
    }

    /// The role made by b (u1), its maker's policies marked, `extra` tags.
    fn made_by_b(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        tags("ns", "u1", &[READ_ONLY], &["logs"], extra)
    }

    /// `o` with only sa2's statement left in the trust policy.
    fn only_sa2(p: &ClusterIdentityProvider, mut o: Observed) -> Observed {
        if let Some(r) = o.role.as_mut() {
            r.trust = Some(trust(&[&federation(&sharer(), p)]));
        }
        o
    }

    /// What deleting `b` plans; a deletion reports no outcome.
    fn cleanup_of(b: &WorkloadIdentityBinding, admitted: bool, o: &Observed) -> Vec<Action> {
        let p = plain();
        let mut request = Request::new(b, &p, ISSUER);
        request.admitted = admitted;
        let planned = o.plan(&request, Intent::Cleanup).expect("a plan");
        assert_eq!(planned.next, Next::Finished);
        planned.actions
    }

    /// What IAM requires gone before it deletes the role, then the role.
    fn everything() -> Vec<Action> {
        vec![
            detach(READ_ONLY),
            detach(S3),
            delete_inline("logs"),
            delete_inline("theirs"),
            Action::DeleteRole { role: ROLE.into() },
        ]
    }

    #[test]
    fn the_maker_deletes_its_role_when_last_out_and_releases_it_otherwise() {
        let p = plain();
        let maker = binding(full());
        let alone = at_deletion(&p, made_by_b(&[]), false);
        let ours = federation(&maker, &p);
        let deny = policy::without_statement(&trust(&[&ours]), &ours);
        let released = Action::TagRole {
            role: ROLE.into(),
            tags: BTreeMap::from([(ownership::TAG_RELEASED.to_string(), "true".to_string())]),
            why: Tagging::Released,
        };
        let sa2 = trust(&[&federation(&sharer(), &p)]);
        let cases: Vec<(&str, WorkloadIdentityBinding, bool, Observed, Vec<Action>)> = vec![
            ("already gone", maker.clone(), true, seen(None), vec![]),
            (
                "last out: everything goes, the role last",
                maker.clone(),
                true,
                alone,
                everything(),
            ),
            (
                "not admitted now: still its own",
                maker.clone(),
                false,
                at_deletion(&p, made_by_b(&[]), false),
                everything(),
            ),
            (
                "Retain: only the statement, a deny in its place",
                retaining(maker.clone()),
                true,
                at_deletion(&p, made_by_b(&[]), false),
                vec![removed_trust("sa", deny)],
            ),
            (
                "a sharer left behind: the maker's grants go, the role is released",
                maker,
                true,
                at_deletion(&p, made_by_b(&[]), true),
                vec![
                    removed_trust("sa", sa2),
                    detach(READ_ONLY),
                    delete_inline("logs"),
                    released,
                ],
            ),
        ];
        for (case, b, admitted, o, expected) in cases {
            assert_eq!(cleanup_of(&b, admitted, &o), expected, "{case}");
        }
    }

    #[test]
    fn a_sharer_takes_its_statement_and_the_last_one_out_of_a_released_role_deletes_it() {
        let p = plain();
        let shared = || at_deletion(&p, made_by_b(&[]), true);
        let released = || at_deletion(&p, made_by_b(&[(ownership::TAG_RELEASED, "true")]), false);
        let sa2 = federation(&sharer(), &p);
        let deny = policy::without_statement(&trust(&[&sa2]), &sa2);
        let maker_only = trust(&[&federation(&binding(full()), &p)]);
        let cases: Vec<(&str, WorkloadIdentityBinding, bool, Observed, Vec<Action>)> = vec![
            (
                "a sharer leaves: its statement only",
                sharer(),
                true,
                shared(),
                vec![removed_trust("sa2", maker_only)],
            ),
            (
                "a sharer no longer admitted: nothing",
                sharer(),
                false,
                shared(),
                vec![],
            ),
            (
                "the survivor of a released role, last out",
                sharer(),
                true,
                only_sa2(&p, released()),
                everything(),
            ),
            (
                "the survivor under Retain: its statement only",
                retaining(sharer()),
                true,
                only_sa2(&p, released()),
                vec![removed_trust("sa2", deny)],
            ),
        ];
        for (case, b, admitted, o, expected) in cases {
            assert_eq!(cleanup_of(&b, admitted, &o), expected, "{case}");
        }
    }

    #[test]
    fn deletion_touches_no_role_that_is_not_the_namespaces() {
        let p = plain();
        let maker = binding(full());
        for (case, tags) in [
            ("another namespace's", tags("other", "u9", &[], &[], &[])),
            (
                "another cluster's",
                ownership::owner_tags("c2", "ns", "b", "u1"),
            ),
            ("untagged", BTreeMap::new()),
        ] {
            let o = at_deletion(&p, tags, false);
            assert_eq!(cleanup_of(&maker, true, &o), [], "{case}");
        }
    }

    #[test]
    fn revoke_removes_only_the_statement_when_it_is_there() {
        let p = plain();
        let b = binding(full());
        let shared = at_deletion(&p, tags("ns", "u1", &[READ_ONLY], &["logs"], &[]), true);
        assert_eq!(
            actions(&b, &p, Intent::Revoke, &shared),
            [removed_trust("sa", trust(&[&federation(&sharer(), &p)]))]
        );
        assert_eq!(
            actions(&sharer(), &p, Intent::Revoke, &steady(&p)),
            [],
            "no statement of sa2 there"
        );
        assert_eq!(actions(&b, &p, Intent::Revoke, &seen(None)), []);
        // A refused binding is revoked whatever its spec says now.
        let refused =
            binding(json!({"managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}));
        assert_eq!(actions(&refused, &p, Intent::Revoke, &shared).len(), 1);
    }

    #[test]
    fn the_oidc_provider_gets_a_listed_audience_tagged_as_wibs() {
        let p = provider(json!({}), json!({"allowedAudiences": ["aud2"]}));
        let b = binding(json!({"audience": "aud2"}));
        let tag = (naming::added_client_id_tag("aud2"), "aud2".to_string());
        let planned = actions(&b, &p, Intent::Reconcile, &seen(None));
        assert_eq!(
            planned[0],
            Action::AddAudience {
                arn: OIDC_ARN.into(),
                audience: "aud2".into(),
                tag: Some(tag.clone())
            }
        );
        let mut absent = seen(None);
        absent.oidc_provider = None;
        let planned = actions(&b, &p, Intent::Reconcile, &absent);
        assert!(
            matches!(&planned[0], Action::CreateOidcProvider { audience, tags, .. }
                if audience == "aud2" && tags.get(&tag.0) == Some(&tag.1) && tags.contains_key(ownership::TAG_CLUSTER)),
            "{planned:?}"
        );
        // Without createOidcProvider, the provider is the platform team's.
        let fixed = provider(
            json!({}),
            json!({"allowedAudiences": ["aud2"], "createOidcProvider": false}),
        );
        let planned = actions(&b, &fixed, Intent::Reconcile, &seen(None));
        assert!(
            matches!(&planned[0], Action::CreateRole { .. }),
            "{planned:?}"
        );
        // STS's audience is never tagged: prune must not remove it.
        let sts = binding(json!({}));
        let mut bare = seen(None);
        bare.oidc_provider = Some(OidcProvider::default());
        let planned = actions(&sts, &p, Intent::Reconcile, &bare);
        assert_eq!(
            planned[0],
            Action::AddAudience {
                arn: OIDC_ARN.into(),
                audience: DEFAULT_AUDIENCE.into(),
                tag: None
            }
        );
    }

    #[test]
    fn actions_read_as_the_events_report_them() {
        let cases = [
            (
                Action::CreateOidcProvider {
                    issuer: ISSUER.into(),
                    audience: DEFAULT_AUDIENCE.into(),
                    tags: BTreeMap::new(),
                },
                format!("created IAM OIDC provider for {ISSUER}"),
            ),
            (
                Action::AddAudience {
                    arn: OIDC_ARN.into(),
                    audience: "aud2".into(),
                    tag: None,
                },
                format!("added audience aud2 to {OIDC_ARN}"),
            ),
            (
                put_trust(Value::Null),
                "put the trust policy of role app".into(),
            ),
            (
                removed_trust("sa", Value::Null),
                "removed the trust statement of system:serviceaccount:ns:sa from role app".into(),
            ),
            (attach(READ_ONLY), format!("attached {READ_ONLY}")),
            (detach(READ_ONLY), format!("detached {READ_ONLY}")),
            (put_logs(), "put inline policy logs".into()),
            (delete_inline("logs"), "deleted inline policy logs".into()),
            (
                Action::SetMaxSession {
                    role: ROLE.into(),
                    seconds: 3600,
                },
                "set max session duration of app".into(),
            ),
            (
                Action::SetBoundary {
                    role: ROLE.into(),
                    arn: BOUNDARY.into(),
                },
                "set permissions boundary of app".into(),
            ),
            (
                Action::TagRole {
                    role: ROLE.into(),
                    tags: BTreeMap::new(),
                    why: Tagging::Adopted,
                },
                "adopted role app".into(),
            ),
        ];
        for (action, text) in cases {
            assert_eq!(action.to_string(), text);
        }
    }
}
