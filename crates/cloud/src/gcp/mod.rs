//! GCP: a Google service account, `roles/iam.workloadIdentityUser` on it for
//! exactly the binding's Kubernetes ServiceAccount (GKE's workload pool or a
//! workload identity pool's principal), and the project roles the binding
//! lists. Policies change only by read-modify-write on the etag; a steady
//! state makes only reads.
//!
//! The steps, by file: [`target`] (what the binding asks, no client),
//! [`observe`] (reads), [`plan`] (every decision, pure), [`execute`]
//! (writes); [`iam`] holds the calls, [`naming`] and [`policy`] the pure
//! helpers.

pub mod direct;
pub mod exchange;
pub mod execute;
pub mod fleet;
pub mod iam;
pub mod naming;
pub mod observe;
pub mod plan;
pub mod policy;
pub mod policy_writes;
pub mod target;

use std::sync::Arc;

use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use google_cloud_iam_admin_v1::client::Iam;
use google_cloud_resourcemanager_v3::client::Projects;
use wib_api::Cloud;
use wib_api::conditions::Reason;

use crate::calls::Observer;
use crate::steps::{Intent, Locks, Steps};
use crate::{CloudError, Request};
use iam::Clients;
use target::{Target, not_configured};

pub const WORKLOAD_IDENTITY_USER: &str = "roles/iam.workloadIdentityUser";

/// Where wib reaches GCP, and as whom.
#[derive(Clone, Debug)]
pub struct Settings {
    pub iam_endpoint: String,
    pub projects_endpoint: String,
    /// An `external_account` credential configuration; `None` means
    /// Application Default Credentials.
    pub credentials: Option<serde_json::Value>,
    /// wib's pace, adaptive from IAM's documented quotas per project:
    /// 6,000 reads and 600 writes a minute.
    pub limits: crate::limiter::Limits,
    /// How old the fleet snapshot may be (see [`fleet`]); the operator
    /// passes half its resync interval.
    pub fleet_snapshot_ttl: std::time::Duration,
}

impl Settings {
    /// Application Default Credentials (the GKE metadata server, or an
    /// `external_account` file in `GOOGLE_APPLICATION_CREDENTIALS` for
    /// workload identity federation) and endpoints `WIB_GCP_IAM_ENDPOINT` /
    /// `WIB_GCP_RESOURCE_MANAGER_ENDPOINT` (default Google's).
    pub fn from_env(fleet_snapshot_ttl: std::time::Duration) -> Self {
        Self {
            iam_endpoint: std::env::var("WIB_GCP_IAM_ENDPOINT")
                .unwrap_or_else(|_| "https://iam.googleapis.com".into()),
            projects_endpoint: std::env::var("WIB_GCP_RESOURCE_MANAGER_ENDPOINT")
                .unwrap_or_else(|_| "https://cloudresourcemanager.googleapis.com".into()),
            credentials: None,
            limits: crate::limiter::Limits::reads_writes(100.0, 10.0).from_env("gcp"),
            fleet_snapshot_ttl,
        }
    }
}

/// The GCP cloud configured from the environment (see [`Settings::from_env`]).
pub fn from_env(observer: Observer, fleet_snapshot_ttl: std::time::Duration) -> GcpProvider {
    GcpProvider::new(observer, Settings::from_env(fleet_snapshot_ttl))
}

pub struct GcpProvider {
    observer: Observer,
    settings: Settings,
    /// Built on first use, so clusters without GCP bindings never contact
    /// Google; dropped when GCP refuses wib's token, so the next call
    /// starts from a fresh credential (its cache would otherwise serve the
    /// refused token until the expiry it believes in) and reads the token
    /// file again.
    clients: tokio::sync::Mutex<Option<Arc<Clients>>>,
    /// Outlives rebuilt clients: GCP's quota does not reset with them.
    limiter: Arc<crate::limiter::Limiter>,
    /// Outlives rebuilt clients too.
    fleet: Arc<fleet::Fleet>,
    /// One request at a time per service account (its policy is shared by
    /// every binding that names it).
    locks: Locks,
}

