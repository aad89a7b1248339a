//! Entra ID's v2.0 token endpoint for the client-credentials grant with a
//! client assertion: workload identity federation. The assertion (a
//! Kubernetes ServiceAccount token) is matched against the identity's
//! federated credentials and verified against its issuer's JWKS.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AzureCloud;
use crate::oidc::{TokenError, Verifier};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An Entra error body: `error`, `error_description` starting with the AADSTS code, `error_codes`.
fn aad_error(
    status: StatusCode,
    error: &str,
    code: u32,
    description: impl Into<String>,
) -> Response {
    let trace = uuid::Uuid::new_v4();
    (
        status,
        axum::Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {trace}", description.into()),
            "error_codes": [code],
            "trace_id": trace.to_string(),
            "correlation_id": trace.to_string(),
        })),
    )
        .into_response()
}

/// Entra's OpenID configuration for a tenant (`/{tenant}/v2.0/.well-known/
/// openid-configuration`), which MSAL-based SDKs read before they ask for a
/// token. Endpoints are https on the host asked: MSAL refuses any other.
pub(super) fn discovery(fake: &AzureCloud, path: &str, host: &str) -> Response {
    let tenant = path.trim_matches('/').split('/').next().unwrap_or_default();
    if !tenant.eq_ignore_ascii_case(&fake.tenant_id) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            90002,
            format!("Tenant '{tenant}' not found."),
        );
    }
    let base = format!("https://{host}/{tenant}");
    axum::Json(json!({
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("https://{host}/{tenant}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("https://{host}/{tenant}/v2.0"),
        "request_uri_parameter_supported": false,
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
        "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
    }))
    .into_response()
}

pub(super) async fn token(fake: &AzureCloud, path: &str, body: &Bytes) -> Response {
    let tenant = path.trim_matches('/').split('/').next().unwrap_or_default();
    if !tenant.eq_ignore_ascii_case(&fake.tenant_id) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    let form = super::url_decode_pairs(std::str::from_utf8(body).unwrap_or_default());
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    if get("grant_type") != "client_credentials" {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if get("client_assertion_type") != JWT_BEARER || get("client_assertion").is_empty() {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    }
    let client_id = get("client_id");
    let assertion = get("client_assertion");
    let fics = {
        let state = fake.state();
        state
            .identities
            .values()
            .chain(state.apps.values())
            .find(|i| i.client_id.eq_ignore_ascii_case(&client_id))
            .map(|i| i.fics.values().cloned().collect::<Vec<_>>())
    };
    let Some(fics) = fics else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'.",
                fake.tenant_id
            ),
        );
    };
    let claims = match Verifier::peek(&assertion) {
        Ok(claims) => claims,
        Err(e) => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                50027,
                format!("JWT token is invalid or malformed: {e}"),
            );
        }
    };
    let by_issuer: Vec<_> = fics.iter().filter(|f| f.issuer == claims.iss).collect();
    let by_subject: Vec<_> = by_issuer
        .iter()
        .filter(|f| f.subject == claims.sub)
        .collect();
    let matched = by_subject
        .iter()
        .find(|f| f.audiences.iter().any(|a| claims.aud.contains(a)));
    let describe = || {
        format!(
            "Assertion Issuer: '{}'. Assertion Subject: '{}'. Assertion Audience: '{}'.",
            claims.iss,
            claims.sub,
            claims.aud.join(",")
        )
    };
    let Some(fic) = matched else {
        let (code, what) = if fics.is_empty() {
            (
                70021,
                "No matching federated identity record found for presented assertion.",
            )
        } else if by_issuer.is_empty() {
            (
                700211,
                "No matching federated identity record found for presented assertion issuer.",
            )
        } else if by_subject.is_empty() {
            (
                700213,
                "No matching federated identity record found for presented assertion subject.",
            )
        } else {
            (
                700212,
                "No matching federated identity record found for presented assertion audience.",
            )
        };
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            code,
            format!("{what} {}", describe()),
        );
    };
    let propagation = std::time::Duration::from_secs(fake.config().fic_propagation_seconds);
    let written = fake
        .state()
        .fics_written
        .get(&super::fic_key(&client_id, &fic.name))
        .copied();
    if written.is_some_and(|at| at.elapsed() < propagation) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            70021,
            format!(
                "No matching federated identity record found for presented assertion. {}",
                describe()
            ),
        );
    }
    let audience = fic.audiences.first().cloned().unwrap_or_default();
    if let Err(e) = fake.verifier.verify(&assertion, &audience).await {
        return match e {
            TokenError::Expired | TokenError::NotYetValid => {
                fake.state().expired_assertions_refused += 1;
                aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_client",
                    700024,
                    "Client assertion is not within its valid time range.",
                )
            }
            TokenError::IssuerUnreachable(detail) => aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                50166,
                format!("Request to External OIDC endpoint failed. {detail}"),
            ),
            other => aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                5002738,
                format!("Invalid JWT: {other}. {}", describe()),
            ),
        };
    }
    let access_token = format!("fake-entra.{}", uuid::Uuid::new_v4().simple());
    let expires_in = 3599;
    let expiry = fake.verifier.clock.now() + expires_in;
    fake.state()
        .tokens
        .insert(access_token.clone(), (client_id, expiry));
    axum::Json(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": access_token,
    }))
    .into_response()
}
