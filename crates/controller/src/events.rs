//! Publishing Events (`events.k8s.io/v1`), with a memory that stays small at
//! any number of bindings. kube's `Recorder` keeps a copy of every Event it
//! published in the last six minutes, to turn a repeat into a series count
//! instead of a new object; a thousand new bindings publish thousands of
//! Events in that time, and those copies were most of the operator's memory
//! (over 20 MiB at 1,000 bindings). This recorder keeps the same series
//! behaviour with a few dozen bytes per recent Event and at most
//! [`MAX_REMEMBERED`] of them; an Event forgotten early is only published
//! anew instead of counted.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};

/// A repeat within this long is counted on the earlier Event (client-go's
/// and kube's figure).
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// Recent Events remembered for series, at most.
const MAX_REMEMBERED: usize = 4096;

/// What a repeat needs of the Event it repeats.
struct Recent {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
}

#[derive(Default)]
struct Memory {
    by_key: HashMap<u64, Recent>,
    /// Keys by first publication, oldest first: what is forgotten first.
    order: VecDeque<u64>,
}

impl Memory {
    /// Drops what is past the series window, then the oldest beyond the cap.
    fn forget(&mut self, now: Timestamp) {
        while let Some(key) = self.order.front().copied() {
            let expired = self
                .by_key
                .get(&key)
                .is_none_or(|r| r.last + SERIES_WINDOW <= now);
            if !expired && self.order.len() < MAX_REMEMBERED {
                break;
            }
            self.order.pop_front();
            self.by_key.remove(&key);
        }
    }

    fn remember(&mut self, key: u64, recent: Recent) {
        if self.by_key.insert(key, recent).is_none() {
            self.order.push_back(key);
        }
    }
}

pub struct Recorder {
    client: kube::Client,
    reporter: Reporter,
    memory: Mutex<Memory>,
}

impl Recorder {
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            memory: Mutex::default(),
        }
    }

    /// Publishes `event` about `regarding`: a new Event, or the series
    /// count of the same one published within the window.
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = key(event, regarding);
        let repeat = {
            let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            memory.forget(now);
            memory
                .by_key
                .get(&key)
                .filter(|r| r.last + SERIES_WINDOW > now)
                .map(|r| (r.namespace.clone(), r.name.clone(), r.count + 1))
        };
        let counted = match repeat {
            Some((namespace, name, count)) => {
                let series = serde_json::json!({"series": {
                    "count": count,
                    "lastObservedTime": MicroTime(now),
                }});
                let patched = Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                    .await;
                match patched {
                    Ok(_) => Some((namespace, name, count)),
                    // Deleted meanwhile (Events expire): published anew.
                    Err(kube::Error::Api(status)) if status.is_not_found() => None,
                    Err(error) => return Err(error),
                }
            }
            None => None,
        };
        let (namespace, name, count) = match counted {
            Some(counted) => counted,
            None => {
                let new = self.new_event(event, regarding, now);
                let namespace = new.metadata.namespace.clone().unwrap_or_default();
                let name = new.metadata.name.clone().unwrap_or_default();
                Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
                    .create(&PostParams::default(), &new)
                    .await?;
                (namespace, name, 1)
            }
        };
        let recent = Recent {
            namespace,
            name,
            count,
            last: now,
        };
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remember(key, recent);
        Ok(())
    }

    fn new_event(&self, event: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
        let controller = &self.reporter.controller;
        K8sEvent {
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            type_: Some(type_name(event.type_).into()),
            metadata: ObjectMeta {
                // Cluster-scoped objects' Events go to `default`, as kubectl
                // and kube look for them.
                namespace: Some(
                    regarding
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                ),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(controller),
                    now.as_nanosecond()
                )),
                ..ObjectMeta::default()
            },
            ..K8sEvent::default()
        }
    }
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// What makes two Events the same one (kube's key: type, action, reason,
/// the object and the related one; not the note).
fn key(event: &Event, regarding: &ObjectReference) -> u64 {
    let mut hasher = DefaultHasher::new();
    type_name(event.type_).hash(&mut hasher);
    event.action.hash(&mut hasher);
    event.reason.hash(&mut hasher);
    for reference in std::iter::once(regarding).chain(event.secondary.as_ref()) {
        reference.uid.hash(&mut hasher);
        reference.kind.hash(&mut hasher);
        reference.namespace.hash(&mut hasher);
        reference.name.hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recent(last: Timestamp) -> Recent {
        Recent {
            namespace: "team".into(),
            name: "app.1".into(),
            count: 1,
            last,
        }
    }

    #[test]
    fn repeats_are_remembered_for_the_window_and_never_beyond_the_cap() {
        let start = Timestamp::now();
        let mut memory = Memory::default();
        memory.remember(1, recent(start));
        memory.remember(1, recent(start));
        assert_eq!(memory.order.len(), 1, "a repeat keeps its place");
        memory.forget(start + SignedDuration::from_mins(5));
        assert!(memory.by_key.contains_key(&1), "within the window");
        memory.forget(start + SERIES_WINDOW);
        assert!(memory.by_key.is_empty(), "past the window");

        for key in 0..(MAX_REMEMBERED as u64 + 10) {
            memory.remember(key, recent(start));
        }
        memory.forget(start);
        assert_eq!(memory.by_key.len(), MAX_REMEMBERED - 1);
        assert!(!memory.by_key.contains_key(&0), "the oldest goes first");
    }

    #[test]
    fn the_same_event_about_the_same_object_has_one_key_and_the_note_is_not_part_of_it() {
        let regarding = ObjectReference {
            kind: Some("WorkloadIdentityBinding".into()),
            namespace: Some("team".into()),
            name: Some("app".into()),
            uid: Some("u1".into()),
            ..ObjectReference::default()
        };
        let event = |note: &str, reason: &str| Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Ready".into(),
            secondary: None,
        };
        assert_eq!(
            key(&event("one", "Reconciled"), &regarding),
            key(&event("two", "Reconciled"), &regarding)
        );
        assert_ne!(
            key(&event("one", "Reconciled"), &regarding),
            key(&event("one", "CloudError"), &regarding)
        );
        let other = ObjectReference {
            uid: Some("u2".into()),
            ..regarding.clone()
        };
        assert_ne!(
            key(&event("one", "Reconciled"), &regarding),
            key(&event("one", "Reconciled"), &other)
        );
    }
}
