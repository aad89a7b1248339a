//! Azure: a user-assigned managed identity, its federated identity credential
//! for the cluster's issuer and the binding's ServiceAccount, and its role
//! assignments. Every step reads first and writes only what differs, so a
//! steady state makes no writes.

pub mod arm;
pub mod credential;
pub mod naming;
pub mod observed;

/// The Azure provider as configured by the environment: the ARM endpoint
/// (`WIB_AZURE_ARM_ENDPOINT`, default public cloud), extra CAs for it
/// (`WIB_CLOUD_CA_FILE`), and wib's own ambient credential — workload
/// identity when `AZURE_FEDERATED_TOKEN_FILE` is set (its authority from
/// `AZURE_AUTHORITY_HOST`), else the default chain (managed identity).
pub fn from_env(observer: crate::calls::Observer) -> Result<AzureProvider, CloudError> {
    let endpoint = std::env::var("WIB_AZURE_ARM_ENDPOINT")
        .unwrap_or_else(|_| "https://management.azure.com".into());
    let endpoint = azure_core::Url::parse(&endpoint).map_err(|e| {
        CloudError::new(
            Reason::CloudNotConfigured,
            format!("WIB_AZURE_ARM_ENDPOINT: {e}"),
        )
    })?;
    let observed = observed::ObservedHttp::new(Arc::new(crate::http::client()?), observer);
    let refused = observed.refused.clone();
    let http: Arc<dyn azure_core::HttpClient> = Arc::new(observed);
    // The kubelet rotates the projected token file (default every hour):
    // each new access token is asked for with the file as it is then.
    let credential: Arc<dyn azure_core::auth::TokenCredential> =
        if std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            Arc::new(
                credential::RotatingWorkloadIdentity::from_env(http.clone(), refused)
                    .map_err(|e| arm::error("configuring workload identity", e))?,
            )
        } else {
            azure_identity::create_default_credential()
                .map_err(|e| arm::error("configuring Azure credentials", e))?
        };
    Ok(AzureProvider::new(Clients::new(
        credential, endpoint, http,
    )?))
}

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use wib_api::Cloud;
use wib_api::binding::{AzureBinding, AzureStatus, RoleAssignmentStatus};
use wib_api::conditions::Reason;
use wib_api::provider::AzureProvider as AzureDefaults;

use crate::ownership::{self, Claim, Ownership, Release};
use crate::{BoxFuture, CloudError, CloudProvider, Outcome, Request, guardrails};
use arm::{Clients, Credential, IdentityRef};

pub const AUDIENCE: &str = "api://AzureADTokenExchange";
/// Entra allows 20 federated identity credentials per identity.
pub const MAX_CREDENTIALS: usize = 20;

/// Whether `existing` is the federated credential `wanted` describes: the
/// same issuer and subject, or wib's name for it with the same subject
/// under an issuer the cluster had before (a provider's `issuer` may change;
/// the credential it leaves behind is still this binding's).
fn federates(existing: &Credential, wanted: &Credential) -> bool {
    existing.subject == wanted.subject
        && (existing.issuer == wanted.issuer || existing.name.eq_ignore_ascii_case(&wanted.name))
}

pub struct AzureProvider {
    clients: Clients,
    /// Built-in role name → definition, per subscription (they never change).
    roles: Mutex<HashMap<(String, String), arm::RoleDefinition>>,
    /// Azure rejects concurrent credential writes to one identity with 409:
    /// wib writes them one at a time per identity.
    credential_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Where the binding's identity lives, after defaults.
struct Target {
    at: IdentityRef,
    location: String,
    tenant: String,
    credential: Credential,
}

impl AzureProvider {
    pub fn new(clients: Clients) -> Self {
        Self {
            clients,
            roles: Mutex::new(HashMap::new()),
            credential_locks: Mutex::new(HashMap::new()),
        }
    }

    fn lock_for(&self, identity: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .credential_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        locks
            .entry(identity.to_ascii_lowercase())
            .or_default()
            .clone()
    }

