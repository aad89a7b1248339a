//! GCP: a Google service account, `roles/iam.workloadIdentityUser` on it for
//! exactly the binding's Kubernetes ServiceAccount (GKE's workload pool or a
//! workload identity pool's principal), and the project roles the binding
//! lists. Policies change only by read-modify-write on the etag; a steady
//! state makes only reads.

pub mod iam;
pub mod naming;
pub mod policy;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use google_cloud_iam_admin_v1::client::Iam;
use google_cloud_resourcemanager_v3::client::Projects;
use wib_api::Cloud;
use wib_api::binding::{GcpBinding, GcpStatus, RoleAssignmentStatus};
use wib_api::conditions::Reason;
use wib_api::provider::GcpProvider as GcpDefaults;

use crate::calls::Observer;
use crate::ownership::{self, Claim, Release};
use crate::{BoxFuture, CloudError, CloudProvider, GrantsRefused, Outcome, Request, guardrails};
use iam::{Clients, Resource};

pub const WORKLOAD_IDENTITY_USER: &str = "roles/iam.workloadIdentityUser";

/// The GCP provider configured from the environment: Application Default
/// Credentials (the GKE metadata server, or an `external_account` file in
/// `GOOGLE_APPLICATION_CREDENTIALS` for workload identity federation) and
/// endpoints `WIB_GCP_IAM_ENDPOINT` / `WIB_GCP_RESOURCE_MANAGER_ENDPOINT`
/// (default Google's). Clients are built on first use, so clusters without
/// GCP bindings never contact Google.
pub fn from_env(observer: Observer) -> GcpProvider {
    GcpProvider {
        observer,
        iam_endpoint: std::env::var("WIB_GCP_IAM_ENDPOINT")
            .unwrap_or_else(|_| "https://iam.googleapis.com".into()),
        projects_endpoint: std::env::var("WIB_GCP_RESOURCE_MANAGER_ENDPOINT")
            .unwrap_or_else(|_| "https://cloudresourcemanager.googleapis.com".into()),
        clients: tokio::sync::Mutex::new(None),
        limiter: Arc::new(crate::limiter::Limiter::from_env("gcp", 8.0)),
        locks: Mutex::new(HashMap::new()),
    }
}

pub struct GcpProvider {
    observer: Observer,
    iam_endpoint: String,
    projects_endpoint: String,
    /// Built on first use; dropped when GCP refuses wib's token, so the
    /// next call starts from a fresh credential (its cache would otherwise
    /// serve the refused token until the expiry it believes in) and reads
    /// the token file again.
    clients: tokio::sync::Mutex<Option<Arc<Clients>>>,
    /// Outlives rebuilt clients: GCP's quota does not reset with them.
    limiter: Arc<crate::limiter::Limiter>,
    /// One reconcile at a time per service account (its policy is shared by
    /// every binding that names it).
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

struct Target<'a> {
    spec: &'a GcpBinding,
    defaults: &'a GcpDefaults,
    account_id: String,
    email: String,
    /// `projects/<project>/serviceAccounts/<email>`
    name: String,
    member: String,
    /// (role, resource) as requested, resources defaulted.
    roles: Vec<(String, String)>,
}

fn not_configured(message: impl Into<String>) -> CloudError {
    CloudError::new(Reason::CloudNotConfigured, message)
}

