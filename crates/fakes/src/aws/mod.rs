//! The AWS fake: Amazon EKS Pod Identity, written from the EKS and EKS Auth
//! API references and their Smithy models (restJson1 as aws-sdk-eks and
//! aws-sdk-eksauth 1.x send it). One server answers
//!
//! - the EKS API's Pod Identity associations and their tags
//!   (`/clusters/{name}/pod-identity-associations…`, `/tags/{arn}`),
//! - EKS Auth `AssumeRoleForPodIdentity`
//!   (`POST /clusters/{name}/assume-role-for-pod-identity`),
//! - and a stand-in for the node's EKS Pod Identity Agent (`GET
//!   /v1/credentials`, or `GET /agent/{cluster}/v1/credentials`).
//!
//! IAM and STS stay with moto: the fake reads role trust policies from it
//! and gets credentials from its STS, so roles, policies and credentials
//! are moto's. Errors carry their code in `x-amzn-ErrorType`, where the
//! SDKs read it.

mod auth;
mod eks;
mod iam;
mod trust;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::{Faults, Faulty};
use crate::oidc::Verifier;

pub use auth::SERVICE as POD_IDENTITY_AUDIENCE;

/// moto's default account and region, which the fake's clusters live in
/// unless told otherwise.
pub const DEFAULT_ACCOUNT: &str = "123456789012";
pub const DEFAULT_REGION: &str = "us-east-1";

/// What the fake starts with (the binary's flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// moto's URL (IAM and STS).
    pub moto_url: String,
    pub account: String,
    pub region: String,
    /// Cluster names, all in `account` and `region`, trusting `issuer`.
    pub clusters: Vec<String>,
    /// The ServiceAccount issuer of those clusters; its JWKS is read over
    /// https from its discovery document.
    pub issuer: Option<String>,
    /// The cluster whose pods `GET /v1/credentials` serves (default: the
    /// first of `clusters`).
    pub agent_cluster: Option<String>,
}

/// An EKS cluster the fake knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub account: String,
    pub region: String,
    /// The issuer of the ServiceAccount tokens its pods present; `None`:
    /// no token is accepted.
    pub issuer: Option<String>,
}

impl Cluster {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:eks:{}:{}:cluster/{}",
            self.region, self.account, self.name
        )
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "arn": self.arn(),
            "account": self.account,
            "region": self.region,
            "issuer": self.issuer,
        })
    }
}

pub struct EksCloud {
    state: Mutex<StateData>,
    faults: Faults,
    verifier: Verifier,
    moto: iam::Moto,
    account: String,
    region: String,
}

#[derive(Default)]
struct StateData {
    clusters: BTreeMap<String, Cluster>,
    /// The cluster whose pods `GET /v1/credentials` serves.
    agent_cluster: Option<String>,
    /// Keyed by association ID.
    associations: BTreeMap<String, eks::Association>,
    /// Exchanges refused by a role's trust policy (or a missing role).
    trust_refusals: u64,
    /// Exchanges refused for an expired (or not yet valid) token.
    expired_assertions_refused: u64,
    /// Exchanges refused for a token that is not a valid one of the cluster.
    invalid_tokens_refused: u64,
}

type Shared = Arc<EksCloud>;