    fn target<'a>(
        request: &Request<'a>,
    ) -> Result<(Target, &'a AzureBinding, &'a AzureDefaults), CloudError> {
        let spec = request.binding.spec.azure.as_ref().ok_or_else(|| {
            CloudError::new(Reason::CloudNotConfigured, "the binding has no spec.azure")
        })?;
        let defaults = request.provider.spec.azure.as_ref().ok_or_else(|| {
            CloudError::new(Reason::CloudNotConfigured, "the provider has no spec.azure")
        })?;
        let cluster = &request.provider.spec.cluster_name;
        let binding = request.binding.metadata.name.clone().unwrap_or_default();
        let name = spec
            .identity_name
            .clone()
            .or_else(|| request.recorded_identity(|s| s.azure.as_ref()?.resource_id.as_deref()))
            .unwrap_or_else(|| naming::identity_name(cluster, &request.namespace, &binding));
        Ok((
            Target {
                at: IdentityRef {
                    subscription: spec
                        .subscription_id
                        .clone()
                        .unwrap_or_else(|| defaults.subscription_id.clone()),
                    resource_group: spec
                        .resource_group
                        .clone()
                        .unwrap_or_else(|| defaults.resource_group.clone()),
                    name,
                },
                location: spec
                    .location
                    .clone()
                    .unwrap_or_else(|| defaults.location.clone()),
                tenant: defaults.tenant_id.clone(),
                credential: Credential {
                    name: naming::federated_credential_name(
                        cluster,
                        &request.namespace,
                        &request.service_account,
                    ),
                    issuer: request.issuer.to_string(),
                    subject: request.subject.clone(),
                    audiences: vec![AUDIENCE.to_string()],
                },
            },
            spec,
            defaults,
        ))
    }

    /// Where the identity is created is the platform team's to decide: the
    /// provider's subscription, resource group and region, or ones it lists.
    /// Checked before any call; cleanup does not ask (it only ever removes
    /// what wib's tags say it made).
    fn check_placement(
        request: &Request<'_>,
        target: &Target,
        defaults: &AzureDefaults,
    ) -> Result<(), CloudError> {
        let provider = request.provider.metadata.name.clone().unwrap_or_default();
        let at = &target.at;
        let group = format!(
            "/subscriptions/{}/resourceGroups/{}",
            at.subscription, at.resource_group
        );
        let default_group = at
            .subscription
            .eq_ignore_ascii_case(&defaults.subscription_id)
            && at
                .resource_group
                .eq_ignore_ascii_case(&defaults.resource_group);
        if !default_group
            && !defaults
                .allowed_resource_groups
                .iter()
                .any(|g| g.eq_ignore_ascii_case(&group))
        {
            return Err(CloudError::new(
                Reason::ScopeNotAllowed,
                format!(
                    "resource group {group} is not ClusterIdentityProvider {provider:?}'s default nor in its azure.allowedResourceGroups; nothing was created"
                ),
            ));
        }
        let location = &target.location;
        if !location.eq_ignore_ascii_case(&defaults.location)
            && !defaults
                .allowed_locations
                .iter()
                .any(|l| l.eq_ignore_ascii_case(location))
        {
            return Err(CloudError::new(
                Reason::ScopeNotAllowed,
                format!(
                    "location {location:?} is not ClusterIdentityProvider {provider:?}'s default nor in its azure.allowedLocations; nothing was created"
                ),
            ));
        }
        Ok(())
    }

