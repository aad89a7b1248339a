//! Errors of a reconcile, each with a metric label.

use wib_cloud::CloudError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("{0}")]
    Cloud(#[from] CloudError),

    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    #[error("object has no {0}")]
    MissingField(&'static str),

    /// A cache's watch ended before it ever filled (shutting down).
    #[error("the {0} cache closed before it synced")]
    CacheClosed(&'static str),

    /// A provider's deletion waits for the bindings that use it.
    #[error("{0}")]
    InUse(String),

    #[error("serializing: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// The wait a cloud asked for (Retry-After), through a finalizer's
    /// apply or cleanup.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        use kube::runtime::finalizer::Error as Finalizer;
        match self {
            Error::Cloud(e) => e.retry_after,
            Error::Finalizer(inner) => match inner.as_ref() {
                Finalizer::ApplyFailed(e) | Finalizer::CleanupFailed(e) => e.retry_after(),
                _ => None,
            },
            _ => None,
        }
    }

    /// Low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Cloud(_) => "cloud",
            Error::Finalizer(_) => "finalizer",
            Error::MissingField(_) => "invalid",
            Error::Serialize(_) => "serialize",
            Error::InUse(_) => "in_use",
            Error::CacheClosed(_) => "cache",
        }
    }
}
