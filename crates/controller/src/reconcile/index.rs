//! Which bindings a change concerns, in O(1): lookups by ServiceAccount,
//! namespace, provider and shared namespace, kept current from the one
//! binding watch. The triggers and observe ask the index for candidates and
//! read the objects themselves from the controller's store, so a stale entry
//! (a deletion the watch missed between relists) costs a skipped lookup,
//! never a wrong decision.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use wib_api::WorkloadIdentityBinding;

type Ref = ObjectRef<WorkloadIdentityBinding>;

/// What of a binding the lookups use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Keys {
    namespace: String,
    service_account: String,
    /// `spec.providerRef`; `None` means the default provider.
    provider: Option<String>,
    names_its_identity: bool,
    /// Namespaces it shares its identity with (`spec.sharing.namespaces`).
    shares_with: Vec<String>,
}

impl Keys {
    fn of(binding: &WorkloadIdentityBinding) -> Self {
        Self {
            namespace: binding.namespace().unwrap_or_default(),
            service_account: binding.service_account_name(),
            provider: binding.spec.provider_ref.as_ref().map(|r| r.name.clone()),
            names_its_identity: binding.spec.names_its_identity(),
            shares_with: binding
                .spec
                .sharing
                .as_ref()
                .map(|s| s.namespaces.clone())
                .unwrap_or_default(),
        }
    }
}

#[derive(Default)]
struct Tables {
    keys: HashMap<Ref, Keys>,
    by_service_account: HashMap<(String, String), HashSet<Ref>>,
    by_namespace: HashMap<String, HashSet<Ref>>,
    by_provider: HashMap<Option<String>, HashSet<Ref>>,
    /// Bindings that name their identity, by namespace: the ones another
    /// namespace's sharing can reach.
    naming_in: HashMap<String, HashSet<Ref>>,
    /// Makers by the namespaces they share with.
    sharing_with: HashMap<String, HashSet<Ref>>,
    /// Entries seen since the watch last restarted (see [`BindingIndex::apply`]).
    relisted: Option<HashSet<Ref>>,
}

impl Tables {
    fn insert(&mut self, r: &Ref, keys: &Keys) {
        let sa = (keys.namespace.clone(), keys.service_account.clone());
        self.by_service_account
            .entry(sa)
            .or_default()
            .insert(r.clone());
        self.by_namespace
            .entry(keys.namespace.clone())
            .or_default()
            .insert(r.clone());
        self.by_provider
            .entry(keys.provider.clone())
            .or_default()
            .insert(r.clone());
        if keys.names_its_identity {
            self.naming_in
                .entry(keys.namespace.clone())
                .or_default()
                .insert(r.clone());
        }
        for ns in &keys.shares_with {
            self.sharing_with
                .entry(ns.clone())
                .or_default()
                .insert(r.clone());
        }
    }

    fn remove(&mut self, r: &Ref, keys: &Keys) {
        fn drop_from<K: std::hash::Hash + Eq>(
            table: &mut HashMap<K, HashSet<Ref>>,
            key: K,
            r: &Ref,
        ) {
            if let Some(set) = table.get_mut(&key) {
                set.remove(r);
                if set.is_empty() {
                    table.remove(&key);
                }
            }
        }
        let sa = (keys.namespace.clone(), keys.service_account.clone());
        drop_from(&mut self.by_service_account, sa, r);
        drop_from(&mut self.by_namespace, keys.namespace.clone(), r);
        drop_from(&mut self.by_provider, keys.provider.clone(), r);
        drop_from(&mut self.naming_in, keys.namespace.clone(), r);
        for ns in &keys.shares_with {
            drop_from(&mut self.sharing_with, ns.clone(), r);
        }
    }

    /// Records `binding`'s keys; returns the ones it had.
    fn upsert(&mut self, binding: &WorkloadIdentityBinding) -> (Ref, Option<Keys>, Keys) {
        let r = ObjectRef::from_obj(binding);
        let keys = Keys::of(binding);
        let old = self.keys.insert(r.clone(), keys.clone());
        if let Some(old) = &old {
            self.remove(&r, old);
        }
        self.insert(&r, &keys);
        (r, old, keys)
    }

    fn delete(&mut self, r: &Ref) -> Option<Keys> {
        let old = self.keys.remove(r)?;
        self.remove(r, &old);
        Some(old)
    }
}

