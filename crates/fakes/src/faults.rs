//! Shared by every fake: per-operation call counters and fault injection
//! (an error status with an optional Retry-After, added latency), both driven
//! over a small admin API so tests can arrange and assert from outside.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One injected fault: the next `times` calls of `operation` (or of every
/// operation when `operation` is `*`) answer `status` with this body.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    pub operation: String,
    #[serde(default)]
    pub status: Option<u16>,
    /// Seconds, sent as the `Retry-After` header.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Added before answering (the call then proceeds normally unless `status` is set).
    #[serde(default)]
    pub latency_ms: Option<u64>,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// What a call should suffer before it is served.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
    pub latency: Option<Duration>,
}

/// Call counters and pending faults.
#[derive(Default)]
pub struct Faults {
    inner: Mutex<Inner>,
    limits: Mutex<crate::quotas::Limits>,
}

#[derive(Default)]
struct Inner {
    calls: BTreeMap<String, u64>,
    faults: Vec<Fault>,
    log: std::collections::VecDeque<Served>,
}

/// The most recent calls the log keeps.
const LOG_MAX: usize = 2000;

/// One call as the fake saw it: when it came, and the fault it got, so a
/// test asserts from the fake's side that a fault was served and how long
/// the client waited before trying again (not from its own sleeps).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Served {
    pub operation: String,
    /// Milliseconds since the Unix epoch (real time).
    pub at_ms: u64,
    /// The injected status, when the call got one instead of an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<u16>,
}

/// Snapshot of the counters, as the admin API returns it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Calls {
    /// Calls per operation (the REST spec's operationId).
    pub operations: BTreeMap<String, u64>,
    /// Calls of operations that change state (PUT, PATCH, POST that writes, DELETE).
    pub writes: u64,
    /// The latest calls, oldest first.
    #[serde(default)]
    pub log: Vec<Served>,
    /// Calls refused by an enforced quota (see `/admin/quotas`).
    #[serde(default)]
    pub throttled: u64,
}

impl Faults {
    /// Counts a call and returns the fault to apply to it, if any.
    pub fn record(&self, operation: &str) -> Injected {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner.calls.entry(operation.to_string()).or_default() += 1;
        let index = inner
            .faults
            .iter()
            .position(|f| f.operation == operation || f.operation == "*");
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let fault = index.and_then(|i| inner.faults[i].status);
        if inner.log.len() >= LOG_MAX {
            inner.log.pop_front();
        }
        inner.log.push_back(Served {
            operation: operation.to_string(),
            at_ms,
            fault,
        });
        let Some(index) = index else {
            return Injected::default();
        };
        let fault = inner.faults[index].clone();
        if fault.times <= 1 {
            inner.faults.remove(index);
        } else {
            inner.faults[index].times -= 1;
        }
        Injected {
            status: fault.status,
            retry_after: fault.retry_after,
            latency: fault.latency_ms.map(Duration::from_millis),
        }
    }

    /// Counts the call, applies any injected latency, and answers an
    /// injected status with `error(status, retry_after)` (plus the
    /// `Retry-After` header) instead of serving it.
    pub async fn serve(
        &self,
        operation: &str,
        write: bool,
        error: impl FnOnce(axum::http::StatusCode, Option<u64>) -> axum::response::Response,
        serve: impl std::future::Future<Output = axum::response::Response>,
    ) -> axum::response::Response {
        let mut injected = self.record(operation);
        if injected.status.is_none()
            && let Some(wait) = self.limits().exceeded(write)
        {
            injected.status = Some(429);
            injected.retry_after = Some(wait);
        }
        if let Some(latency) = injected.latency {
            tokio::time::sleep(latency).await;
        }
        let Some(status) = injected.status else {
            return serve.await;
        };
        let status = axum::http::StatusCode::from_u16(status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = error(status, injected.retry_after);
        if let Some(seconds) = injected.retry_after
            && let Ok(value) = seconds.to_string().parse()
        {
            response.headers_mut().insert("retry-after", value);
        }
        response
    }

    fn limits(&self) -> std::sync::MutexGuard<'_, crate::quotas::Limits> {
        self.limits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a 429 a fake's own limit served (Azure's managed-identity
    /// writes), with the quotas' own.
    pub fn count_throttled(&self) {
        self.limits().throttled += 1;
    }

    /// Enforces the cloud's rate limits from now on (`Quotas::default()`
    /// lifts them).
    pub fn set_quotas(&self, quotas: crate::quotas::Quotas) {
        self.limits().set(quotas);
    }

    pub fn inject(&self, fault: Fault) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .faults
            .push(fault);
    }

    /// Counters so far; `is_write` classifies operation names.
    pub fn calls(&self, is_write: impl Fn(&str) -> bool) -> Calls {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Calls {
            writes: inner
                .calls
                .iter()
                .filter(|(op, _)| is_write(op))
                .map(|(_, n)| n)
                .sum(),
            operations: inner.calls.clone(),
            log: inner.log.iter().cloned().collect(),
            throttled: self.limits().throttled,
        }
    }

