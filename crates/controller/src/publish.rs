//! Writing status and Events, shared by both controllers: one status apply,
//! skipped when nothing changed, and an Event for every condition transition.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};

use crate::events::Recorder;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wib_api::conditions::{self, RECONCILING, STALLED};

/// Field manager of the status subresource.
pub const STATUS_MANAGER: &str = "wib-controller";

/// Applies `next` as the status of `obj` unless it equals `previous`, then
/// emits an Event per condition transition. Returns whether it wrote.
pub async fn status<K, S>(
    api: &Api<K>,
    recorder: &Recorder,
    obj: &K,
    previous: Option<&S>,
    next: &S,
) -> Result<bool, kube::Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq + conditions::WithConditions,
{
    if previous == Some(next) {
        return Ok(false);
    }
    let body = serde_json::json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": next});
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch_status(
        &name,
        &PatchParams::apply(STATUS_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    let before = previous.map(|p| p.conditions()).unwrap_or_default();
    transitions(recorder, &obj.object_ref(&()), before, next.conditions()).await;
    Ok(true)
}

/// Emits an Event saying what wib did to the cloud for `reference`
/// (`what`, joined and cut to fit); a failure to publish is only logged.
pub async fn cloud_event(
    recorder: &Recorder,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    what: &[String],
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(&what.join("; "), 1000)),
        action: action.into(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, reference).await {
        tracing::warn!(%error, reason, "publishing event failed");
    }
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Emits one Event per condition whose status or reason changed.
async fn transitions(
    recorder: &Recorder,
    reference: &ObjectReference,
    previous: &[Condition],
    next: &[Condition],
) {
    for condition in conditions::transitions(previous, next) {
        let event = Event {
            type_: event_type(condition),
            reason: condition.reason.clone(),
            note: Some(format!(
                "{} is {}: {}",
                condition.type_, condition.status, condition.message
            )),
            action: condition.type_.clone(),
            secondary: None,
        };
        if let Err(error) = recorder.publish(&event, reference).await {
            tracing::warn!(%error, condition = %condition.type_, "publishing event failed");
        }
    }
}

/// Warning when a condition reports a failure; Normal for progress and recovery.
fn event_type(condition: &Condition) -> EventType {
    let failing = match condition.type_.as_str() {
        STALLED => condition.status == "True",
        RECONCILING => false,
        _ => {
            condition.status == "False"
                && condition.reason != conditions::Reason::Progressing.as_str()
        }
    };
    if failing {
        EventType::Warning
    } else {
        EventType::Normal
    }
}
