//! The HTTP transport under the Azure SDK clients, wrapped: every ARM
//! request (each attempt, as the cloud sees it) waits for the Azure rate
//! limiter and is reported to the call observer under the REST spec's
//! operation ID, e.g. `UserAssignedIdentities_Get`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::calls::{Call, Observer};
use crate::limiter::{Class, Limiter, Limits, READ, WRITE};

tokio::task_local! {
    /// The `Retry-After` of the last throttled answer ARM gave this
    /// reconcile (cleared by a success): what the binding's next attempt
    /// waits for once the SDK's own retries are spent.
    static RETRY_AFTER: std::cell::Cell<Option<Duration>>;
}

/// Runs one cloud step, giving its error the `Retry-After` ARM last asked for.
pub async fn with_retry_after<T>(
    step: impl std::future::Future<Output = Result<T, crate::CloudError>>,
) -> Result<T, crate::CloudError> {
    RETRY_AFTER
        .scope(std::cell::Cell::new(None), async {
            step.await.map_err(|mut error| {
                if error.retry_after.is_none() {
                    error.retry_after = RETRY_AFTER.with(std::cell::Cell::get);
                }
                error
            })
        })
        .await
}

/// `Retry-After` in seconds (ARM never sends the HTTP-date form).
fn retry_after(response: &azure_core::Response) -> Option<Duration> {
    response
        .headers()
        .get_optional_str(&azure_core::headers::RETRY_AFTER)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[derive(Clone)]
pub struct ObservedHttp {
    inner: Arc<dyn azure_core::HttpClient>,
    observer: Observer,
    limiter: Arc<Limiter>,
    /// Raised when ARM refuses wib's access token (401): the credential
    /// then fetches a new one instead of serving its cache until the
    /// expiry it believes in (clock skew, a revoked or rotated token).
    pub refused: Arc<AtomicBool>,
}

impl std::fmt::Debug for ObservedHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedHttp").finish_non_exhaustive()
    }
}

