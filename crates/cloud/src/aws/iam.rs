//! The IAM calls wib makes, on `aws-sdk-iam`: each one observed (metrics by
//! operation and result) and its errors mapped to condition reasons. Reads
//! answer `None` for `NoSuchEntity`; deletes of what is already gone succeed.

use std::collections::BTreeMap;
use std::future::Future;

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::Tag;
use serde_json::Value;
use wib_api::conditions::Reason;

use super::policy;
use crate::CloudError;
use crate::calls::{self, Observer};

/// A role as wib reads it.
#[derive(Clone, Debug)]
pub struct Role {
    pub arn: String,
    pub trust: Option<Value>,
    pub max_session_duration: Option<i32>,
    pub permissions_boundary: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// What a new role is created with.
pub struct NewRole<'a> {
    pub name: &'a str,
    pub path: &'a str,
    pub trust: &'a Value,
    pub max_session_duration: i32,
    pub permissions_boundary: Option<&'a str>,
    pub description: &'a str,
    pub tags: &'a BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct Iam {
    client: aws_sdk_iam::Client,
    observer: Observer,
    limiter: std::sync::Arc<crate::limiter::Limiter>,
    /// Raised on `ExpiredToken`: wib's credentials fetch a new session.
    stale: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    e.code()
}

fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequestsException"
    )
}

/// The result label of a failed IAM or EKS call.
fn classify<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> &'static str {
    match code(e) {
        Some("NoSuchEntity" | "ResourceNotFoundException") => "not_found",
        Some(c) if is_throttling(c) => "throttled",
        _ => "error",
    }
}

/// One AWS call, paced by `limiter` and observed as `operation`; a
/// throttled answer slows the limiter down.
pub async fn paced<T, E, R>(
    limiter: &crate::limiter::Limiter,
    observer: &Observer,
    operation: &str,
    call: impl Future<Output = Result<T, SdkError<E, R>>>,
) -> Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata,
{
    let classes = crate::limiter::read_or_write(operation);
    limiter.acquire(classes).await;
    let result = calls::observed(observer, "aws", operation, classify, call).await;
    if result.as_ref().is_err_and(|e| classify(e) == "throttled") {
        limiter.throttled(classes, None);
    }
    result
}

/// What IAM (`NoSuchEntity`) or EKS (`ResourceNotFoundException`) answers
/// for something that is not there.
pub fn not_found<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    classify(e) == "not_found"
}

/// Whether the call failed for want of credentials, not in IAM.
fn no_credentials(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = cause {
        if error
            .downcast_ref::<aws_credential_types::provider::error::CredentialsError>()
            .is_some()
        {
            return true;
        }
        cause = error.source();
    }
    false
}

/// The condition reason and message of a failed IAM call.
pub fn error<E, R>(doing: &str, e: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let reason = match code(&e) {
        Some(c) if is_throttling(c) => Reason::Throttled,
        Some(
            "AccessDenied"
            | "AccessDeniedException"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "UnrecognizedClientException",
        ) => Reason::CloudAuthorizationFailed,
        // wib's session expired under it: a new one is fetched.
        Some("ExpiredToken") => Reason::CloudAuthenticationFailed,
        // No session to be had (STS refused the token file's token, or
        // could not be reached): retried, reading the file again.
        None if no_credentials(&e) => Reason::CloudAuthenticationFailed,
        Some("MalformedPolicyDocument") => Reason::InvalidPolicyDocument,
        Some("LimitExceeded") => Reason::QuotaExceeded,
        Some("NoSuchEntity") => Reason::RoleNotFound,
        _ => Reason::TransientError,
    };
    let detail = match (code(&e), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => crate::error::chain(&e),
    };
    let mut error = CloudError::new(reason, format!("{doing}: {detail}"));
    error.source = Some(Box::new(e));
    error
}

/// What wib reads of an IAM OIDC provider.
#[derive(Clone, Debug, Default)]
pub struct OidcProvider {
    pub client_ids: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

fn tags(map: &BTreeMap<String, String>) -> Result<Vec<Tag>, CloudError> {
    map.iter()
        .map(|(k, v)| {
            Tag::builder().key(k).value(v).build().map_err(|e| {
                CloudError::new(Reason::TransientError, format!("building tag {k}: {e}"))
            })
        })
        .collect()
}

impl Iam {
    /// `limits`: see [`super::Settings::limits`].
    pub fn new(
        client: aws_sdk_iam::Client,
        observer: Observer,
        stale: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
        limits: &crate::limiter::Limits,
    ) -> Self {
        Self {
            client,
            observer,
            limiter: std::sync::Arc::new(crate::limiter::Limiter::new(limits)),
            stale,
        }
    }

