//! Every Azure decision, without I/O: the guardrails' verdict on the roles
//! ARM resolved, ownership and adoption of the identity, its federated
//! credential (found, repaired, re-keyed, or refused), the role assignments
//! to create and remove, what deletion leaves, and the outcome the binding
//! reports.

use std::collections::BTreeMap;
use std::fmt;

use wib_api::binding::{AzureStatus, RoleAssignmentStatus};
use wib_api::conditions::Reason;

use super::access_policies::{self, PolicyWrite, Principal};
use super::arm::{Assignment, Credential, Identity, IdentityRef, RoleDefinition};
use super::observe::Observed;
use super::target::{Target, segments};
use super::vaults::{Merge, PolicyEntry};
use super::{MAX_CREDENTIALS, naming};
use crate::ownership::{self, Claim, Release};
use crate::steps::{Decide, Intent, Next, Plan};
use crate::{CloudError, GrantsRefused, Outcome, Request, guardrails};

/// Why wib writes an identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityWrite {
    Created,
    /// It takes an untagged identity over (the owner consented).
    Adopted,
    /// Its maker is gone while other bindings still federate to it.
    Released,
}

/// Why wib writes a federated credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialWrite {
    Created,
    /// Its audiences drifted.
    Repaired,
    /// It names the issuer the cluster had before.
    Rekeyed,
}

/// One Azure write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    PutIdentity {
        at: IdentityRef,
        location: String,
        tags: BTreeMap<String, String>,
        why: IdentityWrite,
    },
    DeleteIdentity {
        at: IdentityRef,
    },
    PutCredential {
        at: IdentityRef,
        credential: Credential,
        why: CredentialWrite,
    },
    DeleteCredential {
        at: IdentityRef,
        name: String,
    },
    CreateAssignment {
        /// As the binding asks for it, for the Event.
        role: String,
        scope: String,
        name: String,
        definition: String,
        principal_id: String,
    },
    DeleteAssignment {
        scope: String,
        name: String,
    },
    /// A merge into the identity's own entry of a vault's access policies.
    UpdateAccessPolicy {
        vault: String,
        merge: Merge,
        entry: PolicyEntry,
        why: PolicyWrite,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::PutIdentity { at, why, .. } => {
                let verb = match why {
                    IdentityWrite::Created => "created",
                    IdentityWrite::Adopted => "adopted",
                    IdentityWrite::Released => "released",
                };
                write!(f, "{verb} identity {}", at.name)
            }
            Action::DeleteIdentity { at } => write!(f, "deleted identity {}", at.name),
            Action::PutCredential {
                credential, why, ..
            } => match why {
                CredentialWrite::Created => {
                    write!(f, "created federated credential {}", credential.name)
                }
                CredentialWrite::Repaired => {
                    write!(f, "repaired federated credential {}", credential.name)
                }
                CredentialWrite::Rekeyed => write!(
                    f,
                    "re-keyed federated credential {} to issuer {}",
                    credential.name, credential.issuer
                ),
            },
            Action::DeleteCredential { name, .. } => {
                write!(f, "removed federated credential {name}")
            }
            Action::CreateAssignment { role, scope, .. } => write!(f, "assigned {role} on {scope}"),
            Action::DeleteAssignment { name, .. } => write!(f, "removed role assignment {name}"),
            Action::UpdateAccessPolicy {
                vault, entry, why, ..
            } => {
                let permissions = &entry.permissions;
                match why {
                    PolicyWrite::Granted => {
                        write!(
                            f,
                            "granted {permissions} in the access policies of vault {vault}"
                        )
                    }
                    PolicyWrite::Trimmed => write!(
                        f,
                        "removed {permissions}, which the spec does not list, from the access policies of vault {vault}"
                    ),
                    PolicyWrite::Revoked => {
                        write!(
                            f,
                            "removed {permissions} from the access policies of vault {vault}"
                        )
                    }
                }
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
            Intent::Revoke => Ok(Plan::finished(revoke(&target, observed))),
        }
    }
}

/// What deleting this binding may do to `identity`, by its tags.
pub fn release(request: &Request<'_>, identity: &Identity) -> Release {
    ownership::release(
        &identity.tags,
        ownership::Asker::of(request),
        request.admitted,
        request.binding.spec.deletion_policy,
    )
}

/// Whether `existing` is the federated credential `wanted` describes: the
/// same issuer and subject, or wib's name for it with the same subject
/// under an issuer the cluster had before (a provider's `issuer` may change;
/// the credential it leaves behind is still this binding's).
pub fn federates(existing: &Credential, wanted: &Credential) -> bool {
    existing.subject == wanted.subject
        && (existing.issuer == wanted.issuer || existing.name.eq_ignore_ascii_case(&wanted.name))
}

fn is_adopted(identity: &Identity) -> bool {
    identity
        .tags
        .get(ownership::TAG_ADOPTED)
        .map(String::as_str)
        == Some("true")
}

/// A role the guardrails admit: as the binding asks for it, where, and the
/// definition ID ARM resolved it to.
#[derive(Debug)]
struct Grant<'s> {
    role: &'s str,
    scope: &'s str,
    definition: String,
}

fn reconcile(
    request: &Request<'_>,
    target: &Target<'_>,
    observed: &Observed,
) -> Result<Plan<Action>, CloudError> {
    target.check_placement(request)?;
    let refused = target.grants_refused(request);
    let (grants, vaults) = match refused {
        Some(_) => (Vec::new(), Vec::new()),
        None => {
            target.check_scopes(request)?;
            let grants = judge_roles(request, target, &observed.roles)?;
            (grants, access_policies::judge(target, &observed.vaults)?)
        }
    };
    let claim = claim(request, target, observed.identity.as_ref())?;
    let Some(identity) = &observed.identity else {
        // Role assignments are named after the principal ID that creating
        // the identity returns, and the outcome needs its client ID: both
        // are planned on the next round, once the identity is read back.
        let mut actions = vec![put_identity(target, request, None)];
        actions.extend(federation(target, &[])?);
        return Ok(Plan {
            actions,
            next: Next::ObserveAgain,
        });
    };
    let mut actions = Vec::new();
    if claim == Claim::Adopt {
        actions.push(put_identity(target, request, Some(identity)));
    }
    actions.extend(federation(target, &observed.credentials)?);
    let before = access_policies::before(request);
    let (statuses, in_vaults) = match &refused {
        Some(_) => (unready(target), before.to_vec()),
        None => {
            let existing = observed.assignments.as_deref().unwrap_or_default();
            // Only an identity this binding owns loses the grants wib made
            // that the spec no longer lists; a sharer's are its maker's.
            let owns = matches!(claim, Claim::Own | Claim::Adopt);
            let (writes, statuses) = assignments(identity, &grants, existing, owns);
            actions.extend(writes);
            let principal = principal_of(target, identity);
            let (writes, in_vaults) =
                access_policies::reconcile(&vaults, &observed.vaults, before, principal, owns);
            actions.extend(writes);
            (statuses, in_vaults)
        }
    };
    let mut outcome = outcome(target, identity, statuses, refused);
    if let Some(azure) = outcome.status.azure.as_mut() {
        azure.key_vault_access_policies = in_vaults;
    }
    Ok(Plan::done(actions, outcome))
}

