//! Ready that means the exchange works (the provider's `verifyExchange`):
//! the clouds' halves of exchanging a bound ServiceAccount's token as its
//! pods would, at the endpoints the pods are given. The token is the
//! caller's; nothing here logs or keeps it.

use wib_api::conditions::Reason;

use crate::CloudError;

/// Where pods exchange their tokens: what the webhook injects.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// Entra ID's authority (`AZURE_AUTHORITY_HOST`).
    pub azure_authority_host: String,
    /// GCP STS's token URL (`.../v1/token`).
    pub gcp_sts_url: String,
    /// IAM Credentials' base URL, for impersonation.
    pub gcp_credentials_url: String,
}

/// An `application/x-www-form-urlencoded` body: how both token endpoints
/// (Entra ID's and GCP STS's) take their fields.
pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencoding::encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The cloud does not accept the token yet: what it said, for the status.
pub fn waiting(cloud_said: impl std::fmt::Display) -> CloudError {
    CloudError::new(Reason::WaitingForPropagation, cloud_said.to_string())
}

/// The exchange could not be tried (the endpoint is down, the answer
/// unreadable): retried with backoff.
pub fn failed(doing: &str, error: impl std::fmt::Display) -> CloudError {
    CloudError::new(Reason::TransientError, format!("{doing}: {error}"))
}
