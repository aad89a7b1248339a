//! What the webhook writes on every pod it admits, so the controller can
//! tell from pod metadata alone (a metadata-only watch of these pods) which
//! ServiceAccount a pod runs as and which identities it was given: a label
//! to watch by, and two annotations.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use wib_api::Cloud;

/// On every pod wib's webhook admitted (opted in), injected or not.
pub const ADMITTED_LABEL: &str = "wib.dev/admitted";
/// The pod's ServiceAccount when it was admitted.
pub const SERVICE_ACCOUNT_ANNOTATION: &str = "wib.dev/service-account";
/// `{"<cloud>": "<identity>"}` for each identity the ServiceAccount named
/// then (JSON: role names may hold any separator).
pub const IDENTITIES_ANNOTATION: &str = "wib.dev/identities";

/// The identity each cloud's annotation names: Azure client ID, AWS role
/// ARN, Google service account email.
pub fn identities(annotations: &BTreeMap<String, String>) -> BTreeMap<Cloud, String> {
    [
        (Cloud::Azure, "azure.workload.identity/client-id"),
        (Cloud::Aws, "eks.amazonaws.com/role-arn"),
        (Cloud::Gcp, "iam.gke.io/gcp-service-account"),
    ]
    .into_iter()
    .filter_map(|(cloud, key)| {
        annotations
            .get(key)
            .filter(|v| !v.is_empty())
            .map(|v| (cloud, v.clone()))
    })
    .collect()
}

/// Writes the stamp; wib's own keys are authoritative over what the pod
/// brought.
pub fn stamp(pod: &mut Pod, service_account: &str, identities: &BTreeMap<Cloud, String>) {
    pod.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(ADMITTED_LABEL.into(), "true".into());
    let listed = serde_json::Value::Object(
        identities
            .iter()
            .map(|(cloud, id)| (cloud.as_str().to_string(), id.clone().into()))
            .collect(),
    )
    .to_string();
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(SERVICE_ACCOUNT_ANNOTATION.into(), service_account.into());
    annotations.insert(IDENTITIES_ANNOTATION.into(), listed);
}

/// The ServiceAccount a stamped pod was admitted as.
pub fn service_account(annotations: &BTreeMap<String, String>) -> Option<String> {
    annotations.get(SERVICE_ACCOUNT_ANNOTATION).cloned()
}

/// (ServiceAccount, identity given for `cloud`) from a stamped pod's
/// annotations; `None` when the pod carries no stamp.
pub fn read(
    annotations: &BTreeMap<String, String>,
    cloud: Cloud,
) -> Option<(String, Option<String>)> {
    let account = annotations.get(SERVICE_ACCOUNT_ANNOTATION)?;
    let given = annotations
        .get(IDENTITIES_ANNOTATION)
        .and_then(|json| serde_json::from_str::<BTreeMap<String, String>>(json).ok())
        .and_then(|mut given| given.remove(cloud.as_str()));
    Some((account.clone(), given))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_per_cloud() {
        let sa = BTreeMap::from([
            (
                "azure.workload.identity/client-id".to_string(),
                "cid".to_string(),
            ),
            (
                "eks.amazonaws.com/role-arn".to_string(),
                "arn:aws:iam::1:role/a,b".to_string(),
            ),
        ]);
        let mut pod = Pod::default();
        stamp(&mut pod, "app", &identities(&sa));
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            read(&annotations, Cloud::Azure),
            Some(("app".into(), Some("cid".into())))
        );
        assert_eq!(read(&annotations, Cloud::Gcp), Some(("app".into(), None)));
        assert_eq!(
            read(&annotations, Cloud::Aws)
                .and_then(|(_, id)| id)
                .as_deref(),
            Some("arn:aws:iam::1:role/a,b")
        );
        assert_eq!(
            pod.metadata.labels.unwrap_or_default()[ADMITTED_LABEL],
            "true"
        );
        assert_eq!(read(&BTreeMap::new(), Cloud::Azure), None);
    }
}
