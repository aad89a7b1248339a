//! wib's own Azure credential in a cluster: workload identity whose projected
//! token file the kubelet rotates. azure_identity's credential reads the file
//! once; this one reads it again for every new access token, and caches the
//! access token until shortly before it expires, or until ARM refuses it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use azure_core::auth::{AccessToken, TokenCredential};
use azure_core::error::{Error, ErrorKind};
use tokio::sync::Mutex;

/// Renew this long before the access token expires.
const EARLY: Duration = Duration::from_secs(300);

/// Whom wib federates as: its Entra application and where its
/// ServiceAccount token is projected.
#[derive(Clone, Debug)]
pub struct WorkloadIdentity {
    /// Entra's authority host (the public cloud's unless set).
    pub authority: azure_core::Url,
    pub tenant_id: String,
    pub client_id: String,
    /// The projected token file the kubelet rotates.
    pub token_file: PathBuf,
}

impl WorkloadIdentity {
    /// From the variables the Azure workload identity webhook injects.
    pub fn from_env() -> azure_core::Result<Self> {
        let var = |name: &str| {
            std::env::var(name)
                .map_err(|_| Error::message(ErrorKind::Credential, format!("{name} is not set")))
        };
        let authority = std::env::var("AZURE_AUTHORITY_HOST")
            .unwrap_or_else(|_| "https://login.microsoftonline.com".into());
        Ok(Self {
            authority: azure_core::Url::parse(&authority)
                .map_err(|e| Error::full(ErrorKind::Credential, e, "AZURE_AUTHORITY_HOST"))?,
            tenant_id: var("AZURE_TENANT_ID")?,
            client_id: var("AZURE_CLIENT_ID")?,
            token_file: PathBuf::from(var("AZURE_FEDERATED_TOKEN_FILE")?),
        })
    }
}

#[derive(Debug)]
pub struct RotatingWorkloadIdentity {
    http: Arc<dyn azure_core::HttpClient>,
    identity: WorkloadIdentity,
    cached: Mutex<Option<(Vec<String>, AccessToken)>>,
    /// Set by the transport when ARM answers 401: the cache is not trusted.
    refused: Arc<AtomicBool>,
}

impl RotatingWorkloadIdentity {
    pub fn new(
        http: Arc<dyn azure_core::HttpClient>,
        identity: WorkloadIdentity,
        refused: Arc<AtomicBool>,
    ) -> Self {
        Self {
            http,
            identity,
            cached: Mutex::new(None),
            refused,
        }
    }
}

#[async_trait::async_trait]
impl TokenCredential for RotatingWorkloadIdentity {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let wanted: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let mut cached = self.cached.lock().await;
        if self.refused.swap(false, Ordering::Relaxed) {
            *cached = None;
        }
        if let Some((for_scopes, token)) = cached.as_ref()
            && *for_scopes == wanted
            && token.expires_on - EARLY > time::OffsetDateTime::now_utc()
        {
            return Ok(token.clone());
        }
        let token_file = &self.identity.token_file;
        let assertion = tokio::fs::read_to_string(token_file).await.map_err(|e| {
            Error::full(
                ErrorKind::Credential,
                e,
                format!("reading {}", token_file.display()),
            )
        })?;
        let credential = azure_identity::WorkloadIdentityCredential::new(
            self.http.clone(),
            self.identity.authority.clone(),
            self.identity.tenant_id.clone(),
            self.identity.client_id.clone(),
            assertion.trim().to_string(),
        );
        let token = credential.get_token(scopes).await?;
        *cached = Some((wanted, token.clone()));
        Ok(token)
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        *self.cached.lock().await = None;
        Ok(())
    }
}