impl GcpProvider {
    async fn clients(&self) -> Result<Arc<Clients>, CloudError> {
        let mut slot = self.clients.lock().await;
        if let Some(clients) = slot.as_ref() {
            return Ok(clients.clone());
        }
        let built = async {
            // The Google crates use rustls without a built-in provider;
            // wib runs on ring everywhere.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let credentials = google_cloud_auth::credentials::Builder::default()
                .build()
                .map_err(|e| {
                    CloudError::new(
                        Reason::CloudAuthorizationFailed,
                        format!("GCP credentials: {e}"),
                    )
                })?;
            // Fail within seconds, not the library's minute, when GCP is
            // unreachable: the binding reports it and retries with backoff.
            let retry = || {
                Aip194Strict
                    .with_attempt_limit(3)
                    .with_time_limit(std::time::Duration::from_secs(15))
            };
            let iam = Iam::builder()
                .with_endpoint(&self.iam_endpoint)
                .with_credentials(credentials.clone())
                .with_retry_policy(retry())
                .build()
                .await
                .map_err(|e| not_configured(format!("GCP IAM client: {e}")))?;
            let projects = Projects::builder()
                .with_endpoint(&self.projects_endpoint)
                .with_credentials(credentials)
                .with_retry_policy(retry())
                .build()
                .await
                .map_err(|e| not_configured(format!("GCP Resource Manager client: {e}")))?;
            Ok::<_, CloudError>(Clients {
                iam,
                projects,
                observer: self.observer.clone(),
                limiter: self.limiter.clone(),
            })
        }
        .await?;
        let clients = Arc::new(built);
        *slot = Some(clients.clone());
        Ok(clients)
    }

    /// Passes `result` on; a refused token drops the clients (see `clients`).
    async fn renewing<T>(&self, result: Result<T, CloudError>) -> Result<T, CloudError> {
        if let Err(error) = &result
            && error.reason == Reason::CloudAuthenticationFailed
        {
            *self.clients.lock().await = None;
        }
        result
    }

    fn lock_for(&self, email: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(email.to_string()).or_default().clone()
    }

