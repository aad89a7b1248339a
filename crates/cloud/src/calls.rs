//! Every cloud API call wib makes is reported to one observer (the
//! operator's metrics), by cloud, operation and result, so steady-state
//! writes and throttling are visible without reading the clouds' logs.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One finished cloud API call.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub cloud: &'a str,
    /// The cloud's own operation name, e.g. `CreateRole`.
    pub operation: &'a str,
    /// `success`, `not_found`, `throttled` or `error`.
    pub result: &'a str,
    pub elapsed: Duration,
}

impl Call<'_> {
    /// Whether the operation changes cloud state (every IAM/ARM/GCP
    /// operation that is not a read).
    pub fn is_write(&self) -> bool {
        is_write(self.operation)
    }
}

/// Read operations start with one of these verbs in every cloud wib speaks
/// to: AWS and GCP (`GetRole`), or after the type in Azure's operation IDs
/// (`RoleAssignments_ListForScope`).
pub fn is_write(operation: &str) -> bool {
    let verb = operation.rsplit('_').next().unwrap_or(operation);
    !["Get", "List", "Describe", "Simulate"]
        .iter()
        .any(|read| verb.starts_with(read))
}

pub trait CallObserver: Send + Sync + 'static {
    fn observe(&self, call: Call<'_>);
}

/// Discards calls: for tools and tests that do not export metrics.
pub struct Unobserved;

impl CallObserver for Unobserved {
    fn observe(&self, _: Call<'_>) {}
}

pub type Observer = Arc<dyn CallObserver>;

/// Runs one call and reports it; `classify` names the result of an error.
pub async fn observed<T, E>(
    observer: &Observer,
    cloud: &str,
    operation: &str,
    classify: impl FnOnce(&E) -> &'static str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = call.await;
    observer.observe(Call {
        cloud,
        operation,
        result: match &result {
            Ok(_) => "success",
            Err(e) => classify(e),
        },
        elapsed: started.elapsed(),
    });
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_and_writes() {
        for op in [
            "GetRole",
            "ListAttachedRolePolicies",
            "ListRoleTags",
            "UserAssignedIdentities_Get",
            "RoleAssignments_List",
            "UserAssignedIdentities_ListByResourceGroup",
            "RoleAssignments_ListForScope",
        ] {
            assert!(!super::is_write(op), "{op}");
        }
        for op in [
            "CreateRole",
            "UpdateAssumeRolePolicy",
            "TagRole",
            "PutRolePolicy",
        ] {
            assert!(super::is_write(op), "{op}");
        }
    }
}
