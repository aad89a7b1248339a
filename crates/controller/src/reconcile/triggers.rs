//! What wakes a binding, each found through an index rather than a scan of
//! every binding: its own changes; its ServiceAccount (watched by metadata
//! only, nothing cached); its namespace (metadata only, cached for the
//! labels that decide admission); its provider, only when something a
//! binding reads from it changed; and sibling bindings (a conflict clears
//! when the holder goes; a maker's consent to share changes). One binding
//! watch feeds the controller, the index and the provider controller's
//! wake-ups.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::{Stream, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use wib_api::keys::DEFAULT_PROVIDER_ANNOTATION;
use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};

use super::index::BindingIndex;
use super::pods::PodIndex;

/// The two controllers and the caches they share.
pub struct Controllers {
    pub bindings: Controller<WorkloadIdentityBinding>,
    pub providers: Controller<ClusterIdentityProvider>,
    pub binding_store: Store<WorkloadIdentityBinding>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub index: Arc<BindingIndex>,
    /// Pods the webhook admitted, when it runs.
    pub pods: Arc<PodIndex>,
}

/// The annotation client-side `kubectl apply` keeps the applied manifest in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `track_pods`: watch the pods the webhook admitted (by metadata, by its
/// label) so bindings report those needing a restart.
pub fn controllers(client: kube::Client, track_pods: bool) -> Controllers {
    let providers = crate::provider::controller(client.clone());
    let provider_store = providers.store();
    let index = Arc::new(BindingIndex::default());
    let (siblings, sibling_refs) = mpsc::unbounded();
    let (wake, provider_refs) = mpsc::unbounded();
    let (binding_store, binding_events) = binding_watch(
        Api::all(client.clone()),
        index.clone(),
        move |event, concerned| {
            for r in concerned {
                let _ = siblings.unbounded_send(r);
            }
            // A provider being deleted waits for its users to leave.
            if matches!(event, watcher::Event::Apply(_) | watcher::Event::Delete(_)) {
                for p in provider_store.state() {
                    if p.metadata.deletion_timestamp.is_some() {
                        let _ = wake.unbounded_send(ObjectRef::from_obj(&*p));
                    }
                }
            }
        },
    );
    let (namespaces, namespace_writer) = reflector::store();
    let namespace_events = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|ns| ns.managed_fields_mut().clear())
    .reflect(namespace_writer)
    .touched_objects();
    let service_account_events = watcher(
        Api::<PartialObjectMeta<ServiceAccount>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects();

    let client_for_pods = client.clone();
    let (by_sa, in_namespace, by_provider) = (index.clone(), index.clone(), index.clone());
    let changes = ProviderChanges::default();
    let bindings = Controller::for_stream(binding_events, binding_store.clone())
        .watches_stream(service_account_events, move |sa| {
            by_sa.for_service_account(&sa.namespace().unwrap_or_default(), &sa.name_any())
        })
        // A namespace relabelled out of (or into) a provider's selector
        // revokes (or restores) its bindings at once, not at the next resync.
        .watches_stream(namespace_events, move |ns| {
            in_namespace.in_namespace(&ns.name_any())
        })
        .watches(
            Api::<ClusterIdentityProvider>::all(client),
            watcher::Config::default(),
            move |provider| {
                changes
                    .affected(&provider)
                    .map(|default| by_provider.using_provider(&provider.name_any(), default))
                    .unwrap_or_default()
            },
        )
        .reconcile_on(sibling_refs);
    let pods = Arc::new(PodIndex::default());
    let bindings = match track_pods {
        true => {
            let events = pod_watch(client_for_pods, pods.clone());
            let (index, store) = (index.clone(), binding_store.clone());
            bindings.watches_stream(events, move |pod| concerned_by_pod(&pod, &index, &store))
        }
        false => bindings,
    };
    Controllers {
        pods,
        bindings,
        providers: providers.reconcile_on(provider_refs),
        binding_store,
        namespaces,
        index,
    }
}

/// The binding watch, without managedFields (a third of a binding's bytes,
/// read by nothing), reflected into a store, followed by the index, and
/// each event's concerned bindings handed to `notify`.
fn binding_watch(
    api: Api<WorkloadIdentityBinding>,
    index: Arc<BindingIndex>,
    notify: impl Fn(&watcher::Event<WorkloadIdentityBinding>, Vec<ObjectRef<WorkloadIdentityBinding>>)
    + Send
    + 'static,
) -> (
    Store<WorkloadIdentityBinding>,
    impl Stream<Item = Result<WorkloadIdentityBinding, watcher::Error>> + Send + 'static,
) {
    let (store, writer) = reflector::store();
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|b| {
            // Held for every binding for the life of the process: what no
            // step reads goes. A client-side `kubectl apply` leaves a copy
            // of the whole manifest in an annotation.
            b.managed_fields_mut().clear();
            b.annotations_mut().remove(LAST_APPLIED);
        })
        .reflect(writer)
        .inspect_ok(move |event| notify(event, index.apply(event)))
        .applied_objects();
    (store, events)
}

