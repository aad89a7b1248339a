//! `restartWorkloads: OnIdentityChange`: the Deployments, StatefulSets and
//! DaemonSets whose pods run without the current identity are rolled, as
//! `kubectl rollout restart` rolls them (a template annotation), once per
//! identity. Only workloads of the binding's own namespace that own one of
//! its ServiceAccount's pods are touched.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use wib_api::binding::{RestartWorkloads, WorkloadsRestarted};
use wib_api::{WorkloadIdentityBinding, WorkloadIdentityBindingStatus};

use super::pods::{self, Expected, Report};
use super::status::{CloudStep, Progress, ServiceAccountStep};
use crate::context::Context;
use crate::webhook::stamp;

/// The pods step, after status is computed: the report of the
/// ServiceAccount's pods, and the restart the binding asks for. Only where
/// the webhook runs, and only once the cloud step told the identity anew;
/// otherwise the last report stands.
pub async fn step(
    binding: &WorkloadIdentityBinding,
    progress: &Progress,
    status: &mut WorkloadIdentityBindingStatus,
    ctx: &Context,
) {
    if !ctx.settings.tracks_pods() {
        return;
    }
    let previous = binding.status.as_ref();
    let Progress::Ran {
        cloud,
        cloud_step: CloudStep::Done(outcome),
        service_account: ServiceAccountStep::Ready,
        ..
    } = progress
    else {
        pods::carry(status, previous);
        return;
    };
    let (identity, expected) = match stamp::identities(&outcome.annotations).remove(cloud) {
        Some(identity) => (identity, None),
        None => match served_by_eks(outcome) {
            Some(role) => (
                format!("EKS Pod Identity ({role})"),
                Some(Expected::Nothing),
            ),
            None => {
                pods::carry(status, previous);
                return;
            }
        },
    };
    let expected = expected.unwrap_or(Expected::Given(&identity));
    let namespace = binding.namespace().unwrap_or_default();
    let account = binding.service_account_name();
    let needing = pods::needing_restart(&ctx.pods.of(&namespace, &account), *cloud, expected);
    status.workloads_restarted = previous.and_then(|p| p.workloads_restarted.clone());
    let restart_note = match binding.spec.restart_workloads {
        RestartWorkloads::OnIdentityChange if !needing.is_empty() => {
            Some(restart(binding, &namespace, &identity, &needing, status, ctx).await)
        }
        _ => None,
    };
    let found = Report {
        service_account: &account,
        identity: &identity,
        needing: &needing,
        restart_note,
    };
    pods::report(
        status,
        previous,
        found,
        binding.metadata.generation,
        (ctx.clock)(),
    );
}

/// The role of a binding in AWS mode PodIdentity: EKS's agent, not wib's
/// webhook, gives its pods their identity.
fn served_by_eks(outcome: &wib_cloud::Outcome) -> Option<&str> {
    let aws = outcome.status.aws.as_ref()?;
    aws.served_by_eks()
        .then_some(aws.role_arn.as_deref())
        .flatten()
}

/// Restarts the workloads of `needing` unless already done for `identity`;
/// says what happened, for the condition's message.
async fn restart(
    binding: &WorkloadIdentityBinding,
    namespace: &str,
    identity: &str,
    needing: &[std::sync::Arc<PartialObjectMeta<Pod>>],
    status: &mut WorkloadIdentityBindingStatus,
    ctx: &Context,
) -> String {
    if !ctx.settings.allow_workload_restarts {
        return "spec.restartWorkloads is OnIdentityChange, but this installation does not allow wib to restart workloads (chart value restartWorkloads.enabled); restart them yourself".into();
    }
    if let Some(done) = status
        .workloads_restarted
        .as_ref()
        .filter(|w| w.identity == identity)
    {
        return format!(
            "wib restarted {} for this identity at {}; waiting for the old pods to go",
            done.workloads.join(", "),
            done.at.0
        );
    }
    let client = &ctx.client;
    let restarted = async {
        let workloads = owners(client, namespace, needing).await?;
        let at = (ctx.clock)();
        roll(client, namespace, &workloads, &at.0.to_string()).await?;
        Ok::<_, kube::Error>((workloads, at))
    }
    .await;
    match restarted {
        Ok((workloads, at)) => {
            let workloads: Vec<String> = workloads.into_iter().collect();
            crate::publish::cloud_event(
                &ctx.recorder,
                &binding.object_ref(&()),
                EventType::Normal,
                "WorkloadsRestarted",
                "Restart",
                &workloads,
            )
            .await;
            let note = match workloads.is_empty() {
                true => "no Deployment, StatefulSet or DaemonSet owns them; restart them yourself"
                    .into(),
                false => format!("wib restarted {} for this identity", workloads.join(", ")),
            };
            status.workloads_restarted = Some(WorkloadsRestarted {
                identity: identity.to_string(),
                at,
                workloads,
            });
            note
        }
        Err(error) => {
            tracing::warn!(%error, "restarting workloads for a new identity");
            format!("restarting their workloads failed ({error}); retried at the next reconcile")
        }
    }
}

/// The annotation `kubectl rollout restart` sets.
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// `Kind/name` of the workloads owning `pods` (a ReplicaSet's Deployment).
pub async fn owners(
    client: &kube::Client,
    namespace: &str,
    pods: &[std::sync::Arc<PartialObjectMeta<Pod>>],
) -> Result<BTreeSet<String>, kube::Error> {
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    let mut workloads = BTreeSet::new();
    for pod in pods {
        let Some(owner) = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
        else {
            continue;
        };
        match owner.kind.as_str() {
            "StatefulSet" | "DaemonSet" => {
                workloads.insert(format!("{}/{}", owner.kind, owner.name));
            }
            "ReplicaSet" => {
                let Some(rs) = replica_sets.get_metadata_opt(&owner.name).await? else {
                    continue;
                };
                let deployment = rs
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .find(|o| o.controller == Some(true) && o.kind == "Deployment");
                if let Some(d) = deployment {
                    workloads.insert(format!("Deployment/{}", d.name));
                }
            }
            _ => {}
        }
    }
    Ok(workloads)
}

/// Rolls each workload (`Kind/name`) in `namespace`, stamped `at`.
pub async fn roll(
    client: &kube::Client,
    namespace: &str,
    workloads: &BTreeSet<String>,
    at: &str,
) -> Result<(), kube::Error> {
    let patch = Patch::Merge(json!({
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}}
    }));
    let params = PatchParams::default();
    for workload in workloads {
        let Some((kind, name)) = workload.split_once('/') else {
            continue;
        };
        match kind {
            "Deployment" => {
                Api::<Deployment>::namespaced(client.clone(), namespace)
                    .patch(name, &params, &patch)
                    .await?;
            }
            "StatefulSet" => {
                Api::<StatefulSet>::namespaced(client.clone(), namespace)
                    .patch(name, &params, &patch)
                    .await?;
            }
            "DaemonSet" => {
                Api::<DaemonSet>::namespaced(client.clone(), namespace)
                    .patch(name, &params, &patch)
                    .await?;
            }
            _ => continue,
        }
        tracing::info!(%workload, %namespace, "restarted for the binding's identity");
    }
    Ok(())
}
