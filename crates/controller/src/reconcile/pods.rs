//! Pods that need a restart: those the webhook admitted for a binding's
//! ServiceAccount without the identity the binding now gives it (created
//! before it was Ready, or before it changed). Pods are known by metadata
//! only (the webhook's stamp), from a watch of admitted pods, indexed by
//! (namespace, ServiceAccount), so a reconcile looks at its own pods only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use wib_api::conditions::{self, Desired, PODS_READY, Reason};
use wib_api::{Cloud, WorkloadIdentityBindingStatus};

use crate::webhook::stamp;

type Key = (String, String);
type PodMeta = Arc<PartialObjectMeta<Pod>>;

/// Admitted pods by (namespace, ServiceAccount).
#[derive(Default)]
pub struct PodIndex(RwLock<Tables>);

#[derive(Default)]
struct Tables {
    by_account: HashMap<Key, BTreeMap<String, PodMeta>>,
    /// (namespace, pod) → its ServiceAccount key.
    keys: HashMap<Key, Key>,
    relisted: Option<HashSet<Key>>,
}

impl Tables {
    fn upsert(&mut self, pod: &PartialObjectMeta<Pod>) -> Option<Key> {
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let id = (namespace.clone(), name.clone());
        self.remove(&id);
        let account = stamp::service_account(pod.annotations())?;
        let key = (namespace, account);
        let mut slim = pod.clone();
        slim.metadata.managed_fields = None;
        self.by_account
            .entry(key.clone())
            .or_default()
            .insert(name, Arc::new(slim));
        self.keys.insert(id, key.clone());
        Some(key)
    }

    fn remove(&mut self, id: &Key) -> Option<Key> {
        let key = self.keys.remove(id)?;
        if let Some(pods) = self.by_account.get_mut(&key) {
            pods.remove(&id.1);
            if pods.is_empty() {
                self.by_account.remove(&key);
            }
        }
        Some(key)
    }
}

impl PodIndex {
    /// Follows one watch event; returns the (namespace, ServiceAccount)
    /// whose pods changed.
    pub fn apply(&self, event: &watcher::Event<PartialObjectMeta<Pod>>) -> Option<Key> {
        let mut tables = self.0.write().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Apply(pod) => tables.upsert(pod),
            watcher::Event::Delete(pod) => {
                tables.remove(&(pod.namespace().unwrap_or_default(), pod.name_any()))
            }
            watcher::Event::Init => {
                tables.relisted = Some(HashSet::new());
                None
            }
            watcher::Event::InitApply(pod) => {
                tables.upsert(pod);
                let id = (pod.namespace().unwrap_or_default(), pod.name_any());
                if let Some(seen) = tables.relisted.as_mut() {
                    seen.insert(id);
                }
                None
            }
            watcher::Event::InitDone => {
                if let Some(seen) = tables.relisted.take() {
                    let gone: Vec<Key> = tables
                        .keys
                        .keys()
                        .filter(|id| !seen.contains(*id))
                        .cloned()
                        .collect();
                    for id in gone {
                        tables.remove(&id);
                    }
                }
                None
            }
        }
    }

    /// The admitted pods of `namespace`/`service_account`.
    pub fn of(&self, namespace: &str, service_account: &str) -> Vec<PodMeta> {
        let tables = self.0.read().unwrap_or_else(|e| e.into_inner());
        tables
            .by_account
            .get(&(namespace.to_string(), service_account.to_string()))
            .map(|pods| pods.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// What wib's webhook must have given the ServiceAccount's pods for one cloud.
#[derive(Clone, Copy, Debug)]
pub enum Expected<'a> {
    /// This identity (the ServiceAccount's annotation names it).
    Given(&'a str),
    /// Nothing: the cloud's own agent serves the pods (EKS Pod Identity),
    /// and an identity wib's webhook gave before would take precedence
    /// in the SDKs over the agent's.
    Nothing,
}

/// The pods (not being deleted) that were not given what is expected for
/// `cloud`, by name.
pub fn needing_restart(pods: &[PodMeta], cloud: Cloud, expected: Expected<'_>) -> Vec<PodMeta> {
    pods.iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            let stamped = stamp::read(pod.annotations(), cloud);
            match expected {
                Expected::Given(identity) => {
                    stamped.is_none_or(|(_, given)| given.as_deref() != Some(identity))
                }
                Expected::Nothing => stamped.is_some_and(|(_, given)| given.is_some()),
            }
        })
        .cloned()
        .collect()
}

/// How many pod names the status lists.
const NAMED: usize = 5;

/// What a reconcile found of its ServiceAccount's pods.
pub struct Report<'a> {
    pub service_account: &'a str,
    pub identity: &'a str,
    pub needing: &'a [PodMeta],
    /// What wib did or could not do about them, for the message.
    pub restart_note: Option<String>,
}