    fn target<'a>(request: &Request<'a>) -> Result<Target<'a>, CloudError> {
        let spec = request
            .binding
            .spec
            .gcp
            .as_ref()
            .ok_or_else(|| not_configured("the binding has no spec.gcp"))?;
        let defaults = request
            .provider
            .spec
            .gcp
            .as_ref()
            .ok_or_else(|| not_configured("the provider has no spec.gcp"))?;
        let cluster = &request.provider.spec.cluster_name;
        let binding = request.binding.metadata.name.clone().unwrap_or_default();
        let project = &defaults.project_id;
        let account_id = spec
            .account_id
            .clone()
            .or_else(|| request.recorded_identity(|s| s.gcp.as_ref()?.email.as_deref()))
            .unwrap_or_else(|| naming::account_id(cluster, &request.namespace, &binding));
        let email = naming::email(&account_id, project);
        let pool = match (&defaults.workload_identity_pool, &defaults.project_number) {
            (None, _) => None,
            (Some(pool), Some(number)) => Some((number.as_str(), pool.as_str())),
            (Some(_), None) => {
                return Err(not_configured(
                    "the provider sets gcp.workloadIdentityPool but not gcp.projectNumber, which pool members need",
                ));
            }
        };
        Ok(Target {
            spec,
            defaults,
            member: naming::member(project, pool, &request.namespace, &request.service_account),
            name: format!("projects/{project}/serviceAccounts/{email}"),
            roles: spec
                .roles
                .iter()
                .map(|r| {
                    (
                        r.role.clone(),
                        r.resource
                            .clone()
                            .unwrap_or_else(|| format!("projects/{project}")),
                    )
                })
                .collect(),
            account_id,
            email,
        })
    }

    /// The guardrails, before any write: `Ok(Some(_))` when the provider's
    /// default deny refuses every grant (the account and its federation
    /// still go ahead).
    fn check_guardrails(
        request: &Request<'_>,
        target: &Target<'_>,
    ) -> Result<Option<GrantsRefused>, CloudError> {
        let provider = request.provider.metadata.name.clone().unwrap_or_default();
        let refused = guardrails::grants_refused(
            request.provider,
            target.roles.first().map(|(_, resource)| resource.as_str()),
        );
        if refused.is_some() {
            return Ok(refused);
        }
        let allowed_roles = request.provider.spec.allowed_roles.as_deref();
        let allowed_scopes = request
            .provider
            .spec
            .allowed_scopes
            .as_deref()
            .unwrap_or_default();
        for (role, resource) in &target.roles {
            let facts = guardrails::RoleFacts {
                names: vec![role.clone()],
                ids: vec![role.clone()],
                denied: guardrails::gcp_denial(role),
            };
            guardrails::judge_role(&facts, allowed_roles).map_err(|why| {
                CloudError::new(
                    Reason::RoleNotAllowed,
                    format!(
                        "role {role} is not allowed by ClusterIdentityProvider {provider:?}: {why}; nothing was created"
                    ),
                )
            })?;
            if !guardrails::scope_allowed(resource, allowed_scopes) {
                return Err(CloudError::new(
                    Reason::ScopeNotAllowed,
                    format!(
                        "resource {resource} is outside ClusterIdentityProvider {provider:?}'s allowedScopes; nothing was created"
                    ),
                ));
            }
        }
        Ok(None)
    }

    fn description(request: &Request<'_>, uid: &str, base: &str, adopted: bool) -> String {
        let binding = request.binding.metadata.name.clone().unwrap_or_default();
        let mut tags = ownership::owner_tags(
            &request.provider.spec.cluster_name,
            &request.namespace,
            &binding,
            uid,
        );
        if adopted {
            tags.insert(ownership::TAG_ADOPTED.into(), "true".into());
        }
        naming::with_marker(base, &tags)
    }

    /// The project resources whose policies may hold this account's roles:
    /// the provider's project, those the spec names, and those the status
    /// says roles were granted on (a resource dropped from the spec is found
    /// there, and its grants revoked). Only wib writes the status.
    fn role_resources(target: &Target<'_>, request: &Request<'_>) -> Vec<String> {
        let mut resources = vec![format!("projects/{}", target.defaults.project_id)];
        let recorded = request
            .binding
            .status
            .iter()
            .flat_map(|s| &s.role_assignments)
            .filter_map(|a| a.scope.as_ref())
            .filter(|scope| scope.starts_with("projects/"));
        for resource in target.roles.iter().map(|(_, r)| r).chain(recorded) {
            if !resources.contains(resource) {
                resources.push(resource.clone());
            }
        }
        resources
    }

    async fn reconcile_inner(&self, request: &Request<'_>) -> Result<Outcome, CloudError> {
        let target = Self::target(request)?;
        let refused = Self::check_guardrails(request, &target)?;
        let clients = self.clients().await?;
        let uid = request.binding.metadata.uid.clone().unwrap_or_default();
        let binding_name = request.binding.metadata.name.clone().unwrap_or_default();
        let lock = self.lock_for(&target.email);
        let _serialized = lock.lock().await;
        let mut writes = Vec::new();

        crate::protected::check(
            &[&target.account_id, &target.email],
            request.provider,
            &format!("service account {}", target.email),
        )?;
        let existing = clients.get_account(&target.name).await?;
        let what = format!("service account {}", target.email);
        let claim = ownership::claim(
            existing
                .as_ref()
                .map(|a| naming::tags(&a.description))
                .as_ref(),
            ownership::Asker::of(request),
            request.provider.spec.adoption,
            &what,
            (!target.roles.is_empty()).then_some(("roles", Reason::RoleNotAllowed)),
        )?;
        let adopting = claim == Claim::Adopt;
        let manages_roles = claim != Claim::Shared;
        let display_name = target
            .spec
            .display_name
            .clone()
            .unwrap_or_else(|| format!("wib {}/{binding_name}", request.namespace));

        // The account: created, adopted, or its name and marker put back.
        match &existing {
            None => {
                let description = Self::description(request, &uid, "", false);
                writes.push(format!("created service account {}", target.email));
                if clients
                    .create_account(
                        &target.defaults.project_id,
                        &target.account_id,
                        &display_name,
                        &description,
                    )
                    .await?
                    .is_none()
                {
                    // Created by an earlier, interrupted reconcile of ours or
                    // by someone else at the same moment: judge it next time.
                    return Err(CloudError::new(
                        Reason::TransientError,
                        format!("service account {} appeared meanwhile", target.email),
                    ));
                }
            }
            Some(account) if manages_roles => {
                let adopted = adopting
                    || naming::tags(&account.description).get(ownership::TAG_ADOPTED)
                        == Some(&"true".to_string());
                let description = Self::description(
                    request,
                    &uid,
                    &naming::without_marker(&account.description),
                    adopted,
                );
                let want_name = if adopted && target.spec.display_name.is_none() {
                    account.display_name.clone()
                } else {
                    display_name.clone()
                };
                if account.description != description || account.display_name != want_name {
                    writes.push(format!(
                        "{} service account {}",
                        if adopting { "adopted" } else { "repaired" },
                        target.email
                    ));
                    clients
                        .patch_account(&target.name, &want_name, &description)
                        .await?;
                }
            }
            Some(_) => {}
        }

        // Federation: this ServiceAccount may act as the account.
        let member = target.member.clone();
        if clients
            .modify_policy(&Resource::Account(target.name.clone()), |p| {
                policy::add_member(p, WORKLOAD_IDENTITY_USER, &member)
            })
            .await?
        {
            writes.push(format!("granted {WORKLOAD_IDENTITY_USER} to {member}"));
        }

        // Roles: exactly the spec on the resources it names and the
        // provider's project; on an adopted account, only added (the roles
        // it held before are its owner's).
        let account_member = format!("serviceAccount:{}", target.email);
        let adopted = adopting
            || existing.as_ref().is_some_and(|a| {
                naming::tags(&a.description).get(ownership::TAG_ADOPTED)
                    == Some(&"true".to_string())
            });
        if manages_roles && refused.is_none() {
            for resource in Self::role_resources(&target, request) {
                let wanted: Vec<String> = target
                    .roles
                    .iter()
                    .filter(|(_, r)| *r == resource)
                    .map(|(role, _)| role.clone())
                    .collect();
                let changed = clients
                    .modify_policy(&Resource::Project(resource.clone()), |p| {
                        let mut changed = false;
                        for role in &wanted {
                            changed |= policy::add_member(p, role, &account_member);
                        }
                        for role in policy::roles_of(p, &account_member) {
                            if !wanted.contains(&role) && !adopted {
                                changed |= policy::remove_member(p, &role, &account_member);
                            }
                        }
                        changed
                    })
                    .await?;
                if changed {
                    writes.push(format!("set the roles of {} on {resource}", target.email));
                }
            }
        }
        let statuses = if manages_roles {
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
        } else {
            Vec::new()
        };

        Ok(Outcome {
            annotations: BTreeMap::from([(
                "iam.gke.io/gcp-service-account".to_string(),
                target.email.clone(),
            )]),
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
            writes,
            grants_refused: refused,
        })
    }

    async fn cleanup_inner(&self, request: &Request<'_>) -> Result<(), CloudError> {
        let target = Self::target(request)?;
        let clients = self.clients().await?;
        let lock = self.lock_for(&target.email);
        let _serialized = lock.lock().await;
        let Some(account) = clients.get_account(&target.name).await? else {
            return Ok(());
        };
        let tags = naming::tags(&account.description);
        let release = ownership::release(
            &tags,
            ownership::Asker::of(request),
            request.admitted,
            request.binding.spec.deletion_policy,
        );
        if release == Release::Nothing {
            return Ok(());
        }
        let member = target.member.clone();
        let account_resource = Resource::Account(target.name.clone());
        clients
            .modify_policy(&account_resource, |p| {
                policy::remove_member(p, WORKLOAD_IDENTITY_USER, &member)
            })
            .await?;
        // On an adopted account, members that were there before wib are its
        // owner's, not users wib must wait for.
        let adopted = tags.get(ownership::TAG_ADOPTED).map(String::as_str) == Some("true");
        let last_out = !policy::members_of(
            &clients.get_policy(&account_resource).await?,
            WORKLOAD_IDENTITY_USER,
        )
        .iter()
        .any(|m| !adopted || naming::is_service_account_member(m));
        let deletes = matches!(release, Release::Maker | Release::Survivor) && last_out;
        if !deletes && release != Release::Maker {
            return Ok(());
        }
        // The maker's roles go with it, or with the last one out; an adopted
        // account keeps the roles it had, losing only those the spec lists.
        let account_member = format!("serviceAccount:{}", target.email);
        for resource in Self::role_resources(&target, request) {
            let listed: Vec<&String> = target
                .roles
                .iter()
                .filter(|(_, r)| *r == resource)
                .map(|(role, _)| role)
                .collect();
            clients
                .modify_policy(&Resource::Project(resource.clone()), |p| {
                    let mut changed = false;
                    for role in policy::roles_of(p, &account_member) {
                        if !adopted || listed.contains(&&role) {
                            changed |= policy::remove_member(p, &role, &account_member);
                        }
                    }
                    changed
                })
                .await?;
        }
        if !deletes {
            // Others still act as the account: the last of them deletes it.
            let mut released = tags.clone();
            released.insert(ownership::TAG_RELEASED.into(), "true".into());
            let description =
                naming::with_marker(&naming::without_marker(&account.description), &released);
            return clients
                .patch_account(&target.name, &account.display_name, &description)
                .await;
        }
        if adopted {
            return clients
                .patch_account(
                    &target.name,
                    &account.display_name,
                    &naming::without_marker(&account.description),
                )
                .await;
        }
        clients.delete_account(&target.name).await
    }
}