/// Judges every requested role by what ARM says it is, never by the
/// binding's spelling, before anything is written.
fn judge_roles<'s>(
    request: &Request<'_>,
    target: &Target<'s>,
    resolved: &[Option<RoleDefinition>],
) -> Result<Vec<Grant<'s>>, CloudError> {
    let provider = request.provider.metadata.name.clone().unwrap_or_default();
    let allowed_roles = request.provider.spec.allowed_roles.as_deref();
    let mut grants = Vec::new();
    for (i, wanted) in target.spec.role_assignments.iter().enumerate() {
        let (role, scope) = (&wanted.role, &wanted.scope);
        let definition = definition_of(role, resolved.get(i))?;
        let guid = definition.guid().to_string();
        let facts = guardrails::RoleFacts {
            names: vec![definition.name.clone(), guid.clone(), definition.id.clone()],
            ids: vec![guid.clone(), definition.id.clone()],
            denied: guardrails::azure_denial(
                &guardrails::AzureRole {
                    guid: &guid,
                    custom: definition.custom,
                    actions: &definition.actions,
                },
                &segments(scope)?,
            ),
        };
        guardrails::judge_role(&facts, allowed_roles).map_err(|why| {
            CloudError::new(
                Reason::RoleNotAllowed,
                format!(
                    "role {role:?} ({} {guid}) on {scope} is not allowed by ClusterIdentityProvider {provider:?}: {why}; nothing was changed",
                    definition.name
                ),
            )
        })?;
        grants.push(Grant {
            role,
            scope,
            definition: definition.id.clone(),
        });
    }
    Ok(grants)
}

fn definition_of<'d>(
    role: &str,
    resolved: Option<&'d Option<RoleDefinition>>,
) -> Result<&'d RoleDefinition, CloudError> {
    match resolved {
        Some(Some(definition)) => Ok(definition),
        Some(None) if naming::role_guid(role).is_some() => Err(CloudError::new(
            Reason::RoleNotFound,
            format!("role definition {role:?} does not exist"),
        )),
        Some(None) => Err(CloudError::new(
            Reason::RoleNotFound,
            format!("no Azure role named {role:?} exists"),
        )),
        None => Err(CloudError::new(
            Reason::TransientError,
            format!("role {role:?} was not resolved; retried"),
        )),
    }
}

/// Never takes over what wib does not own unless the provider allows it,
/// nor what another namespace owns: by name (a protected resource ID
/// protects the name it ends in) and by the IDs Azure assigned.
fn claim(
    request: &Request<'_>,
    target: &Target<'_>,
    identity: Option<&Identity>,
) -> Result<Claim, CloudError> {
    let what = target.what();
    crate::protected::check(&[&target.at.name], request.provider, &what)?;
    if let Some(found) = identity {
        crate::protected::check(
            &[&found.client_id, &found.principal_id],
            request.provider,
            &what,
        )?;
    }
    ownership::claim(
        identity.map(|i| &i.tags),
        ownership::Asker::of(request),
        request.provider.spec.adoption,
        &what,
        target.grant_scopes().next().is_some().then_some((
            "role assignments or access policies",
            Reason::RoleNotAllowed,
        )),
    )
}

/// The identity made for this binding, or `adopting` taken over: wib's
/// ownership tags added to its own.
fn put_identity(target: &Target<'_>, request: &Request<'_>, adopting: Option<&Identity>) -> Action {
    let mut tags = adopting.map(|i| i.tags.clone()).unwrap_or_default();
    tags.extend(ownership::owner_tags(
        &request.cluster,
        &request.namespace,
        &request.binding_name,
        &request.uid,
    ));
    if adopting.is_some() {
        tags.insert(ownership::TAG_ADOPTED.into(), "true".into());
    }
    Action::PutIdentity {
        at: target.at.clone(),
        location: target.location.clone(),
        tags,
        why: match adopting {
            Some(_) => IdentityWrite::Adopted,
            None => IdentityWrite::Created,
        },
    }
}

/// The binding's federated credential: found by issuer and subject whatever
/// its name, or by its name and subject under the issuer the cluster had
/// before (re-keyed in place, so an issuer change leaves no stale credential
/// behind). One of wib's name that names another subject is never
/// overwritten, and Azure's limit is reported rather than hit.
fn federation(
    target: &Target<'_>,
    credentials: &[Credential],
) -> Result<Option<Action>, CloudError> {
    let wanted = &target.credential;
    let current = credentials
        .iter()
        .find(|c| c.issuer == wanted.issuer && c.subject == wanted.subject)
        .or_else(|| credentials.iter().find(|c| federates(c, wanted)));
    let put = |name: &str, why| Action::PutCredential {
        at: target.at.clone(),
        credential: Credential {
            name: name.to_string(),
            ..wanted.clone()
        },
        why,
    };
    match current {
        Some(c) if c.issuer == wanted.issuer && c.audiences == wanted.audiences => Ok(None),
        Some(c) if c.issuer == wanted.issuer => Ok(Some(put(&c.name, CredentialWrite::Repaired))),
        Some(c) => Ok(Some(put(&c.name, CredentialWrite::Rekeyed))),
        None if credentials
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(&wanted.name)) =>
        {
            Err(CloudError::new(
                Reason::FederationConflict,
                format!(
                    "identity {} has a federated credential named {} for another subject; wib does not overwrite it; nothing was changed",
                    target.at.name, wanted.name
                ),
            ))
        }
        None if credentials.len() >= MAX_CREDENTIALS => Err(CloudError::new(
            Reason::FederatedCredentialLimit,
            format!(
                "identity {} already has {} federated credentials, Azure's limit; remove one or bind this ServiceAccount to another identity",
                target.at.name,
                credentials.len()
            ),
        )),
        None => Ok(Some(put(&wanted.name, CredentialWrite::Created))),
    }
}

/// Creates the assignments the binding asks for that are missing (one of
/// another name for the same role and scope counts) and, when `owns`,
/// removes those wib made that it no longer asks for.
fn assignments(
    identity: &Identity,
    grants: &[Grant<'_>],
    existing: &[Assignment],
    owns: bool,
) -> (Vec<Action>, Vec<RoleAssignmentStatus>) {
    let principal = &identity.principal_id;
    let mut actions = Vec::new();
    let mut statuses = Vec::new();
    let mut desired = Vec::new();
    for grant in grants {
        let name = naming::role_assignment_name(principal, &grant.definition, grant.scope);
        let present = existing.iter().find(|a| {
            a.name.eq_ignore_ascii_case(&name)
                || (a
                    .scope
                    .eq_ignore_ascii_case(grant.scope.trim_end_matches('/'))
                    && same_role(&a.role_definition_id, &grant.definition))
        });
        let id = match present {
            Some(a) => a.id.clone(),
            None => {
                actions.push(Action::CreateAssignment {
                    role: grant.role.to_string(),
                    scope: grant.scope.to_string(),
                    name: name.clone(),
                    definition: grant.definition.clone(),
                    principal_id: principal.clone(),
                });
                format!(
                    "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
                    grant.scope
                )
            }
        };
        desired.push(name);
        statuses.push(RoleAssignmentStatus {
            role: grant.role.to_string(),
            scope: Some(grant.scope.to_string()),
            id: Some(id),
            ready: true,
        });
    }
    if owns {
        let extra = existing
            .iter()
            .filter(|a| !desired.iter().any(|n| n.eq_ignore_ascii_case(&a.name)));
        actions.extend(wibs(extra, principal));
    }
    (actions, statuses)
}

/// Removals of the assignments among `assignments` that wib made.
fn wibs<'a>(
    assignments: impl IntoIterator<Item = &'a Assignment>,
    principal_id: &str,
) -> Vec<Action> {
    assignments
        .into_iter()
        .filter(|a| is_wib_assignment(a, principal_id))
        .map(|a| Action::DeleteAssignment {
            scope: a.scope.clone(),
            name: a.name.clone(),
        })
        .collect()
}

