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

/// A scope's path segments, or why it is not a plain path: `.` and `..`
/// segments, empty segments, percent-encoding and backslashes are refused,
/// because an HTTP client resolves or decodes them into a different scope
/// from the one the guardrails checked (`/subscriptions/S/resourceGroups/a/
/// providers/x/../../..` is `/subscriptions/S` on the wire).
pub fn scope_segments(scope: &str) -> Result<Vec<&str>, String> {
    if let Some(bad) = scope.chars().find(|c| matches!(c, '%' | '\\' | '?' | '#')) {
        return Err(format!("scope {scope:?} contains {bad:?}"));
    }
    let body = scope.strip_prefix('/').unwrap_or(scope);
    let segments: Vec<&str> = body.split('/').collect();
    if let Some(bad) = segments
        .iter()
        .find(|s| s.is_empty() || **s == "." || **s == "..")
    {
        return Err(format!(
            "scope {scope:?} has a {} segment",
            if bad.is_empty() { "empty" } else { bad }
        ));
    }
    Ok(segments)
}

/// Whether `scope` lies under one of the `allowed` scopes, segment by
/// segment (case-insensitive, as ARM compares); any well-formed scope when
/// the provider sets none. A scope that is not a plain path is never allowed,
/// and neither is anything under a malformed `allowed` entry.
pub fn scope_allowed(scope: &str, allowed: Option<&[String]>) -> bool {
    let Ok(wanted) = scope_segments(scope) else {
        return false;
    };
    let Some(prefixes) = allowed else {
        return true;
    };
    prefixes.iter().any(|p| {
        let Ok(prefix) = scope_segments(p) else {
            return false;
        };
        p.starts_with('/') == scope.starts_with('/')
            && prefix.len() <= wanted.len()
            && prefix
                .iter()
                .zip(&wanted)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
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

    #[test]
    fn traversal_and_encoded_spellings_are_never_allowed() {
        let allowed = vec!["/subscriptions/S/resourceGroups/apps".to_string()];
        for scope in [
            "/subscriptions/S/resourceGroups/apps/providers/x/../../../..",
            "/subscriptions/S/resourceGroups/apps/providers/x/%2e%2e/%2E%2E",
            "/subscriptions/S/resourceGroups/apps/./../other",
            "/subscriptions/S/resourceGroups/apps//providers",
            "/subscriptions/S/resourceGroups/apps/",
            "/subscriptions/S/resourceGroups/apps\\..\\..",
            "/subscriptions/S/resourceGroups/apps?api-version=1",
        ] {
            assert!(!scope_allowed(scope, Some(&allowed)), "{scope}");
            assert!(!scope_allowed(scope, None), "{scope} with no allowedScopes");
            assert!(scope_segments(scope).is_err(), "{scope}");
        }
        assert!(!scope_allowed(
            "subscriptions/S/resourceGroups/apps",
            Some(&allowed)
        ));
        // A plain path passes as it is: what the guardrails judged is what
        // reaches the cloud.
        assert!(scope_segments("/subscriptions/S/resourceGroups/apps").is_ok());
        assert!(scope_segments("projects/p").is_ok());
    }
}
