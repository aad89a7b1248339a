//! Workload identity federation: STS `v1/token` exchanges a Kubernetes
//! ServiceAccount token for a federated token, after verifying it for real
//! (signature against the issuer's JWKS over https, issuer, audience, expiry)
//! against a pool provider; IAM Credentials `generateAccessToken` then
//! impersonates a service account when the federated principal holds
//! `roles/iam.workloadIdentityUser` on it. A federated token also works on
//! its own where roles were granted to its principal directly (GKE's
//! "direct resource access"), which `projects.testIamPermissions` shows.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{GcpCloud, Request, rpc_error};
use crate::oidc::TokenError;

pub const WORKLOAD_IDENTITY_USER: &str = "roles/iam.workloadIdentityUser";
const TOKEN_CREATOR: &str = "roles/iam.serviceAccountTokenCreator";

#[derive(Clone, Debug)]
pub struct PoolProvider {
    pub issuer: String,
}

fn oauth_error(error: &str, description: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": error, "error_description": description.into()})),
    )
        .into_response()
}

/// Form-encoded (RFC 8693) or JSON fields, by snake_case or camelCase name.
fn fields(request: &Request) -> Value {
    if let Ok(json) = serde_json::from_slice::<Value>(&request.body) {
        return json;
    }
    let text = String::from_utf8_lossy(&request.body);
    let mut map = serde_json::Map::new();
    for pair in text.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(k), Some(v)) = (
            crate::percent::decode(k, true),
            crate::percent::decode(v, true),
        ) {
            map.insert(k, Value::String(v));
        }
    }
    Value::Object(map)
}

fn field<'a>(body: &'a Value, snake: &str, camel: &str) -> &'a str {
    body[snake]
        .as_str()
        .or_else(|| body[camel].as_str())
        .unwrap_or_default()
}

fn random_token(prefix: &str) -> String {
    format!("{prefix}.{}", uuid::Uuid::new_v4().simple())
}

pub(crate) async fn token(fake: &GcpCloud, request: &Request) -> Response {
    let body = fields(request);
    if field(&body, "grant_type", "grantType") != "urn:ietf:params:oauth:grant-type:token-exchange"
    {
        return oauth_error(
            "unsupported_grant_type",
            "grant_type must be token-exchange",
        );
    }
    let audience = field(&body, "audience", "audience");
    let Some(provider_name) = audience.strip_prefix("//iam.googleapis.com/") else {
        return oauth_error(
            "invalid_request",
            format!("Invalid value for \"audience\": {audience:?}"),
        );
    };
    let Some(provider) = fake.state().providers.get(provider_name).cloned() else {
        return oauth_error(
            "invalid_target",
            format!(
                "The target service indicated by the \"audience\" parameters is invalid: {audience}"
            ),
        );
    };
    let subject_token = field(&body, "subject_token", "subjectToken");
    // A provider without allowed audiences accepts its own resource URL.
    let expected_audience = format!("https://iam.googleapis.com/{provider_name}");
    let claims = match fake
        .verifier
        .verify(subject_token, &expected_audience)
        .await
    {
        Ok(claims) => claims,
        Err(e) => {
            if matches!(e, TokenError::Expired | TokenError::NotYetValid) {
                fake.state().expired_assertions_refused += 1;
            }
            return oauth_error(
                "invalid_grant",
                format!("Unable to verify the ID token: {e}"),
            );
        }
    };
    if claims.iss.trim_end_matches('/') != provider.issuer {
        return oauth_error(
            "invalid_grant",
            format!(
                "The issuer {} does not match the provider's issuer {}",
                claims.iss, provider.issuer
            ),
        );
    }
    let pool = provider_name
        .rsplit_once("/providers/")
        .map(|(pool, _)| pool)
        .unwrap_or(provider_name);
    let principal = format!(
        "principal://iam.googleapis.com/{pool}/subject/{}",
        claims.sub
    );
    let token = random_token("ya29.federated");
    let expiry = fake.verifier.clock.now() + 3600;
    fake.state()
        .federated
        .insert(token.clone(), (principal, expiry));
    axum::Json(json!({
        "access_token": token,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer",
        "expires_in": 3600,
    }))
    .into_response()
}