/// The assignments the spec lists, none made (the guardrails refused them).
fn unready(target: &Target<'_>) -> Vec<RoleAssignmentStatus> {
    target
        .spec
        .role_assignments
        .iter()
        .map(|r| RoleAssignmentStatus {
            role: r.role.clone(),
            scope: Some(r.scope.clone()),
            id: None,
            ready: false,
        })
        .collect()
}

/// The identity's principal, in the tenant its access policy entries name.
fn principal_of<'a>(target: &'a Target<'_>, identity: &'a Identity) -> Principal<'a> {
    Principal {
        tenant: tenant_of(target, identity),
        object_id: &identity.principal_id,
    }
}

fn tenant_of<'a>(target: &'a Target<'_>, identity: &'a Identity) -> &'a str {
    if identity.tenant_id.is_empty() {
        &target.tenant
    } else {
        &identity.tenant_id
    }
}

fn outcome(
    target: &Target<'_>,
    identity: &Identity,
    statuses: Vec<RoleAssignmentStatus>,
    refused: Option<GrantsRefused>,
) -> Outcome {
    let tenant = tenant_of(target, identity).to_string();
    let mut annotations = BTreeMap::from([
        (
            "azure.workload.identity/client-id".to_string(),
            identity.client_id.clone(),
        ),
        (
            "azure.workload.identity/tenant-id".to_string(),
            tenant.clone(),
        ),
    ]);
    if let Some(seconds) = target.spec.token_expiration_seconds {
        annotations.insert(
            "azure.workload.identity/service-account-token-expiration".into(),
            seconds.to_string(),
        );
    }
    Outcome {
        annotations,
        // azure-workload-identity >= 1.0 reads this label on pods, not
        // here; kept because webhooks before 1.0 select by it and it
        // finds the ServiceAccounts wib federated (`-l ...use=true`).
        labels: BTreeMap::from([(
            "azure.workload.identity/use".to_string(),
            "true".to_string(),
        )]),
        status: wib_api::WorkloadIdentityBindingStatus {
            identity: Some(identity.client_id.clone()),
            azure: Some(AzureStatus {
                client_id: Some(identity.client_id.clone()),
                principal_id: Some(identity.principal_id.clone()),
                tenant_id: Some(tenant),
                resource_id: Some(identity.id.clone()),
                federated_credential: Some(target.credential.name.clone()),
                key_vault_access_policies: Vec::new(),
            }),
            role_assignments: statuses,
            ..Default::default()
        },
        writes: Vec::new(),
        grants_refused: refused,
    }
}

/// Deletion: the binding's federated credential goes; the identity and the
/// assignments wib made go with the last binding out (per
/// `deletionPolicy`), or the maker's assignments go and the identity is
/// marked released while others still federate to it. An adopted identity
/// loses wib's assignments but is never deleted.
fn cleanup(request: &Request<'_>, target: &Target<'_>, observed: &Observed) -> Vec<Action> {
    let Some(identity) = &observed.identity else {
        return Vec::new();
    };
    let release = release(request, identity);
    if release == Release::Nothing {
        return Vec::new();
    }
    let (mine, others): (Vec<&Credential>, Vec<&Credential>) = observed
        .credentials
        .iter()
        .partition(|c| federates(c, &target.credential));
    let mut actions: Vec<Action> = mine
        .iter()
        .map(|c| Action::DeleteCredential {
            at: target.at.clone(),
            name: c.name.clone(),
        })
        .collect();
    // On an adopted identity, credentials that were there before wib are
    // its owner's, not users wib must wait for.
    let adopted = is_adopted(identity);
    let last_out = !others
        .iter()
        .any(|c| !adopted || c.name.starts_with(naming::FIC_PREFIX));
    let assignments = observed.assignments.iter().flatten();
    let vaults = access_policies::vaults_at_stake(target, request);
    let entries =
        access_policies::revoke(&vaults, &observed.vaults, principal_of(target, identity));
    match release {
        Release::Maker | Release::Survivor if last_out => {
            actions.extend(wibs(assignments, &identity.principal_id));
            actions.extend(entries);
            if !adopted {
                actions.push(Action::DeleteIdentity {
                    at: target.at.clone(),
                });
            }
        }
        Release::Maker => {
            // Others still federate to it: its grants were this binding's
            // and go with it; the last one out deletes it.
            actions.extend(wibs(assignments, &identity.principal_id));
            actions.extend(entries);
            let mut tags = identity.tags.clone();
            tags.insert(ownership::TAG_RELEASED.into(), "true".into());
            actions.push(Action::PutIdentity {
                at: target.at.clone(),
                location: identity.location.clone(),
                tags,
                why: IdentityWrite::Released,
            });
        }
        _ => {}
    }
    actions
}

/// A refused binding: only its federated credential goes, from whichever
/// identity it names (the identity and its grants stay for its return).
fn revoke(target: &Target<'_>, observed: &Observed) -> Vec<Action> {
    if observed.identity.is_none() {
        return Vec::new();
    }
    observed
        .credentials
        .iter()
        .filter(|c| federates(c, &target.credential))
        .map(|c| Action::DeleteCredential {
            at: target.at.clone(),
            name: c.name.clone(),
        })
        .collect()
}

fn same_role(a: &str, b: &str) -> bool {
    let guid = |s: &str| s.rsplit('/').next().unwrap_or(s).to_ascii_lowercase();
    guid(a) == guid(b)
}

