//! Azure names and role assignment GUIDs: pure and deterministic,
//! so a reconcile retried after a crash finds what it made instead of
//! duplicating it.

use wib_api::naming::unambiguous;

/// Prefix of every federated credential wib creates.
pub const FIC_PREFIX: &str = "wib-";

/// ARM's `[A-Za-z0-9-_]`: anything else becomes `-` (the hash keeps names apart).
fn readable(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Default identity name: 3-128 `[A-Za-z0-9-_]`, starting alphanumeric,
/// unambiguous for (cluster, namespace, binding).
pub fn identity_name(cluster: &str, namespace: &str, binding: &str) -> String {
    unambiguous(
        &readable(&format!("wib-{cluster}-{namespace}-{binding}")),
        &format!("{cluster}/{namespace}/{binding}"),
        128,
    )
}

/// The federated credential of one ServiceAccount: 3-120 characters,
/// starting alphanumeric; one per (cluster, namespace, ServiceAccount).
/// (wib finds its credential by issuer and subject, so credentials an older
/// wib named otherwise are still its own.)
pub fn federated_credential_name(cluster: &str, namespace: &str, service_account: &str) -> String {
    unambiguous(
        &readable(&format!(
            "{FIC_PREFIX}{cluster}-{namespace}-{service_account}"
        )),
        &format!("{cluster}/{namespace}/{service_account}"),
        120,
    )
}

/// The GUID name of a role assignment wib makes: a UUIDv5 of principal,
/// role definition GUID and scope (case-insensitive). Also how wib knows an
/// assignment is its own: recomputing it from the assignment's properties
/// gives back its name.
pub fn role_assignment_name(principal_id: &str, role_definition_id: &str, scope: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f1c_2a4e_0b7d_4c35_9a8e_77d1_3c5b_9e01);
    let role_guid = role_definition_id
        .rsplit('/')
        .next()
        .unwrap_or(role_definition_id);
    let key = format!(
        "{}|{}|{}",
        principal_id.to_ascii_lowercase(),
        role_guid.to_ascii_lowercase(),
        scope.trim_end_matches('/').to_ascii_lowercase()
    );
    uuid::Uuid::new_v5(&NAMESPACE, key.as_bytes()).to_string()
}

/// The GUID a role is given by (a bare GUID or a definition ID), if so.
pub fn role_guid(role: &str) -> Option<&str> {
    let guid = role.rsplit('/').next().unwrap_or(role);
    uuid::Uuid::parse_str(guid).is_ok().then_some(guid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_azure_rules_and_are_stable() {
        let long = "n".repeat(200);
        let cases = [
            ("prod", "team-a", "app1", "wib-prod-team-a-app1"),
            ("prod", "team-a", "app.v2", "wib-prod-team-a-app-v2-"),
        ];
        for (cluster, ns, binding, prefix) in cases {
            let name = identity_name(cluster, ns, binding);
            assert!(name.starts_with(prefix), "{name}");
            assert_eq!(name, identity_name(cluster, ns, binding));
        }
        assert_ne!(
            identity_name("c", "ns", "a.b"),
            identity_name("c", "ns", "a-b")
        );
        assert_eq!(identity_name("c", &long, "x").len(), 128);
        assert_eq!(federated_credential_name("c", &long, "sa").len(), 120);
        assert!(
            identity_name("c", "ns", "b")
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn role_assignment_names_are_deterministic_and_case_insensitive() {
        let a = role_assignment_name(
            "P1",
            "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/ABC",
            "/subscriptions/S/resourceGroups/RG",
        );
        let b = role_assignment_name("p1", "abc", "/subscriptions/s/resourcegroups/rg/");
        assert_eq!(a, b);
        assert_ne!(a, role_assignment_name("p1", "abc", "/subscriptions/s"));
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }
}
