//! AWS names: the role, the IAM OIDC provider ARN and the trust-policy
//! condition keys, all derived deterministically so a retried reconcile finds
//! what an earlier one made.

use std::collections::BTreeSet;

use wib_api::naming::{name_hash, short_hash, unambiguous};

/// Prefix of the IAM OIDC provider tags that record each client ID wib
/// added (key: prefix + hash of the client ID, value: the client ID), so
/// that wib removes only those, and only when no binding uses them.
pub const TAG_ADDED_CLIENT_ID: &str = "wib.dev_client-id_";

/// The tag recording that wib added `client_id`.
pub fn added_client_id_tag(client_id: &str) -> String {
    format!("{TAG_ADDED_CLIENT_ID}{}", short_hash(client_id))
}

/// Hashes of the managed policy ARNs wib attached, space-separated: IAM has no
/// per-attachment tags, and wib must tell its attachments from others'.
pub const TAG_MANAGED_POLICIES: &str = "wib.dev_managed-policies";
/// Hashes of the inline policy names wib put on the role.
pub const TAG_INLINE_POLICIES: &str = "wib.dev_inline-policies";

/// IAM's `[\w+=,.@-]`.
fn iam_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// Default role name: 1-64 `[\w+=,.@-]`, unambiguous for (cluster,
/// namespace, binding).
pub fn role_name(cluster: &str, namespace: &str, binding: &str) -> String {
    let readable: String = format!("wib-{cluster}-{namespace}-{binding}")
        .chars()
        .map(|c| if iam_char(c) { c } else { '-' })
        .collect();
    unambiguous(&readable, &format!("{cluster}/{namespace}/{binding}"), 64)
}

/// The issuer as IAM writes it in provider ARNs and condition keys: host and
/// path, no scheme, no trailing slash.
pub fn issuer_key(issuer: &str) -> String {
    issuer
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// The IAM OIDC provider ARN IAM gives the issuer in `account`.
pub fn oidc_provider_arn(account: &str, issuer: &str) -> String {
    format!(
        "arn:aws:iam::{account}:oidc-provider/{}",
        issuer_key(issuer)
    )
}

/// The issuer key an existing OIDC provider ARN stands for.
pub fn issuer_key_of_arn(arn: &str) -> Option<&str> {
    arn.split_once(":oidc-provider/").map(|(_, key)| key)
}

/// The `Sid` of one ServiceAccount's trust statement: IAM allows only
/// alphanumerics, so a readable prefix and a hash of cluster, namespace and
/// ServiceAccount.
pub fn statement_id(cluster: &str, namespace: &str, service_account: &str) -> String {
    format!(
        "{}{}",
        super::policy::WIB_SID_PREFIX,
        name_hash(&format!("{cluster}/{namespace}/{service_account}"))
    )
}

/// The tag value recording a set of names by their hashes.
pub fn marks<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(short_hash)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `name` is recorded in a tag value written by [`marks`].
pub fn is_marked(tag: Option<&String>, name: &str) -> bool {
    let hash = short_hash(name);
    tag.is_some_and(|t| t.split(' ').any(|m| m == hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_fit_iam_rules() {
        let long = "n".repeat(200);
        for (cluster, ns, binding) in [
            ("prod", "team-a", "app1"),
            ("prod", "team-a", "app.v2"),
            ("c", &long[..], "x"),
            ("c:1", "ns", "b"),
        ] {
            let name = role_name(cluster, ns, binding);
            assert!((1..=64).contains(&name.len()), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)),
                "{name}"
            );
            assert_eq!(name, role_name(cluster, ns, binding));
        }
        assert!(role_name("prod", "team-a", "app1").starts_with("wib-prod-team-a-app1-"));
        assert_ne!(role_name("c:1", "ns", "b"), role_name("c-1", "ns", "b"));
        assert_ne!(
            role_name("prod", "team", "a-app1"),
            role_name("prod", "team-a", "app1"),
            "namespace and binding do not run into each other"
        );
    }

    #[test]
    fn oidc_provider_arns_follow_the_issuer() {
        let cases = [
            (
                "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC",
                "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC",
            ),
            (
                "https://127.0.0.1:6443/",
                "arn:aws:iam::123456789012:oidc-provider/127.0.0.1:6443",
            ),
        ];
        for (issuer, arn) in cases {
            assert_eq!(oidc_provider_arn("123456789012", issuer), arn);
            assert_eq!(issuer_key_of_arn(arn), Some(issuer_key(issuer).as_str()));
        }
    }

    #[test]
    fn statement_ids_are_alphanumeric_and_distinct() {
        let a = statement_id("c", "ns", "sa");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, statement_id("c", "ns", "sb"));
        assert_ne!(a, statement_id("c2", "ns", "sa"));
    }

    #[test]
    fn marks_round_trip() {
        let tag = marks(["arn:b", "arn:a", "arn:a"]);
        assert_eq!(tag.split(' ').count(), 2);
        assert!(is_marked(Some(&tag), "arn:a"));
        assert!(!is_marked(Some(&tag), "arn:c"));
        assert!(!is_marked(None, "arn:a"));
        assert!(marks(["x"; 0]).is_empty());
    }
}
