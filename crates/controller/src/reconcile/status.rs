//! Status: pure computation of the binding's status from what the reconcile
//! found and did. The kstatus trio (Ready, Reconciling, Stalled) is derived
//! from the per-step conditions, so they can never disagree.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use wib_api::conditions::{
    self, Desired, EXCHANGE_VERIFIED, FEDERATION_READY, IDENTITY_READY, READY, RECONCILING,
    ROLE_ASSIGNMENTS_READY, Reason, SERVICE_ACCOUNT_READY, STALLED,
};
use wib_api::{Cloud, WorkloadIdentityBinding, WorkloadIdentityBindingStatus};

use super::verify::ExchangeStep;
use crate::provider::resolve::Refusal;

/// The result of the cloud step.
#[derive(Clone, Debug)]
pub enum CloudStep {
    /// This build has no provider for the cloud.
    NotImplemented,
    /// The cloud is in the desired state.
    Done(Box<wib_cloud::Outcome>),
    /// The cloud step failed; nothing after it ran.
    Failed { reason: Reason, message: String },
}

/// The result of the ServiceAccount step.
#[derive(Clone, Debug)]
pub enum ServiceAccountStep {
    Ready,
    Missing,
    /// Not attempted because the cloud step failed.
    Skipped,
    /// The API server refused the write, or could not be reached.
    Failed {
        reason: Reason,
        message: String,
    },
}

/// What the reconcile got to.
#[derive(Clone, Debug)]
pub enum Progress {
    /// Refused before any write.
    Refused(Refusal),
    Ran {
        cloud: Cloud,
        cloud_step: CloudStep,
        service_account: ServiceAccountStep,
        /// `verifyExchange`'s verdict, after the ServiceAccount step.
        exchange: ExchangeStep,
    },
}

pub fn compute(
    binding: &WorkloadIdentityBinding,
    previous: Option<&WorkloadIdentityBindingStatus>,
    progress: &Progress,
    now: Time,
) -> WorkloadIdentityBindingStatus {
    let sa_name = binding.service_account_name();
    let mut status = WorkloadIdentityBindingStatus {
        observed_generation: binding.metadata.generation,
        cloud: binding.spec.cloud(),
        service_account: Some(sa_name.clone()),
        ..Default::default()
    };
    let steps = match progress {
        Progress::Refused(refusal) => [
            IDENTITY_READY,
            FEDERATION_READY,
            ROLE_ASSIGNMENTS_READY,
            SERVICE_ACCOUNT_READY,
        ]
        .into_iter()
        .map(|t| Desired::new(t, false, refusal.reason, refusal.message.clone()))
        .collect::<Vec<_>>(),
        Progress::Ran {
            cloud,
            cloud_step,
            service_account,
            exchange,
        } => {
            let mut steps = match cloud_step {
                CloudStep::NotImplemented => {
                    let message = format!(
                        "this build of wib does not implement {cloud} yet; nothing was created in the cloud"
                    );
                    [IDENTITY_READY, FEDERATION_READY, ROLE_ASSIGNMENTS_READY]
                        .into_iter()
                        .map(|t| {
                            Desired::new(t, false, Reason::CloudNotImplemented, message.clone())
                        })
                        .collect::<Vec<_>>()
                }
                CloudStep::Done(outcome) => {
                    let outcome = outcome.as_ref();
                    status.set_cloud_status(&outcome.status);
                    [IDENTITY_READY, FEDERATION_READY, ROLE_ASSIGNMENTS_READY]
                        .into_iter()
                        .map(|t| match &outcome.grants_refused {
                            Some(refused) if t == ROLE_ASSIGNMENTS_READY => {
                                Desired::new(t, false, refused.reason, refused.message.clone())
                            }
                            _ => Desired::new(
                                t,
                                true,
                                Reason::Provisioned,
                                format!("{cloud} {} in place", step_noun(t)),
                            ),
                        })
                        .collect()
                }
                CloudStep::Failed { reason, message } => {
                    [IDENTITY_READY, FEDERATION_READY, ROLE_ASSIGNMENTS_READY]
                        .into_iter()
                        .map(|t| Desired::new(t, false, *reason, message.clone()))
                        .collect()
                }
            };
            steps.push(match service_account {
                ServiceAccountStep::Ready => Desired::new(
                    SERVICE_ACCOUNT_READY,
                    true,
                    Reason::Applied,
                    format!("ServiceAccount {sa_name:?} carries this binding's labels and annotations"),
                ),
                ServiceAccountStep::Missing => Desired::new(
                    SERVICE_ACCOUNT_READY,
                    false,
                    Reason::ServiceAccountNotFound,
                    format!("ServiceAccount {sa_name:?} does not exist and spec.serviceAccount.create is false"),
                ),
                ServiceAccountStep::Skipped => Desired::new(
                    SERVICE_ACCOUNT_READY,
                    false,
                    Reason::Progressing,
                    "waiting for the cloud identity before annotating the ServiceAccount",
                ),
                ServiceAccountStep::Failed { reason, message } => Desired::new(
                    SERVICE_ACCOUNT_READY,
                    false,
                    *reason,
                    format!("writing ServiceAccount {sa_name:?}: {message}"),
                ),
            });
            steps.extend(exchange_condition(exchange, &sa_name));
            steps
        }
    };
    let reached_cloud = matches!(
        progress,
        Progress::Ran {
            cloud_step: CloudStep::Done(_),
            ..
        }
    );
    if !reached_cloud && let Some(previous) = previous {
        // Which identity the binding has is kept through a failure or a
        // refusal: it names what deletion must find, and an identity made
        // under an older default name keeps that name.
        // So is where its grants were made: the next reconcile (or
        // deletion) revokes those the spec dropped meanwhile.
        status.set_cloud_status(previous);
    }
    let summary = summarise(&steps, &sa_name, status.identity.as_deref());
    let mut desired = summary;
    desired.extend(steps);
    add_conditions(
        &mut status,
        previous,
        &desired,
        binding.metadata.generation,
        now,
    );
    status
}