/// The caller as an IAM member: a federated token's principal, or an
/// access token's service account.
fn caller_member(request: &Request, federated: Option<String>) -> Option<String> {
    federated.or_else(|| {
        request
            .caller
            .clone()
            .map(|c| format!("serviceAccount:{c}"))
    })
}

fn unauthenticated() -> Response {
    rpc_error(
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials.",
    )
}

pub(crate) async fn generate_access_token(
    fake: &GcpCloud,
    request: &Request,
    federated: Option<String>,
) -> Response {
    // /v1/projects/-/serviceAccounts/<email>:generateAccessToken
    let email = request
        .path
        .trim_end_matches(":generateAccessToken")
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let Some(member) = caller_member(request, federated) else {
        return unauthenticated();
    };
    let mut state = fake.state();
    let Some(account) = state.accounts.get(&email).cloned() else {
        return rpc_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Service account projects/-/serviceAccounts/{email} not found."),
        );
    };
    let propagated = |role: &str| {
        let key = (account.name(), role.to_string(), member.clone());
        state.granted_at.get(&key).is_none_or(|at| {
            at.elapsed() >= std::time::Duration::from_secs(state.propagation_seconds)
        })
    };
    let allowed = member == "serviceAccount:owner"
        || state.policies.get(&account.name()).is_some_and(|p| {
            (p.grants(WORKLOAD_IDENTITY_USER, &member) && propagated(WORKLOAD_IDENTITY_USER))
                || (p.grants(TOKEN_CREATOR, &member) && propagated(TOKEN_CREATOR))
        });
    if !allowed {
        return rpc_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!(
                "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist). Caller: {member}"
            ),
        );
    }
    let token = random_token("ya29.impersonated");
    let expiry = fake.verifier.clock.now() + 3600;
    state.access.insert(token.clone(), (email, expiry));
    let expire_time = crate::clock::rfc3339(expiry);
    axum::Json(json!({"accessToken": token, "expireTime": expire_time})).into_response()
}

/// The permissions of the few predefined roles the fake knows, enough for
/// a workload to show what a grant lets it do.
const ROLE_PERMISSIONS: &[(&str, &[&str])] = &[
    (
        "roles/storage.objectViewer",
        &["storage.objects.get", "storage.objects.list"],
    ),
    (
        "roles/storage.objectAdmin",
        &[
            "storage.objects.create",
            "storage.objects.delete",
            "storage.objects.get",
            "storage.objects.list",
        ],
    ),
    (
        "roles/viewer",
        &["resourcemanager.projects.get", "storage.objects.list"],
    ),
    ("roles/pubsub.subscriber", &["pubsub.subscriptions.consume"]),
];

/// Resource Manager's `projects.testIamPermissions`: the requested
/// permissions the caller holds on the project through its policy's
/// unconditional grants. A federated token's principal is the caller
/// itself (roles granted to it directly, with no service account between);
/// an impersonated token's is its service account.
pub(crate) async fn test_permissions(
    fake: &GcpCloud,
    request: &Request,
    resource: &str,
    federated: Option<String>,
) -> Response {
    let Some(member) = caller_member(request, federated) else {
        return unauthenticated();
    };
    let asked: Vec<String> = request.json()["permissions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_string))
        .collect();
    let state = fake.state();
    let held: Vec<&str> = state
        .policies
        .get(resource)
        .map(|policy| {
            ROLE_PERMISSIONS
                .iter()
                .filter(|(role, _)| policy.grants(role, &member))
                .flat_map(|(_, permissions)| permissions.iter().copied())
                .collect()
        })
        .unwrap_or_default();
    let granted: Vec<&String> = asked
        .iter()
        .filter(|p| held.contains(&p.as_str()))
        .collect();
    let mut body = json!({});
    if !granted.is_empty() {
        body["permissions"] = json!(granted);
    }
    axum::Json(body).into_response()
}
