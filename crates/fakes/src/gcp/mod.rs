//! The GCP fake: IAM service accounts (iam v1), IAM policies on service
//! accounts and projects (iam v1 / cloudresourcemanager v3
//! `getIamPolicy`/`setIamPolicy`) with real etag semantics, STS `v1/token`
//! workload identity federation that verifies the Kubernetes token for real,
//! and IAM Credentials `generateAccessToken` impersonation. Paths, status
//! codes and `google.rpc.Status` error bodies follow the public REST specs.

mod iam;
mod sts;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::{Faults, Faulty};
use crate::oidc::Verifier;

pub struct GcpCloud {
    state: Mutex<StateData>,
    faults: Faults,
    verifier: Verifier,
}

#[derive(Default)]
struct StateData {
    /// Keyed by email.
    accounts: BTreeMap<String, iam::Account>,
    /// IAM policies keyed by resource name (`projects/p`,
    /// `projects/p/serviceAccounts/e`).
    policies: BTreeMap<String, iam::Policy>,
    /// Workload identity pool providers keyed by their resource name.
    providers: BTreeMap<String, sts::PoolProvider>,
    /// Federated tokens from STS: token → principal member.
    federated: BTreeMap<String, (String, u64)>,
    /// Access tokens: token → who (an email, or `owner`).
    access: BTreeMap<String, (String, u64)>,
    /// Calls refused for an access token past its expiry (the fake's clock).
    expired_tokens_refused: u64,
    /// STS exchanges refused for an expired (or not yet valid) assertion.
    pub(crate) expired_assertions_refused: u64,
    /// Project number by project ID.
    projects: BTreeMap<String, String>,
    /// When each (resource, role, member) grant was added, for the
    /// propagation delay.
    pub(crate) granted_at: BTreeMap<(String, String, String), std::time::Instant>,
    /// A grant younger than this does not let its member act yet, as IAM's
    /// eventual consistency (seconds; 0: at once). Grants made before it
    /// was set count as propagated.
    pub(crate) propagation_seconds: u64,
}

type Shared = Arc<GcpCloud>;

/// A caller allowed everything: what tests use to arrange and inspect.
pub const OWNER_TOKEN: &str = "wib-fake-gcp-owner";

impl GcpCloud {
    pub fn new(ca_pem: Option<&[u8]>) -> anyhow::Result<Shared> {
        let mut state = StateData::default();
        state
            .access
            .insert(OWNER_TOKEN.into(), ("owner".into(), u64::MAX));
        Ok(Arc::new(Self {
            state: Mutex::new(state),
            faults: Faults::default(),
            verifier: Verifier::new(ca_pem)?,
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, StateData> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub fn router(fake: Shared) -> Router {
    crate::faults::admin_routes::<GcpCloud>()
        .route("/admin/state", get(admin_state))
        .route("/admin/pools", post(admin_pool))
        .route("/admin/projects", post(admin_project))
        .route("/admin/config", post(admin_config))
        .fallback(dispatch)
        .with_state(fake)
}

/// A `google.rpc.Status` error, as every Google REST API answers.
pub(crate) fn rpc_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": {
            "code": status.as_u16(),
            "message": message.into(),
            "status": code,
        }})),
    )
        .into_response()
}

/// IAM's documented quotas per project: 6,000 reads and 600 writes a minute.
fn documented_limits(fake: &GcpCloud) {
    fake.faults
        .set_quotas(crate::quotas::Quotas::of((100.0, 100.0), (10.0, 10.0)));
}

/// Operations that change state.
pub fn is_write(operation: &str) -> bool {
    ["create", "patch", "delete", "setIamPolicy", "undelete"]
        .iter()
        .any(|w| operation.contains(w))
}

/// A request as the handlers see it.
pub(crate) struct Request {
    pub method: Method,
    pub path: String,
    /// The raw query string (`options.requestedPolicyVersion=3`).
    pub query: String,
    pub body: Bytes,
    /// Who the bearer token stands for (an email, or `owner`).
    pub caller: Option<String>,
}