/// An assignment is wib's when its name is the GUID wib derives from its own
/// principal, role and scope: anyone else's assignment has another name.
fn is_wib_assignment(a: &Assignment, principal_id: &str) -> bool {
    naming::role_assignment_name(principal_id, &a.role_definition_id, &a.scope)
        .eq_ignore_ascii_case(&a.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::Steps;
    use crate::testing::{self, merged};
    use serde_json::{Value, json};
    use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};

    const SUB: &str = "00000000-0000-0000-0000-00000000aaaa";
    const OTHER_SUB: &str = "00000000-0000-0000-0000-00000000cccc";
    const PRINCIPAL: &str = "principal-1";
    const ISSUER: &str = "https://issuer";
    const SUBJECT: &str = "system:serviceaccount:ns:sa";
    const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
    const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
    const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
    const CUSTOM: &str = "22222222-2222-4222-8222-222222222222";

    fn apps() -> String {
        format!("/subscriptions/{SUB}/resourceGroups/apps")
    }

    fn elsewhere() -> String {
        format!("/subscriptions/{OTHER_SUB}/resourceGroups/shared")
    }

    fn provider(extra: Value) -> ClusterIdentityProvider {
        let spec = json!({
            "clusterName": "c1",
            "allowedScopes": [format!("/subscriptions/{SUB}"), elsewhere()],
            "azure": {"tenantId": "tenant-1", "subscriptionId": SUB,
                      "resourceGroup": "rg", "location": "westeurope"},
        });
        testing::provider("azure", merged(spec, extra))
    }

    /// A binding in `ns` for ServiceAccount `sa`, identity `app`, granted
    /// `roles` as (role, scope).
    fn binding(roles: &[(&str, &str)], azure: Value, extra: Value) -> WorkloadIdentityBinding {
        let roles: Vec<Value> = roles
            .iter()
            .map(|(role, scope)| json!({"role": role, "scope": scope}))
            .collect();
        let azure = merged(
            json!({"identityName": "app", "roleAssignments": roles}),
            azure,
        );
        let spec = json!({"serviceAccount": {"name": "sa"}, "azure": azure});
        testing::binding("b", "ns", "u1", merged(spec, extra))
    }

    fn reader_binding() -> WorkloadIdentityBinding {
        binding(&[("Reader", &apps())], json!({}), json!({}))
    }

    fn at() -> IdentityRef {
        IdentityRef {
            subscription: SUB.into(),
            resource_group: "rg".into(),
            name: "app".into(),
        }
    }

    fn definition(guid: &str, name: &str, custom: bool, actions: &[&str]) -> RoleDefinition {
        RoleDefinition {
            id: format!(
                "/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
            ),
            name: name.into(),
            custom,
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn reader() -> RoleDefinition {
        definition(READER, "Reader", false, &["*/read"])
    }

    /// The identity as wib made it for binding `uid` of `namespace`.
    fn identity(namespace: &str, uid: &str, extra: &[(&str, &str)]) -> Identity {
        let mut tags = ownership::owner_tags("c1", namespace, "b", uid);
        tags.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        untagged(tags)
    }

    fn untagged(tags: BTreeMap<String, String>) -> Identity {
        Identity {
            id: format!(
                "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app"
            ),
            client_id: "client-1".into(),
            principal_id: PRINCIPAL.into(),
            tenant_id: "tenant-1".into(),
            location: "westeurope".into(),
            tags,
        }
    }

    fn wib_credential_name() -> String {
        naming::federated_credential_name("c1", "ns", "sa")
    }

    fn credential(name: &str, issuer: &str, subject: &str) -> Credential {
        Credential {
            name: name.into(),
            issuer: issuer.into(),
            subject: subject.into(),
            audiences: vec![super::super::AUDIENCE.into()],
        }
    }

    fn ours() -> Credential {
        credential(&wib_credential_name(), ISSUER, SUBJECT)
    }

    /// The assignment wib makes of `role` on `scope` (its name is wib's).
    fn assignment(role: &RoleDefinition, scope: &str) -> Assignment {
        named(
            &naming::role_assignment_name(PRINCIPAL, &role.id, scope),
            role,
            scope,
        )
    }

    fn named(name: &str, role: &RoleDefinition, scope: &str) -> Assignment {
        Assignment {
            id: format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
            name: name.into(),
            scope: scope.into(),
            role_definition_id: role.id.clone(),
        }
    }

    fn observed(
        roles: &[RoleDefinition],
        identity: Option<Identity>,
        credentials: &[Credential],
        assignments: &[Assignment],
    ) -> Observed {
        Observed {
            roles: roles.iter().cloned().map(Some).collect(),
            assignments: identity.is_some().then(|| assignments.to_vec()),
            identity,
            credentials: credentials.to_vec(),
            vaults: Vec::new(),
        }
    }

    /// The steady state of the reader binding.
    fn settled() -> Observed {
        observed(
            &[reader()],
            Some(identity("ns", "u1", &[])),
            &[ours()],
            &[assignment(&reader(), &apps())],
        )
    }

    fn run(
        binding: &WorkloadIdentityBinding,
        provider: &ClusterIdentityProvider,
        intent: Intent,
        observed: &Observed,
    ) -> Result<Plan<Action>, CloudError> {
        run_as(binding, provider, intent, observed, |_| {})
    }

    fn run_as(
        binding: &WorkloadIdentityBinding,
        provider: &ClusterIdentityProvider,
        intent: Intent,
        observed: &Observed,
        adjust: impl FnOnce(&mut Request<'_>),
    ) -> Result<Plan<Action>, CloudError> {
        let mut request = Request::new(binding, provider, ISSUER);
        adjust(&mut request);
        observed.plan(&request, intent)
    }

    fn put_credential(credential: Credential, why: CredentialWrite) -> Action {
        Action::PutCredential {
            at: at(),
            credential,
            why,
        }
    }

    fn create(role: &str, definition: &RoleDefinition, scope: &str) -> Action {
        Action::CreateAssignment {
            role: role.into(),
            scope: scope.into(),
            name: naming::role_assignment_name(PRINCIPAL, &definition.id, scope),
            definition: definition.id.clone(),
            principal_id: PRINCIPAL.into(),
        }
    }

    fn delete(a: &Assignment) -> Action {
        Action::DeleteAssignment {
            scope: a.scope.clone(),
            name: a.name.clone(),
        }
    }

    fn delete_credential(name: &str) -> Action {
        Action::DeleteCredential {
            at: at(),
            name: name.into(),
        }
    }

    fn done(plan: Plan<Action>, case: &str) -> (Vec<Action>, Outcome) {
        match plan.next {
            Next::Done(outcome) => (plan.actions, *outcome),
            other => panic!("{case}: a settled reconcile reports an outcome, not {other:?}"),
        }
    }

    #[test]
    fn a_new_identity_takes_two_rounds_its_assignments_named_after_the_principal_it_got() {
        let b = reader_binding();
        let p = provider(json!({}));
        let first = run(
            &b,
            &p,
            Intent::Reconcile,
            &observed(&[reader()], None, &[], &[]),
        );
        let first = first.expect("first round");
        assert_eq!(
            first.actions,
            [
                Action::PutIdentity {
                    at: at(),
                    location: "westeurope".into(),
                    tags: ownership::owner_tags("c1", "ns", "b", "u1"),
                    why: IdentityWrite::Created,
                },
                put_credential(ours(), CredentialWrite::Created),
            ]
        );
        assert_eq!(first.next, Next::ObserveAgain);

        let created = observed(&[reader()], Some(identity("ns", "u1", &[])), &[ours()], &[]);
        let second = run(&b, &p, Intent::Reconcile, &created).expect("second round");
        let (actions, outcome) = done(second, "second round");
        assert_eq!(actions, [create("Reader", &reader(), &apps())]);
        let name = naming::role_assignment_name(PRINCIPAL, &reader().id, &apps());
        assert_eq!(
            outcome.status.role_assignments,
            [RoleAssignmentStatus {
                role: "Reader".into(),
                scope: Some(apps()),
                id: Some(format!(
                    "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
                    apps()
                )),
                ready: true,
            }]
        );
        let azure = outcome.status.azure.expect("azure status");
        assert_eq!(azure.principal_id.as_deref(), Some(PRINCIPAL));
        assert_eq!(azure.federated_credential, Some(wib_credential_name()));
        assert_eq!(
            outcome.annotations.get("azure.workload.identity/client-id"),
            Some(&"client-1".to_string())
        );
        assert_eq!(outcome.grants_refused, None);

        let steady = run(&b, &p, Intent::Reconcile, &settled()).expect("steady state");
        assert_eq!(done(steady, "steady state").0, []);
    }
    #[test]
    fn reconcile_puts_back_a_credential_that_drifted() {
        let (b, p) = (reader_binding(), provider(json!({})));
        let with = |credentials: &[Credential]| {
            let here = [assignment(&reader(), &apps())];
            observed(
                &[reader()],
                Some(identity("ns", "u1", &[])),
                credentials,
                &here,
            )
        };
        let audience = Credential {
            audiences: vec!["api://elsewhere".into()],
            ..ours()
        };
        let old_issuer = credential(&wib_credential_name(), "https://old", SUBJECT);
        let legacy = credential("named-by-an-older-wib", ISSUER, SUBJECT);
        let put = |why| vec![put_credential(ours(), why)];
        let cases: Vec<(&str, Observed, Vec<Action>)> = vec![
            ("steady state", settled(), vec![]),
            ("removed", with(&[]), put(CredentialWrite::Created)),
            (
                "audiences changed",
                with(&[audience]),
                put(CredentialWrite::Repaired),
            ),
            (
                "issuer changed",
                with(&[old_issuer]),
                put(CredentialWrite::Rekeyed),
            ),
            (
                "another name, same issuer and subject",
                with(&[legacy]),
                vec![],
            ),
        ];
        for (case, observed, expected) in cases {
            let planned = run(&b, &p, Intent::Reconcile, &observed).expect(case);
            assert_eq!(done(planned, case).0, expected, "{case}");
        }
    }

    #[test]
    fn reconcile_puts_back_the_assignments_the_spec_lists_and_removes_wibs_extras() {
        let (b, p) = (reader_binding(), provider(json!({})));
        let with = |assignments: &[Assignment]| {
            observed(
                &[reader()],
                Some(identity("ns", "u1", &[])),
                &[ours()],
                assignments,
            )
        };
        let owner = definition(OWNER, "Owner", false, &["*"]);
        let here = assignment(&reader(), &apps());
        let (extra, far) = (
            assignment(&owner, &apps()),
            assignment(&reader(), &elsewhere()),
        );
        let theirs = named("theirs", &owner, &apps());
        let mut tagged = settled();
        if let Some(i) = tagged.identity.as_mut() {
            i.tags.insert("team".into(), "data".into());
        }
        let cases: Vec<(&str, Observed, Vec<Action>)> = vec![
            (
                "removed",
                with(&[]),
                vec![create("Reader", &reader(), &apps())],
            ),
            (
                "dropped from the spec",
                with(&[here.clone(), extra.clone()]),
                vec![delete(&extra)],
            ),
            (
                "in another subscription",
                with(&[here.clone(), far.clone()]),
                vec![delete(&far)],
            ),
            ("someone else's", with(&[here.clone(), theirs]), vec![]),
            (
                "made by hand",
                with(&[named("by-hand", &reader(), &apps())]),
                vec![],
            ),
            ("tags added by hand are not wib's business", tagged, vec![]),
        ];
        for (case, observed, expected) in cases {
            let planned = run(&b, &p, Intent::Reconcile, &observed).expect(case);
            assert_eq!(done(planned, case).0, expected, "{case}");
        }
    }

    #[test]
    fn an_assignment_in_another_subscription_is_seen_not_made_again() {
        let b = binding(&[("Reader", &elsewhere())], json!({}), json!({}));
        let there = assignment(&reader(), &elsewhere());
        let o = observed(
            &[reader()],
            Some(identity("ns", "u1", &[])),
            &[ours()],
            std::slice::from_ref(&there),
        );
        let planned = run(&b, &provider(json!({})), Intent::Reconcile, &o).expect("plan");
        let (actions, outcome) = done(planned, "elsewhere");
        assert_eq!(actions, []);
        assert_eq!(outcome.status.role_assignments[0].id, Some(there.id));
    }

    /// `observed` is refused with `reason`, before any write.
    fn refused(
        case: &str,
        b: &WorkloadIdentityBinding,
        p: &ClusterIdentityProvider,
        o: &Observed,
        reason: Reason,
    ) {
        let error = run(b, p, Intent::Reconcile, o).expect_err(case);
        assert_eq!(error.reason, reason, "{case}: {}", error.message);
    }

    #[test]
    fn a_credential_wib_may_not_write_is_refused() {
        let (b, p) = (reader_binding(), provider(json!({})));
        let with = |credentials: &[Credential]| {
            observed(
                &[reader()],
                Some(identity("ns", "u1", &[])),
                credentials,
                &[],
            )
        };
        let thief = credential(
            &wib_credential_name(),
            ISSUER,
            "system:serviceaccount:evil:x",
        );
        refused(
            "wib's name, another subject",
            &b,
            &p,
            &with(&[thief]),
            Reason::FederationConflict,
        );
        let full: Vec<Credential> = (0..MAX_CREDENTIALS)
            .map(|i| {
                credential(
                    &format!("wib-{i}"),
                    ISSUER,
                    &format!("system:serviceaccount:ns:{i}"),
                )
            })
            .collect();
        refused(
            "Azure's limit",
            &b,
            &p,
            &with(&full),
            Reason::FederatedCredentialLimit,
        );
    }

    #[test]
    fn an_identity_that_is_not_this_bindings_to_take_is_refused() {
        let (b, p) = (reader_binding(), provider(json!({})));
        let found = |identity: Identity| observed(&[reader()], Some(identity), &[], &[]);
        let opted_in = BTreeMap::from([(ownership::TAG_ADOPT_INTO.to_string(), "ns".to_string())]);
        let adopting = provider(json!({"adoption": "AllowUntagged"}));
        let cases = [
            (
                "another namespace's",
                &p,
                identity("other", "u9", &[]),
                Reason::IdentityNotShared,
            ),
            (
                "a sharer listing roles",
                &p,
                identity("ns", "u9", &[]),
                Reason::RoleNotAllowed,
            ),
            (
                "untagged under Deny",
                &p,
                untagged(opted_in),
                Reason::AdoptionNotAllowed,
            ),
            (
                "no opt-in",
                &adopting,
                untagged(BTreeMap::new()),
                Reason::AdoptionNotAllowed,
            ),
            (
                "tags stripped by hand",
                &p,
                untagged(BTreeMap::new()),
                Reason::AdoptionNotAllowed,
            ),
            (
                "another cluster's",
                &p,
                untagged(ownership::owner_tags("c2", "ns", "b", "u1")),
                Reason::AdoptionNotAllowed,
            ),
        ];
        for (case, p, identity, reason) in cases {
            refused(case, &b, p, &found(identity), reason);
        }
        let protecting = |name: &str| provider(json!({"protectedIdentities": [name]}));
        let mine = observed(&[reader()], Some(identity("ns", "u1", &[])), &[], &[]);
        let none = observed(&[reader()], None, &[], &[]);
        for (case, name, o) in [
            ("name", "app", &none),
            ("client ID", "client-1", &mine),
            ("principal ID", PRINCIPAL, &mine),
        ] {
            refused(case, &b, &protecting(name), o, Reason::IdentityProtected);
        }
    }

    /// Asking for `role` on `scope`, which ARM resolved to `definition`, is
    /// refused with `reason`.
    fn role_refused(role: &str, scope: &str, definition: Option<RoleDefinition>, reason: Reason) {
        let b = binding(&[(role, scope)], json!({}), json!({}));
        let o = Observed {
            roles: vec![definition],
            ..Observed::default()
        };
        refused(role, &b, &provider(json!({})), &o, reason);
    }

    #[test]
    fn built_in_roles_are_judged_by_what_arm_says_they_are() {
        let owner = definition(OWNER, "Owner", false, &["*"]);
        let contributor = definition(CONTRIBUTOR, "Contributor", false, &["*"]);
        let subscription = format!("/subscriptions/{SUB}");
        let denied = Reason::RoleNotAllowed;
        role_refused("Owner", &apps(), Some(owner.clone()), denied);
        role_refused(OWNER, &apps(), Some(owner), denied);
        role_refused("Contributor", &subscription, Some(contributor), denied);
        role_refused("Raeder", &apps(), None, Reason::RoleNotFound);
        role_refused(CUSTOM, &apps(), None, Reason::RoleNotFound);
        let keyvault_only = provider(json!({"allowedRoles": ["Key Vault*"]}));
        let o = observed(&[reader()], None, &[], &[]);
        refused("unlisted", &reader_binding(), &keyvault_only, &o, denied);
    }

    #[test]
    fn custom_roles_are_judged_by_their_actions() {
        let helper = |action: &str| definition(CUSTOM, "Vault Helper", true, &[action]);
        for action in [
            "*",
            "Microsoft.Authorization/*",
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.ManagedIdentity/*",
        ] {
            role_refused(
                "Vault Helper",
                &apps(),
                Some(helper(action)),
                Reason::RoleNotAllowed,
            );
        }
        let b = binding(&[("Vault Helper", &apps())], json!({}), json!({}));
        let reads = observed(&[helper("Microsoft.KeyVault/vaults/read")], None, &[], &[]);
        assert!(run(&b, &provider(json!({})), Intent::Reconcile, &reads).is_ok());
    }

    #[test]
    fn scopes_and_placement_outside_the_guardrails_are_refused_before_any_read() {
        let p = provider(json!({}));
        let scoped = |scope: &str| binding(&[("Reader", scope)], json!({}), json!({}));
        let placed = |azure: Value| binding(&[("Reader", &apps())], azure, json!({}));
        let cases = [
            (
                "outside allowedScopes",
                scoped("/subscriptions/00000000-0000-0000-0000-00000000bbbb"),
            ),
            ("no plain ARM ID", scoped(&format!("{}%2F..", apps()))),
            (
                "another resource group",
                placed(json!({"resourceGroup": "platform-core"})),
            ),
            (
                "another subscription",
                placed(json!({"subscriptionId": OTHER_SUB})),
            ),
            ("another region", placed(json!({"location": "eastus"}))),
        ];
        for (case, b) in cases {
            let o = observed(&[reader()], None, &[], &[]);
            refused(case, &b, &p, &o, Reason::ScopeNotAllowed);
            let request = Request::new(&b, &p, ISSUER);
            let validated =
                <super::super::AzureProvider as Steps>::validate(&request, Intent::Reconcile);
            assert_eq!(
                validated.map_err(|e| e.reason),
                Err(Reason::ScopeNotAllowed),
                "{case}"
            );
        }
    }

    #[test]
    fn only_an_exact_id_lifts_a_denial_and_listed_places_are_allowed() {
        let owner = definition(OWNER, "Owner", false, &["*"]);
        let b = binding(&[("Owner", &apps())], json!({}), json!({}));
        let o = observed(std::slice::from_ref(&owner), None, &[], &[]);
        let by_name = provider(json!({"allowedRoles": ["Owner"]}));
        assert!(run(&b, &by_name, Intent::Reconcile, &o).is_err());
        let by_guid = provider(json!({"allowedRoles": [OWNER]}));
        assert!(run(&b, &by_guid, Intent::Reconcile, &o).is_ok());

        let listed = provider(
            json!({"azure": {"tenantId": "tenant-1", "subscriptionId": SUB,
            "resourceGroup": "rg", "location": "westeurope", "allowedLocations": ["eastus"],
            "allowedResourceGroups": [format!("/subscriptions/{SUB}/resourceGroups/platform-core")]}}),
        );
        let placed = binding(
            &[("Reader", &apps())],
            json!({"resourceGroup": "platform-core", "location": "eastus"}),
            json!({}),
        );
        let planned = run(
            &placed,
            &listed,
            Intent::Reconcile,
            &observed(&[reader()], None, &[], &[]),
        );
        assert!(
            matches!(&planned.expect("allowed").actions[0], Action::PutIdentity { at, location, .. }
                if at.resource_group == "platform-core" && location == "eastus")
        );
    }

    #[test]
    fn default_deny_keeps_the_identity_and_federation_and_grants_nothing() {
        let b = reader_binding();
        let p = provider(json!({"allowedScopes": null}));
        let nothing = Observed::default();
        let first = run(&b, &p, Intent::Reconcile, &nothing).expect("first round");
        assert_eq!(first.actions.len(), 2, "{:?}", first.actions);
        assert_eq!(first.next, Next::ObserveAgain);

        // Grants are not at stake: their roles are not resolved, nor the
        // assignments read.
        let o = Observed {
            roles: Vec::new(),
            identity: Some(identity("ns", "u1", &[])),
            credentials: vec![ours()],
            assignments: None,
            vaults: Vec::new(),
        };
        let (actions, outcome) = done(run(&b, &p, Intent::Reconcile, &o).expect("plan"), "deny");
        assert_eq!(actions, []);
        assert_eq!(
            outcome.grants_refused.map(|r| r.reason),
            Some(Reason::ScopeNotAllowed)
        );
        assert!(
            outcome
                .status
                .role_assignments
                .iter()
                .all(|a| !a.ready && a.id.is_none())
        );
    }

    #[test]
    fn an_adopted_identity_keeps_what_its_owner_made_and_is_never_deleted() {
        let b = reader_binding();
        let p = provider(json!({"adoption": "AllowUntagged"}));
        let consent = BTreeMap::from([
            (ownership::TAG_ADOPT_INTO.to_string(), "ns".to_string()),
            ("team".to_string(), "data".to_string()),
        ]);
        let owners = credential("owners-ci", ISSUER, "system:serviceaccount:data:ci");
        let theirs = named("owners-grant", &reader(), &elsewhere());
        let o = observed(
            &[reader()],
            Some(untagged(consent.clone())),
            std::slice::from_ref(&owners),
            std::slice::from_ref(&theirs),
        );
        let (actions, _) = done(run(&b, &p, Intent::Reconcile, &o).expect("adopt"), "adopt");
        let mut tags = consent;
        tags.extend(ownership::owner_tags("c1", "ns", "b", "u1"));
        tags.insert(ownership::TAG_ADOPTED.into(), "true".into());
        assert_eq!(
            actions,
            [
                Action::PutIdentity {
                    at: at(),
                    location: "westeurope".into(),
                    tags: tags.clone(),
                    why: IdentityWrite::Adopted
                },
                put_credential(ours(), CredentialWrite::Created),
                create("Reader", &reader(), &apps()),
            ]
        );

        // Deleted: wib's credential and assignment go; the owner's stay, and
        // so does the identity (its other credential is the owner's, not a
        // user wib waits for).
        let adopted = Identity {
            tags,
            ..untagged(BTreeMap::new())
        };
        let ours_assigned = assignment(&reader(), &apps());
        let o = observed(
            &[],
            Some(adopted),
            &[owners, ours()],
            &[theirs, ours_assigned.clone()],
        );
        let planned = run(&b, &p, Intent::Cleanup, &o).expect("cleanup");
        assert_eq!(
            planned.actions,
            [
                delete_credential(&wib_credential_name()),
                delete(&ours_assigned)
            ]
        );
        assert_eq!(planned.next, Next::Finished);
    }

    #[test]
    fn a_sharer_adds_only_its_credential_and_leaves_the_makers_grants() {
        let sharer = binding(&[], json!({}), json!({}));
        let p = provider(json!({}));
        let makers = assignment(&reader(), &apps());
        for (case, maker, granted_by) in [
            (
                "a binding of the same namespace",
                identity("ns", "u9", &[]),
                vec![],
            ),
            (
                "another namespace sharing it",
                identity("other", "u9", &[]),
                vec!["u9".to_string()],
            ),
        ] {
            let o = observed(&[], Some(maker), &[], std::slice::from_ref(&makers));
            let planned = run_as(&sharer, &p, Intent::Reconcile, &o, |r| {
                r.granted_by = granted_by.into_iter().collect();
            });
            let (actions, outcome) = done(planned.expect(case), case);
            assert_eq!(
                actions,
                [put_credential(ours(), CredentialWrite::Created)],
                "{case}"
            );
            assert!(outcome.status.role_assignments.is_empty(), "{case}");
        }
    }

    /// Plans the deletion of `b` (admitted or not) and checks its actions.
    fn deletes(
        case: &str,
        b: &WorkloadIdentityBinding,
        admitted: bool,
        o: &Observed,
        expected: &[Action],
    ) {
        let p = provider(json!({}));
        let planned = run_as(b, &p, Intent::Cleanup, o, |r| r.admitted = admitted).expect(case);
        assert_eq!(planned.actions, expected, "{case}");
        assert_eq!(planned.next, Next::Finished, "{case}");
    }

    /// At deletion: `identity` with `credentials`, holding wib's Reader
    /// assignment and one of someone else's.
    fn at_deletion(identity: Identity, credentials: &[Credential]) -> Observed {
        let theirs = named("theirs", &reader(), &elsewhere());
        observed(
            &[],
            Some(identity),
            credentials,
            &[assignment(&reader(), &apps()), theirs],
        )
    }

    #[test]
    fn the_makers_deletion_follows_its_deletion_policy() {
        let b = reader_binding();
        let retain = binding(
            &[("Reader", &apps())],
            json!({}),
            json!({"deletionPolicy": "Retain"}),
        );
        let maker = || identity("ns", "u1", &[]);
        let drop_ours = delete_credential(&wib_credential_name());
        let everything = [
            drop_ours.clone(),
            delete(&assignment(&reader(), &apps())),
            Action::DeleteIdentity { at: at() },
        ];
        deletes("already gone", &b, true, &Observed::default(), &[]);
        deletes(
            "last out",
            &b,
            true,
            &at_deletion(maker(), &[ours()]),
            &everything,
        );
        deletes(
            "no longer admitted",
            &b,
            false,
            &at_deletion(maker(), &[ours()]),
            &everything,
        );
        let old_issuer = credential(&wib_credential_name(), "https://old", SUBJECT);
        deletes(
            "under the issuer before",
            &b,
            true,
            &at_deletion(maker(), &[old_issuer]),
            &everything,
        );
        deletes(
            "Retain: only the credential",
            &retain,
            true,
            &at_deletion(maker(), &[ours()]),
            &[drop_ours],
        );
    }

    #[test]
    fn a_sharers_deletion_leaves_the_identity_to_its_maker_or_to_the_last_one_out() {
        let b = reader_binding();
        let another = credential("wib-c1-ns-other", ISSUER, "system:serviceaccount:ns:other");
        let released = || identity("ns", "u9", &[(ownership::TAG_RELEASED, "true")]);
        let drop_ours = delete_credential(&wib_credential_name());
        let everything = [
            drop_ours.clone(),
            delete(&assignment(&reader(), &apps())),
            Action::DeleteIdentity { at: at() },
        ];
        let sharer = at_deletion(identity("ns", "u9", &[]), &[ours(), another.clone()]);
        deletes(
            "a sharer",
            &b,
            true,
            &sharer,
            std::slice::from_ref(&drop_ours),
        );
        deletes("a sharer no longer admitted", &b, false, &sharer, &[]);
        deletes(
            "the survivor, last out",
            &b,
            true,
            &at_deletion(released(), &[ours()]),
            &everything,
        );
        deletes(
            "a survivor, not last out",
            &b,
            true,
            &at_deletion(released(), &[ours(), another]),
            &[drop_ours],
        );
        let foreign = at_deletion(identity("other", "u9", &[]), &[ours()]);
        deletes("another namespace's identity", &b, true, &foreign, &[]);
    }

    #[test]
    fn the_maker_leaving_first_takes_its_grants_and_releases_the_identity() {
        let mine = assignment(&reader(), &apps());
        let another = credential("wib-c1-ns-other", ISSUER, "system:serviceaccount:ns:other");
        let maker = identity("ns", "u1", &[]);
        let o = observed(
            &[],
            Some(maker.clone()),
            &[ours(), another],
            std::slice::from_ref(&mine),
        );
        let planned = run(&reader_binding(), &provider(json!({})), Intent::Cleanup, &o);
        let mut tags = maker.tags;
        tags.insert(ownership::TAG_RELEASED.into(), "true".into());
        assert_eq!(
            planned.expect("plan").actions,
            [
                delete_credential(&wib_credential_name()),
                delete(&mine),
                Action::PutIdentity {
                    at: at(),
                    location: "westeurope".into(),
                    tags,
                    why: IdentityWrite::Released
                },
            ]
        );
    }

    #[test]
    fn revoke_removes_only_the_bindings_credential_when_it_is_there() {
        let (b, p) = (reader_binding(), provider(json!({})));
        let other = credential("wib-c1-ns-other", ISSUER, "system:serviceaccount:ns:other");
        let old_issuer = credential(&wib_credential_name(), "https://old", SUBJECT);
        let with = |credentials: &[Credential]| {
            observed(&[], Some(identity("ns", "u1", &[])), credentials, &[])
        };
        let cases: Vec<(&str, Observed, Vec<Action>)> = vec![
            (
                "held",
                with(&[ours(), other.clone()]),
                vec![delete_credential(&wib_credential_name())],
            ),
            (
                "held under the issuer before",
                with(&[old_issuer]),
                vec![delete_credential(&wib_credential_name())],
            ),
            ("already gone", with(&[other]), vec![]),
            ("no identity", Observed::default(), vec![]),
        ];
        for (case, observed, expected) in cases {
            let planned = run(&b, &p, Intent::Revoke, &observed).expect(case);
            assert_eq!(planned.actions, expected, "{case}");
            assert_eq!(planned.next, Next::Finished, "{case}");
        }
    }

    #[test]
    fn actions_read_as_the_events_report_them() {
        let name = wib_credential_name();
        let cases = [
            (
                put_credential(ours(), CredentialWrite::Created),
                format!("created federated credential {name}"),
            ),
            (
                put_credential(ours(), CredentialWrite::Repaired),
                format!("repaired federated credential {name}"),
            ),
            (
                put_credential(ours(), CredentialWrite::Rekeyed),
                format!("re-keyed federated credential {name} to issuer {ISSUER}"),
            ),
            (
                delete_credential(&name),
                format!("removed federated credential {name}"),
            ),
            (
                create("Reader", &reader(), &apps()),
                format!("assigned Reader on {}", apps()),
            ),
            (
                delete(&named("x", &reader(), &apps())),
                "removed role assignment x".to_string(),
            ),
            (
                Action::DeleteIdentity { at: at() },
                "deleted identity app".to_string(),
            ),
            (
                Action::PutIdentity {
                    at: at(),
                    location: "l".into(),
                    tags: BTreeMap::new(),
                    why: IdentityWrite::Adopted,
                },
                "adopted identity app".to_string(),
            ),
        ];
        for (action, expected) in cases {
            assert_eq!(action.to_string(), expected);
        }
    }

    #[test]
    fn a_credential_is_this_bindings_by_issuer_and_subject_or_by_its_name_after_an_issuer_change() {
        let wanted = credential("wib-app", "https://new", "system:serviceaccount:a:b");
        let cases = [
            (
                credential("anything", "https://new", "system:serviceaccount:a:b"),
                true,
            ),
            (
                credential("WIB-APP", "https://old", "system:serviceaccount:a:b"),
                true,
            ),
            (
                credential("other", "https://old", "system:serviceaccount:a:b"),
                false,
            ),
            (
                credential("wib-app", "https://new", "system:serviceaccount:a:c"),
                false,
            ),
            (
                credential("wib-app", "https://old", "system:serviceaccount:x:b"),
                false,
            ),
        ];
        for (existing, expected) in cases {
            assert_eq!(federates(&existing, &wanted), expected, "{existing:?}");
        }
    }

    mod access_policies {
        use super::*;
        use crate::azure::vaults::{Permissions, Vault};

        fn vault_id() -> String {
            format!("{}/providers/Microsoft.KeyVault/vaults/kv", apps())
        }

        fn perms(secrets: &[&str]) -> Permissions {
            let list: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
            Permissions::of(&list, &[], &[])
        }

        fn entry(object: &str, secrets: &[&str]) -> PolicyEntry {
            PolicyEntry {
                tenant_id: "tenant-1".into(),
                object_id: object.into(),
                permissions: perms(secrets),
            }
        }

        fn vault(entries: Vec<PolicyEntry>) -> Vault {
            Vault {
                id: vault_id(),
                tenant_id: "tenant-1".into(),
                rbac: false,
                entries,
            }
        }

        /// A binding granting `secrets` on the vault, and no role.
        fn granting(secrets: &[&str], extra: Value) -> WorkloadIdentityBinding {
            let policy = json!([{"vault": vault_id(), "secrets": secrets}]);
            binding(&[], json!({"keyVaultAccessPolicies": policy}), extra)
        }

        fn with_vault(identity: Option<Identity>, vault: Option<Vault>) -> Observed {
            Observed {
                assignments: identity.is_some().then(Vec::new),
                credentials: if identity.is_some() {
                    vec![ours()]
                } else {
                    vec![]
                },
                identity,
                vaults: vec![(vault_id(), vault)],
                ..Observed::default()
            }
        }

        fn merge(how: Merge, secrets: &[&str], why: PolicyWrite) -> Action {
            Action::UpdateAccessPolicy {
                vault: vault_id(),
                merge: how,
                entry: entry(PRINCIPAL, secrets),
                why,
            }
        }

        #[test]
        fn the_principals_entry_is_made_to_hold_exactly_what_is_asked_and_no_other_is_written() {
            let (b, p) = (granting(&["get", "List"], json!({})), provider(json!({})));
            let theirs = entry("someone-else", &["get", "set", "delete"]);
            let cases = [
                (
                    "missing",
                    vec![theirs.clone()],
                    vec![merge(Merge::Add, &["get", "list"], PolicyWrite::Granted)],
                ),
                (
                    "steady, whatever the case",
                    vec![theirs.clone(), entry(PRINCIPAL, &["GET", "list"])],
                    vec![],
                ),
                (
                    "drifted both ways",
                    vec![theirs.clone(), entry(PRINCIPAL, &["get", "delete"])],
                    vec![
                        merge(Merge::Add, &["list"], PolicyWrite::Granted),
                        merge(Merge::Remove, &["delete"], PolicyWrite::Trimmed),
                    ],
                ),
            ];
            for (case, entries, expected) in cases {
                let o = with_vault(Some(identity("ns", "u1", &[])), Some(vault(entries)));
                let (actions, outcome) =
                    done(run(&b, &p, Intent::Reconcile, &o).expect(case), case);
                assert_eq!(actions, expected, "{case}");
                let azure = outcome.status.azure.expect("azure status");
                assert_eq!(azure.key_vault_access_policies, [vault_id()], "{case}");
            }
        }

        #[test]
        fn a_vault_that_cannot_take_the_entry_is_refused_before_the_identity_is_made() {
            let (b, p) = (granting(&["get"], json!({})), provider(json!({})));
            let rbac = Vault {
                rbac: true,
                ..vault(vec![])
            };
            let foreign = Vault {
                tenant_id: "tenant-2".into(),
                ..vault(vec![])
            };
            for (case, v) in [
                ("missing", None),
                ("RBAC", Some(rbac)),
                ("other tenant", Some(foreign)),
            ] {
                refused(
                    case,
                    &b,
                    &p,
                    &with_vault(None, v),
                    Reason::KeyVaultNotUsable,
                );
            }
            let outside = granting(&["get"], json!({}));
            let narrow = provider(json!({"allowedScopes": [elsewhere()]}));
            refused(
                "outside allowedScopes",
                &outside,
                &narrow,
                &with_vault(None, Some(vault(vec![]))),
                Reason::ScopeNotAllowed,
            );
            let purge = granting(&["get", "purge"], json!({}));
            refused(
                "purge",
                &purge,
                &p,
                &with_vault(None, Some(vault(vec![]))),
                Reason::RoleNotAllowed,
            );
            let allowing = provider(
                json!({"azure": {"tenantId": "tenant-1", "subscriptionId": SUB,
                    "resourceGroup": "rg", "location": "westeurope",
                    "allowedSensitiveKeyVaultPermissions": ["secrets/purge"]}}),
            );
            let planned = run(
                &purge,
                &allowing,
                Intent::Reconcile,
                &with_vault(None, Some(vault(vec![]))),
            );
            assert!(planned.is_ok(), "purge where the provider allows it");
        }

        #[test]
        fn a_vault_leaving_the_spec_or_the_binding_takes_the_entry_with_it() {
            let p = provider(json!({}));
            let mut b = binding(&[], json!({}), json!({}));
            b.status = Some(wib_api::WorkloadIdentityBindingStatus {
                azure: Some(AzureStatus {
                    key_vault_access_policies: vec![vault_id()],
                    ..AzureStatus::default()
                }),
                ..Default::default()
            });
            let held = || {
                Some(vault(vec![
                    entry(PRINCIPAL, &["get"]),
                    entry("someone-else", &["get"]),
                ]))
            };
            let o = with_vault(Some(identity("ns", "u1", &[])), held());
            let (actions, outcome) = done(
                run(&b, &p, Intent::Reconcile, &o).expect("dropped"),
                "dropped",
            );
            assert_eq!(
                actions,
                [merge(Merge::Remove, &["get"], PolicyWrite::Revoked)]
            );
            assert!(
                outcome
                    .status
                    .azure
                    .expect("azure")
                    .key_vault_access_policies
                    .is_empty()
            );

            let b = granting(&["get"], json!({}));
            let planned = run(
                &b,
                &p,
                Intent::Cleanup,
                &with_vault(Some(identity("ns", "u1", &[])), held()),
            )
            .expect("deleted");
            assert_eq!(
                planned.actions,
                [
                    delete_credential(&wib_credential_name()),
                    merge(Merge::Remove, &["get"], PolicyWrite::Revoked),
                    Action::DeleteIdentity { at: at() },
                ],
                "the entry goes before the identity it names"
            );
        }
    }
}
