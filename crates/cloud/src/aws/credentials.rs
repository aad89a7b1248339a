//! wib's own AWS credentials: the SDK's default chain (on EKS, the web
//! identity token file the kubelet rotates) behind a cache wib can drop.
//! The SDK's identity cache keeps a session until the expiry it believes
//! in; when IAM answers `ExpiredToken` sooner (a clock that disagrees, a
//! revoked session), the next call fetches a new one, reading the token
//! file again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};

/// Renew this long before a session expires.
const EARLY: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Renewable {
    inner: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<Credentials>>,
    /// Raised by the IAM calls on `ExpiredToken`.
    pub stale: Arc<AtomicBool>,
}

impl Renewable {
    pub fn new(inner: SharedCredentialsProvider) -> Self {
        Self {
            inner,
            cached: tokio::sync::Mutex::new(None),
            stale: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl ProvideCredentials for Renewable {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let mut cached = self.cached.lock().await;
            if self.stale.swap(false, Ordering::Relaxed) {
                *cached = None;
            }
            if let Some(credentials) = cached.as_ref()
                && credentials
                    .expiry()
                    .is_none_or(|expiry| expiry > SystemTime::now() + EARLY)
            {
                return Ok(credentials.clone());
            }
            let fresh = self.inner.provide_credentials().await?;
            *cached = Some(fresh.clone());
            Ok(fresh)
        })
    }
}

/// Where wib's web identity comes from when it is configured explicitly
/// (EKS's webhook sets the same three as `AWS_WEB_IDENTITY_TOKEN_FILE`,
/// `AWS_ROLE_ARN` and `AWS_ROLE_SESSION_NAME`).
#[derive(Clone, Debug)]
pub struct WebIdentity {
    pub token_file: std::path::PathBuf,
    pub role_arn: String,
    pub session_name: String,
}

/// A session from STS for the token file's current token, the way
/// aws-config's web identity provider gets one, but with an STS client
/// configured here: aws-config's own reads STS's endpoint from the process
/// environment only.
#[derive(Debug)]
pub struct WebIdentityProvider {
    pub identity: WebIdentity,
    pub sts: aws_sdk_sts::Client,
}

impl WebIdentityProvider {
    async fn assume(&self) -> aws_credential_types::provider::Result {
        use aws_credential_types::provider::error::CredentialsError;
        // Read on every call: the kubelet rotates the file.
        let token = tokio::fs::read_to_string(&self.identity.token_file)
            .await
            .map_err(CredentialsError::provider_error)?;
        let out = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.identity.role_arn)
            .role_session_name(&self.identity.session_name)
            .web_identity_token(token)
            .send()
            .await
            .map_err(CredentialsError::provider_error)?;
        let session = out
            .credentials()
            .ok_or_else(|| CredentialsError::unhandled("STS answered no credentials"))?;
        let expiry = SystemTime::try_from(*session.expiration())
            .map_err(|e| CredentialsError::unhandled(format!("session expiry: {e}")))?;
        Ok(Credentials::new(
            session.access_key_id(),
            session.secret_access_key(),
            Some(session.session_token().to_string()),
            Some(expiry),
            "WebIdentityToken",
        ))
    }
}

impl ProvideCredentials for WebIdentityProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.assume())
    }
}