impl GcpProvider {
    pub fn new(observer: Observer, settings: Settings) -> Self {
        Self {
            limiter: Arc::new(crate::limiter::Limiter::new(&settings.limits)),
            fleet: Arc::new(fleet::Fleet::new(settings.fleet_snapshot_ttl)),
            observer,
            settings,
            clients: tokio::sync::Mutex::new(None),
            locks: Locks::default(),
        }
    }

    async fn connect(&self) -> Result<Clients, CloudError> {
        // The Google crates use rustls without a built-in provider; wib
        // runs on ring everywhere.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let credentials = match &self.settings.credentials {
            Some(config) => {
                google_cloud_auth::credentials::external_account::Builder::new(config.clone())
                    .build()
            }
            None => google_cloud_auth::credentials::Builder::default().build(),
        }
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
            .with_endpoint(&self.settings.iam_endpoint)
            .with_credentials(credentials.clone())
            .with_retry_policy(retry())
            .build()
            .await
            .map_err(|e| not_configured(format!("GCP IAM client: {e}")))?;
        let projects = Projects::builder()
            .with_endpoint(&self.settings.projects_endpoint)
            .with_credentials(credentials)
            .with_retry_policy(retry())
            .build()
            .await
            .map_err(|e| not_configured(format!("GCP Resource Manager client: {e}")))?;
        Ok(Clients {
            iam,
            projects,
            observer: self.observer.clone(),
            limiter: self.limiter.clone(),
            fleet: self.fleet.clone(),
            policy_writes: Default::default(),
        })
    }
}

impl Steps for GcpProvider {
    type Clients = Clients;
    type Observed = observe::Observed;
    type Action = plan::Action;

    const CLOUD: Cloud = Cloud::Gcp;

    async fn clients(&self) -> Result<Arc<Clients>, CloudError> {
        let mut slot = self.clients.lock().await;
        if let Some(clients) = slot.as_ref() {
            return Ok(clients.clone());
        }
        let clients = Arc::new(self.connect().await?);
        *slot = Some(clients.clone());
        Ok(clients)
    }

    fn validate(request: &Request<'_>, intent: Intent) -> Result<String, CloudError> {
        let target = Target::of(request)?;
        if intent == Intent::Reconcile {
            target.judge_grants(request)?;
        }
        if intent == Intent::Reconcile && !target.direct {
            crate::protected::check(
                &[&target.account_id, &target.email],
                request.provider,
                &format!("service account {}", target.email),
            )?;
        }
        Ok(target.identity().to_string())
    }

    async fn check(&self, provider: &wib_api::ClusterIdentityProvider) -> Result<(), CloudError> {
        let Some(defaults) = &provider.spec.gcp else {
            return Ok(());
        };
        let project = &defaults.project_id;
        let email = naming::email(crate::CREDENTIALS_PROBE, project);
        self.clients()
            .await?
            .get_account(&format!("projects/{project}/serviceAccounts/{email}"))
            .await
            .map(drop)
    }

    /// A refused token drops the clients (see `GcpProvider::clients`).
    async fn failed(&self, error: &CloudError) {
        if error.reason == Reason::CloudAuthenticationFailed {
            *self.clients.lock().await = None;
        }
    }

    fn locks(&self) -> &Locks {
        &self.locks
    }

    fn exchange_audience(request: &Request<'_>, _outcome: &crate::Outcome) -> Option<String> {
        exchange::audience(request)
    }

    async fn verify_exchange<'a>(
        &'a self,
        request: &'a Request<'a>,
        _outcome: &'a crate::Outcome,
        token: &'a str,
        endpoints: &'a crate::exchange::Endpoints,
    ) -> Result<(), CloudError> {
        exchange::verify(request, token, endpoints).await
    }
}
