//! `kubectl wib check-pod`: does this pod get its cloud identity? Reads
//! the pod, its ServiceAccount and the bindings of that ServiceAccount, and
//! says what the webhook gave the pod and whether it is still current.

use std::collections::BTreeMap;
use std::io::Write;

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use wib_api::conditions::{self, READY};
use wib_api::{Cloud, WorkloadIdentityBinding};

/// Pod labels that send a pod to wib's webhook.
const OPT_IN: [&str; 2] = ["wib.dev/inject", "azure.workload.identity/use"];
/// What the webhook stamps on a pod it admitted (see the controller's
/// `webhook::stamp`).
const ADMITTED: &str = "wib.dev/admitted";
const IDENTITIES: &str = "wib.dev/identities";
/// The env var naming each cloud's identity in a pod.
const IDENTITY_ENV: [(Cloud, &str); 3] = [
    (Cloud::Azure, "AZURE_CLIENT_ID"),
    (Cloud::Aws, "AWS_ROLE_ARN"),
    (Cloud::Gcp, "GOOGLE_APPLICATION_CREDENTIALS"),
];

/// Prints the findings; `Ok(false)` when the pod does not get (or no
/// longer has) its identity.
pub async fn run(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let pod = Api::<Pod>::namespaced(client.clone(), namespace)
        .get(name)
        .await?;
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    writeln!(out, "pod {namespace}/{name}")?;
    writeln!(out, "  ServiceAccount: {account}")?;
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .get_opt(&account)
        .await?;
    let annotations = sa
        .as_ref()
        .map(|sa| sa.annotations().clone())
        .unwrap_or_default();
    for (key, value) in annotations
        .iter()
        .filter(|(k, _)| is_identity_annotation(k))
    {
        writeln!(out, "    {key}: {value}")?;
    }
    let bindings: Vec<WorkloadIdentityBinding> =
        Api::<WorkloadIdentityBinding>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|b| b.service_account_name() == account)
            .collect();
    let mut fine = true;
    if bindings.is_empty() {
        writeln!(out, "  binding: none names ServiceAccount {account:?}")?;
        fine = false;
    }
    let given = given_identities(&pod);
    for binding in &bindings {
        fine &= check_binding(binding, &pod, &given, out)?;
    }
    Ok(fine)
}

fn is_identity_annotation(key: &str) -> bool {
    key.starts_with("azure.workload.identity/")
        || key.starts_with("eks.amazonaws.com/")
        || key.starts_with("iam.gke.io/")
        || key.starts_with("wib.dev/")
}

/// What the webhook recorded giving the pod, by cloud.
fn given_identities(pod: &Pod) -> Option<BTreeMap<String, String>> {
    pod.annotations()
        .get(IDENTITIES)
        .and_then(|json| serde_json::from_str(json).ok())
}

