//! The Azure fake: ARM user-assigned identities and federated identity
//! credentials (Microsoft.ManagedIdentity 2023-01-31), Authorization role
//! definitions and assignments (2022-04-01), and the Entra ID v2.0 token
//! endpoint with client-assertion (workload identity federation) grants,
//! and Key Vault vaults with access policies (see [`keyvault`]).
//! Paths, api-versions, status codes and `CloudError` bodies follow the
//! public REST specs; ARM paths are case-insensitive, as in Azure.

mod authorization;
mod entra;
mod identities;
mod keyvault;
pub mod roles;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::faults::{Faults, Faulty};
use crate::oidc::Verifier;
use crate::percent::decode;

/// Behaviour switches the admin API can change at run time.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// Role assignments for a principal younger than this fail with
    /// `PrincipalNotFound`, as Entra replication does.
    #[serde(default)]
    pub principal_replication_seconds: u64,
    /// ARM's documented managed-identity write limit per subscription
    /// (about 2/s); `None` disables enforcement.
    #[serde(default)]
    pub identity_writes_per_second: Option<u32>,
    /// How long a federated credential write holds its identity; a second
    /// write to the same identity meanwhile gets 409.
    #[serde(default)]
    pub fic_write_millis: u64,
    /// A federated credential younger than this is not found by the token
    /// endpoint yet (AADSTS70021), as Entra's replication after a write.
    #[serde(default)]
    pub fic_propagation_seconds: u64,
}

pub struct AzureCloud {
    pub tenant_id: String,
    state: Mutex<StateData>,
    faults: Faults,
    verifier: Verifier,
    config: Mutex<Config>,
}

#[derive(Default)]
struct StateData {
    /// Keyed by lower-cased resource ID.
    identities: BTreeMap<String, identities::Identity>,
    assignments: BTreeMap<String, authorization::Assignment>,
    /// Key vaults, keyed by lower-cased resource ID.
    vaults: BTreeMap<String, keyvault::Vault>,
    /// Custom role definitions, keyed by lower-cased GUID.
    custom_roles: BTreeMap<String, authorization::CustomRole>,
    /// When each federated credential was last written, by [`fic_key`].
    fics_written: BTreeMap<String, Instant>,
    /// Identities with a federated credential write in flight.
    fic_busy: HashSet<String>,
    /// Recent identity writes per subscription, for rate limiting.
    identity_writes: BTreeMap<String, crate::quotas::Bucket>,
    /// Access tokens the token endpoint issued: the client ID they are
    /// for and when they expire (the fake's clock).
    tokens: BTreeMap<String, (String, u64)>,
    /// Requests refused for presenting an expired access token.
    expired_tokens_refused: u64,
    /// Token requests refused for an expired (or not yet valid) assertion.
    expired_assertions_refused: u64,
    /// Applications outside ARM that may exchange tokens (wib's own identity).
    apps: BTreeMap<String, identities::Identity>,
}

type Shared = Arc<AzureCloud>;