impl EksCloud {
    pub fn new(config: Config, ca_pem: Option<&[u8]>) -> anyhow::Result<Shared> {
        let mut state = StateData::default();
        for name in &config.clusters {
            state.clusters.insert(
                name.clone(),
                Cluster {
                    name: name.clone(),
                    account: config.account.clone(),
                    region: config.region.clone(),
                    issuer: config.issuer.clone(),
                },
            );
        }
        state.agent_cluster = config
            .agent_cluster
            .clone()
            .or_else(|| config.clusters.first().cloned());
        if let Some(agent) = &state.agent_cluster {
            anyhow::ensure!(
                state.clusters.contains_key(agent),
                "--agent-cluster {agent} is not one of the --cluster names"
            );
        }
        Ok(Arc::new(Self {
            state: Mutex::new(state),
            faults: Faults::default(),
            verifier: Verifier::new(ca_pem)?,
            moto: iam::Moto::new(&config.moto_url, &config.region)?,
            account: config.account,
            region: config.region,
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, StateData> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cluster(&self, name: &str) -> Option<Cluster> {
        self.state().clusters.get(name).cloned()
    }

    /// The association for a service account of a cluster, if any.
    fn association_for(
        &self,
        cluster: &str,
        namespace: &str,
        service_account: &str,
    ) -> Option<eks::Association> {
        self.state()
            .associations
            .values()
            .find(|a| {
                a.cluster == cluster
                    && a.namespace == namespace
                    && a.service_account == service_account
            })
            .cloned()
    }
}

pub fn router(fake: Shared) -> Router {
    crate::faults::admin_routes::<EksCloud>()
        .route("/admin/state", get(admin_state))
        .route(
            "/admin/associations",
            get(admin_associations).post(admin_create_association),
        )
        .route("/admin/clusters", get(admin_clusters).post(admin_cluster))
        .fallback(dispatch)
        .with_state(fake)
}

/// An AWS restJson1 error: the code in `x-amzn-ErrorType` (where
/// aws-sdk-rust reads it) and `{"message"}` in the body.
pub(crate) fn aws_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let mut response = (status, axum::Json(json!({"message": message.into()}))).into_response();
    if let Ok(value) = HeaderValue::from_str(code) {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

/// Operations that change state.
pub fn is_write(operation: &str) -> bool {
    matches!(
        operation,
        "CreatePodIdentityAssociation"
            | "UpdatePodIdentityAssociation"
            | "DeletePodIdentityAssociation"
            | "TagResource"
            | "UntagResource"
    )
}

const ASSUME: &str = "AssumeRoleForPodIdentity";

/// The error code an injected status stands for, per operation's model.
fn injected_code(operation: &str, status: StatusCode) -> &'static str {
    match (status.as_u16(), operation == ASSUME) {
        (429, _) => "ThrottlingException",
        (503, _) => "ServiceUnavailableException",
        (404, _) => "ResourceNotFoundException",
        (409, _) => "ResourceInUseException",
        (400, true) => "InvalidRequestException",
        (400, false) => "InvalidParameterException",
        (_, true) => "InternalServerException",
        (_, false) => "ServerException",
    }
}

/// Counts the call and applies any injected fault before serving it.
async fn with_faults(
    fake: &EksCloud,
    operation: &str,
    serve: impl std::future::Future<Output = Response>,
) -> Response {
    let error = |status: StatusCode, _retry_after: Option<u64>| {
        aws_error(
            status,
            injected_code(operation, status),
            format!("Injected {status} for {operation}."),
        )
    };
    fake.faults
        .serve(operation, is_write(operation), error, serve)
        .await
}

/// The node agent's calls count as the `AssumeRoleForPodIdentity` they
/// make, and suffer its faults, in the agent's error format.
async fn agent_with_faults(
    fake: &EksCloud,
    serve: impl std::future::Future<Output = Response>,
) -> Response {
    let error = |status: StatusCode, _retry_after: Option<u64>| {
        auth::agent_error(
            status,
            injected_code(ASSUME, status),
            &format!("Injected {status} for {ASSUME}."),
        )
    };
    fake.faults.serve(ASSUME, false, error, serve).await
}

fn unknown_operation(method: &Method, path: &str) -> Response {
    aws_error(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        format!("No operation serves {method} {path}."),
    )
}

async fn dispatch(
    State(fake): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let query = uri.query().unwrap_or_default();
    // The ARN is one percent-encoded label, `/`s included.
    if let Some(arn) = path.strip_prefix("/tags/") {
        let Some(arn) = crate::percent::decode(arn, false) else {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                "The resource ARN is not percent-encoded correctly.",
            );
        };
        return match method {
            Method::GET => {
                with_faults(&fake, "ListTagsForResource", eks::list_tags(&fake, &arn)).await
            }
            Method::POST => with_faults(&fake, "TagResource", eks::tag(&fake, &arn, &body)).await,
            Method::DELETE => {
                with_faults(&fake, "UntagResource", eks::untag(&fake, &arn, query)).await
            }
            _ => unknown_operation(&method, path),
        };
    }
    let Some(segments) = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| crate::percent::decode(s, false))
        .collect::<Option<Vec<String>>>()
    else {
        return unknown_operation(&method, path);
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (&method, segments.as_slice()) {
        (&Method::POST, ["clusters", cluster, "pod-identity-associations"]) => {
            with_faults(
                &fake,
                "CreatePodIdentityAssociation",
                eks::create(&fake, cluster, &body),
            )
            .await
        }
        (&Method::GET, ["clusters", cluster, "pod-identity-associations"]) => {
            with_faults(
                &fake,
                "ListPodIdentityAssociations",
                eks::list(&fake, cluster, query),
            )
            .await
        }
        (&Method::GET, ["clusters", cluster, "pod-identity-associations", id]) => {
            with_faults(
                &fake,
                "DescribePodIdentityAssociation",
                eks::describe(&fake, cluster, id),
            )
            .await
        }
        (&Method::POST, ["clusters", cluster, "pod-identity-associations", id]) => {
            with_faults(
                &fake,
                "UpdatePodIdentityAssociation",
                eks::update(&fake, cluster, id, &body),
            )
            .await
        }
        (&Method::DELETE, ["clusters", cluster, "pod-identity-associations", id]) => {
            with_faults(
                &fake,
                "DeletePodIdentityAssociation",
                eks::delete(&fake, cluster, id),
            )
            .await
        }
        (&Method::POST, ["clusters", cluster, "assume-role-for-pod-identity"]) => {
            with_faults(
                &fake,
                ASSUME,
                auth::assume_role_for_pod_identity(&fake, cluster, &body),
            )
            .await
        }
        (&Method::GET, ["v1", "credentials"]) => {
            agent_with_faults(&fake, auth::agent_credentials(&fake, None, &headers)).await
        }
        (&Method::GET, ["agent", cluster, "v1", "credentials"]) => {
            agent_with_faults(
                &fake,
                auth::agent_credentials(&fake, Some(*cluster), &headers),
            )
            .await
        }
        _ => unknown_operation(&method, path),
    }
}

/// Everything the fake holds: clusters, associations (full state) and the
/// exchanges it refused.
async fn admin_state(State(fake): State<Shared>) -> impl IntoResponse {
    let state = fake.state();
    let clusters: Vec<Value> = state.clusters.values().map(Cluster::to_json).collect();
    let associations: Vec<Value> = state
        .associations
        .values()
        .map(eks::Association::to_admin_json)
        .collect();
    axum::Json(json!({
        "clusters": clusters,
        "agentCluster": state.agent_cluster,
        "associations": associations,
        "trustRefusals": state.trust_refusals,
        "invalidTokensRefused": state.invalid_tokens_refused,
        "expiredAssertionsRefused": state.expired_assertions_refused,
        // The fake issues no tokens of its own to expire.
        "expiredTokensRefused": 0,
    }))
}

/// Every association of every cluster, with all its fields.
async fn admin_associations(State(fake): State<Shared>) -> impl IntoResponse {
    let state = fake.state();
    let associations: Vec<Value> = state
        .associations
        .values()
        .map(eks::Association::to_admin_json)
        .collect();
    axum::Json(json!({"associations": associations}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdminAssociation {
    cluster_name: String,
    /// Who owns it (as an EKS add-on owns its associations); none when absent.
    #[serde(default)]
    owner_arn: Option<String>,
    #[serde(flatten)]
    create: eks::CreateRequest,
}

/// Creates an association as someone other than the caller of the EKS API
/// would (a platform team, an add-on): same rules and answer as
/// `CreatePodIdentityAssociation`, not counted as a call.
async fn admin_create_association(
    State(fake): State<Shared>,
    axum::Json(body): axum::Json<AdminAssociation>,
) -> Response {
    eks::create_association(&fake, &body.cluster_name, &body.create, body.owner_arn)
}

async fn admin_clusters(State(fake): State<Shared>) -> impl IntoResponse {
    let state = fake.state();
    let clusters: Vec<Value> = state.clusters.values().map(Cluster::to_json).collect();
    axum::Json(json!({"clusters": clusters, "agentCluster": state.agent_cluster}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewCluster {
    name: String,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    region: Option<String>,
    /// Whether `GET /v1/credentials` serves this cluster's pods from now on.
    #[serde(default)]
    agent: bool,
}

/// Adds (or replaces) a cluster: the fake's account and region unless
/// given, trusting `issuer`.
async fn admin_cluster(
    State(fake): State<Shared>,
    axum::Json(cluster): axum::Json<NewCluster>,
) -> impl IntoResponse {
    let mut state = fake.state();
    if cluster.agent || state.agent_cluster.is_none() {
        state.agent_cluster = Some(cluster.name.clone());
    }
    state.clusters.insert(
        cluster.name.clone(),
        Cluster {
            name: cluster.name,
            account: cluster.account.unwrap_or_else(|| fake.account.clone()),
            region: cluster.region.unwrap_or_else(|| fake.region.clone()),
            issuer: cluster
                .issuer
                .map(|issuer| issuer.trim_end_matches('/').to_string()),
        },
    );
    StatusCode::NO_CONTENT
}

impl Faulty for EksCloud {
    fn clock(&self) -> &crate::clock::Clock {
        &self.verifier.clock
    }

    fn faults(&self) -> &Faults {
        &self.faults
    }

    /// EKS documents no request rates for these APIs, so none are enforced;
    /// quotas can still be set with `POST /admin/quotas`.
    fn documented_limits(&self) {}

    fn is_write(operation: &str) -> bool {
        is_write(operation)
    }

    /// Associations and refusal counters go; clusters (and which one the
    /// agent serves) stay, as they are the platform's setup.
    fn reset(&self) {
        let mut state = self.state();
        state.associations.clear();
        state.trust_refusals = 0;
        state.invalid_tokens_refused = 0;
        state.expired_assertions_refused = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_faults_use_each_service_s_codes() {
        assert_eq!(
            injected_code(
                "CreatePodIdentityAssociation",
                StatusCode::TOO_MANY_REQUESTS
            ),
            "ThrottlingException"
        );
        assert_eq!(
            injected_code(ASSUME, StatusCode::INTERNAL_SERVER_ERROR),
            "InternalServerException"
        );
        assert_eq!(
            injected_code(
                "ListPodIdentityAssociations",
                StatusCode::INTERNAL_SERVER_ERROR
            ),
            "ServerException"
        );
    }
}
