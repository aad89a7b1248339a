//! The cluster's OIDC issuer: discovered from the API server when the
//! provider does not name one, and checked the way a cloud reads it —
//! anonymously, over https.

use std::time::Duration;

use serde::Deserialize;

/// Why the issuer could not be discovered or read.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("discovering the issuer from the API server: {0}")]
    Discovery(#[source] kube::Error),
    #[error("reading {url}: {source}")]
    Fetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<serde_json::Value>,
}

/// What an anonymous reader finds at the issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerCheck {
    pub jwks_uri: String,
    pub keys: usize,
}

/// The issuer the API server puts in ServiceAccount tokens.
pub async fn discover(client: &kube::Client) -> Result<String, IssuerError> {
    let request = http::Request::get("/.well-known/openid-configuration")
        .body(Vec::new())
        .map_err(|e| IssuerError::Invalid(e.to_string()))?;
    let discovery: Discovery = client
        .request(request)
        .await
        .map_err(IssuerError::Discovery)?;
    Ok(discovery.issuer)
}

/// An https client that trusts the system roots plus the cluster CA (a
/// cluster's own API server may serve the issuer) and sends no credentials.
pub fn anonymous_client(
    extra_roots: Vec<reqwest::Certificate>,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .https_only(true);
    for cert in extra_roots {
        builder = builder.add_root_certificate(cert);
    }
    builder.build()
}

/// Reads the discovery document and the JWKS as a cloud would.
pub async fn check(http: &reqwest::Client, issuer: &str) -> Result<IssuerCheck, IssuerError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let discovery: Discovery = get_json(http, &url).await?;
    if discovery.issuer != issuer {
        return Err(IssuerError::Invalid(format!(
            "{url} names issuer {:?}, expected {issuer:?}",
            discovery.issuer
        )));
    }
    let jwks: Jwks = get_json(http, &discovery.jwks_uri).await?;
    if jwks.keys.is_empty() {
        return Err(IssuerError::Invalid(format!(
            "{} serves no keys",
            discovery.jwks_uri
        )));
    }
    Ok(IssuerCheck {
        jwks_uri: discovery.jwks_uri,
        keys: jwks.keys.len(),
    })
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, IssuerError> {
    let fetch = |source| IssuerError::Fetch {
        url: url.to_string(),
        source,
    };
    let response = http.get(url).send().await.map_err(fetch)?;
    if !response.status().is_success() {
        return Err(IssuerError::Status {
            url: url.to_string(),
            status: response.status(),
        });
    }
    response.json().await.map_err(fetch)
}