/// Puts the pods' report on `status`: the count, a few names, and the
/// PodsReady condition (its transition time carried from `previous`).
pub fn report(
    status: &mut WorkloadIdentityBindingStatus,
    previous: Option<&WorkloadIdentityBindingStatus>,
    found: Report<'_>,
    generation: Option<i64>,
    now: Time,
) {
    let Report {
        service_account,
        identity,
        needing,
        restart_note,
    } = found;
    let mut names: Vec<String> = needing.iter().map(|p| p.name_any()).collect();
    names.sort();
    let desired = match names.len() {
        0 => Desired::new(
            PODS_READY,
            true,
            Reason::PodsCurrent,
            format!("every pod of ServiceAccount {service_account:?} admitted by wib runs with {identity}"),
        ),
        n => Desired::new(
            PODS_READY,
            false,
            Reason::PodsNeedRestart,
            format!(
                "{n} pod(s) of ServiceAccount {service_account:?} run without {identity} (created before it was Ready or before it changed): {}{}; {}",
                names.iter().take(NAMED).cloned().collect::<Vec<_>>().join(", "),
                if n > NAMED { ", ..." } else { "" },
                restart_note.unwrap_or_else(|| {
                    "restart them (kubectl rollout restart), or set spec.restartWorkloads: OnIdentityChange".into()
                })
            ),
        ),
    };
    super::status::add_conditions(status, previous, &[desired], generation, now);
    status.pods_needing_restart = Some(i32::try_from(names.len()).unwrap_or(i32::MAX));
    names.truncate(NAMED);
    status.pods_needing_restart_names = names;
}

/// Keeps what the last report said, for a reconcile that did not reach
/// the cloud (the identity is not known anew).
pub fn carry(
    status: &mut WorkloadIdentityBindingStatus,
    previous: Option<&WorkloadIdentityBindingStatus>,
) {
    let Some(previous) = previous else {
        return;
    };
    if let Some(condition) = conditions::find(&previous.conditions, PODS_READY) {
        status.conditions.push(condition.clone());
    }
    status.pods_needing_restart = previous.pods_needing_restart;
    status.pods_needing_restart_names = previous.pods_needing_restart_names.clone();
    status.workloads_restarted = previous.workloads_restarted.clone();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, account: &str, identities: serde_json::Value) -> PartialObjectMeta<Pod> {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns", "annotations": {
                stamp::SERVICE_ACCOUNT_ANNOTATION: account,
                stamp::IDENTITIES_ANNOTATION: identities.to_string(),
            }},
        }))
        .expect("pod")
    }

    #[test]
    fn under_eks_pod_identity_only_pods_wib_gave_an_aws_role_need_a_restart() {
        let irsa = Arc::new(pod("irsa", "app", json!({"aws": "arn:aws:iam::1:role/r"})));
        let agent = Arc::new(pod("agent", "app", json!({})));
        let names: Vec<String> = needing_restart(&[irsa, agent], Cloud::Aws, Expected::Nothing)
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(names, ["irsa"]);
    }

    #[test]
    fn pods_without_the_current_identity_need_a_restart_and_leave_the_index_when_deleted() {
        let index = PodIndex::default();
        let old = pod("old", "app", json!({}));
        let stale = pod("stale", "app", json!({"azure": "before"}));
        let current = pod("current", "app", json!({"azure": "now"}));
        let other = pod("other", "else", json!({}));
        for p in [&old, &stale, &current, &other] {
            index.apply(&watcher::Event::Apply(p.clone()));
        }
        let pods = index.of("ns", "app");
        assert_eq!(pods.len(), 3);
        let mut names: Vec<String> = needing_restart(&pods, Cloud::Azure, Expected::Given("now"))
            .iter()
            .map(|p| p.name_any())
            .collect();
        names.sort();
        assert_eq!(names, ["old", "stale"]);
        assert_eq!(
            index.apply(&watcher::Event::Delete(old)),
            Some(("ns".into(), "app".into()))
        );
        assert_eq!(
            needing_restart(&index.of("ns", "app"), Cloud::Azure, Expected::Given("now")).len(),
            1
        );
    }

    #[test]
    fn a_relist_forgets_pods_gone_meanwhile() {
        let index = PodIndex::default();
        index.apply(&watcher::Event::Apply(pod("gone", "app", json!({}))));
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(pod("kept", "app", json!({}))));
        index.apply(&watcher::Event::InitDone);
        let names: Vec<String> = index.of("ns", "app").iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["kept"]);
    }

    #[test]
    fn the_report_names_a_few_and_counts_all() {
        let pods: Vec<PodMeta> = (0..7)
            .map(|i| Arc::new(pod(&format!("p{i}"), "app", json!({}))))
            .collect();
        let mut status = WorkloadIdentityBindingStatus::default();
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(100).expect("time"));
        let found = Report {
            service_account: "app",
            identity: "cid",
            needing: &pods,
            restart_note: None,
        };
        report(&mut status, None, found, Some(1), now);
        assert_eq!(status.pods_needing_restart, Some(7));
        assert_eq!(status.pods_needing_restart_names.len(), 5);
        let condition = conditions::find(&status.conditions, PODS_READY).expect("condition");
        assert_eq!(condition.reason, "PodsNeedRestart");
        assert!(
            condition.message.starts_with("7 pod(s)"),
            "{}",
            condition.message
        );
    }
}
