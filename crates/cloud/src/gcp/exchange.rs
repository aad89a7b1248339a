//! `verifyExchange` on GCP: the bound ServiceAccount's token exchanged at
//! STS for a federated token, as the `external_account` credential the
//! webhook gives pods does (RFC 8693 over REST), then, unless the binding
//! is in mode Direct, the Google service account impersonated with it. On
//! GKE's own pool the metadata server makes the exchange, not a token
//! wib could present: nothing is verified there.

use serde_json::{Value, json};

use super::target::Target;
use crate::exchange::{Endpoints, failed, form, waiting};
use crate::{CloudError, Request};

const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The audience of a pod's token: the pool provider's resource URL.
pub fn audience(request: &Request<'_>) -> Option<String> {
    let target = Target::of(request).ok()?;
    target
        .pool_provider()
        .map(|provider| format!("https://iam.googleapis.com/{provider}"))
}

pub async fn verify(
    request: &Request<'_>,
    token: &str,
    endpoints: &Endpoints,
) -> Result<(), CloudError> {
    let target = Target::of(request)?;
    let Some(provider) = target.pool_provider() else {
        return Ok(());
    };
    let http = crate::http::client_trusting(&crate::http::extra_roots()?)?;
    let audience = format!("//iam.googleapis.com/{provider}");
    let body = form(&[
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("audience", &audience),
        ("scope", CLOUD_PLATFORM),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("subject_token", token),
    ]);
    let response = http
        .post(&endpoints.gcp_sts_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| failed("exchanging the token at GCP STS", e))?;
    let federated = answer(response, "GCP STS refused the ServiceAccount's token").await?;
    if target.direct {
        return Ok(());
    }
    let federated = federated["access_token"].as_str().unwrap_or_default();
    let url = format!(
        "{}/v1/projects/-/serviceAccounts/{}:generateAccessToken",
        endpoints.gcp_credentials_url.trim_end_matches('/'),
        target.email
    );
    let response = http
        .post(url)
        .bearer_auth(federated)
        .json(&json!({"scope": [CLOUD_PLATFORM]}))
        .send()
        .await
        .map_err(|e| failed("impersonating the service account", e))?;
    answer(
        response,
        &format!(
            "impersonating {} with the federated token was refused",
            target.email
        ),
    )
    .await
    .map(drop)
}

/// The body of a success; a 4xx is the cloud not accepting the token yet
/// (with its own words), anything else a failure to retry.
async fn answer(response: reqwest::Response, refused: &str) -> Result<Value, CloudError> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let said = body["error_description"]
        .as_str()
        .or_else(|| body["error"]["message"].as_str())
        .unwrap_or_default();
    if status.is_client_error() {
        return Err(waiting(format!("{refused}: {said}")));
    }
    Err(failed(refused, format!("{status} {said}")))
}