impl Request {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

async fn dispatch(
    State(fake): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // A token past its expiry is no token at all, as Google answers it.
    let now = fake.verifier.clock.now();
    let (caller, federated) = {
        let mut state = fake.state();
        let live = |held: Option<&(String, u64)>| {
            held.filter(|(_, exp)| *exp > now)
                .map(|(who, _)| who.clone())
        };
        let expired = |held: Option<&(String, u64)>| held.is_some_and(|(_, exp)| *exp <= now);
        let (access, federated) = (state.access.get(bearer), state.federated.get(bearer));
        let found = (live(access), live(federated));
        if expired(access) || expired(federated) {
            state.expired_tokens_refused += 1;
        }
        found
    };
    let request = Request {
        method,
        path,
        query: uri.query().unwrap_or_default().to_string(),
        body,
        caller,
    };
    if request.path == "/v1/token" && request.method == Method::POST {
        return with_faults(&fake, "sts.token", sts::token(&fake, &request)).await;
    }
    if request.path.ends_with(":generateAccessToken") && request.method == Method::POST {
        return with_faults(
            &fake,
            "iamcredentials.generateAccessToken",
            sts::generate_access_token(&fake, &request, federated),
        )
        .await;
    }
    if let Some(resource) = request
        .path
        .strip_prefix("/v3/")
        .and_then(|rest| rest.strip_suffix(":testIamPermissions"))
        .filter(|r| r.starts_with("projects/") && request.method == Method::POST)
    {
        let resource = resource.to_string();
        return with_faults(
            &fake,
            "cloudresourcemanager.projects.testIamPermissions",
            sts::test_permissions(&fake, &request, &resource, federated),
        )
        .await;
    }
    if request.caller.is_none() {
        return rpc_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    }
    iam::handle(&fake, request).await
}

/// Counts the call and applies any injected fault before serving it.
pub(crate) async fn with_faults(
    fake: &GcpCloud,
    operation: &str,
    serve: impl std::future::Future<Output = Response>,
) -> Response {
    // A wait Google asks for travels as a RetryInfo detail in the body.
    let error = |status: StatusCode, retry_after: Option<u64>| {
        let code = match status.as_u16() {
            409 => "ABORTED",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            _ => "INTERNAL",
        };
        let mut body = json!({"error": {
            "code": status.as_u16(),
            "message": format!("Injected {status} for {operation}."),
            "status": code,
        }});
        if let Some(seconds) = retry_after {
            body["error"]["details"] = json!([{
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": format!("{seconds}s"),
            }]);
        }
        (status, axum::Json(body)).into_response()
    };
    fake.faults
        .serve(operation, is_write(operation), error, serve)
        .await
}

async fn admin_state(State(fake): State<Shared>) -> impl IntoResponse {
    let state = fake.state();
    let accounts: Vec<Value> = state.accounts.values().map(iam::Account::to_json).collect();
    let policies: BTreeMap<&String, Value> = state
        .policies
        .iter()
        .map(|(k, p)| (k, p.to_json(3).unwrap_or_default()))
        .collect();
    axum::Json(json!({
        "serviceAccounts": accounts,
        "policies": policies,
        "expiredTokensRefused": state.expired_tokens_refused,
        "expiredAssertionsRefused": state.expired_assertions_refused,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewPool {
    project_number: String,
    pool: String,
    provider: String,
    issuer: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(default)]
    propagation_seconds: u64,
}

/// Behaviour switches: how long a new grant takes to work.
async fn admin_config(
    State(fake): State<Shared>,
    axum::Json(config): axum::Json<Config>,
) -> impl IntoResponse {
    fake.state().propagation_seconds = config.propagation_seconds;
    StatusCode::NO_CONTENT
}

/// Creates a workload identity pool provider trusting an issuer: the
/// platform team's one-time setup.
async fn admin_pool(
    State(fake): State<Shared>,
    axum::Json(pool): axum::Json<NewPool>,
) -> impl IntoResponse {
    let name = format!(
        "projects/{}/locations/global/workloadIdentityPools/{}/providers/{}",
        pool.project_number, pool.pool, pool.provider
    );
    fake.state().providers.insert(
        name,
        sts::PoolProvider {
            issuer: pool.issuer.trim_end_matches('/').to_string(),
        },
    );
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewProject {
    project_id: String,
    project_number: String,
}

/// Creates a project (empty IAM policy).
async fn admin_project(
    State(fake): State<Shared>,
    axum::Json(project): axum::Json<NewProject>,
) -> impl IntoResponse {
    let mut state = fake.state();
    state
        .projects
        .insert(project.project_id.clone(), project.project_number);
    state
        .policies
        .entry(format!("projects/{}", project.project_id))
        .or_default();
    StatusCode::NO_CONTENT
}

impl Faulty for GcpCloud {
    fn clock(&self) -> &crate::clock::Clock {
        &self.verifier.clock
    }

    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn documented_limits(&self) {
        documented_limits(self);
    }

    fn is_write(operation: &str) -> bool {
        is_write(operation)
    }

    fn reset(&self) {
        let mut state = self.state();
        state.accounts.clear();
        state.granted_at.clear();
        state.propagation_seconds = 0;
        // Projects stay, with empty policies whose etags never repeat one
        // handed out before.
        for policy in state.policies.values_mut() {
            policy.bindings.clear();
            policy.revision += 1;
        }
        state
            .policies
            .retain(|resource, _| !resource.contains("/serviceAccounts/"));
    }
}