/// The bindings a change to one binding concerns besides itself: siblings
/// for its ServiceAccount (a conflict clears when the holder goes), and the
/// bindings naming their identity in the namespaces it shares with, before
/// and after the change (consent given or withdrawn).
fn concerned(tables: &Tables, r: &Ref, before: Option<&Keys>, after: Option<&Keys>) -> Vec<Ref> {
    let mut out = HashSet::new();
    for keys in before.into_iter().chain(after) {
        let sa = (keys.namespace.clone(), keys.service_account.clone());
        out.extend(
            tables
                .by_service_account
                .get(&sa)
                .into_iter()
                .flatten()
                .cloned(),
        );
        for ns in &keys.shares_with {
            out.extend(tables.naming_in.get(ns).into_iter().flatten().cloned());
        }
    }
    out.remove(r);
    sorted(&out)
}

/// In namespace/name order, so triggers and tests are deterministic.
fn sorted<'a>(refs: impl IntoIterator<Item = &'a Ref>) -> Vec<Ref> {
    let mut out: Vec<Ref> = refs.into_iter().cloned().collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

#[derive(Default)]
pub struct BindingIndex {
    tables: RwLock<Tables>,
}

impl BindingIndex {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the binding watch; returns the other bindings the event
    /// concerns. A relist (Init … InitDone) re-records every binding and
    /// drops the ones it did not see, and triggers nothing: the controller
    /// reconciles every relisted binding anyway.
    pub fn apply(&self, event: &watcher::Event<WorkloadIdentityBinding>) -> Vec<Ref> {
        let mut tables = self.write();
        match event {
            watcher::Event::Apply(binding) => {
                let (r, before, after) = tables.upsert(binding);
                if before.as_ref() == Some(&after) {
                    // Keys unchanged: a status write or a spec change that
                    // moves nothing another binding depends on.
                    return Vec::new();
                }
                concerned(&tables, &r, before.as_ref(), Some(&after))
            }
            watcher::Event::Delete(binding) => {
                let r = ObjectRef::from_obj(binding);
                let before = tables.delete(&r);
                concerned(&tables, &r, before.as_ref(), None)
            }
            watcher::Event::Init => {
                tables.relisted = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(binding) => {
                let (r, _, _) = tables.upsert(binding);
                if let Some(seen) = tables.relisted.as_mut() {
                    seen.insert(r);
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                if let Some(seen) = tables.relisted.take() {
                    let gone: Vec<Ref> = tables
                        .keys
                        .keys()
                        .filter(|r| !seen.contains(*r))
                        .cloned()
                        .collect();
                    for r in gone {
                        tables.delete(&r);
                    }
                }
                Vec::new()
            }
        }
    }

    /// Bindings of this ServiceAccount.
    pub fn for_service_account(&self, namespace: &str, name: &str) -> Vec<Ref> {
        let key = (namespace.to_string(), name.to_string());
        self.read()
            .by_service_account
            .get(&key)
            .map(sorted)
            .unwrap_or_default()
    }

    /// Bindings in this namespace.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Ref> {
        self.read()
            .by_namespace
            .get(namespace)
            .map(sorted)
            .unwrap_or_default()
    }

    /// Bindings that name this provider, and with `default` those that
    /// leave it to the default provider.
    pub fn using_provider(&self, name: &str, default: bool) -> Vec<Ref> {
        let tables = self.read();
        let named = tables.by_provider.get(&Some(name.to_string()));
        let unnamed = default.then(|| tables.by_provider.get(&None)).flatten();
        sorted(named.into_iter().chain(unnamed).flatten())
    }

    /// Bindings that list `namespace` in their `spec.sharing`.
    pub fn sharing_with(&self, namespace: &str) -> Vec<Ref> {
        self.read()
            .sharing_with
            .get(namespace)
            .map(sorted)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn binding(ns: &str, name: &str, spec: serde_json::Value) -> WorkloadIdentityBinding {
        serde_json::from_value(json!({
            "apiVersion": "wib.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
            "metadata": {"name": name, "namespace": ns, "uid": name},
            "spec": spec,
        }))
        .expect("binding")
    }

    fn names(refs: Vec<Ref>) -> Vec<String> {
        refs.into_iter().map(|r| r.name).collect()
    }

    fn apply(index: &BindingIndex, b: &WorkloadIdentityBinding) -> Vec<String> {
        names(index.apply(&watcher::Event::Apply(b.clone())))
    }

    #[test]
    fn lookups_find_bindings_by_service_account_namespace_and_provider() {
        let index = BindingIndex::default();
        let a = binding(
            "team-a",
            "a",
            json!({"serviceAccount": {"name": "app"}, "aws": {}}),
        );
        let b = binding(
            "team-a",
            "b",
            json!({"serviceAccount": {"name": "web"}, "providerRef": {"name": "p"}, "aws": {}}),
        );
        let c = binding(
            "team-b",
            "c",
            json!({"serviceAccount": {"name": "app"}, "aws": {}}),
        );
        for x in [&a, &b, &c] {
            apply(&index, x);
        }
        assert_eq!(names(index.for_service_account("team-a", "app")), ["a"]);
        assert_eq!(names(index.in_namespace("team-a")), ["a", "b"]);
        assert_eq!(names(index.using_provider("p", false)), ["b"]);
        assert_eq!(names(index.using_provider("p", true)), ["a", "b", "c"]);
        assert!(index.using_provider("q", false).is_empty());
        // Moving b to another ServiceAccount moves its entry.
        let moved = binding(
            "team-a",
            "b",
            json!({"serviceAccount": {"name": "app"}, "providerRef": {"name": "p"}, "aws": {}}),
        );
        assert_eq!(apply(&index, &moved), ["a"], "its new sibling is told");
        assert!(index.for_service_account("team-a", "web").is_empty());
        assert_eq!(
            names(index.for_service_account("team-a", "app")),
            ["a", "b"]
        );
    }

    #[test]
    fn a_change_concerns_siblings_and_the_takers_it_shares_with_before_and_after() {
        let index = BindingIndex::default();
        let holder = binding(
            "team-a",
            "holder",
            json!({"serviceAccount": {"name": "app"}, "aws": {}}),
        );
        let second = binding(
            "team-a",
            "second",
            json!({"serviceAccount": {"name": "app"}, "aws": {}}),
        );
        let taker = binding(
            "team-b",
            "taker",
            json!({"serviceAccount": {"name": "t"}, "aws": {"roleName": "shared"}}),
        );
        let bystander = binding(
            "team-c",
            "bystander",
            json!({"serviceAccount": {"name": "t"}, "aws": {"roleName": "other"}}),
        );
        for x in [&holder, &second, &taker, &bystander] {
            apply(&index, x);
        }
        // A status-only write moves no key: nobody else is woken.
        let mut with_status = holder.clone();
        with_status.status = Some(Default::default());
        assert!(apply(&index, &with_status).is_empty());
        // Sharing with team-b wakes team-b's taker, and only it.
        let sharing = binding(
            "team-a",
            "holder",
            json!({"serviceAccount": {"name": "app"}, "sharing": {"namespaces": ["team-b"]}, "aws": {}}),
        );
        assert_eq!(apply(&index, &sharing), ["second", "taker"]);
        assert_eq!(names(index.sharing_with("team-b")), ["holder"]);
        // Deleting the holder wakes its sibling and the taker it shared with.
        let gone = names(index.apply(&watcher::Event::Delete(sharing.clone())));
        assert_eq!(gone, ["second", "taker"]);
        assert!(index.sharing_with("team-b").is_empty());
    }

    #[test]
    fn a_relist_drops_the_bindings_it_did_not_see_and_wakes_nobody() {
        let index = BindingIndex::default();
        let kept = binding(
            "ns",
            "kept",
            json!({"serviceAccount": {"name": "a"}, "aws": {}}),
        );
        let missed = binding(
            "ns",
            "missed",
            json!({"serviceAccount": {"name": "b"}, "aws": {}}),
        );
        apply(&index, &kept);
        apply(&index, &missed);
        assert!(index.apply(&watcher::Event::Init).is_empty());
        assert!(
            index
                .apply(&watcher::Event::InitApply(kept.clone()))
                .is_empty()
        );
        assert!(index.apply(&watcher::Event::InitDone).is_empty());
        assert_eq!(names(index.in_namespace("ns")), ["kept"]);
    }
}
