//! What wib added to a provider's shared cloud objects for some bindings
//! (today: client IDs of the cluster's IAM OIDC provider) goes once no
//! binding uses it, and what it made for an issuer the cluster no longer has (the IAM
//! OIDC provider of an old issuer) goes too. Run on every provider reconcile and after a binding
//! that used one is deleted.

use std::collections::BTreeSet;

use kube::{Resource, ResourceExt};
use wib_api::{Cloud, ClusterIdentityProvider, WorkloadIdentityBinding};

use crate::context::Context;

/// The audiences other than their cloud's default that the cluster's
/// bindings of `cloud` ask for, leaving out the binding whose deletion is
/// under way (by UID).
pub fn audiences_in_use<'a>(
    bindings: impl IntoIterator<Item = &'a WorkloadIdentityBinding>,
    cloud: Cloud,
    leaving: Option<&str>,
) -> BTreeSet<String> {
    bindings
        .into_iter()
        .filter(|b| leaving.is_none_or(|uid| b.uid().as_deref() != Some(uid)))
        .filter(|b| b.spec.cloud() == Some(cloud))
        .filter_map(|b| b.spec.custom_audience().map(str::to_string))
        .collect()
}

/// The issuers the providers of `cluster` have resolved.
pub fn issuers_of_cluster<'a>(
    providers: impl IntoIterator<Item = &'a ClusterIdentityProvider>,
    cluster: &str,
) -> BTreeSet<String> {
    providers
        .into_iter()
        .filter(|p| p.spec.cluster_name == cluster)
        .filter_map(|p| p.status.as_ref()?.issuer.clone())
        .collect()
}

/// Prunes the provider's shared cloud objects, cloud by cloud. Skipped
/// until the bindings cache has synced (an empty cache would make every
/// audience look unused) and until the issuer is known; failures are logged
/// and retried on the next pass.
pub async fn prune(provider: &ClusterIdentityProvider, ctx: &Context, leaving: Option<&str>) {
    let Some(issuer) = provider.status.as_ref().and_then(|s| s.issuer.as_deref()) else {
        return;
    };
    if !ctx.caches_synced() {
        return;
    }
    let bindings = ctx.bindings.state();
    let issuers = issuers_of_cluster(
        ctx.providers.state().iter().map(|p| p.as_ref()),
        &provider.spec.cluster_name,
    );
    for cloud in Cloud::ALL {
        let Some(implementation) = ctx.clouds.get(cloud) else {
            continue;
        };
        if !provider.spec.configures(cloud) {
            continue;
        }
        let in_use = wib_cloud::InUse {
            audiences: audiences_in_use(bindings.iter().map(|b| b.as_ref()), cloud, leaving),
            issuers: issuers.clone(),
        };
        match implementation.prune(provider, issuer, &in_use).await {
            Ok(removed) if removed.is_empty() => {}
            Ok(removed) => {
                tracing::info!(provider = %provider.name_any(), %cloud, ?removed, "pruned what nothing uses");
                crate::publish::cloud_event(
                    &ctx.recorder,
                    &provider.object_ref(&()),
                    kube::runtime::events::EventType::Normal,
                    "Pruned",
                    "Prune",
                    &removed,
                )
                .await;
            }
            Err(error) => {
                tracing::warn!(provider = %provider.name_any(), %cloud, %error, "pruning failed; retried on the next pass")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn binding(uid: &str, spec: serde_json::Value) -> WorkloadIdentityBinding {
        serde_json::from_value(json!({
            "apiVersion": "wib.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
            "metadata": {"name": uid, "namespace": "ns", "uid": uid},
            "spec": spec,
        }))
        .expect("valid binding")
    }

    #[test]
    fn audiences_in_use_count_every_binding_of_the_cloud_but_the_leaving_one() {
        let all = [
            binding("a", json!({"aws": {}})),
            binding("b", json!({"aws": {"audience": "team-b"}})),
            binding("c", json!({"aws": {"audience": "team-c"}})),
            binding("d", json!({"azure": {}})),
        ];
        assert_eq!(
            audiences_in_use(&all, Cloud::Aws, Some("c")),
            BTreeSet::from(["team-b".to_string()])
        );
        assert_eq!(audiences_in_use(&all, Cloud::Aws, None).len(), 2);
        assert!(audiences_in_use(&all, Cloud::Azure, None).is_empty());
    }

    fn provider(name: &str, cluster: &str, issuer: Option<&str>) -> ClusterIdentityProvider {
        serde_json::from_value(json!({
            "apiVersion": "wib.dev/v1alpha1", "kind": "ClusterIdentityProvider",
            "metadata": {"name": name},
            "spec": {"clusterName": cluster},
            "status": issuer.map(|i| json!({"issuer": i})),
        }))
        .expect("valid provider")
    }

    #[test]
    fn issuers_of_a_cluster_are_those_its_providers_resolved() {
        let all = [
            provider("a", "prod", Some("https://one")),
            provider("b", "prod", Some("https://two")),
            provider("c", "prod", None),
            provider("d", "test", Some("https://three")),
        ];
        assert_eq!(
            issuers_of_cluster(&all, "prod"),
            BTreeSet::from(["https://one".to_string(), "https://two".to_string()])
        );
    }
}
