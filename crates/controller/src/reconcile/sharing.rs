//! Consent for cross-namespace sharing: which bindings of other namespaces
//! share the identities they made with a binding's namespace. Both sides'
//! providers must allow it; the maker names the namespace in `spec.sharing`.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::ResourceExt;
use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};

use crate::provider::resolve;

fn allows(binding: &WorkloadIdentityBinding, providers: &[Arc<ClusterIdentityProvider>]) -> bool {
    resolve::select(binding, providers).is_ok_and(|p| p.spec.allow_cross_namespace_sharing)
}

/// The uids of the bindings that grant `binding`'s namespace their
/// identities (same cloud, another namespace, listing it in `spec.sharing`,
/// both providers allowing cross-namespace sharing). Empty without a scan
/// for a binding that leaves its identity's name to wib: a default name is
/// this namespace's own, so it never reaches another's identity.
pub fn granted_by(
    binding: &WorkloadIdentityBinding,
    bindings: impl FnOnce() -> Vec<Arc<WorkloadIdentityBinding>>,
    providers: &[Arc<ClusterIdentityProvider>],
) -> BTreeSet<String> {
    let namespace = binding.namespace().unwrap_or_default();
    if !binding.spec.names_its_identity() || !allows(binding, providers) {
        return BTreeSet::new();
    }
    bindings()
        .iter()
        .filter(|maker| {
            maker.namespace().as_deref() != Some(namespace.as_str())
                && maker.spec.cloud() == binding.spec.cloud()
                && maker
                    .spec
                    .sharing
                    .as_ref()
                    .is_some_and(|s| s.namespaces.contains(&namespace))
                && allows(maker, providers)
        })
        .filter_map(|maker| maker.uid())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn binding(ns: &str, uid: &str, spec: serde_json::Value) -> Arc<WorkloadIdentityBinding> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "wib.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
                "metadata": {"name": uid, "namespace": ns, "uid": uid},
                "spec": spec,
            }))
            .expect("binding"),
        )
    }

    fn provider(allow: bool) -> Arc<ClusterIdentityProvider> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "wib.dev/v1alpha1", "kind": "ClusterIdentityProvider",
                "metadata": {"name": "p", "annotations": {"wib.dev/is-default-provider": "true"}},
                "spec": {"clusterName": "c", "allowCrossNamespaceSharing": allow},
            }))
            .expect("provider"),
        )
    }

    #[test]
    fn only_a_maker_that_lists_the_namespace_under_a_permissive_provider_grants() {
        let sharer = binding("team-b", "s", json!({"aws": {"roleName": "r"}}));
        let all = vec![
            binding(
                "team-a",
                "lists-b",
                json!({"aws": {}, "sharing": {"namespaces": ["team-b"]}}),
            ),
            binding(
                "team-a",
                "lists-c",
                json!({"aws": {}, "sharing": {"namespaces": ["team-c"]}}),
            ),
            binding(
                "team-a",
                "azure",
                json!({"azure": {}, "sharing": {"namespaces": ["team-b"]}}),
            ),
            binding(
                "team-b",
                "same-ns",
                json!({"aws": {}, "sharing": {"namespaces": ["team-b"]}}),
            ),
        ];
        assert_eq!(
            granted_by(&sharer, || all.clone(), &[provider(true)]),
            BTreeSet::from(["lists-b".to_string()])
        );
        assert!(granted_by(&sharer, || all.clone(), &[provider(false)]).is_empty());
        let unnamed = binding("team-b", "u", json!({"aws": {}}));
        assert!(granted_by(&unnamed, || all.clone(), &[provider(true)]).is_empty());
        assert!(sharer.spec.names_its_identity());
        assert!(!all[0].spec.names_its_identity());
    }
}