/// Appends `desired` to `status`'s conditions, each keeping its transition
/// time from `previous` when its status is unchanged. Every step that
/// reports a condition (the cloud steps, pods, outputs) goes through here.
pub fn add_conditions(
    status: &mut WorkloadIdentityBindingStatus,
    previous: Option<&WorkloadIdentityBindingStatus>,
    desired: &[Desired],
    generation: Option<i64>,
    now: Time,
) {
    let previous = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    status
        .conditions
        .extend(conditions::merge(previous, desired, generation, now));
}

/// `ExchangeVerified`, when the provider asks for it.
fn exchange_condition(exchange: &ExchangeStep, sa_name: &str) -> Option<Desired> {
    match exchange {
        ExchangeStep::NotAsked => None,
        ExchangeStep::Verified => Some(Desired::new(
            EXCHANGE_VERIFIED,
            true,
            Reason::ExchangeWorks,
            format!(
                "a token of ServiceAccount {sa_name:?} was exchanged with the cloud, as a pod's would be"
            ),
        )),
        ExchangeStep::Failed { reason, message } => Some(Desired::new(
            EXCHANGE_VERIFIED,
            false,
            *reason,
            message.clone(),
        )),
    }
}

fn step_noun(condition: &str) -> &'static str {
    match condition {
        IDENTITY_READY => "identity",
        FEDERATION_READY => "federated credential",
        _ => "role assignments",
    }
}

/// Ready, Reconciling and Stalled from the step conditions: the first failing
/// step explains Ready; a terminal reason stalls, any other one reconciles.
fn summarise(steps: &[Desired], sa_name: &str, identity: Option<&str>) -> Vec<Desired> {
    match steps.iter().find(|s| !s.status) {
        None => vec![
            Desired::new(
                READY,
                true,
                Reason::Provisioned,
                match identity {
                    Some(id) => format!("ServiceAccount {sa_name:?} can act as {id}"),
                    None => format!("ServiceAccount {sa_name:?} is bound"),
                },
            ),
            Desired::new(RECONCILING, false, Reason::AsExpected, ""),
            Desired::new(STALLED, false, Reason::AsExpected, ""),
        ],
        Some(failing) => {
            let terminal = failing.reason.is_terminal();
            vec![
                Desired::new(READY, false, failing.reason, failing.message.clone()),
                Desired::new(
                    RECONCILING,
                    !terminal,
                    failing.reason,
                    failing.message.clone(),
                ),
                Desired::new(STALLED, terminal, failing.reason, failing.message.clone()),
            ]
        }
    }
}

/// The status of a binding whose deletion waits for its cloud.
pub fn deletion_blocked(
    binding: &WorkloadIdentityBinding,
    previous: Option<&WorkloadIdentityBindingStatus>,
    message: &str,
    now: Time,
) -> WorkloadIdentityBindingStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let message = format!("deletion is waiting for the cloud: {message}");
    let conditions = conditions::waiting(
        &status.conditions,
        Reason::DeletionBlocked,
        &message,
        binding.metadata.generation,
        now,
    );
    status.conditions = conditions;
    status
}

