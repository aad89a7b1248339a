//! GCP names and the ownership marker, pure: the service account ID, its
//! email, the workload identity member of a Kubernetes ServiceAccount, and
//! wib's ownership tags written into (and read back from) the account's
//! description, since service accounts carry no labels.

use std::collections::BTreeMap;

use wib_api::naming::unambiguous;

/// Where the marker starts in a description.
const MARKER: &str = "[wib ";

/// Default account ID: 6-30 `[a-z]([-a-z0-9]*[a-z0-9])`, unambiguous for
/// (cluster, namespace, binding) whatever the case or characters folded.
pub fn account_id(cluster: &str, namespace: &str, binding: &str) -> String {
    let readable: String = format!("wib-{cluster}-{namespace}-{binding}")
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    unambiguous(&readable, &format!("{cluster}/{namespace}/{binding}"), 30)
}

pub fn email(account_id: &str, project: &str) -> String {
    format!("{account_id}@{project}.iam.gserviceaccount.com")
}

/// The IAM member of a Kubernetes ServiceAccount: GKE's workload pool when no
/// pool is configured, else the pool's principal for the token's subject.
pub fn member(
    project: &str,
    pool: Option<(&str, &str)>,
    namespace: &str,
    service_account: &str,
) -> String {
    match pool {
        None => format!("serviceAccount:{project}.svc.id.goog[{namespace}/{service_account}]"),
        Some((number, pool)) => format!(
            "principal://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/{pool}/subject/system:serviceaccount:{namespace}:{service_account}"
        ),
    }
}

/// A GKE cluster's Kubernetes ServiceAccount as the principal of GKE's own
/// workload identity pool (`<project>.svc.id.goog`), for roles granted to
/// it directly.
pub fn gke_principal(
    number: &str,
    project: &str,
    namespace: &str,
    service_account: &str,
) -> String {
    format!(
        "principal://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/{project}.svc.id.goog/subject/ns/{namespace}/sa/{service_account}"
    )
}

/// Whether a member is a Kubernetes ServiceAccount's, in either form
/// [`member`] writes.
pub fn is_service_account_member(member: &str) -> bool {
    (member.starts_with("serviceAccount:") && member.contains(".svc.id.goog["))
        || member.contains("/subject/system:serviceaccount:")
        || member.contains(".svc.id.goog/subject/ns/")
}

/// `text` with the ownership marker for `tags` appended (any old marker replaced).
pub fn with_marker(text: &str, tags: &BTreeMap<String, String>) -> String {
    let base = without_marker(text);
    let marker: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let marker = format!("{MARKER}{}]", marker.join(" "));
    if base.is_empty() {
        marker
    } else {
        format!("{base} {marker}")
    }
}

/// `text` without wib's marker.
pub fn without_marker(text: &str) -> String {
    match text.find(MARKER) {
        Some(at) => text[..at].trim_end().to_string(),
        None => text.trim_end().to_string(),
    }
}

/// The ownership tags in a description's marker (empty when there is none).
pub fn tags(description: &str) -> BTreeMap<String, String> {
    let Some(at) = description.find(MARKER) else {
        return BTreeMap::new();
    };
    let inner = description[at + MARKER.len()..]
        .split(']')
        .next()
        .unwrap_or_default();
    inner
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_fit_gcp_rules() {
        let long = "n".repeat(100);
        for (c, n, b) in [
            ("prod", "team-a", "app1"),
            ("Prod", "team_a", "app.v2"),
            ("c", &long[..], "x"),
        ] {
            let id = account_id(c, n, b);
            assert!((6..=30).contains(&id.len()), "{id}");
            assert!(id.starts_with("wib-"), "{id}");
            assert!(!id.ends_with('-'), "{id}");
            assert!(
                id.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-'),
                "{id}"
            );
            assert_eq!(id, account_id(c, n, b));
        }
        assert!(account_id("gke", "ns", "app").starts_with("wib-gke-ns-app-"));
        assert_ne!(
            account_id("gke", "team", "a-app"),
            account_id("gke", "team-a", "app")
        );
        assert_ne!(
            account_id("gke", "Prod", "x"),
            account_id("gke", "prod", "x")
        );
    }

    #[test]
    fn members_for_gke_and_pools() {
        assert_eq!(
            member("p", None, "ns", "ksa"),
            "serviceAccount:p.svc.id.goog[ns/ksa]"
        );
        assert_eq!(
            member("p", Some(("123", "pool")), "ns", "ksa"),
            "principal://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/subject/system:serviceaccount:ns:ksa"
        );
    }

    #[test]
    fn the_marker_round_trips_and_keeps_other_text() {
        let tags = BTreeMap::from([
            ("wib.dev_cluster".to_string(), "c".to_string()),
            ("wib.dev_uid".to_string(), "u".to_string()),
        ]);
        let d = with_marker("Team's account", &tags);
        assert_eq!(super::tags(&d), tags);
        assert_eq!(without_marker(&d), "Team's account");
        assert_eq!(with_marker(&d, &tags), d);
        assert!(super::tags("no marker").is_empty());
        assert_eq!(super::tags(&with_marker("", &tags)), tags);
    }
}