    async fn call<T, E, R>(
        &self,
        operation: &str,
        call: impl Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<T, SdkError<E, R>>
    where
        E: ProvideErrorMetadata,
    {
        let result = paced(&self.limiter, &self.observer, operation, call).await;
        if let Err(e) = &result
            && code(e) == Some("ExpiredToken")
            && let Some(stale) = &self.stale
        {
            stale.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    pub async fn get_role(&self, name: &str) -> Result<Option<Role>, CloudError> {
        let out = match self
            .call("GetRole", self.client.get_role().role_name(name).send())
            .await
        {
            Ok(out) => out,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(error(&format!("reading role {name}"), e)),
        };
        let Some(role) = out.role() else {
            return Ok(None);
        };
        Ok(Some(Role {
            arn: role.arn().to_string(),
            trust: role.assume_role_policy_document().and_then(policy::parse),
            max_session_duration: role.max_session_duration(),
            permissions_boundary: role
                .permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn())
                .map(str::to_string),
            tags: role
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
        }))
    }

    pub async fn create_role(&self, role: NewRole<'_>) -> Result<Role, CloudError> {
        let doing = format!("creating role {}", role.name);
        let out = self
            .call(
                "CreateRole",
                self.client
                    .create_role()
                    .role_name(role.name)
                    .path(role.path)
                    .assume_role_policy_document(policy::compact(role.trust))
                    .max_session_duration(role.max_session_duration)
                    .set_permissions_boundary(role.permissions_boundary.map(str::to_string))
                    .description(role.description)
                    .set_tags(Some(tags(role.tags)?))
                    .send(),
            )
            .await
            .map_err(|e| error(&doing, e))?;
        let arn = out
            .role()
            .map(|r| r.arn().to_string())
            .ok_or_else(|| CloudError::new(Reason::TransientError, format!("{doing}: no role")))?;
        Ok(Role {
            arn,
            trust: Some(role.trust.clone()),
            max_session_duration: Some(role.max_session_duration),
            permissions_boundary: role.permissions_boundary.map(str::to_string),
            tags: role.tags.clone(),
        })
    }

    pub async fn update_trust(&self, name: &str, trust: &Value) -> Result<(), CloudError> {
        self.call(
            "UpdateAssumeRolePolicy",
            self.client
                .update_assume_role_policy()
                .role_name(name)
                .policy_document(policy::compact(trust))
                .send(),
        )
        .await
        .map(drop)
        .map_err(|e| error(&format!("updating the trust policy of role {name}"), e))
    }

    pub async fn update_max_session(&self, name: &str, seconds: i32) -> Result<(), CloudError> {
        self.call(
            "UpdateRole",
            self.client
                .update_role()
                .role_name(name)
                .max_session_duration(seconds)
                .send(),
        )
        .await
        .map(drop)
        .map_err(|e| error(&format!("updating role {name}"), e))
    }

    pub async fn put_boundary(&self, name: &str, arn: &str) -> Result<(), CloudError> {
        self.call(
            "PutRolePermissionsBoundary",
            self.client
                .put_role_permissions_boundary()
                .role_name(name)
                .permissions_boundary(arn)
                .send(),
        )
        .await
        .map(drop)
        .map_err(|e| {
            error(
                &format!("setting the permissions boundary of role {name}"),
                e,
            )
        })
    }

    pub async fn tag_role(
        &self,
        name: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        self.call(
            "TagRole",
            self.client
                .tag_role()
                .role_name(name)
                .set_tags(Some(tags(values)?))
                .send(),
        )
        .await
        .map(drop)
        .map_err(|e| error(&format!("tagging role {name}"), e))
    }

    pub async fn untag_role(&self, name: &str, keys: &[&str]) -> Result<(), CloudError> {
        self.call(
            "UntagRole",
            self.client
                .untag_role()
                .role_name(name)
                .set_tag_keys(Some(keys.iter().map(|k| k.to_string()).collect()))
                .send(),
        )
        .await
        .map(drop)
        .map_err(|e| error(&format!("untagging role {name}"), e))
    }

    pub async fn list_attached(&self, name: &str) -> Result<Vec<String>, CloudError> {
        let mut arns = Vec::new();
        let mut marker = None;
        loop {
            let out = self
                .call(
                    "ListAttachedRolePolicies",
                    self.client
                        .list_attached_role_policies()
                        .role_name(name)
                        .set_marker(marker.take())
                        .send(),
                )
                .await
                .map_err(|e| error(&format!("listing the policies of role {name}"), e))?;
            arns.extend(
                out.attached_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_string)),
            );
            match out.marker() {
                Some(next) if out.is_truncated() => marker = Some(next.to_string()),
                _ => return Ok(arns),
            }
        }
    }

