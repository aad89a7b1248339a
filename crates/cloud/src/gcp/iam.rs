//! The IAM and Resource Manager calls wib makes, on the official Google
//! Cloud Rust crates: each observed (metrics by operation and result), errors
//! mapped to condition reasons, and IAM policies changed by read-modify-write
//! on the etag, retried as a whole when GCP answers 409 `ABORTED`.

use std::future::Future;
use std::time::Duration;

use google_cloud_gax::error::Error;
use google_cloud_gax::error::rpc::Code;
use google_cloud_iam_admin_v1::client::Iam;
use google_cloud_iam_admin_v1::model::ServiceAccount;
use google_cloud_iam_v1::model::{GetPolicyOptions, Policy};
use google_cloud_resourcemanager_v3::client::Projects;
use wib_api::conditions::Reason;

use crate::CloudError;
use crate::calls::{self, Observer};

/// The IAM policy version that carries IAM Conditions.
const POLICY_VERSION: i32 = 3;

/// Attempts of one read-modify-write before giving up for this reconcile.
const POLICY_ATTEMPTS: u32 = 6;

#[derive(Clone)]
pub struct Clients {
    pub iam: Iam,
    pub projects: Projects,
    pub observer: Observer,
    /// Adaptive, from IAM's documented quotas (see [`super::Settings`]).
    pub limiter: std::sync::Arc<crate::limiter::Limiter>,
    /// Accounts and project policies read for the whole fleet.
    pub fleet: std::sync::Arc<super::fleet::Fleet>,
    /// Edits of one policy waiting to share a write.
    pub policy_writes: std::sync::Arc<super::policy_writes::PolicyWrites>,
}

/// Which IAM policy: a project's (Resource Manager) or a service account's (IAM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    Project(String),
    Account(String),
}

impl Resource {
    pub fn name(&self) -> &str {
        match self {
            Resource::Project(n) | Resource::Account(n) => n,
        }
    }
}

fn code(e: &Error) -> Option<Code> {
    e.status().map(|s| s.code)
}

fn classify(e: &Error) -> &'static str {
    match code(e) {
        Some(Code::NotFound) => "not_found",
        Some(Code::ResourceExhausted) => "throttled",
        _ => "error",
    }
}

/// The condition reason and message of a failed call.
pub fn error(doing: &str, e: Error) -> CloudError {
    let reason = match code(&e) {
        Some(Code::ResourceExhausted) => Reason::Throttled,
        Some(Code::PermissionDenied) => Reason::CloudAuthorizationFailed,
        // wib's own token (expired, refused, or not to be had): can heal.
        Some(Code::Unauthenticated) => Reason::CloudAuthenticationFailed,
        _ if e.is_authentication() => Reason::CloudAuthenticationFailed,
        _ => Reason::TransientError,
    };
    let detail = match e.status() {
        Some(status) => format!("{}: {}", status.code.name(), status.message),
        None => e.to_string(),
    };
    let mut error = CloudError::new(reason, format!("{doing}: {detail}"));
    error.retry_after = retry_delay(&e);
    error.source = Some(Box::new(e));
    error
}

/// The wait a `RetryInfo` detail asks for (GCP's form of Retry-After).
fn retry_delay(e: &Error) -> Option<Duration> {
    use google_cloud_gax::error::rpc::StatusDetails;
    e.status()?.details.iter().find_map(|detail| match detail {
        StatusDetails::RetryInfo(info) => info
            .retry_delay
            .as_ref()
            .and_then(|d| u64::try_from(d.seconds()).ok())
            .map(Duration::from_secs),
        _ => None,
    })
}

impl Clients {
    async fn call<T>(
        &self,
        operation: &str,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let classes = crate::limiter::read_or_write(operation);
        self.limiter.acquire(classes).await;
        let result = calls::observed(&self.observer, "gcp", operation, classify, call).await;
        if result.as_ref().is_err_and(|e| classify(e) == "throttled") {
            self.limiter.throttled(classes, None);
        }
        result
    }

