//! Deletion protection for providers: a ClusterIdentityProvider stays until
//! no binding resolves to it, because a binding's cleanup needs its provider
//! (tenant, account, project, issuer) to find what wib made. Without it a
//! namespace deleted together with its provider would never finish.

use std::sync::Arc;

use kube::ResourceExt;
use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};

use super::resolve;

/// The bindings (`namespace/name`, sorted) that resolve to `provider`.
pub fn users(
    provider: &ClusterIdentityProvider,
    bindings: &[Arc<WorkloadIdentityBinding>],
    providers: &[Arc<ClusterIdentityProvider>],
) -> Vec<String> {
    let name = provider.name_any();
    let mut users: Vec<String> = bindings
        .iter()
        .filter(|b| resolve::select(b, providers).is_ok_and(|p| p.name_any() == name))
        .map(|b| format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any()))
        .collect();
    users.sort();
    users
}

/// The message a provider whose deletion waits shows: how many, and the
/// first few by name.
pub fn waiting_for(users: &[String]) -> String {
    const SHOWN: usize = 5;
    let named = users
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let more = users.len().saturating_sub(SHOWN);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "deletion waits for {} binding(s) that still use this provider: {named}{more}; delete them first (wib removes what they made in the cloud)",
        users.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider(name: &str, default: bool) -> Arc<ClusterIdentityProvider> {
        let annotations = if default {
            json!({"wib.dev/is-default-provider": "true"})
        } else {
            json!({})
        };
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "wib.dev/v1alpha1", "kind": "ClusterIdentityProvider",
                "metadata": {"name": name, "annotations": annotations},
                "spec": {"clusterName": "c1", "aws": {"accountId": "123456789012"}},
            }))
            .expect("provider"),
        )
    }

    fn binding(ns: &str, name: &str, provider: Option<&str>) -> Arc<WorkloadIdentityBinding> {
        let mut spec = json!({"aws": {}});
        if let Some(p) = provider {
            spec["providerRef"] = json!({"name": p});
        }
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "wib.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
                "metadata": {"name": name, "namespace": ns}, "spec": spec,
            }))
            .expect("binding"),
        )
    }

    #[test]
    fn a_provider_is_used_by_the_bindings_that_name_it_or_take_it_as_default() {
        let providers = vec![provider("default", true), provider("other", false)];
        let bindings = vec![
            binding("b", "by-default", None),
            binding("a", "by-name", Some("default")),
            binding("a", "elsewhere", Some("other")),
            binding("a", "dangling", Some("gone")),
        ];
        assert_eq!(
            users(&providers[0], &bindings, &providers),
            ["a/by-name", "b/by-default"]
        );
        assert_eq!(users(&providers[1], &bindings, &providers), ["a/elsewhere"]);
    }

    #[test]
    fn the_message_names_a_few_and_counts_the_rest() {
        let many: Vec<String> = (0..8).map(|i| format!("ns/b{i}")).collect();
        let message = waiting_for(&many);
        assert!(
            message.starts_with("deletion waits for 8 binding(s)"),
            "{message}"
        );
        assert!(message.contains("ns/b4 and 3 more"), "{message}");
    }
}