impl GcpProvider {
    async fn revoke_inner(&self, request: &Request<'_>) -> Result<Vec<String>, CloudError> {
        let target = Self::target(request)?;
        let clients = self.clients().await?;
        let lock = self.lock_for(&target.email);
        let _serialized = lock.lock().await;
        if clients.get_account(&target.name).await?.is_none() {
            return Ok(Vec::new());
        }
        let member = target.member.clone();
        let changed = clients
            .modify_policy(&Resource::Account(target.name.clone()), |p| {
                policy::remove_member(p, WORKLOAD_IDENTITY_USER, &member)
            })
            .await?;
        Ok(if changed {
            vec![format!("removed {WORKLOAD_IDENTITY_USER} from {member}")]
        } else {
            Vec::new()
        })
    }
}

impl CloudProvider for GcpProvider {
    fn cloud(&self) -> Cloud {
        Cloud::Gcp
    }

    fn reconcile<'a>(
        &'a self,
        request: &'a Request<'a>,
    ) -> BoxFuture<'a, Result<Outcome, CloudError>> {
        Box::pin(async move { self.renewing(self.reconcile_inner(request).await).await })
    }

    fn cleanup<'a>(&'a self, request: &'a Request<'a>) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(async move { self.renewing(self.cleanup_inner(request).await).await })
    }

    fn revoke<'a>(
        &'a self,
        request: &'a Request<'a>,
    ) -> BoxFuture<'a, Result<Vec<String>, CloudError>> {
        Box::pin(async move { self.renewing(self.revoke_inner(request).await).await })
    }

    fn check<'a>(
        &'a self,
        provider: &'a wib_api::ClusterIdentityProvider,
    ) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(async move {
            let Some(defaults) = &provider.spec.gcp else {
                return Ok(());
            };
            let project = &defaults.project_id;
            let email = naming::email(crate::CREDENTIALS_PROBE, project);
            let checked = self
                .clients()
                .await?
                .get_account(&format!("projects/{project}/serviceAccounts/{email}"))
                .await
                .map(drop);
            self.renewing(checked).await
        })
    }
}