impl ObservedHttp {
    pub fn new(
        inner: Arc<dyn azure_core::HttpClient>,
        observer: Observer,
        limits: &crate::limiter::Limits,
    ) -> Self {
        Self {
            inner,
            observer,
            limiter: Arc::new(Limiter::new(limits)),
            refused: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Creating or deleting a user-assigned identity: the managed-identity
/// resource provider's own, lower limit applies on top of ARM's writes.
pub const IDENTITY_WRITE: &str = "identity-write";

/// ARM's documented token buckets per subscription and principal (reads:
/// 250, refilled 25 a second; writes: 200, refilled 10 a second), and about
/// two identity writes a second per subscription.
pub fn arm_limits() -> Limits {
    Limits(vec![
        Class {
            name: READ,
            per_second: 25.0,
            burst: 250.0,
        },
        Class {
            name: WRITE,
            per_second: 10.0,
            burst: 200.0,
        },
        // One at a time: a burst here is what the resource provider's own
        // limit refuses first.
        Class {
            name: IDENTITY_WRITE,
            per_second: 2.0,
            burst: 1.0,
        },
    ])
}

/// The classes an ARM operation counts against; Entra's token endpoint
/// (wib's own sign-in) counts against none.
pub fn classes(operation: &str) -> &'static [&'static str] {
    match operation {
        "Token" => &[],
        "UserAssignedIdentities_CreateOrUpdate" | "UserAssignedIdentities_Delete" => {
            &[WRITE, IDENTITY_WRITE]
        }
        _ => crate::limiter::read_or_write(operation),
    }
}

/// The operation ID of an ARM request: the last resource type in the path,
/// capitalised, and the verb (`Get` an item, `List` a collection,
/// `CreateOrUpdate`, `Update`, `Delete`).
pub fn operation(method: &str, path: &str) -> String {
    // Entra's token endpoint (wib's own credential), named as the fake does.
    if path.to_ascii_lowercase().ends_with("/oauth2/v2.0/token") {
        return "Token".into();
    }
    // Key Vault names its one POST-like PUT after the vault.
    if path.to_ascii_lowercase().contains("/accesspolicies/") {
        return "Vaults_UpdateAccessPolicy".into();
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let Some(provider) = segments
        .iter()
        .rposition(|s| s.eq_ignore_ascii_case("providers"))
    else {
        return format!("Arm_{method}");
    };
    // After providers/<Namespace>: type/name pairs, possibly nested.
    let tail = &segments[(provider + 2).min(segments.len())..];
    let (kind, item) = match tail.len() % 2 {
        0 => (tail.len().checked_sub(2).map(|i| tail[i]), true),
        _ => (tail.last().copied(), false),
    };
    let kind = kind.unwrap_or("resource");
    let mut chars = kind.chars();
    let kind = chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default();
    let in_group = segments
        .iter()
        .any(|s| s.eq_ignore_ascii_case("resourceGroups"));
    let verb = match (kind.as_str(), method, item) {
        // Authorization names these two after what they do at a scope.
        ("RoleAssignments", "PUT", _) => "Create",
        ("RoleAssignments", "GET", false) => "ListForScope",
        // Managed identities are listed by resource group or subscription.
        ("UserAssignedIdentities", "GET", false) if in_group => "ListByResourceGroup",
        ("UserAssignedIdentities", "GET", false) => "ListBySubscription",
        _ => "",
    };
    if !verb.is_empty() {
        return format!("{kind}_{verb}");
    }
    let verb = match (method, item) {
        ("GET", true) => "Get",
        ("GET", false) => "List",
        ("PUT", _) => "CreateOrUpdate",
        ("PATCH", _) => "Update",
        ("DELETE", _) => "Delete",
        _ => method,
    };
    format!("{kind}_{verb}")
}

#[async_trait::async_trait]
impl azure_core::HttpClient for ObservedHttp {
    async fn execute_request(
        &self,
        request: &azure_core::Request,
    ) -> azure_core::Result<azure_core::Response> {
        let operation = operation(request.method().as_ref(), request.url().path());
        let classes = classes(&operation);
        self.limiter.acquire(classes).await;
        let started = Instant::now();
        let response = self.inner.execute_request(request).await;
        let result = match &response {
            Ok(r) => match u16::from(r.status()) {
                200..=299 => "success",
                404 => "not_found",
                429 => "throttled",
                _ => "error",
            },
            Err(_) => "error",
        };
        if result == "throttled" {
            self.limiter
                .throttled(classes, response.as_ref().ok().and_then(retry_after));
        }
        if let Ok(r) = &response {
            let status = u16::from(r.status());
            if status == 401 {
                self.refused.store(true, Ordering::Relaxed);
            }
            let wait = match status {
                200..=299 => None,
                _ => retry_after(r),
            };
            if status < 300 || wait.is_some() {
                // Outside a cloud step (a credential check) there is no slot.
                let _ = RETRY_AFTER.try_with(|slot| slot.set(wait));
            }
        }
        self.observer.observe(Call {
            cloud: "azure",
            operation: &operation,
            result,
            elapsed: started.elapsed(),
        });
        response
    }
}

#[cfg(test)]
mod tests {
    use super::operation;

    #[test]
    fn operation_ids_follow_the_rest_spec() {
        let identity = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id";
        let cases = [
            ("GET", identity.to_string(), "UserAssignedIdentities_Get"),
            (
                "PUT",
                identity.to_string(),
                "UserAssignedIdentities_CreateOrUpdate",
            ),
            (
                "DELETE",
                identity.to_string(),
                "UserAssignedIdentities_Delete",
            ),
            (
                "GET",
                format!("{identity}/federatedIdentityCredentials"),
                "FederatedIdentityCredentials_List",
            ),
            (
                "PUT",
                format!("{identity}/federatedIdentityCredentials/fic"),
                "FederatedIdentityCredentials_CreateOrUpdate",
            ),
            (
                "GET",
                "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments".into(),
                "RoleAssignments_ListForScope",
            ),
            (
                "GET",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities".into(),
                "UserAssignedIdentities_ListByResourceGroup",
            ),
            ("POST", "/tenant/oauth2/v2.0/token".into(), "Token"),
            (
                "GET",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv".into(),
                "Vaults_Get",
            ),
            (
                "PUT",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv/accessPolicies/add".into(),
                "Vaults_UpdateAccessPolicy",
            ),
        ];
        for (method, path, want) in cases {
            assert_eq!(operation(method, &path), want, "{method} {path}");
        }
    }
}