    /// Clears counters and pending faults.
    pub fn clear(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.calls.clear();
        inner.faults.clear();
        inner.log.clear();
        *self.limits() = Default::default();
    }

    /// Clears counters (not faults).
    pub fn reset_calls(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.calls.clear();
        inner.log.clear();
        self.limits().throttled = 0;
    }
}

/// A fake whose calls are counted and whose faults are injected through the
/// shared admin API (`/admin/calls`, `/admin/faults`).
pub trait Faulty: Send + Sync + 'static {
    fn faults(&self) -> &Faults;
    /// Whether an operation changes state (counted in `writes`).
    fn is_write(operation: &str) -> bool;
    /// Forgets every cloud resource, fault, counter and setting, keeping
    /// what callers authenticated with (registered apps, pools, issued
    /// tokens): an e2e run on a long-lived cluster starts each test afresh
    /// without logging the operator out.
    fn reset(&self);
    /// The fake's clock, moved by `POST /admin/clock`.
    fn clock(&self) -> &crate::clock::Clock;
    /// Enforces the cloud's documented rate limits (`POST
    /// /admin/quotas/documented`; the benchmark's "real limits" runs).
    fn documented_limits(&self);
}

/// `GET`/`DELETE /admin/calls`, `POST /admin/faults` and `POST
/// /admin/reset` for any fake.
pub fn admin_routes<F: Faulty>() -> axum::Router<std::sync::Arc<F>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            "/admin/calls",
            get(admin_calls::<F>).delete(admin_reset_calls::<F>),
        )
        .route("/admin/faults", post(admin_fault::<F>))
        .route("/admin/reset", post(admin_reset::<F>))
        .route("/admin/clock", post(admin_clock::<F>))
        .route("/admin/quotas", post(admin_quotas::<F>))
        .route(
            "/admin/quotas/documented",
            post(
                |axum::extract::State(fake): axum::extract::State<std::sync::Arc<F>>| async move {
                    fake.documented_limits();
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        )
}

/// `{"reads": {"perSecond", "burst"}, "writes": {…}}`: the limits to enforce.
async fn admin_quotas<F: Faulty>(
    axum::extract::State(fake): axum::extract::State<std::sync::Arc<F>>,
    axum::Json(quotas): axum::Json<crate::quotas::Quotas>,
) -> axum::http::StatusCode {
    fake.faults().set_quotas(quotas);
    axum::http::StatusCode::NO_CONTENT
}

/// `{"advanceSeconds": n}`: moves the fake's time forward; answers `{"now"}`.
async fn admin_clock<F: Faulty>(
    axum::extract::State(fake): axum::extract::State<std::sync::Arc<F>>,
    axum::Json(body): axum::Json<serde_json::Value>,
) -> axum::Json<serde_json::Value> {
    let secs = body["advanceSeconds"].as_u64().unwrap_or_default();
    axum::Json(serde_json::json!({"now": fake.clock().advance(secs)}))
}

async fn admin_reset<F: Faulty>(
    axum::extract::State(fake): axum::extract::State<std::sync::Arc<F>>,
) -> axum::http::StatusCode {
    fake.faults().clear();
    fake.reset();
    axum::http::StatusCode::NO_CONTENT
}

async fn admin_calls<F: Faulty>(
    axum::extract::State(fake): axum::extract::State<std::sync::Arc<F>>,
) -> axum::Json<Calls> {
    axum::Json(fake.faults().calls(F::is_write))
}

async fn admin_reset_calls<F: Faulty>(
    axum::extract::State(fake): axum::extract::State<std::sync::Arc<F>>,
) -> axum::http::StatusCode {
    fake.faults().reset_calls();
    axum::http::StatusCode::NO_CONTENT
}

async fn admin_fault<F: Faulty>(
    axum::extract::State(fake): axum::extract::State<std::sync::Arc<F>>,
    axum::Json(fault): axum::Json<Fault>,
) -> axum::http::StatusCode {
    fake.faults().inject(fault);
    axum::http::StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_apply_to_their_operation_for_the_given_number_of_calls() {
        let faults = Faults::default();
        faults.inject(Fault {
            operation: "Put".into(),
            status: Some(429),
            retry_after: Some(2),
            latency_ms: None,
            times: 2,
        });
        assert_eq!(faults.record("Get"), Injected::default());
        for _ in 0..2 {
            assert_eq!(faults.record("Put").status, Some(429));
        }
        assert_eq!(faults.record("Put"), Injected::default());
        let calls = faults.calls(|op| op == "Put");
        assert_eq!(calls.operations.get("Put"), Some(&3));
        assert_eq!(calls.writes, 3);
    }
}