/// Whether the status asks for a fast retry (a transient failure) rather
/// than the periodic resync.
pub fn is_transient(status: &WorkloadIdentityBindingStatus) -> bool {
    conditions::find(&status.conditions, RECONCILING).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn binding() -> WorkloadIdentityBinding {
        serde_json::from_value(json!({
            "apiVersion": "wib.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
            "metadata": {"name": "app1", "namespace": "ns", "generation": 4},
            "spec": {"azure": {}},
        }))
        .expect("binding")
    }

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).expect("time"))
    }

    fn condition<'a>(status: &'a WorkloadIdentityBindingStatus, t: &str) -> (&'a str, &'a str) {
        let c = conditions::find(&status.conditions, t).expect("condition present");
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn kstatus_follows_the_first_failing_step() {
        let ran = |cloud_step, service_account| Progress::Ran {
            cloud: Cloud::Azure,
            cloud_step,
            service_account,
            exchange: ExchangeStep::NotAsked,
        };
        let verified = |exchange| Progress::Ran {
            cloud: Cloud::Azure,
            cloud_step: CloudStep::Done(Box::default()),
            service_account: ServiceAccountStep::Ready,
            exchange,
        };
        let cases = [
            (
                "cloud not implemented stalls",
                ran(CloudStep::NotImplemented, ServiceAccountStep::Ready),
                ("False", "CloudNotImplemented"),
                ("True", "CloudNotImplemented"),
                ("False", "CloudNotImplemented"),
            ),
            (
                "throttling reconciles",
                ran(
                    CloudStep::Failed {
                        reason: Reason::Throttled,
                        message: "429".into(),
                    },
                    ServiceAccountStep::Skipped,
                ),
                ("False", "Throttled"),
                ("False", "Throttled"),
                ("True", "Throttled"),
            ),
            (
                "all done is ready",
                ran(CloudStep::Done(Box::default()), ServiceAccountStep::Ready),
                ("True", "Provisioned"),
                ("False", "AsExpected"),
                ("False", "AsExpected"),
            ),
            (
                "refused grants stall on the role step alone",
                ran(
                    CloudStep::Done(Box::new(wib_cloud::Outcome {
                        grants_refused: Some(wib_cloud::GrantsRefused {
                            reason: Reason::ScopeNotAllowed,
                            message: "no allowedScopes".into(),
                        }),
                        ..Default::default()
                    })),
                    ServiceAccountStep::Ready,
                ),
                ("False", "ScopeNotAllowed"),
                ("True", "ScopeNotAllowed"),
                ("False", "ScopeNotAllowed"),
            ),
            (
                "an exchange the cloud does not accept yet holds Ready back, reconciling",
                verified(ExchangeStep::Failed {
                    reason: Reason::WaitingForPropagation,
                    message: "AADSTS70021".into(),
                }),
                ("False", "WaitingForPropagation"),
                ("False", "WaitingForPropagation"),
                ("True", "WaitingForPropagation"),
            ),
            (
                "a verified exchange is ready",
                verified(ExchangeStep::Verified),
                ("True", "Provisioned"),
                ("False", "AsExpected"),
                ("False", "AsExpected"),
            ),
            (
                "refusal stalls",
                Progress::Refused(Refusal {
                    reason: Reason::NamespaceNotAllowed,
                    message: "no".into(),
                }),
                ("False", "NamespaceNotAllowed"),
                ("True", "NamespaceNotAllowed"),
                ("False", "NamespaceNotAllowed"),
            ),
        ];
        for (name, progress, ready, stalled, reconciling) in cases {
            let status = compute(&binding(), None, &progress, at(1));
            assert_eq!(condition(&status, READY), ready, "{name}");
            assert_eq!(condition(&status, STALLED), stalled, "{name}");
            assert_eq!(condition(&status, RECONCILING), reconciling, "{name}");
            assert_eq!(status.observed_generation, Some(4));
            assert!(
                status
                    .conditions
                    .iter()
                    .all(|c| c.observed_generation == Some(4)),
                "{name}"
            );
        }
    }

    #[test]
    fn a_failure_keeps_the_identity_the_binding_has() {
        let done = Progress::Ran {
            cloud: Cloud::Aws,
            cloud_step: CloudStep::Done(Box::new(wib_cloud::Outcome {
                status: WorkloadIdentityBindingStatus {
                    identity: Some("arn:aws:iam::1:role/wib-old-name".into()),
                    ..Default::default()
                },
                ..Default::default()
            })),
            service_account: ServiceAccountStep::Ready,
            exchange: ExchangeStep::NotAsked,
        };
        let first = compute(&binding(), None, &done, at(1));
        let throttled = Progress::Ran {
            cloud: Cloud::Aws,
            cloud_step: CloudStep::Failed {
                reason: Reason::Throttled,
                message: "429".into(),
            },
            service_account: ServiceAccountStep::Skipped,
            exchange: ExchangeStep::NotAsked,
        };
        let second = compute(&binding(), Some(&first), &throttled, at(2));
        assert_eq!(second.identity, first.identity);
    }

    #[test]
    fn recomputing_an_unchanged_state_yields_an_identical_status() {
        let progress = Progress::Ran {
            cloud: Cloud::Azure,
            cloud_step: CloudStep::NotImplemented,
            service_account: ServiceAccountStep::Ready,
            exchange: ExchangeStep::NotAsked,
        };
        let first = compute(&binding(), None, &progress, at(1));
        let second = compute(&binding(), Some(&first), &progress, at(500));
        assert_eq!(first, second, "no status write when nothing changed");
    }
}
