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
