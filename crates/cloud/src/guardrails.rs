//! The provider's guardrails, checked before any cloud write: which roles a
//! binding may ask for and on which scopes.

/// Administrator-level roles denied unless a provider lists them in
/// `allowedRoles`: Azure names and definition GUIDs, AWS policy ARNs, GCP roles.
pub const DENIED_BY_DEFAULT: &[&str] = &[
    "Owner",
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "User Access Administrator",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "Role Based Access Control Administrator",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
    "arn:aws:iam::aws:policy/AdministratorAccess",
    "arn:aws:iam::aws:policy/IAMFullAccess",
    "arn:aws:iam::aws:policy/PowerUserAccess",
    "roles/owner",
    "roles/editor",
    "roles/iam.securityAdmin",
    "roles/resourcemanager.projectIamAdmin",
];

/// Whether a role known by any of `names` (its name, GUID, full ID ...) may
/// be granted: listed in `allowed` when the provider sets it, otherwise not
/// denied by default. Comparison ignores case.
pub fn role_allowed(names: &[&str], allowed: Option<&[String]>) -> bool {
    let matches = |candidates: &mut dyn Iterator<Item = &str>| {
        let candidates: Vec<&str> = candidates.collect();
        names
            .iter()
            .any(|n| candidates.iter().any(|c| c.eq_ignore_ascii_case(n)))
    };
    match allowed {
        Some(list) => matches(&mut list.iter().map(String::as_str)),
        None => !matches(&mut DENIED_BY_DEFAULT.iter().copied()),
    }
}

/// Whether `scope` lies under one of the `allowed` prefixes (whole path
/// segments, case-insensitive); any scope when the provider sets none.
pub fn scope_allowed(scope: &str, allowed: Option<&[String]>) -> bool {
    let Some(prefixes) = allowed else {
        return true;
    };
    let scope = scope.trim_end_matches('/').to_ascii_lowercase();
    prefixes.iter().any(|p| {
        let p = p.trim_end_matches('/').to_ascii_lowercase();
        scope == p || scope.starts_with(&format!("{p}/")) || p.is_empty()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_cases() {
        let allow = vec!["Owner".to_string(), "Reader".to_string()];
        type Case<'a> = (&'a [&'a str], Option<&'a [String]>, bool);
        let cases: Vec<Case> = vec![
            (&["Key Vault Secrets User"], None, true),
            (&["owner"], None, false),
            (
                &["Owner role by GUID", "8E3AF657-A8FF-443C-A75C-2FE8C4BCB635"],
                None,
                false,
            ),
            (&["roles/editor"], None, false),
            (&["Owner"], Some(&allow), true),
            (&["Contributor"], Some(&allow), false),
        ];
        for (names, allowed, want) in cases {
            assert_eq!(role_allowed(names, allowed), want, "{names:?} {allowed:?}");
        }
    }

    #[test]
    fn scope_cases() {
        let allowed = vec!["/subscriptions/S/resourceGroups/apps".to_string()];
        let cases = [
            (
                "/subscriptions/s/resourcegroups/apps/providers/Microsoft.KeyVault/vaults/kv",
                true,
            ),
            ("/subscriptions/s/resourceGroups/apps", true),
            ("/subscriptions/s/resourceGroups/apps-prod", false),
            ("/subscriptions/s", false),
        ];
        for (scope, want) in cases {
            assert_eq!(scope_allowed(scope, Some(&allowed)), want, "{scope}");
        }
        assert!(scope_allowed("/anything", None));
    }
}