impl AzureCloud {
    pub fn new(tenant_id: String, ca_pem: Option<&[u8]>) -> anyhow::Result<Shared> {
        Ok(Arc::new(Self {
            tenant_id,
            state: Mutex::new(StateData::default()),
            faults: Faults::default(),
            verifier: Verifier::new(ca_pem)?,
            config: Mutex::new(Config::default()),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, StateData> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn config(&self) -> Config {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

pub fn router(fake: Shared) -> Router {
    crate::faults::admin_routes::<AzureCloud>()
        .route("/admin/config", post(admin_config))
        .route("/admin/state", get(admin_state))
        .route("/admin/apps", post(admin_app))
        .fallback(dispatch)
        .with_state(fake)
}

/// An ARM `CloudError` response.
pub(crate) fn cloud_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

/// Operation IDs whose calls change state.
pub fn is_write(operation: &str) -> bool {
    ["CreateOrUpdate", "_Update", "_Delete", "_Create"]
        .iter()
        .any(|w| operation.contains(w))
}

async fn dispatch(
    State(fake): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query: BTreeMap<String, String> = uri.query().map(url_decode_pairs).unwrap_or_default();
    let lower = path.to_ascii_lowercase();

    if lower.ends_with("/v2.0/.well-known/openid-configuration") && method == Method::GET {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        return entra::discovery(&fake, &path, host);
    }
    if lower.ends_with("/oauth2/v2.0/token") && method == Method::POST {
        return with_faults(&fake, "Token", || entra::token(&fake, &path, &body)).await;
    }
    match authorized(&fake, &headers) {
        Bearer::Valid => {}
        Bearer::Expired(expiry) => {
            fake.state().expired_tokens_refused += 1;
            let now = fake.verifier.clock.now();
            return cloud_error(
                StatusCode::UNAUTHORIZED,
                "ExpiredAuthenticationToken",
                format!(
                    "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                    crate::clock::rfc3339(expiry),
                    crate::clock::rfc3339(now)
                ),
            );
        }
        Bearer::Unknown => {
            return cloud_error(
                StatusCode::UNAUTHORIZED,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing or carries a token this tenant did not issue.",
            );
        }
    }
    let Some(api_version) = query.get("api-version").cloned() else {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    };
    let request = Request {
        method,
        path,
        lower,
        query,
        api_version,
        body,
    };
    if request.lower.starts_with("/keyvault/") && request.method == Method::GET {
        let client_id = bearer(&headers)
            .and_then(|t| fake.state().tokens.get(t).map(|(client, _)| client.clone()))
            .unwrap_or_default();
        return keyvault::get_secret(&fake, request, &client_id).await;
    }
    if request
        .lower
        .contains("/providers/microsoft.managedidentity/userassignedidentities")
    {
        return identities::handle(&fake, request).await;
    }
    if request
        .lower
        .contains("/providers/microsoft.authorization/")
    {
        return authorization::handle(&fake, request).await;
    }
    // After Authorization: a role assignment's scope may be a vault.
    if request
        .lower
        .contains("/providers/microsoft.keyvault/vaults")
    {
        return keyvault::handle(&fake, request).await;
    }
    cloud_error(
        StatusCode::NOT_FOUND,
        "NoRegisteredProviderFound",
        format!(
            "No registered resource provider found for path '{}'.",
            request.path
        ),
    )
}

/// A parsed ARM request.
pub(crate) struct Request {
    pub method: Method,
    pub path: String,
    pub lower: String,
    pub query: BTreeMap<String, String>,
    pub api_version: String,
    pub body: Bytes,
}

impl Request {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Rejects api-versions the fake does not implement, as ARM does.
    pub fn require_version(&self, supported: &[&str], resource_type: &str) -> Option<Response> {
        if supported.contains(&self.api_version.as_str()) {
            return None;
        }
        Some(cloud_error(
            StatusCode::BAD_REQUEST,
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for location 'global' and API version '{}' for type '{resource_type}'. The supported api-versions are '{}'.",
                self.api_version,
                supported.join(", ")
            ),
        ))
    }
}

enum Bearer {
    Valid,
    /// Issued here, expired at this time (the fake's clock).
    Expired(u64),
    Unknown,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn authorized(fake: &AzureCloud, headers: &HeaderMap) -> Bearer {
    let Some(token) = bearer(headers) else {
        return Bearer::Unknown;
    };
    let expiry = fake.state().tokens.get(token).map(|(_, expiry)| *expiry);
    match expiry {
        Some(expiry) if expiry <= fake.verifier.clock.now() => Bearer::Expired(expiry),
        Some(_) => Bearer::Valid,
        None => Bearer::Unknown,
    }
}

/// Counts the call and applies any injected fault before serving it.
pub(crate) async fn with_faults<F, Fut>(fake: &AzureCloud, operation: &str, serve: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let error = |status: StatusCode, _retry_after: Option<u64>| {
        let code = match status.as_u16() {
            429 => "TooManyRequests",
            500 => "InternalServerError",
            503 => "ServiceUnavailable",
            _ => "InjectedFault",
        };
        cloud_error(status, code, format!("Injected {status} for {operation}."))
    };
    fake.faults
        .serve(operation, is_write(operation), error, serve())
        .await
}

fn url_decode_pairs(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k, true)?, decode(v, true)?))
        })
        .collect()
}

async fn admin_config(
    State(fake): State<Shared>,
    axum::Json(config): axum::Json<Config>,
) -> impl IntoResponse {
    *fake.config.lock().unwrap_or_else(|e| e.into_inner()) = config;
    StatusCode::NO_CONTENT
}

/// Everything the fake holds, for test assertions (not an Azure API).
async fn admin_state(State(fake): State<Shared>) -> impl IntoResponse {
    let state = fake.state();
    let identities: Vec<Value> = state.identities.values().map(|i| i.to_json(true)).collect();
    let assignments: Vec<Value> = state
        .assignments
        .values()
        .map(authorization::Assignment::to_json)
        .collect();
    let vaults: Vec<Value> = state
        .vaults
        .values()
        .map(keyvault::Vault::to_json)
        .collect();
    axum::Json(json!({
        "identities": identities,
        "roleAssignments": assignments,
        "vaults": vaults,
        "expiredTokensRefused": state.expired_tokens_refused,
        "expiredAssertionsRefused": state.expired_assertions_refused,
    }))
}

/// Registers an application (wib's own identity) with federated credentials,
/// standing in for the platform team's one-time setup in Entra.
async fn admin_app(
    State(fake): State<Shared>,
    axum::Json(app): axum::Json<Value>,
) -> impl IntoResponse {
    let client_id = app["clientId"].as_str().unwrap_or_default().to_string();
    let mut identity = identities::Identity::app(&client_id);
    for (i, fic) in app["federatedCredentials"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        identity.fics.insert(
            format!("fic-{i}"),
            identities::Fic {
                name: format!("fic-{i}"),
                issuer: fic["issuer"].as_str().unwrap_or_default().to_string(),
                subject: fic["subject"].as_str().unwrap_or_default().to_string(),
                audiences: vec![
                    fic["audience"]
                        .as_str()
                        .unwrap_or("api://AzureADTokenExchange")
                        .to_string(),
                ],
            },
        );
    }
    fake.state().apps.insert(client_id, identity);
    StatusCode::NO_CONTENT
}

/// The key of a federated credential in `fics_written`: its identity's
/// client ID and its name, lower-cased.
pub(crate) fn fic_key(client_id: &str, name: &str) -> String {
    format!("{}/{}", client_id, name).to_ascii_lowercase()
}

pub(crate) fn now_rate_limited(fake: &AzureCloud, subscription: &str) -> bool {
    let Some(limit) = fake.config().identity_writes_per_second else {
        return false;
    };
    let mut state = fake.state();
    let now = Instant::now();
    let quota = crate::quotas::Quota {
        per_second: f64::from(limit),
        burst: f64::from(limit),
    };
    let refused = state
        .identity_writes
        .entry(subscription.to_ascii_lowercase())
        .or_insert_with(|| crate::quotas::Bucket::new(quota, now))
        .take(now)
        .is_err();
    drop(state);
    if refused {
        fake.faults.count_throttled();
    }
    refused
}

/// ARM's documented limits per subscription and principal (reads: 250,
/// refilled 25 a second; writes: 200, refilled 10 a second) and about two
/// managed-identity writes a second.
fn documented_limits(fake: &AzureCloud) {
    fake.faults
        .set_quotas(crate::quotas::Quotas::of((25.0, 250.0), (10.0, 200.0)));
    fake.config
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .identity_writes_per_second = Some(2);
}

impl Faulty for AzureCloud {
    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn is_write(operation: &str) -> bool {
        is_write(operation)
    }

    fn documented_limits(&self) {
        documented_limits(self);
    }

    fn clock(&self) -> &crate::clock::Clock {
        &self.verifier.clock
    }

    fn reset(&self) {
        let mut state = self.state();
        state.identities.clear();
        state.assignments.clear();
        state.custom_roles.clear();
        state.vaults.clear();
        state.fic_busy.clear();
        state.fics_written.clear();
        state.identity_writes.clear();
        drop(state);
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = Config::default();
    }
}
