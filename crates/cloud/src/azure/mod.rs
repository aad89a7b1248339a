//! Azure: a user-assigned managed identity, its federated identity credential
//! for the cluster's issuer and the binding's ServiceAccount, and its role
//! assignments. Every step reads first and writes only what differs, so a
//! steady state makes no writes.
//!
//! The steps, by file: [`target`] (what the binding asks, no client),
//! [`observe`] (reads), [`plan`] (every decision, pure), [`execute`]
//! (writes); [`arm`] holds the calls, [`naming`] the names, [`observed`]
//! the transport and [`credential`] wib's own credential. Key Vault access
//! policies have their calls in [`vaults`] and their decisions in
//! [`access_policies`].

pub mod access_policies;
pub mod arm;
pub mod credential;
pub mod exchange;
pub mod execute;
pub mod fleet;
pub mod naming;
pub mod observe;
pub mod observed;
pub mod plan;
pub mod target;
pub mod vaults;

use std::sync::Arc;

use wib_api::Cloud;
use wib_api::conditions::Reason;

use crate::steps::{Intent, Locks, Steps};
use crate::{CloudError, Request};
use arm::IdentityRef;
use target::Target;

pub const AUDIENCE: &str = "api://AzureADTokenExchange";
/// Entra allows 20 federated identity credentials per identity.
pub const MAX_CREDENTIALS: usize = 20;

/// Where wib reaches Azure, and as whom.
#[derive(Clone, Debug)]
pub struct Settings {
    pub arm_endpoint: azure_core::Url,
    /// Trusted besides the system roots, for ARM and Entra alike.
    pub extra_roots: Vec<reqwest::Certificate>,
    /// wib's own workload identity; `None` means the default chain
    /// (managed identity).
    pub workload_identity: Option<credential::WorkloadIdentity>,
    /// wib's pace, adaptive from ARM's documented limits per subscription
    /// and principal (see [`observed::arm_limits`]).
    pub limits: crate::limiter::Limits,
    /// How old the fleet snapshot may be (see [`fleet`]); the operator
    /// passes half its resync interval.
    pub fleet_snapshot_ttl: std::time::Duration,
}

impl Settings {
    /// The ARM endpoint (`WIB_AZURE_ARM_ENDPOINT`, default public cloud),
    /// extra CAs for it (`WIB_CLOUD_CA_FILE`), wib's own ambient credential
    /// — workload identity when `AZURE_FEDERATED_TOKEN_FILE` is set (its
    /// authority from `AZURE_AUTHORITY_HOST`), else the default chain — and
    /// its pace (adaptive from ARM's limits, `WIB_AZURE_CALLS_PER_SECOND`
    /// to replace them). Endpoint, CA
    /// file and credential are read in the order they were always reported
    /// in, each failing with the same reason and message.
    pub fn from_env(fleet_snapshot_ttl: std::time::Duration) -> Result<Self, CloudError> {
        let endpoint = std::env::var("WIB_AZURE_ARM_ENDPOINT")
            .unwrap_or_else(|_| "https://management.azure.com".into());
        let arm_endpoint = azure_core::Url::parse(&endpoint).map_err(|e| {
            CloudError::new(
                Reason::CloudNotConfigured,
                format!("WIB_AZURE_ARM_ENDPOINT: {e}"),
            )
        })?;
        let extra_roots = crate::http::extra_roots()?;
        let workload_identity = match std::env::var_os("AZURE_FEDERATED_TOKEN_FILE") {
            Some(_) => Some(
                credential::WorkloadIdentity::from_env()
                    .map_err(|e| arm::error("configuring workload identity", e))?,
            ),
            None => None,
        };
        Ok(Self {
            arm_endpoint,
            extra_roots,
            workload_identity,
            limits: observed::arm_limits().from_env("azure"),
            fleet_snapshot_ttl,
        })
    }
}

/// The Azure provider as configured by the environment (see [`Settings::from_env`]).
pub fn from_env(
    observer: crate::calls::Observer,
    fleet_snapshot_ttl: std::time::Duration,
) -> Result<AzureProvider, CloudError> {
    AzureProvider::from_settings(observer, Settings::from_env(fleet_snapshot_ttl)?)
}

