//! Objects for unit tests, written as a user would write their YAML.

use serde_json::{Value, json};
use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};

/// `base` with `extra`'s top-level fields put over it.
pub fn merged(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().into_iter().flatten() {
        base[k] = v.clone();
    }
    base
}

pub fn provider(name: &str, spec: Value) -> ClusterIdentityProvider {
    serde_json::from_value(json!({
        "apiVersion": "wib.dev/v1alpha1", "kind": "ClusterIdentityProvider",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("provider")
}

pub fn binding(name: &str, namespace: &str, uid: &str, spec: Value) -> WorkloadIdentityBinding {
    serde_json::from_value(json!({
        "apiVersion": "wib.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
        "metadata": {"name": name, "namespace": namespace, "uid": uid}, "spec": spec,
    }))
    .expect("binding")
}
