//! Group commit for IAM policy edits. A project has one IAM policy that
//! every binding of the project edits; read-modify-write cycles started at
//! once by wib's own concurrent reconciles would mostly lose the etag race
//! to each other (GCP answers `ABORTED`) and each costs a write against the
//! project's quota. Instead, edits of one policy queue here, and one worker
//! per policy applies every edit waiting to a single fresh read and writes
//! once.
//!
//! Tenancy: edits of different bindings (maybe different tenants) share a
//! write only when the write succeeds. If a shared cycle fails for any
//! reason, each of its edits is retried in a cycle of its own, so one
//! binding's refused role fails that binding alone.

use std::collections::HashMap;
use std::sync::Mutex;

use google_cloud_iam_v1::model::Policy;
use tokio::sync::oneshot;

use super::iam::{Clients, Resource};
use crate::CloudError;
use wib_api::conditions::Reason;

/// One binding's change to a policy: applies itself to a fresh copy and
/// says whether it changed anything.
pub type Edit = Box<dyn Fn(&mut Policy) -> bool + Send + Sync>;

/// What a waiting edit learns: whether its own change was written.
type Outcome = Result<bool, CloudError>;

struct Pending {
    edit: Edit,
    done: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    /// A worker is draining this policy's queue.
    draining: bool,
}

/// The queues, by policy resource name.
#[derive(Default)]
pub struct PolicyWrites {
    queues: Mutex<HashMap<String, Queue>>,
}

impl PolicyWrites {
    /// Queues `pending`; true when the caller must start the worker.
    fn submit(&self, resource: &str, pending: Pending) -> bool {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let queue = queues.entry(resource.to_string()).or_default();
        queue.pending.push(pending);
        !std::mem::replace(&mut queue.draining, true)
    }

    /// Everything waiting; empty (and the worker retired) when nothing is.
    fn take(&self, resource: &str) -> Vec<Pending> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let Some(queue) = queues.get_mut(resource) else {
            return Vec::new();
        };
        if queue.pending.is_empty() {
            queues.remove(resource);
            return Vec::new();
        }
        std::mem::take(&mut queue.pending)
    }
}

impl Clients {
    /// Applies `edit` to a fresh read of `resource`'s policy and writes it
    /// when it changed anything, together with every other edit of the
    /// same policy waiting at that moment. Returns whether `edit` changed
    /// the policy.
    pub async fn modify_policy(&self, resource: &Resource, edit: Edit) -> Result<bool, CloudError> {
        let (done, outcome) = oneshot::channel();
        if self
            .policy_writes
            .submit(resource.name(), Pending { edit, done })
        {
            // A task of its own: a reconcile being dropped must not strand
            // the edits of others queued behind it.
            let clients = self.clone();
            let resource = resource.clone();
            tokio::spawn(async move { clients.drain(&resource).await });
        }
        outcome.await.unwrap_or_else(|_| {
            Err(CloudError::new(
                Reason::TransientError,
                format!(
                    "the writer of the IAM policy of {} stopped; retrying later",
                    resource.name()
                ),
            ))
        })
    }

    async fn drain(&self, resource: &Resource) {
        let _unwinding = ForgetOnPanic {
            writes: &self.policy_writes,
            resource: resource.name(),
        };
        loop {
            let batch = self.policy_writes.take(resource.name());
            if batch.is_empty() {
                return;
            }
            let edits: Vec<&Edit> = batch.iter().map(|p| &p.edit).collect();
            match self.read_modify_write(resource, &edits).await {
                Ok(changed) => {
                    for (pending, changed) in batch.into_iter().zip(changed) {
                        let _ = pending.done.send(Ok(changed));
                    }
                }
                Err(error) if batch.len() == 1 => {
                    if let Some(pending) = batch.into_iter().next() {
                        let _ = pending.done.send(Err(error));
                    }
                }
                Err(_) => {
                    for pending in batch {
                        let alone = self
                            .read_modify_write(resource, &[&pending.edit])
                            .await
                            .map(|changed| changed.first().copied().unwrap_or(false));
                        let _ = pending.done.send(alone);
                    }
                }
            }
        }
    }
}

/// Should a worker panic, its queue is dropped: the waiting edits learn
/// their writer stopped (and retry) instead of waiting on a queue marked as
/// drained by a worker that is gone.
struct ForgetOnPanic<'a> {
    writes: &'a PolicyWrites,
    resource: &'a str,
}

impl Drop for ForgetOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queues = self.writes.queues.lock().unwrap_or_else(|p| p.into_inner());
            queues.remove(self.resource);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> (Pending, oneshot::Receiver<Outcome>) {
        let (done, rx) = oneshot::channel();
        (
            Pending {
                edit: Box::new(|_| true),
                done,
            },
            rx,
        )
    }

    #[test]
    fn one_worker_per_policy_drains_everything_queued_while_it_works() {
        let writes = PolicyWrites::default();
        assert!(
            writes.submit("projects/a", pending().0),
            "first edit starts a worker"
        );
        assert!(
            !writes.submit("projects/a", pending().0),
            "the worker is running"
        );
        assert!(
            writes.submit("projects/b", pending().0),
            "another policy, another worker"
        );
        assert_eq!(writes.take("projects/a").len(), 2);
        assert!(!writes.submit("projects/a", pending().0), "still draining");
        assert_eq!(writes.take("projects/a").len(), 1);
        assert!(writes.take("projects/a").is_empty(), "the worker retires");
        assert!(
            writes.submit("projects/a", pending().0),
            "a new worker after it"
        );
    }
}