    /// Every service account of `project`, a hundred a page.
    pub async fn list_accounts(&self, project: &str) -> Result<Vec<ServiceAccount>, CloudError> {
        let mut accounts = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .call(
                    "ListServiceAccounts",
                    self.iam
                        .list_service_accounts()
                        .set_name(format!("projects/{project}"))
                        .set_page_size(100)
                        .set_page_token(token.clone())
                        .send(),
                )
                .await
                .map_err(|e| error(&format!("listing the service accounts of {project}"), e))?;
            accounts.extend(page.accounts);
            if page.next_page_token.is_empty() {
                return Ok(accounts);
            }
            token = page.next_page_token;
        }
    }

    pub async fn get_account(&self, name: &str) -> Result<Option<ServiceAccount>, CloudError> {
        match self
            .call(
                "GetServiceAccount",
                self.iam.get_service_account().set_name(name).send(),
            )
            .await
        {
            Ok(account) => Ok(Some(account)),
            Err(e) if code(&e) == Some(Code::NotFound) => Ok(None),
            Err(e) => Err(error(&format!("reading service account {name}"), e)),
        }
    }

    /// Creates the account; `None` when it already exists (a retried
    /// reconcile after a crash finds it instead).
    pub async fn create_account(
        &self,
        project: &str,
        account_id: &str,
        display_name: &str,
        description: &str,
    ) -> Result<Option<ServiceAccount>, CloudError> {
        match self
            .call(
                "CreateServiceAccount",
                self.iam
                    .create_service_account()
                    .set_name(format!("projects/{project}"))
                    .set_account_id(account_id)
                    .set_service_account(
                        ServiceAccount::new()
                            .set_display_name(display_name)
                            .set_description(description),
                    )
                    .send(),
            )
            .await
        {
            Ok(account) => Ok(Some(account)),
            Err(e) if code(&e) == Some(Code::AlreadyExists) => Ok(None),
            Err(e) if code(&e) == Some(Code::InvalidArgument) => {
                let mut err = error(&format!("creating service account {account_id}"), e);
                err.reason = Reason::CloudNotConfigured;
                Err(err)
            }
            Err(e) => Err(error(&format!("creating service account {account_id}"), e)),
        }
    }

    pub async fn patch_account(
        &self,
        name: &str,
        display_name: &str,
        description: &str,
    ) -> Result<(), CloudError> {
        self.call(
            "PatchServiceAccount",
            self.iam
                .patch_service_account()
                .set_service_account(
                    ServiceAccount::new()
                        .set_name(name)
                        .set_display_name(display_name)
                        .set_description(description),
                )
                .set_update_mask(
                    google_cloud_wkt::FieldMask::default()
                        .set_paths(["display_name", "description"]),
                )
                .send(),
        )
        .await
        .map(drop)
        .map_err(|e| error(&format!("updating service account {name}"), e))
    }

    pub async fn delete_account(&self, name: &str) -> Result<(), CloudError> {
        match self
            .call(
                "DeleteServiceAccount",
                self.iam.delete_service_account().set_name(name).send(),
            )
            .await
        {
            Err(e) if code(&e) != Some(Code::NotFound) => {
                Err(error(&format!("deleting service account {name}"), e))
            }
            _ => Ok(()),
        }
    }

    /// Reads at policy version 3: GCP refuses a lower version for a policy
    /// with conditional bindings (which someone else may have written).
    pub async fn get_policy(&self, resource: &Resource) -> Result<Policy, CloudError> {
        let options = || GetPolicyOptions::new().set_requested_policy_version(POLICY_VERSION);
        let result = match resource {
            Resource::Project(name) => {
                self.call(
                    "GetProjectIamPolicy",
                    self.projects
                        .get_iam_policy()
                        .set_resource(name)
                        .set_options(options())
                        .send(),
                )
                .await
            }
            Resource::Account(name) => {
                self.call(
                    "GetServiceAccountIamPolicy",
                    self.iam
                        .get_iam_policy()
                        .set_resource(name)
                        .set_options(options())
                        .send(),
                )
                .await
            }
        };
        result.map_err(|e| error(&format!("reading the IAM policy of {}", resource.name()), e))
    }

    /// Sets the policy; `Ok(false)` when the etag was stale (409 `ABORTED`).
    async fn set_policy(&self, resource: &Resource, policy: Policy) -> Result<bool, CloudError> {
        // Written at version 3 whenever a binding has a condition, or GCP
        // refuses the write (a lower version would drop the conditions).
        let policy = if policy.bindings.iter().any(|b| b.condition.is_some()) {
            policy.set_version(POLICY_VERSION)
        } else {
            policy
        };
        let result = match resource {
            Resource::Project(name) => {
                self.call(
                    "SetProjectIamPolicy",
                    self.projects
                        .set_iam_policy()
                        .set_resource(name)
                        .set_policy(policy)
                        .send(),
                )
                .await
            }
            Resource::Account(name) => {
                self.call(
                    "SetServiceAccountIamPolicy",
                    self.iam
                        .set_iam_policy()
                        .set_resource(name)
                        .set_policy(policy)
                        .send(),
                )
                .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some(Code::Aborted) => Ok(false),
            Err(e) if code(&e) == Some(Code::InvalidArgument) => {
                // GCP answers INVALID_ARGUMENT both for a role that does not
                // exist and for a policy past its 1,500 principals.
                let full = e
                    .status()
                    .is_some_and(|s| s.message.contains("maximum allowed size"));
                let mut err = error(&format!("setting the IAM policy of {}", resource.name()), e);
                err.reason = if full {
                    Reason::QuotaExceeded
                } else {
                    Reason::RoleNotFound
                };
                Err(err)
            }
            Err(e) => Err(error(
                &format!("setting the IAM policy of {}", resource.name()),
                e,
            )),
        }
    }

    /// Read-modify-write: each of `edits` changes a fresh copy of the
    /// policy and says whether it changed anything; only when one did is it
    /// written, with the etag it was read with. A concurrent writer's change
    /// makes GCP answer ABORTED and the whole cycle runs again on the new
    /// policy, so nothing they added is lost. Returns, per edit, whether it
    /// changed the policy that was written.
    pub(super) async fn read_modify_write(
        &self,
        resource: &Resource,
        edits: &[&super::policy_writes::Edit],
    ) -> Result<Vec<bool>, CloudError> {
        for attempt in 0..POLICY_ATTEMPTS {
            let mut policy = self.get_policy(resource).await?;
            let changed: Vec<bool> = edits.iter().map(|edit| edit(&mut policy)).collect();
            if !changed.contains(&true) {
                return Ok(changed);
            }
            let written = self.set_policy(resource, policy).await;
            self.fleet.forget(resource);
            if written? {
                return Ok(changed);
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        Err(CloudError::new(
            Reason::TransientError,
            format!(
                "the IAM policy of {} kept changing under wib ({POLICY_ATTEMPTS} attempts); retrying later",
                resource.name()
            ),
        ))
    }
}