    pub async fn attach(&self, name: &str, arn: &str) -> Result<(), CloudError> {
        self.call(
            "AttachRolePolicy",
            self.client
                .attach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send(),
        )
        .await
        .map(drop)
        .map_err(|e| error(&format!("attaching {arn} to role {name}"), e))
    }

    pub async fn detach(&self, name: &str, arn: &str) -> Result<(), CloudError> {
        match self
            .call(
                "DetachRolePolicy",
                self.client
                    .detach_role_policy()
                    .role_name(name)
                    .policy_arn(arn)
                    .send(),
            )
            .await
        {
            Err(e) if !not_found(&e) => Err(error(&format!("detaching {arn} from role {name}"), e)),
            _ => Ok(()),
        }
    }

    /// One page of every role of the account with its policies, tags and
    /// boundary (see [`super::fleet`]).
    pub async fn authorization_details(
        &self,
        marker: Option<String>,
    ) -> Result<
        aws_sdk_iam::operation::get_account_authorization_details::GetAccountAuthorizationDetailsOutput,
        SdkError<
            aws_sdk_iam::operation::get_account_authorization_details::GetAccountAuthorizationDetailsError,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >,
    >{
        self.call(
            "GetAccountAuthorizationDetails",
            self.client
                .get_account_authorization_details()
                .filter(aws_sdk_iam::types::EntityType::Role)
                .max_items(1000)
                .set_marker(marker)
                .send(),
        )
        .await
    }

    /// Every role's maximum session length (`GetAccountAuthorizationDetails`
    /// leaves it out), by role name.
    pub async fn max_session_durations(
        &self,
    ) -> Result<std::collections::HashMap<String, i32>, CloudError> {
        let mut sessions = std::collections::HashMap::new();
        let mut marker = None;
        loop {
            let out = self
                .call(
                    "ListRoles",
                    self.client
                        .list_roles()
                        .max_items(1000)
                        .set_marker(marker.take())
                        .send(),
                )
                .await
                .map_err(|e| error("listing the account's roles", e))?;
            for role in out.roles() {
                if let Some(seconds) = role.max_session_duration() {
                    sessions.insert(role.role_name().to_string(), seconds);
                }
            }
            match out.marker() {
                Some(next) if out.is_truncated() => marker = Some(next.to_string()),
                _ => return Ok(sessions),
            }
        }
    }

    /// Whether a managed policy exists (AWS managed or customer managed).
    pub async fn policy_exists(&self, arn: &str) -> Result<bool, CloudError> {
        match self
            .call("GetPolicy", self.client.get_policy().policy_arn(arn).send())
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(error(&format!("reading policy {arn}"), e)),
        }
    }

    pub async fn list_inline(&self, name: &str) -> Result<Vec<String>, CloudError> {
        let mut names = Vec::new();
        let mut marker = None;
        loop {
            let out = self
                .call(
                    "ListRolePolicies",
                    self.client
                        .list_role_policies()
                        .role_name(name)
                        .set_marker(marker.take())
                        .send(),
                )
                .await
                .map_err(|e| error(&format!("listing the inline policies of role {name}"), e))?;
            names.extend(out.policy_names().iter().cloned());
            match out.marker() {
                Some(next) if out.is_truncated() => marker = Some(next.to_string()),
                _ => return Ok(names),
            }
        }
    }

    pub async fn get_inline(&self, name: &str, policy: &str) -> Result<Option<Value>, CloudError> {
        match self
            .call(
                "GetRolePolicy",
                self.client
                    .get_role_policy()
                    .role_name(name)
                    .policy_name(policy)
                    .send(),
            )
            .await
        {
            Ok(out) => Ok(policy::parse(out.policy_document())),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(error(
                &format!("reading inline policy {policy} of role {name}"),
                e,
            )),
        }
    }

    pub async fn put_inline(
        &self,
        name: &str,
        policy: &str,
        document: &Value,
    ) -> Result<(), CloudError> {
        self.call(
            "PutRolePolicy",
            self.client
                .put_role_policy()
                .role_name(name)
                .policy_name(policy)
                .policy_document(policy::compact(document))
                .send(),
        )
        .await
        .map(drop)
        .map_err(|e| error(&format!("putting inline policy {policy} on role {name}"), e))
    }

    pub async fn delete_inline(&self, name: &str, policy: &str) -> Result<(), CloudError> {
        match self
            .call(
                "DeleteRolePolicy",
                self.client
                    .delete_role_policy()
                    .role_name(name)
                    .policy_name(policy)
                    .send(),
            )
            .await
        {
            Err(e) if !not_found(&e) => Err(error(
                &format!("deleting inline policy {policy} of role {name}"),
                e,
            )),
            _ => Ok(()),
        }
    }

