//! One admission review: the pod's ServiceAccount, the injections its
//! annotations call for, and the pod patched with them. A pod whose
//! ServiceAccount cannot be read is refused (it asked for an identity, and
//! must not start without one); a pod bound to nothing is admitted as it
//! is, with a warning `kubectl` prints.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};

use super::accounts::Accounts;
use super::inject::{self, Endpoints};
use super::stamp;

#[derive(Clone)]
pub struct Shared {
    pub accounts: Accounts,
    pub endpoints: Arc<Endpoints>,
    pub metrics: crate::metrics::Metrics,
}

pub async fn mutate_pods(
    State(shared): State<Shared>,
    Json(review): Json<AdmissionReview<Pod>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let started = std::time::Instant::now();
    let request: AdmissionRequest<Pod> = match review.try_into() {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%error, "an admission review without a request");
            shared.metrics.admitted("invalid", started.elapsed());
            return Json(AdmissionResponse::invalid(error.to_string()).into_review());
        }
    };
    let response = respond(&shared, &request).await;
    let result = match (response.allowed, response.patch.is_some()) {
        (false, _) => "denied",
        (true, true) => "injected",
        (true, false) => "admitted",
    };
    shared.metrics.admitted(result, started.elapsed());
    Json(response.into_review())
}

async fn respond(shared: &Shared, request: &AdmissionRequest<Pod>) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    let Some(pod) = request.object.as_ref() else {
        return response;
    };
    if request.operation != Operation::Create {
        return response;
    }
    let namespace = request
        .namespace
        .clone()
        .or_else(|| pod.metadata.namespace.clone())
        .unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    let mut warnings = Vec::new();
    let annotations = match shared.accounts.annotations(&namespace, &account).await {
        Ok(Some(annotations)) => annotations,
        Ok(None) => {
            warnings.push(format!(
                "wib: ServiceAccount {namespace}/{account} does not exist; the pod gets no cloud identity"
            ));
            Default::default()
        }
        Err(error) => {
            tracing::warn!(%error, %namespace, %account, "reading a pod's ServiceAccount");
            return response.deny(format!(
                "wib could not read ServiceAccount {namespace}/{account} to give the pod its cloud identity: {error}"
            ));
        }
    };
    let (injections, refused) = inject::injections(&annotations, &shared.endpoints);
    warnings.extend(refused);
    if injections.is_empty() && warnings.is_empty() {
        warnings.push(format!(
            "wib: ServiceAccount {namespace}/{account} is bound to no cloud identity yet; the pod gets none and needs a restart once its binding is Ready"
        ));
    }
    let mut mutated = pod.clone();
    let clouds = inject::apply(&mut mutated, &injections);
    stamp::stamp(&mut mutated, &account, &stamp::identities(&annotations));
    let mut response = response;
    if mutated != *pod {
        let patch = match (serde_json::to_value(pod), serde_json::to_value(&mutated)) {
            (Ok(before), Ok(after)) => json_patch::diff(&before, &after),
            (Err(e), _) | (_, Err(e)) => return response.deny(format!("wib: {e}")),
        };
        tracing::debug!(%namespace, %account, ?clouds, "injected");
        response = match response.with_patch(patch) {
            Ok(patched) => patched,
            Err(e) => {
                return AdmissionResponse::from(request).deny(format!("wib: {e}"));
            }
        };
    }
    warnings.into_iter().fold(response, warn)
}

fn warn(mut response: AdmissionResponse, warning: String) -> AdmissionResponse {
    response.warnings.get_or_insert_with(Vec::new).push(warning);
    response
}