/// Admitted pods by metadata (the webhook's label), followed by the pod
/// index.
fn pod_watch(
    client: kube::Client,
    pods: Arc<PodIndex>,
) -> impl Stream<Item = Result<PartialObjectMeta<Pod>, watcher::Error>> + Send + 'static {
    let selector = format!("{}=true", crate::webhook::stamp::ADMITTED_LABEL);
    watcher(
        Api::<PartialObjectMeta<Pod>>::all(client),
        watcher::Config::default().labels(&selector),
    )
    .default_backoff()
    .modify(|pod| pod.managed_fields_mut().clear())
    .inspect_ok(move |event| {
        pods.apply(event);
    })
    .touched_objects()
}

/// The bindings of a pod's ServiceAccount whose report it changes: those
/// that gave it another identity than the pod has, and those reporting
/// pods to restart (this one may have gone).
fn concerned_by_pod(
    pod: &PartialObjectMeta<Pod>,
    index: &BindingIndex,
    bindings: &Store<WorkloadIdentityBinding>,
) -> Vec<ObjectRef<WorkloadIdentityBinding>> {
    let annotations = pod.annotations();
    let Some(account) = crate::webhook::stamp::service_account(annotations) else {
        return Vec::new();
    };
    index
        .for_service_account(&pod.namespace().unwrap_or_default(), &account)
        .into_iter()
        .filter(|r| {
            let Some(binding) = bindings.get(r) else {
                return false;
            };
            let Some(status) = binding.status.as_ref() else {
                return false;
            };
            let given = binding
                .spec
                .cloud()
                .and_then(|cloud| crate::webhook::stamp::read(annotations, cloud))
                .and_then(|(_, given)| given);
            status.pods_needing_restart.unwrap_or_default() > 0
                || (status.identity.is_some() && given != status.identity)
        })
        .collect()
}

/// Remembers, per provider, a fingerprint of what bindings read from it, so
/// a provider event requeues its bindings only when that changed (not for a
/// label, a managedFields entry or a no-op status write).
#[derive(Default)]
struct ProviderChanges {
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Seen {
    fingerprint: u64,
    default: bool,
}

impl ProviderChanges {
    /// `Some(default)` when bindings must look again: `default` says whether
    /// the ones without `providerRef` are concerned (it is, or was, the
    /// default provider).
    fn affected(&self, provider: &ClusterIdentityProvider) -> Option<bool> {
        let now = Seen {
            fingerprint: fingerprint(provider),
            default: is_default(provider),
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let before = seen.insert(provider.name_any(), now);
        if provider.meta().deletion_timestamp.is_some() {
            return Some(now.default || before.is_some_and(|b| b.default));
        }
        match before {
            Some(before) if before == now => None,
            before => Some(now.default || before.is_some_and(|b| b.default)),
        }
    }
}

fn is_default(provider: &ClusterIdentityProvider) -> bool {
    provider
        .annotations()
        .get(DEFAULT_PROVIDER_ANNOTATION)
        .map(String::as_str)
        == Some("true")
}

/// Spec and status, as bindings read them.
fn fingerprint(provider: &ClusterIdentityProvider) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&provider.spec)
        .unwrap_or_default()
        .hash(&mut hasher);
    serde_json::to_string(&provider.status)
        .unwrap_or_default()
        .hash(&mut hasher);
    provider.meta().generation.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider(
        annotations: serde_json::Value,
        spec: serde_json::Value,
    ) -> ClusterIdentityProvider {
        serde_json::from_value(json!({
            "apiVersion": "wib.dev/v1alpha1", "kind": "ClusterIdentityProvider",
            "metadata": {"name": "p", "annotations": annotations, "resourceVersion": "1"},
            "spec": spec,
        }))
        .expect("provider")
    }

    #[test]
    fn a_provider_concerns_its_bindings_only_when_what_they_read_changed() {
        let changes = ProviderChanges::default();
        let plain = provider(json!({}), json!({"clusterName": "c"}));
        assert_eq!(changes.affected(&plain), Some(false), "first sight");
        let mut relabelled = plain.clone();
        relabelled.labels_mut().insert("team".into(), "x".into());
        relabelled.meta_mut().resource_version = Some("2".into());
        assert_eq!(
            changes.affected(&relabelled),
            None,
            "a label bindings do not read"
        );
        let edited = provider(
            json!({}),
            json!({"clusterName": "c", "allowCrossNamespaceSharing": true}),
        );
        assert_eq!(changes.affected(&edited), Some(false));
        let defaulted = provider(
            json!({DEFAULT_PROVIDER_ANNOTATION: "true"}),
            json!({"clusterName": "c", "allowCrossNamespaceSharing": true}),
        );
        assert_eq!(
            changes.affected(&defaulted),
            Some(true),
            "became the default"
        );
        assert_eq!(changes.affected(&edited), Some(true), "was the default");
        assert_eq!(changes.affected(&edited), None);
        let mut deleting = edited.clone();
        deleting.meta_mut().deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(changes.affected(&deleting), Some(false), "going away");
    }
}