    /// Resolves every requested role to its definition and judges it by
    /// what ARM says it is, never by the binding's spelling, before anything
    /// is written: (role as asked, scope, definition ID).
    async fn resolve_roles(
        &self,
        request: &Request<'_>,
        spec: &AzureBinding,
        subscription: &str,
    ) -> Result<Vec<(String, String, String)>, CloudError> {
        let provider = request.provider.metadata.name.clone().unwrap_or_default();
        let allowed_roles = request.provider.spec.allowed_roles.as_deref();
        let allowed_scopes = request
            .provider
            .spec
            .allowed_scopes
            .as_deref()
            .unwrap_or_default();
        let mut resolved = Vec::new();
        for wanted in &spec.role_assignments {
            let scope = &wanted.scope;
            let segments = guardrails::scope_segments(scope).map_err(|why| {
                CloudError::new(
                    Reason::ScopeNotAllowed,
                    format!("{why}; write the scope as a plain ARM ID; nothing was changed"),
                )
            })?;
            if !guardrails::scope_allowed(scope, allowed_scopes) {
                return Err(CloudError::new(
                    Reason::ScopeNotAllowed,
                    format!(
                        "scope {scope} is outside ClusterIdentityProvider {provider:?}'s allowedScopes; nothing was changed"
                    ),
                ));
            }
            let definition = self.resolve_role(&wanted.role, subscription).await?;
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
                    &segments,
                ),
            };
            guardrails::judge_role(&facts, allowed_roles).map_err(|why| {
                CloudError::new(
                    Reason::RoleNotAllowed,
                    format!(
                        "role {:?} ({} {guid}) on {scope} is not allowed by ClusterIdentityProvider {provider:?}: {why}; nothing was changed",
                        wanted.role, definition.name
                    ),
                )
            })?;
            resolved.push((wanted.role.clone(), scope.clone(), definition.id));
        }
        Ok(resolved)
    }

    /// The definition of a role given by name, GUID or ID. Built-in roles
    /// are cached by name (they never change); custom ones are read each
    /// time, since their actions can change.
    async fn resolve_role(
        &self,
        role: &str,
        subscription: &str,
    ) -> Result<arm::RoleDefinition, CloudError> {
        let scope = format!("/subscriptions/{subscription}");
        let guid = role.rsplit('/').next().unwrap_or(role);
        if uuid::Uuid::parse_str(guid).is_ok() {
            return self.clients.get_role(&scope, guid).await?.ok_or_else(|| {
                CloudError::new(
                    Reason::RoleNotFound,
                    format!("role definition {role:?} does not exist"),
                )
            });
        }
        let key = (subscription.to_ascii_lowercase(), role.to_string());
        if let Some(found) = self
            .roles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(found.clone());
        }
        let found = self.clients.find_role(&scope, role).await?.ok_or_else(|| {
            CloudError::new(
                Reason::RoleNotFound,
                format!("no Azure role named {role:?} exists"),
            )
        })?;
        if !found.custom {
            self.roles
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, found.clone());
        }
        Ok(found)
    }

    /// The identity's role assignments wherever they live: listed under its
    /// subscription and under the root (subscription or management group)
    /// of every scope the binding asks for now, asked for before, or may
    /// ask for (the provider's allowedScopes), so an assignment on a
    /// management group or in another subscription is seen, not re-created,
    /// and removed when it leaves the spec.
    async fn assignments(
        &self,
        request: &Request<'_>,
        subscription: &str,
        principal_id: &str,
    ) -> Result<Vec<arm::Assignment>, CloudError> {
        let asked = request
            .binding
            .spec
            .azure
            .iter()
            .flat_map(|a| a.role_assignments.iter().map(|r| r.scope.as_str()));
        let before = request
            .binding
            .status
            .iter()
            .flat_map(|s| s.role_assignments.iter().filter_map(|r| r.scope.as_deref()));
        // Every grant must lie under the provider's allowedScopes: their
        // roots are read too, so an assignment a crash kept out of the
        // status is still found once its scope leaves the spec.
        let allowed = request
            .provider
            .spec
            .allowed_scopes
            .iter()
            .flatten()
            .map(String::as_str);
        let mut roots = vec![format!("/subscriptions/{subscription}")];
        for scope in asked.chain(before).chain(allowed) {
            if let Some(root) = scope_root(scope)
                && !roots.iter().any(|r| r.eq_ignore_ascii_case(&root))
            {
                roots.push(root);
            }
        }
        let mut found: Vec<arm::Assignment> = Vec::new();
        for root in roots {
            for a in self.clients.list_assignments(&root, principal_id).await? {
                if !found.iter().any(|f| f.id.eq_ignore_ascii_case(&a.id)) {
                    found.push(a);
                }
            }
        }
        Ok(found)
    }

    async fn reconcile_inner(&self, request: &Request<'_>) -> Result<Outcome, CloudError> {
        let (target, spec, defaults) = Self::target(request)?;
        Self::check_placement(request, &target, defaults)?;
        let cluster = &request.provider.spec.cluster_name;
        let uid = request.binding.metadata.uid.clone().unwrap_or_default();
        let binding_name = request.binding.metadata.name.clone().unwrap_or_default();
        let refused = guardrails::grants_refused(
            request.provider,
            spec.role_assignments.first().map(|r| r.scope.as_str()),
        );
        let roles = match refused {
            Some(_) => Vec::new(),
            None => {
                self.resolve_roles(request, spec, &target.at.subscription)
                    .await?
            }
        };
        let mut writes = Vec::new();

        // Identity: find or create; never take over what wib does not own
        // unless the provider allows it, nor what another namespace owns.
        // By name before the read (a protected resource ID protects the name
        // it ends in), by the IDs Azure assigned after it.
        let what = format!("identity {}", target.at.name);
        crate::protected::check(&[&target.at.name], request.provider, &what)?;
        let existing = self.clients.get_identity(&target.at).await?;
        if let Some(found) = &existing {
            crate::protected::check(
                &[&found.client_id, &found.principal_id],
                request.provider,
                &what,
            )?;
        }
        let claim = ownership::claim(
            existing.as_ref().map(|i| &i.tags),
            ownership::Asker::of(request),
            request.provider.spec.adoption,
            &what,
            (!spec.role_assignments.is_empty())
                .then_some(("role assignments", Reason::RoleNotAllowed)),
        )?;
        let identity = match (claim, existing) {
            (Claim::Adopt, Some(existing)) => {
                let mut tags = existing.tags.clone();
                tags.extend(ownership::owner_tags(
                    cluster,
                    &request.namespace,
                    &binding_name,
                    &uid,
                ));
                tags.insert(ownership::TAG_ADOPTED.into(), "true".into());
                writes.push(format!("adopted identity {}", target.at.name));
                self.clients
                    .put_identity(&target.at, &target.location, &tags)
                    .await?
            }
            (_, Some(existing)) => existing,
            (_, None) => {
                let tags = ownership::owner_tags(cluster, &request.namespace, &binding_name, &uid);
                writes.push(format!("created identity {}", target.at.name));
                self.clients
                    .put_identity(&target.at, &target.location, &tags)
                    .await?
            }
        };

        // Federated credential: found by issuer and subject whatever its
        // name, or by its name and subject under the issuer the cluster had
        // before (re-keyed in place, so an issuer change leaves no stale
        // credential behind); one of wib's name that names another subject
        // is never overwritten.
        let lock = self.lock_for(&identity.id);
        {
            let _serialized = lock.lock().await;
            let credentials = self.clients.list_credentials(&target.at).await?;
            let wanted = &target.credential;
            let current = credentials
                .iter()
                .find(|c| c.issuer == wanted.issuer && c.subject == wanted.subject)
                .or_else(|| credentials.iter().find(|c| federates(c, wanted)));
            match current {
                Some(c) if c.issuer == wanted.issuer && c.audiences == wanted.audiences => {}
                Some(c) => {
                    writes.push(if c.issuer == wanted.issuer {
                        format!("repaired federated credential {}", c.name)
                    } else {
                        format!(
                            "re-keyed federated credential {} to issuer {}",
                            c.name, wanted.issuer
                        )
                    });
                    let repaired = Credential {
                        name: c.name.clone(),
                        ..wanted.clone()
                    };
                    self.clients.put_credential(&target.at, &repaired).await?;
                }
                None => {
                    if credentials
                        .iter()
                        .any(|c| c.name.eq_ignore_ascii_case(&wanted.name))
                    {
                        return Err(CloudError::new(
                            Reason::FederationConflict,
                            format!(
                                "identity {} has a federated credential named {} for another subject; wib does not overwrite it; nothing was changed",
                                target.at.name, wanted.name
                            ),
                        ));
                    }
                    if credentials.len() >= MAX_CREDENTIALS {
                        return Err(CloudError::new(
                            Reason::FederatedCredentialLimit,
                            format!(
                                "identity {} already has {} federated credentials, Azure's limit; remove one or bind this ServiceAccount to another identity",
                                target.at.name,
                                credentials.len()
                            ),
                        ));
                    }
                    writes.push(format!("created federated credential {}", wanted.name));
                    self.clients.put_credential(&target.at, wanted).await?;
                }
            }
        }

        // Role assignments: create the missing, remove wib's extras; none of
        // that when the guardrails refused the grants.
        let statuses = match &refused {
            Some(_) => spec
                .role_assignments
                .iter()
                .map(|r| RoleAssignmentStatus {
                    role: r.role.clone(),
                    scope: Some(r.scope.clone()),
                    id: None,
                    ready: false,
                })
                .collect(),
            None => {
                self.reconcile_assignments(request, &target, &identity, &roles, &mut writes)
                    .await?
            }
        };

        let mut annotations = BTreeMap::from([
            (
                "azure.workload.identity/client-id".to_string(),
                identity.client_id.clone(),
            ),
            (
                "azure.workload.identity/tenant-id".to_string(),
                nonempty(&identity.tenant_id, &target.tenant),
            ),
        ]);
        if let Some(seconds) = spec.token_expiration_seconds {
            annotations.insert(
                "azure.workload.identity/service-account-token-expiration".into(),
                seconds.to_string(),
            );
        }
        Ok(Outcome {
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
                    tenant_id: Some(nonempty(&identity.tenant_id, &target.tenant)),
                    resource_id: Some(identity.id.clone()),
                    federated_credential: Some(target.credential.name.clone()),
                }),
                role_assignments: statuses,
                ..Default::default()
            },
            writes,
            grants_refused: refused,
        })
    }

    /// Creates the assignments the binding asks for and removes those wib
    /// made that it no longer asks for (only on an identity this binding owns).
    async fn reconcile_assignments(
        &self,
        request: &Request<'_>,
        target: &Target,
        identity: &arm::Identity,
        roles: &[(String, String, String)],
        writes: &mut Vec<String>,
    ) -> Result<Vec<RoleAssignmentStatus>, CloudError> {
        let existing = self
            .assignments(request, &target.at.subscription, &identity.principal_id)
            .await?;
        let mut statuses = Vec::new();
        let mut desired_names = Vec::new();
        for (role, scope, definition) in roles {
            let name = naming::role_assignment_name(&identity.principal_id, definition, scope);
            desired_names.push(name.clone());
            let present = existing.iter().find(|a| {
                a.name.eq_ignore_ascii_case(&name)
                    || (a.scope.eq_ignore_ascii_case(scope.trim_end_matches('/'))
                        && same_role(&a.role_definition_id, definition))
            });
            let id = match present {
                Some(a) => a.id.clone(),
                None => {
                    writes.push(format!("assigned {role} on {scope}"));
                    self.clients
                        .create_assignment(scope, &name, definition, &identity.principal_id)
                        .await?;
                    format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}")
                }
            };
            statuses.push(RoleAssignmentStatus {
                role: role.clone(),
                scope: Some(scope.clone()),
                id: Some(id),
                ready: true,
            });
        }
        if ownership::ownership(&identity.tags, ownership::Asker::of(request))
            == Ownership::ThisBinding
        {
            for extra in existing.iter().filter(|a| {
                is_wib_assignment(a, &identity.principal_id)
                    && !desired_names
                        .iter()
                        .any(|n| n.eq_ignore_ascii_case(&a.name))
            }) {
                writes.push(format!("removed role assignment {}", extra.name));
                self.clients
                    .delete_assignment(&extra.scope, &extra.name)
                    .await?;
            }
        }
        Ok(statuses)
    }

    async fn cleanup_inner(&self, request: &Request<'_>) -> Result<(), CloudError> {
        let (target, _, _) = Self::target(request)?;
        let Some(identity) = self.clients.get_identity(&target.at).await? else {
            return Ok(());
        };
        let release = ownership::release(
            &identity.tags,
            ownership::Asker::of(request),
            request.admitted,
            request.binding.spec.deletion_policy,
        );
        if release == Release::Nothing {
            return Ok(());
        }
        let lock = self.lock_for(&identity.id);
        let _serialized = lock.lock().await;
        let credentials = self.clients.list_credentials(&target.at).await?;
        let (mine, others): (Vec<&Credential>, Vec<&Credential>) = credentials
            .iter()
            .partition(|c| federates(c, &target.credential));
        for credential in mine {
            self.clients
                .delete_credential(&target.at, &credential.name)
                .await?;
        }
        // On an adopted identity, credentials that were there before wib
        // are its owner's, not users wib must wait for.
        let adopted = identity
            .tags
            .get(ownership::TAG_ADOPTED)
            .map(String::as_str)
            == Some("true");
        let last_out = !others
            .iter()
            .any(|c| !adopted || c.name.starts_with(naming::FIC_PREFIX));
        match release {
            Release::Maker | Release::Survivor if last_out => {
                self.remove_assignments(request, &target, &identity).await?;
                if !adopted {
                    self.clients.delete_identity(&target.at).await?;
                }
            }
            Release::Maker => {
                // Others still federate to it: its grants were this
                // binding's and go with it; the last one out deletes it.
                self.remove_assignments(request, &target, &identity).await?;
                let mut tags = identity.tags.clone();
                tags.insert(ownership::TAG_RELEASED.into(), "true".into());
                self.clients
                    .put_identity(&target.at, &identity.location, &tags)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn revoke_inner(&self, request: &Request<'_>) -> Result<Vec<String>, CloudError> {
        let (target, _, _) = Self::target(request)?;
        let Some(identity) = self.clients.get_identity(&target.at).await? else {
            return Ok(Vec::new());
        };
        let lock = self.lock_for(&identity.id);
        let _serialized = lock.lock().await;
        let mut removed = Vec::new();
        for credential in self
            .clients
            .list_credentials(&target.at)
            .await?
            .iter()
            .filter(|c| federates(c, &target.credential))
        {
            removed.push(format!("removed federated credential {}", credential.name));
            self.clients
                .delete_credential(&target.at, &credential.name)
                .await?;
        }
        Ok(removed)
    }

    /// Removes every assignment wib made for the identity's principal.
    async fn remove_assignments(
        &self,
        request: &Request<'_>,
        target: &Target,
        identity: &arm::Identity,
    ) -> Result<(), CloudError> {
        for assignment in self
            .assignments(request, &target.at.subscription, &identity.principal_id)
            .await?
            .iter()
            .filter(|a| is_wib_assignment(a, &identity.principal_id))
        {
            self.clients
                .delete_assignment(&assignment.scope, &assignment.name)
                .await?;
        }
        Ok(())
    }
}

fn nonempty(value: &str, fallback: &str) -> String {
    if value.is_empty() {
        fallback.to_string()
    } else {
        value.to_string()
    }
}

/// The subscription or management group a scope lies in.
fn scope_root(scope: &str) -> Option<String> {
    let segments = guardrails::scope_segments(scope).ok()?;
    match segments.as_slice() {
        [s, id, ..] if s.eq_ignore_ascii_case("subscriptions") => {
            Some(format!("/subscriptions/{id}"))
        }
        [p, ns, g, id, ..]
            if p.eq_ignore_ascii_case("providers")
                && ns.eq_ignore_ascii_case("Microsoft.Management")
                && g.eq_ignore_ascii_case("managementGroups") =>
        {
            Some(format!(
                "/providers/Microsoft.Management/managementGroups/{id}"
            ))
        }
        _ => None,
    }
}

fn same_role(a: &str, b: &str) -> bool {
    let guid = |s: &str| s.rsplit('/').next().unwrap_or(s).to_ascii_lowercase();
    guid(a) == guid(b)
}

/// An assignment is wib's when its name is the GUID wib derives from its own
/// principal, role and scope: anyone else's assignment has another name.
fn is_wib_assignment(a: &arm::Assignment, principal_id: &str) -> bool {
    naming::role_assignment_name(principal_id, &a.role_definition_id, &a.scope)
        .eq_ignore_ascii_case(&a.name)
}

impl CloudProvider for AzureProvider {
    fn cloud(&self) -> Cloud {
        Cloud::Azure
    }

    fn reconcile<'a>(
        &'a self,
        request: &'a Request<'a>,
    ) -> BoxFuture<'a, Result<Outcome, CloudError>> {
        Box::pin(observed::with_retry_after(self.reconcile_inner(request)))
    }

    fn cleanup<'a>(&'a self, request: &'a Request<'a>) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(observed::with_retry_after(self.cleanup_inner(request)))
    }

    fn revoke<'a>(
        &'a self,
        request: &'a Request<'a>,
    ) -> BoxFuture<'a, Result<Vec<String>, CloudError>> {
        Box::pin(self.revoke_inner(request))
    }

    fn check<'a>(
        &'a self,
        provider: &'a wib_api::ClusterIdentityProvider,
    ) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(async move {
            let Some(defaults) = &provider.spec.azure else {
                return Ok(());
            };
            self.clients
                .get_identity(&IdentityRef {
                    subscription: defaults.subscription_id.clone(),
                    resource_group: defaults.resource_group.clone(),
                    name: crate::CREDENTIALS_PROBE.into(),
                })
                .await
                .map(drop)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(name: &str, issuer: &str, subject: &str) -> Credential {
        Credential {
            name: name.into(),
            issuer: issuer.into(),
            subject: subject.into(),
            audiences: vec!["api://AzureADTokenExchange".into()],
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
}
