//! Thin calls to ARM through the Azure SDK crates, each error mapped to a
//! condition reason. No decisions here: those live in `plan.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use azure_core::error::ErrorKind;
use azure_core::{ExponentialRetryOptions, RetryOptions, TransportOptions};
use azure_mgmt_authorization::package_2022_04_01 as authz;
use azure_mgmt_keyvault::profile_hybrid_2020_09_01 as kv;
use azure_mgmt_msi::package_2023_01_31 as msi;
use futures::StreamExt;
use wib_api::conditions::Reason;

use crate::CloudError;

/// Where and how wib reaches Azure.
#[derive(Clone)]
pub struct Clients {
    pub msi: msi::Client,
    pub authz: authz::Client,
    pub kv: kv::Client,
}

/// What wib reads of an identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub client_id: String,
    pub principal_id: String,
    pub tenant_id: String,
    pub location: String,
    pub tags: BTreeMap<String, String>,
}

/// What wib reads of a federated credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

/// What wib reads of a role definition: enough to judge it.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleDefinition {
    pub id: String,
    pub name: String,
    /// `CustomRole`: its permissions are the tenant admin's, so they are
    /// read each time rather than cached.
    pub custom: bool,
    pub actions: Vec<String>,
}

impl RoleDefinition {
    fn from_sdk(d: authz::models::RoleDefinition) -> Option<Self> {
        let id = d.id?;
        let props = d.properties.unwrap_or_default();
        Some(Self {
            id,
            name: props.role_name.unwrap_or_default(),
            custom: props
                .type_
                .is_some_and(|t| t.eq_ignore_ascii_case("CustomRole")),
            actions: props
                .permissions
                .into_iter()
                .flat_map(|p| p.actions)
                .collect(),
        })
    }

    pub fn guid(&self) -> &str {
        self.id.rsplit('/').next().unwrap_or(&self.id)
    }
}

/// What wib reads of a role assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub id: String,
    pub name: String,
    pub scope: String,
    pub role_definition_id: String,
}

/// The identity's coordinates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRef {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
}

impl Clients {
    pub fn new(
        credential: Arc<dyn azure_core::auth::TokenCredential>,
        endpoint: azure_core::Url,
        http: Arc<dyn azure_core::HttpClient>,
    ) -> Result<Self, CloudError> {
        // The SDK honours Retry-After on 429 and backs off on 5xx; a short
        // budget keeps one reconcile bounded, and the controller retries later.
        let retry = || {
            RetryOptions::exponential(
                ExponentialRetryOptions::default()
                    .max_retries(3u32)
                    .initial_delay(Duration::from_millis(200))
                    .max_delay(Duration::from_secs(10)),
            )
        };
        let msi = msi::Client::builder(credential.clone())
            .endpoint(endpoint.clone())
            .retry(retry())
            .transport(TransportOptions::new(http.clone()))
            .build()
            .map_err(|e| error("configuring the ARM client", e))?;
        let authz = authz::Client::builder(credential.clone())
            .endpoint(endpoint.clone())
            .retry(retry())
            .transport(TransportOptions::new(http.clone()))
            .build()
            .map_err(|e| error("configuring the ARM client", e))?;
        let kv = kv::Client::builder(credential)
            .endpoint(endpoint)
            .retry(retry())
            .transport(TransportOptions::new(http))
            .build()
            .map_err(|e| error("configuring the ARM client", e))?;
        Ok(Self { msi, authz, kv })
    }

    pub async fn get_identity(&self, at: &IdentityRef) -> Result<Option<Identity>, CloudError> {
        let result = self
            .msi
            .user_assigned_identities_client()
            .get(&at.subscription, &at.resource_group, &at.name)
            .await;
        match result {
            Ok(identity) => Ok(Some(to_identity(identity))),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(error(&format!("reading identity {}", at.name), e)),
        }
    }