/// What the steps reach Azure with.
pub struct Clients {
    pub arm: arm::Clients,
    /// Outlives every request: built-in roles never change.
    pub roles: observe::BuiltInRoles,
    /// Identities and role assignments read for the whole fleet.
    pub fleet: fleet::Fleet,
}

pub struct AzureProvider {
    clients: Arc<Clients>,
    /// One request at a time per identity: Azure rejects concurrent
    /// credential writes to one identity with 409, and its federation and
    /// grants are shared by every binding that names it.
    locks: Locks,
    /// How wib reaches Entra ID on a binding's behalf (`verifyExchange`).
    http: Option<Arc<dyn azure_core::HttpClient>>,
}

impl AzureProvider {
    /// The provider reaching Azure as `settings` say, reporting its calls
    /// to `observer`.
    pub fn from_settings(
        observer: crate::calls::Observer,
        settings: Settings,
    ) -> Result<Self, CloudError> {
        let client = crate::http::client_trusting(&settings.extra_roots)?;
        let observed = observed::ObservedHttp::new(Arc::new(client), observer, &settings.limits);
        let refused = observed.refused.clone();
        let http: Arc<dyn azure_core::HttpClient> = Arc::new(observed);
        // The kubelet rotates the projected token file (default every hour):
        // each new access token is asked for with the file as it is then.
        let credential: Arc<dyn azure_core::auth::TokenCredential> =
            match settings.workload_identity {
                Some(identity) => Arc::new(credential::RotatingWorkloadIdentity::new(
                    http.clone(),
                    identity,
                    refused,
                )),
                None => azure_identity::create_default_credential()
                    .map_err(|e| arm::error("configuring Azure credentials", e))?,
            };
        let mut provider = Self::new(
            arm::Clients::new(credential, settings.arm_endpoint, http.clone())?,
            settings.fleet_snapshot_ttl,
        );
        provider.http = Some(http);
        Ok(provider)
    }

    pub fn new(arm: arm::Clients, fleet_snapshot_ttl: std::time::Duration) -> Self {
        Self {
            clients: Arc::new(Clients {
                arm,
                roles: observe::BuiltInRoles::default(),
                fleet: fleet::Fleet::new(fleet_snapshot_ttl),
            }),
            locks: Locks::default(),
            http: None,
        }
    }
}

impl Steps for AzureProvider {
    type Clients = Clients;
    type Observed = observe::Observed;
    type Action = plan::Action;

    const CLOUD: Cloud = Cloud::Azure;

    async fn clients(&self) -> Result<Arc<Clients>, CloudError> {
        Ok(self.clients.clone())
    }

    /// Placement, scopes and protected names are refused before any call
    /// (a protected resource ID protects the name it ends in). Cleanup and
    /// revoke are not judged: they only remove what is this binding's.
    fn validate(request: &Request<'_>, intent: Intent) -> Result<String, CloudError> {
        let target = Target::of(request)?;
        if intent == Intent::Reconcile {
            target.check_placement(request)?;
            if target.grants_refused(request).is_none() {
                target.check_scopes(request)?;
            }
            crate::protected::check(&[&target.at.name], request.provider, &target.what())?;
        }
        Ok(target.key())
    }

    async fn check(&self, provider: &wib_api::ClusterIdentityProvider) -> Result<(), CloudError> {
        let Some(defaults) = &provider.spec.azure else {
            return Ok(());
        };
        self.clients
            .arm
            .get_identity(&IdentityRef {
                subscription: defaults.subscription_id.clone(),
                resource_group: defaults.resource_group.clone(),
                name: crate::CREDENTIALS_PROBE.into(),
            })
            .await
            .map(drop)
    }

    fn locks(&self) -> &Locks {
        &self.locks
    }

    fn exchange_audience(_request: &Request<'_>, _outcome: &crate::Outcome) -> Option<String> {
        Some(AUDIENCE.to_string())
    }

    async fn verify_exchange<'a>(
        &'a self,
        _request: &'a Request<'a>,
        outcome: &'a crate::Outcome,
        token: &'a str,
        endpoints: &'a crate::exchange::Endpoints,
    ) -> Result<(), CloudError> {
        let Some(http) = self.http.clone() else {
            return Ok(());
        };
        exchange::verify(http, outcome, token, endpoints).await
    }
}