    pub async fn delete_role(&self, name: &str) -> Result<(), CloudError> {
        match self
            .call(
                "DeleteRole",
                self.client.delete_role().role_name(name).send(),
            )
            .await
        {
            Err(e) if !not_found(&e) => Err(error(&format!("deleting role {name}"), e)),
            _ => Ok(()),
        }
    }

    /// An IAM OIDC provider's client IDs (audiences) and tags, if it exists.
    pub async fn get_oidc_provider(&self, arn: &str) -> Result<Option<OidcProvider>, CloudError> {
        match self
            .call(
                "GetOpenIDConnectProvider",
                self.client
                    .get_open_id_connect_provider()
                    .open_id_connect_provider_arn(arn)
                    .send(),
            )
            .await
        {
            Ok(out) => Ok(Some(OidcProvider {
                client_ids: out.client_id_list().to_vec(),
                tags: out
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect(),
            })),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(error(&format!("reading OIDC provider {arn}"), e)),
        }
    }

    /// The ARNs of every IAM OIDC provider in the account (IAM answers
    /// with the whole list; it has no pagination).
    pub async fn list_oidc_providers(&self) -> Result<Vec<String>, CloudError> {
        let out = self
            .call(
                "ListOpenIDConnectProviders",
                self.client.list_open_id_connect_providers().send(),
            )
            .await
            .map_err(|e| error("listing IAM OIDC providers", e))?;
        Ok(out
            .open_id_connect_provider_list()
            .iter()
            .filter_map(|p| p.arn().map(str::to_string))
            .collect())
    }

    pub async fn delete_oidc_provider(&self, arn: &str) -> Result<(), CloudError> {
        match self
            .call(
                "DeleteOpenIDConnectProvider",
                self.client
                    .delete_open_id_connect_provider()
                    .open_id_connect_provider_arn(arn)
                    .send(),
            )
            .await
        {
            Err(e) if !not_found(&e) => Err(error(&format!("deleting OIDC provider {arn}"), e)),
            _ => Ok(()),
        }
    }

    pub async fn tag_oidc_provider(
        &self,
        arn: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        self.call(
            "TagOpenIDConnectProvider",
            self.client
                .tag_open_id_connect_provider()
                .open_id_connect_provider_arn(arn)
                .set_tags(Some(tags(values)?))
                .send(),
        )
        .await
        .map(drop)
        .map_err(|e| error(&format!("tagging OIDC provider {arn}"), e))
    }

    pub async fn untag_oidc_provider(&self, arn: &str, key: &str) -> Result<(), CloudError> {
        self.call(
            "UntagOpenIDConnectProvider",
            self.client
                .untag_open_id_connect_provider()
                .open_id_connect_provider_arn(arn)
                .tag_keys(key)
                .send(),
        )
        .await
        .map(drop)
        .map_err(|e| error(&format!("untagging OIDC provider {arn}"), e))
    }

    pub async fn remove_audience(&self, arn: &str, audience: &str) -> Result<(), CloudError> {
        self.call(
            "RemoveClientIDFromOpenIDConnectProvider",
            self.client
                .remove_client_id_from_open_id_connect_provider()
                .open_id_connect_provider_arn(arn)
                .client_id(audience)
                .send(),
        )
        .await
        .map(drop)
        .map_err(|e| error(&format!("removing audience {audience} from {arn}"), e))
    }

    pub async fn create_oidc_provider(
        &self,
        issuer: &str,
        audience: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<String, CloudError> {
        let doing = format!("creating the IAM OIDC provider for {issuer}");
        let out = self
            .call(
                "CreateOpenIDConnectProvider",
                self.client
                    .create_open_id_connect_provider()
                    .url(issuer)
                    .client_id_list(audience)
                    .set_tags(Some(tags(values)?))
                    .send(),
            )
            .await
            .map_err(|e| error(&doing, e))?;
        out.open_id_connect_provider_arn()
            .map(str::to_string)
            .ok_or_else(|| CloudError::new(Reason::TransientError, format!("{doing}: no ARN")))
    }

    pub async fn add_audience(&self, arn: &str, audience: &str) -> Result<(), CloudError> {
        self.call(
            "AddClientIDToOpenIDConnectProvider",
            self.client
                .add_client_id_to_open_id_connect_provider()
                .open_id_connect_provider_arn(arn)
                .client_id(audience)
                .send(),
        )
        .await
        .map(drop)
        .map_err(|e| error(&format!("adding audience {audience} to {arn}"), e))
    }
}