    pub async fn put_identity(
        &self,
        at: &IdentityRef,
        location: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<Identity, CloudError> {
        let mut tracked = msi::models::TrackedResource::new(location.to_string());
        tracked.tags = Some(serde_json::to_value(tags).unwrap_or_default());
        let identity = self
            .msi
            .user_assigned_identities_client()
            .create_or_update(
                &at.subscription,
                &at.resource_group,
                &at.name,
                msi::models::Identity::new(tracked),
            )
            .await
            .map_err(|e| error(&format!("creating identity {}", at.name), e))?;
        Ok(to_identity(identity))
    }

    pub async fn delete_identity(&self, at: &IdentityRef) -> Result<(), CloudError> {
        match self
            .msi
            .user_assigned_identities_client()
            .delete(&at.subscription, &at.resource_group, &at.name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(error(&format!("deleting identity {}", at.name), e)),
        }
    }

    pub async fn list_credentials(&self, at: &IdentityRef) -> Result<Vec<Credential>, CloudError> {
        let mut stream = self
            .msi
            .federated_identity_credentials_client()
            .list(&at.subscription, &at.resource_group, &at.name)
            .into_stream();
        let mut out = Vec::new();
        while let Some(page) = stream.next().await {
            let page = page
                .map_err(|e| error(&format!("listing federated credentials of {}", at.name), e))?;
            for fic in page.value {
                let props = fic.properties.unwrap_or_else(|| {
                    msi::models::FederatedIdentityCredentialProperties::new(
                        String::new(),
                        String::new(),
                        Vec::new(),
                    )
                });
                out.push(Credential {
                    name: fic.proxy_resource.resource.name.unwrap_or_default(),
                    issuer: props.issuer,
                    subject: props.subject,
                    audiences: props.audiences,
                });
            }
        }
        Ok(out)
    }

    pub async fn put_credential(
        &self,
        at: &IdentityRef,
        credential: &Credential,
    ) -> Result<(), CloudError> {
        let mut body = msi::models::FederatedIdentityCredential::new();
        body.properties = Some(msi::models::FederatedIdentityCredentialProperties::new(
            credential.issuer.clone(),
            credential.subject.clone(),
            credential.audiences.clone(),
        ));
        self.msi
            .federated_identity_credentials_client()
            .create_or_update(
                &at.subscription,
                &at.resource_group,
                &at.name,
                &credential.name,
                body,
            )
            .await
            .map_err(|e| {
                error(
                    &format!("writing federated credential {}", credential.name),
                    e,
                )
            })?;
        Ok(())
    }

    pub async fn delete_credential(&self, at: &IdentityRef, name: &str) -> Result<(), CloudError> {
        match self
            .msi
            .federated_identity_credentials_client()
            .delete(&at.subscription, &at.resource_group, &at.name, name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(error(&format!("deleting federated credential {name}"), e)),
        }
    }

    /// The role definition whose name is exactly `role_name`, visible at `scope`.
    pub async fn find_role(
        &self,
        scope: &str,
        role_name: &str,
    ) -> Result<Option<RoleDefinition>, CloudError> {
        let mut stream = self
            .authz
            .role_definitions_client()
            .list(sdk_scope(scope))
            .filter(format!("roleName eq '{}'", role_name.replace('\'', "''")))
            .into_stream();
        while let Some(page) = stream.next().await {
            let page = page.map_err(|e| error(&format!("resolving role {role_name:?}"), e))?;
            if let Some(found) = page.value.into_iter().find_map(RoleDefinition::from_sdk) {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The role definition with this GUID at `scope`, if it exists.
    pub async fn get_role(
        &self,
        scope: &str,
        guid: &str,
    ) -> Result<Option<RoleDefinition>, CloudError> {
        match self
            .authz
            .role_definitions_client()
            .get(sdk_scope(scope), guid)
            .await
        {
            Ok(d) => Ok(RoleDefinition::from_sdk(d)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(error(&format!("reading role definition {guid}"), e)),
        }
    }

    /// Role assignments of `principal_id` at, above or below `scope`.
    pub async fn list_assignments(
        &self,
        scope: &str,
        principal_id: &str,
    ) -> Result<Vec<Assignment>, CloudError> {
        let all = self.list_assignments_of(scope, Some(principal_id)).await?;
        Ok(all.into_iter().map(|(_, a)| a).collect())
    }

    /// Every role assignment for `scope`, by principal ID (see
    /// [`super::fleet`]), and, given a principal, only its.
    pub async fn list_assignments_of(
        &self,
        scope: &str,
        principal_id: Option<&str>,
    ) -> Result<Vec<(String, Assignment)>, CloudError> {
        let mut list = self
            .authz
            .role_assignments_client()
            .list_for_scope(sdk_scope(scope));
        if let Some(principal_id) = principal_id {
            list = list.filter(format!("principalId eq '{principal_id}'"));
        }
        let mut stream = list.into_stream();
        let mut out = Vec::new();
        while let Some(page) = stream.next().await {
            let page = page.map_err(|e| error("listing role assignments", e))?;
            for a in page.value {
                let props = a.properties;
                let principal = props
                    .as_ref()
                    .map(|p| p.principal_id.to_ascii_lowercase())
                    .unwrap_or_default();
                out.push((
                    principal,
                    Assignment {
                        id: a.id.unwrap_or_default(),
                        name: a.name.unwrap_or_default(),
                        scope: props
                            .as_ref()
                            .and_then(|p| p.scope.clone())
                            .unwrap_or_default(),
                        role_definition_id: props.map(|p| p.role_definition_id).unwrap_or_default(),
                    },
                ));
            }
        }
        Ok(out)
    }

    /// Every user-assigned identity of a resource group.
    pub async fn list_identities(
        &self,
        subscription: &str,
        resource_group: &str,
    ) -> Result<Vec<Identity>, CloudError> {
        let mut stream = self
            .msi
            .user_assigned_identities_client()
            .list_by_resource_group(subscription, resource_group)
            .into_stream();
        let mut out = Vec::new();
        while let Some(page) = stream.next().await {
            let page =
                page.map_err(|e| error(&format!("listing the identities of {resource_group}"), e))?;
            out.extend(page.value.into_iter().map(to_identity));
        }
        Ok(out)
    }

    /// Creates a role assignment; `Ok(false)` when the same assignment already
    /// exists under another name (`RoleAssignmentExists`), which counts as present.
    pub async fn create_assignment(
        &self,
        scope: &str,
        name: &str,
        role_definition_id: &str,
        principal_id: &str,
    ) -> Result<bool, CloudError> {
        let mut props = authz::models::RoleAssignmentProperties::new(
            role_definition_id.to_string(),
            principal_id.to_string(),
        );
        props.principal_type =
            Some(authz::models::role_assignment_properties::PrincipalType::ServicePrincipal);
        match self
            .authz
            .role_assignments_client()
            .create(
                sdk_scope(scope),
                name,
                authz::models::RoleAssignmentCreateParameters::new(props),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if code(&e).as_deref() == Some("RoleAssignmentExists") => Ok(false),
            Err(e) => Err(error(&format!("assigning role on {scope}"), e)),
        }
    }

    pub async fn delete_assignment(&self, scope: &str, name: &str) -> Result<(), CloudError> {
        match self
            .authz
            .role_assignments_client()
            .delete(sdk_scope(scope), name)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(error(&format!("removing role assignment {name}"), e)),
        }
    }
}

/// The Authorization SDK's paths are `/{scope}/providers/...`: the scope
/// goes in without its leading slash, or the URL would start with `//`.
fn sdk_scope(scope: &str) -> &str {
    scope.trim_start_matches('/')
}

fn to_identity(identity: msi::models::Identity) -> Identity {
    let props = identity.properties.unwrap_or_default();
    Identity {
        id: identity.tracked_resource.resource.id.unwrap_or_default(),
        client_id: props.client_id.unwrap_or_default(),
        principal_id: props.principal_id.unwrap_or_default(),
        tenant_id: props.tenant_id.unwrap_or_default(),
        location: identity.tracked_resource.location.clone(),
        tags: identity
            .tracked_resource
            .tags
            .and_then(|t| serde_json::from_value(t).ok())
            .unwrap_or_default(),
    }
}

pub(super) fn status(e: &azure_core::Error) -> Option<u16> {
    match e.kind() {
        ErrorKind::HttpResponse { status, .. } => Some(u16::from(*status)),
        _ => None,
    }
}

fn code(e: &azure_core::Error) -> Option<String> {
    match e.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.clone(),
        _ => None,
    }
}

/// Maps an SDK error to the reason a binding shows.
pub fn error(doing: &str, e: azure_core::Error) -> CloudError {
    let reason = match (status(&e), code(&e).as_deref(), e.kind()) {
        (_, Some("PrincipalNotFound"), _) => Reason::WaitingForPrincipalReplication,
        (Some(429), _, _) => Reason::Throttled,
        // 401, or no token at all: wib's own credential, which can heal
        // (expiry, rotation, an Entra hiccup). 403: a missing permission.
        (Some(401), _, _) | (_, _, ErrorKind::Credential) => Reason::CloudAuthenticationFailed,
        (Some(403), _, _) => Reason::CloudAuthorizationFailed,
        _ => Reason::TransientError,
    };
    let message = match reason {
        Reason::WaitingForPrincipalReplication => {
            format!(
                "{doing}: the new identity's service principal has not replicated in Entra ID yet; retrying"
            )
        }
        _ => format!("{doing}: {e}"),
    };
    let mut err = CloudError::new(reason, message);
    err.source = Some(Box::new(e));
    err
}
