//! Scopes as paths: parsed into segments, refused when a client would
//! resolve them into another scope, and matched against `allowedScopes`
//! segment by segment.

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
/// segment (case-insensitive, as ARM compares). A scope that is not a plain
/// path is never allowed, and neither is anything under a malformed
/// `allowed` entry. (A provider that lists no scopes allows no grant at all:
/// see [`super::grants_refused`].)
pub fn scope_allowed(scope: &str, allowed: &[String]) -> bool {
    let Ok(wanted) = scope_segments(scope) else {
        return false;
    };
    allowed.iter().any(|p| {
        // An IAM path is written with a trailing slash; the prefix is the same.
        let Ok(prefix) = scope_segments(p.trim_end_matches('/')) else {
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
            assert_eq!(scope_allowed(scope, &allowed), want, "{scope}");
        }
        assert!(!scope_allowed("/anything", &[]));
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
            assert!(!scope_allowed(scope, &allowed), "{scope}");
            let everything = vec!["/subscriptions".to_string(), "subscriptions".to_string()];
            assert!(
                !scope_allowed(scope, &everything),
                "{scope} under a wide prefix"
            );
            assert!(scope_segments(scope).is_err(), "{scope}");
        }
        assert!(!scope_allowed(
            "subscriptions/S/resourceGroups/apps",
            &allowed
        ));
        // A plain path passes as it is: what the guardrails judged is what
        // reaches the cloud.
        assert!(scope_segments("/subscriptions/S/resourceGroups/apps").is_ok());
        assert!(scope_segments("projects/p").is_ok());
    }
}
