//! Errors a cloud reports, each mapped to a condition reason.

use std::time::Duration;

use wib_api::conditions::Reason;

/// A cloud step that failed, with the reason the binding's conditions show.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CloudError {
    pub reason: Reason,
    pub message: String,
    /// How long the cloud asked wib to wait (Retry-After), if it did.
    pub retry_after: Option<Duration>,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl CloudError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// Whether retrying without a spec change can help.
    pub fn is_transient(&self) -> bool {
        !self.reason.is_terminal()
    }
}
