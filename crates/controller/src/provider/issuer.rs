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
    #[error("reading {url}: {}", wib_cloud::error::chain(.source))]
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
        .https_only(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let hops = attempt.previous().len();
            let off_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| !same_origin(first, attempt.url()));
            if hops > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if off_origin {
                let to = attempt.url().to_string();
                attempt.error(format!(
                    "refused a redirect off the issuer's origin, to {to}"
                ))
            } else {
                attempt.follow()
            }
        }));
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
    let body = read_capped(response, MAX_DOCUMENT_BYTES)
        .await
        .map_err(|e| match e {
            Capped::TooLarge => IssuerError::Invalid(format!(
                "{url} serves more than {MAX_DOCUMENT_BYTES} bytes; an issuer document is a few kilobytes"
            )),
            Capped::Fetch(source) => fetch(source),
        })?;
    serde_json::from_slice(&body)
        .map_err(|e| IssuerError::Invalid(format!("{url} is not the JSON expected: {e}")))
}

/// Redirects followed within the issuer's own origin; a discovery document
/// or JWKS is never fetched from a host the issuer did not name.
const MAX_REDIRECTS: usize = 3;
/// What wib reads of one issuer document at most: the issuer may be any
/// URL a provider names, and is read on every provider resync.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

enum Capped {
    TooLarge,
    Fetch(reqwest::Error),
}

/// The body, read chunk by chunk and abandoned past `max` bytes (whatever
/// Content-Length claims).
async fn read_capped(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, Capped> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(Capped::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Capped::Fetch)? {
        if body.len() + chunk.len() > max {
            return Err(Capped::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> reqwest::Url {
        reqwest::Url::parse(text).expect("url")
    }

    #[test]
    fn redirects_stay_on_the_issuers_origin() {
        let issuer = url("https://oidc.example/cluster/.well-known/openid-configuration");
        assert!(same_origin(&issuer, &url("https://oidc.example:443/other")));
        for elsewhere in [
            "https://attacker.example/keys",
            "https://oidc.example:8443/keys",
            "http://oidc.example/keys",
            "https://oidc.example.attacker.example/keys",
        ] {
            assert!(!same_origin(&issuer, &url(elsewhere)), "{elsewhere}");
        }
    }

    #[tokio::test]
    async fn a_document_is_read_up_to_the_cap_and_no_further() {
        let response = |body: Vec<u8>| reqwest::Response::from(http::Response::new(body));
        let small = read_capped(response(b"{}".to_vec()), 16).await;
        assert!(matches!(small, Ok(body) if body == b"{}"));
        let large = read_capped(response(vec![b' '; 17]), 16).await;
        assert!(matches!(large, Err(Capped::TooLarge)));
    }
}