fn check_binding(
    binding: &WorkloadIdentityBinding,
    pod: &Pod,
    given: &Option<BTreeMap<String, String>>,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let status = binding.status.clone().unwrap_or_default();
    let ready = conditions::find(&status.conditions, READY);
    let cloud = binding.spec.cloud();
    writeln!(
        out,
        "  binding {}: {} Ready={} ({}), identity {}",
        binding.name_any(),
        cloud.map_or("-".into(), |c| c.to_string()),
        ready.map_or("Unknown", |c| c.status.as_str()),
        ready.map_or("-", |c| c.reason.as_str()),
        status.identity.as_deref().unwrap_or("-"),
    )?;
    let Some(cloud) = cloud else {
        return Ok(false);
    };
    let labels = pod.labels();
    let opted = OPT_IN
        .iter()
        .find(|l| labels.get(**l).is_some_and(|v| v == "true"));
    match (opted, labels.contains_key(ADMITTED)) {
        (None, _) => writeln!(
            out,
            "  webhook: the pod carries no opt-in label ({}): wib injects nothing",
            OPT_IN.join(" or ")
        )?,
        (Some(label), false) => writeln!(
            out,
            "  webhook: opted in by {label}, but wib's webhook did not admit it (created before the webhook was installed?)"
        )?,
        (Some(label), true) => writeln!(out, "  webhook: opted in by {label}, admitted by wib")?,
    }
    for (c, var) in IDENTITY_ENV.iter().filter(|(c, _)| *c == cloud) {
        let containers: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .map(|container| {
                let value = container
                    .env
                    .iter()
                    .flatten()
                    .find(|e| e.name == *var)
                    .and_then(|e| e.value.clone());
                format!(
                    "{}: {}",
                    container.name,
                    value.as_deref().unwrap_or("(not set)")
                )
            })
            .collect();
        writeln!(out, "  {c} env {var}: {}", containers.join(", "))?;
    }
    for (volume, audience, seconds) in token_volumes(pod) {
        writeln!(
            out,
            "  token volume {volume}: audience {audience}, expires after {seconds} s"
        )?;
    }
    let current = status.identity.as_deref();
    let had = given
        .as_ref()
        .and_then(|g| g.get(cloud.as_str()))
        .map(String::as_str);
    if let Some(association) = served_by_eks(&status) {
        return eks_verdict(association, current, had, out);
    }
    let fine = match (current, had) {
        (Some(now), Some(then)) if now == then => {
            writeln!(
                out,
                "  verdict: the pod runs with the binding's current identity"
            )?;
            true
        }
        (Some(now), then) => {
            writeln!(
                out,
                "  verdict: RESTART NEEDED: the pod was given {} at admission, the binding now gives {now}",
                then.unwrap_or("no identity")
            )?;
            false
        }
        (None, _) => {
            writeln!(
                out,
                "  verdict: the binding is not Ready yet; the pod has no identity to use"
            )?;
            false
        }
    };
    Ok(fine)
}

/// The association of a binding in AWS mode PodIdentity: EKS's agent, not
/// wib's webhook, gives its pods the role.
fn served_by_eks(status: &wib_api::WorkloadIdentityBindingStatus) -> Option<&str> {
    let aws = status.aws.as_ref()?;
    aws.served_by_eks()
        .then_some(aws.association_arn.as_deref())
        .flatten()
}

/// Under EKS Pod Identity a pod is right when wib gave it no AWS role: one
/// it gave before the switch (`AWS_ROLE_ARN`) wins over the agent in the SDKs.
fn eks_verdict(
    association: &str,
    role: Option<&str>,
    had: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    writeln!(
        out,
        "  EKS Pod Identity: association {association}; EKS's agent gives the pod {}",
        role.unwrap_or("the role")
    )?;
    match had {
        Some(then) => {
            writeln!(
                out,
                "  verdict: RESTART NEEDED: wib's webhook gave the pod {then} (IRSA) at admission, which the SDKs prefer over EKS Pod Identity"
            )?;
            Ok(false)
        }
        None => {
            writeln!(
                out,
                "  verdict: the pod gets the binding's role from EKS Pod Identity"
            )?;
            Ok(true)
        }
    }
}

/// (volume, audience, expirationSeconds) of each projected token.
fn token_volumes(pod: &Pod) -> Vec<(String, String, i64)> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .flat_map(|v| {
            v.projected
                .iter()
                .flat_map(|p| p.sources.iter().flatten())
                .filter_map(|s| s.service_account_token.as_ref())
                .map(|t| {
                    (
                        v.name.clone(),
                        t.audience
                            .clone()
                            .unwrap_or_else(|| "(the API server's)".into()),
                        t.expiration_seconds.unwrap_or(3600),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_eks_pod_identity_a_pod_wib_gave_an_irsa_role_needs_a_restart() {
        let mut out = Vec::new();
        let fine = eks_verdict("arn:assoc", Some("arn:role"), None, &mut out).expect("write");
        assert!(fine, "{}", String::from_utf8_lossy(&out));
        let mut out = Vec::new();
        let fine =
            eks_verdict("arn:assoc", Some("arn:role"), Some("arn:role"), &mut out).expect("write");
        let text = String::from_utf8_lossy(&out);
        assert!(!fine && text.contains("RESTART NEEDED"), "{text}");
    }
}
