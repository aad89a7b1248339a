//! `kubectl wib reconcile`: the request is an annotation on the binding
//! (`wib.dev/reconcile-requested-at: <time>`); the controller reconciles
//! at once, past any backoff or pause a cloud asked for, and records the
//! request it handled in `status.lastHandledReconcileAt`.

use std::io::Write;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use wib_api::WorkloadIdentityBinding;
use wib_api::keys::RECONCILE_REQUESTED_ANNOTATION;

pub async fn run(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: u64,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let api: Api<WorkloadIdentityBinding> = Api::namespaced(client.clone(), namespace);
    let requested = k8s_openapi::jiff::Timestamp::now().to_string();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {RECONCILE_REQUESTED_ANNOTATION: requested}}}),
        ),
    )
    .await?;
    writeln!(
        out,
        "reconcile of {namespace}/{name} requested at {requested}"
    )?;
    if timeout == 0 {
        return Ok(true);
    }
    let deadline = Instant::now() + Duration::from_secs(timeout);
    while Instant::now() < deadline {
        let binding = api.get(name).await?;
        let status = binding.status.unwrap_or_default();
        if status.last_handled_reconcile_at.as_deref() == Some(requested.as_str()) {
            let ready = wib_api::conditions::find(&status.conditions, wib_api::conditions::READY);
            writeln!(
                out,
                "reconciled: Ready={} ({}) {}",
                ready.map_or("Unknown", |c| c.status.as_str()),
                ready.map_or("-", |c| c.reason.as_str()),
                ready.map_or("", |c| c.message.as_str()),
            )?;
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    writeln!(
        out,
        "the controller did not handle the request within {timeout} s"
    )?;
    Ok(false)
}
