//! Verifies a Kubernetes ServiceAccount token for real, as Entra ID and
//! Google STS do: the issuer's discovery document and JWKS are fetched over
//! https from the `iss` claim, then signature, expiry and audience are checked.

use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

/// The claims the fakes act on.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub exp: u64,
    #[serde(default)]
    pub nbf: Option<u64>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Aud::deserialize(d)? {
        Aud::One(a) => vec![a],
        Aud::Many(a) => a,
    })
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the assertion is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("the issuer's keys could not be read: {0}")]
    IssuerUnreachable(String),
    #[error("no key with kid {0:?} in the issuer's JWKS")]
    UnknownKey(String),
    #[error("the assertion signature is invalid")]
    BadSignature,
    #[error("the assertion has expired")]
    Expired,
    #[error("the assertion is not valid yet (nbf)")]
    NotYetValid,
}

/// Fetches issuer keys with a client that trusts `ca_pem` (the local
/// cluster's CA) besides nothing else: only https issuers are accepted.
pub struct Verifier {
    http: reqwest::Client,
    /// Expiry is judged by the fake's clock, which tests move forward.
    pub clock: crate::clock::Clock,
}

impl Verifier {
    pub fn new(ca_pem: Option<&[u8]>) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .timeout(Duration::from_secs(10));
        if let Some(pem) = ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self {
            http: builder.build()?,
            clock: crate::clock::Clock::default(),
        })
    }

    /// Reads the claims without checking anything, to find the issuer and
    /// match federation records before the (costlier) signature check.
    pub fn peek(token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::dangerous::insecure_decode_claims::<Claims>(token)
            .map_err(|e| TokenError::Malformed(e.to_string()))
    }

    /// Full verification: signature against the issuer's JWKS, `exp` and
    /// `nbf` against the fake's clock, and that `aud` contains `audience`.
    pub async fn verify(&self, token: &str, audience: &str) -> Result<Claims, TokenError> {
        let header = decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let claims = Self::peek(token)?;
        let jwks = self.jwks(&claims.iss).await?;
        let kid = header.kid.clone().unwrap_or_default();
        let jwk = jwks
            .keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid.as_str()))
            .ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[claims.iss.as_str()]);
        validation.leeway = 0;
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = decode::<Claims>(token, &key, &validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed(e.to_string()),
            })?;
        let now = self.clock.now();
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now) {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }

    async fn jwks(&self, issuer: &str) -> Result<JwkSet, TokenError> {
        #[derive(Deserialize)]
        struct Discovery {
            jwks_uri: String,
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self.get_json(&url).await?;
        self.get_json(&discovery.jwks_uri).await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, TokenError> {
        let unreachable = |e: reqwest::Error| TokenError::IssuerUnreachable(e.to_string());
        self.http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)
    }
}
