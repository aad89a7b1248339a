//! What a binding asks of GCP, worked out from the binding and its provider
//! alone (no client required): the account, its member, the roles, and the
//! guardrails' verdict on them.

use wib_api::Cloud;
use wib_api::binding::{GcpBinding, GcpMode};
use wib_api::conditions::Reason;
use wib_api::provider::GcpProvider as GcpDefaults;

use super::naming;
use crate::ownership;
use crate::{CloudError, GrantsRefused, Request, guardrails};

pub struct Target<'a> {
    pub spec: &'a GcpBinding,
    pub defaults: &'a GcpDefaults,
    pub account_id: String,
    pub email: String,
    /// `projects/<project>/serviceAccounts/<email>`
    pub name: String,
    /// The Kubernetes ServiceAccount as an IAM principal.
    pub member: String,
    /// Mode Direct: no Google service account; the roles go to `member`.
    pub direct: bool,
    /// (role, resource) as requested, resources defaulted.
    pub roles: Vec<(String, String)>,
}

pub use crate::error::not_configured;

impl<'a> Target<'a> {
    pub fn of(request: &Request<'a>) -> Result<Self, CloudError> {
        let (spec, defaults) =
            request.blocks(Cloud::Gcp, |s| s.gcp.as_ref(), |p| p.gcp.as_ref())?;
        let project = &defaults.project_id;
        let account_id = spec
            .account_id
            .clone()
            .or_else(|| request.recorded_identity(|s| s.gcp.as_ref()?.email.as_deref()))
            .unwrap_or_else(|| {
                naming::account_id(&request.cluster, &request.namespace, &request.binding_name)
            });
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
        let direct = spec.mode == Some(GcpMode::Direct);
        let member = match (direct, pool, &defaults.project_number) {
            (true, None, Some(number)) => naming::gke_principal(
                number,
                project,
                &request.namespace,
                &request.service_account,
            ),
            (true, None, None) => {
                return Err(not_configured(
                    "gcp.mode Direct grants roles to the ServiceAccount's principal, which names the project by number: the provider must set gcp.projectNumber",
                ));
            }
            _ => naming::member(project, pool, &request.namespace, &request.service_account),
        };
        let roles = spec
            .roles
            .iter()
            .map(|r| {
                let resource = r.resource.clone();
                (
                    r.role.clone(),
                    resource.unwrap_or_else(|| format!("projects/{project}")),
                )
            })
            .collect();
        Ok(Target {
            spec,
            defaults,
            member,
            direct,
            name: format!("projects/{project}/serviceAccounts/{email}"),
            roles,
            account_id,
            email,
        })
    }

    /// `projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`
    /// when the cluster federates through a pool (not GKE's own).
    pub fn pool_provider(&self) -> Option<String> {
        let d = self.defaults;
        match (
            &d.project_number,
            &d.workload_identity_pool,
            &d.workload_identity_provider,
        ) {
            (Some(number), Some(pool), Some(provider)) => Some(format!(
                "projects/{number}/locations/global/workloadIdentityPools/{pool}/providers/{provider}"
            )),
            _ => None,
        }
    }

    /// The account as a member of project policies.
    pub fn account_member(&self) -> String {
        format!("serviceAccount:{}", self.email)
    }

    /// What the binding's grants and messages name: the account, or in
    /// mode Direct the ServiceAccount's principal.
    pub fn identity(&self) -> &str {
        match self.direct {
            true => &self.member,
            false => &self.email,
        }
    }

    /// The guardrails: `Ok(Some(_))` when the provider's default deny
    /// refuses every grant (the account and its federation still go ahead).
    pub fn judge_grants(&self, request: &Request<'_>) -> Result<Option<GrantsRefused>, CloudError> {
        let provider = request.provider.metadata.name.clone().unwrap_or_default();
        let refused = guardrails::grants_refused(
            request.provider,
            self.roles.first().map(|(_, resource)| resource.as_str()),
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
        for (role, resource) in &self.roles {
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

    /// The project resources whose policies may hold this account's roles:
    /// the provider's project, those the spec names, and those the status
    /// says roles were granted on (a resource dropped from the spec is found
    /// there, and its grants revoked). Only wib writes the status.
    pub fn role_resources(&self, request: &Request<'_>) -> Vec<String> {
        let mut resources = vec![format!("projects/{}", self.defaults.project_id)];
        let recorded = request
            .binding
            .status
            .iter()
            .flat_map(|s| &s.role_assignments)
            .filter_map(|a| a.scope.as_ref())
            .filter(|scope| scope.starts_with("projects/"));
        for resource in self.roles.iter().map(|(_, r)| r).chain(recorded) {
            if !resources.contains(resource) {
                resources.push(resource.clone());
            }
        }
        resources
    }

    /// The roles the spec lists on `resource`.
    pub fn roles_on(&self, resource: &str) -> Vec<String> {
        self.roles
            .iter()
            .filter(|(_, r)| r == resource)
            .map(|(role, _)| role.clone())
            .collect()
    }
}

/// The account's description: `base` with wib's ownership marker.
pub fn description(request: &Request<'_>, base: &str, adopted: bool) -> String {
    let mut tags = ownership::owner_tags(
        &request.cluster,
        &request.namespace,
        &request.binding_name,
        &request.uid,
    );
    if adopted {
        tags.insert(ownership::TAG_ADOPTED.into(), "true".into());
    }
    naming::with_marker(base, &tags)
}
