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

/// The binding or its provider lacks what the cloud needs.
pub fn not_configured(message: impl Into<String>) -> CloudError {
    CloudError::new(Reason::CloudNotConfigured, message)
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

/// An error and its causes as one line: transport errors (the SDKs',
/// reqwest's) say *what* failed and keep *why* (a refused redirect, a TLS or
/// connection failure) in their source chain. A cause whose text the line
/// already holds is not repeated.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
