//! Judging a role once it is resolved: by the names and IDs the cloud gave
//! it, never by the tenant's spelling.

/// What wib knows of a role after resolving it.
#[derive(Clone, Debug, Default)]
pub struct RoleFacts {
    /// Every name and ID the role answers to (Azure: name, GUID, definition
    /// ID; AWS: the ARN; GCP: the role name), as the cloud spells them.
    pub names: Vec<String>,
    /// The IDs an `allowedRoles` entry must name exactly to lift a built-in
    /// denial (Azure: GUID or definition ID; AWS: ARN; GCP: role name).
    pub ids: Vec<String>,
    /// Why the built-in deny list refuses the role, if it does.
    pub denied: Option<String>,
}

/// Whether the provider's `allowedRoles` admit the role; the error says why
/// not. No list admits every role that is not denied by default. An entry
/// ending in `*` matches names by prefix; a denied role needs an entry equal
/// to one of its exact IDs (case-insensitive), so neither a pattern nor a
/// display name, which a custom role can share, lifts a denial.
pub fn judge_role(role: &RoleFacts, allowed: Option<&[String]>) -> Result<(), String> {
    let entries = allowed.unwrap_or_default();
    if let Some(why) = &role.denied {
        let lifted = entries
            .iter()
            .any(|e| role.ids.iter().any(|id| id.eq_ignore_ascii_case(e)));
        return if lifted {
            Ok(())
        } else {
            Err(format!(
                "{why}; wib denies it by default and only an allowedRoles entry naming {} exactly lifts that",
                role.ids.first().map(String::as_str).unwrap_or("its ID")
            ))
        };
    }
    let Some(entries) = allowed else {
        return Ok(());
    };
    let matches = |entry: &str| match entry.strip_suffix('*') {
        Some(prefix) => role.names.iter().any(|n| {
            n.len() >= prefix.len()
                && n.is_char_boundary(prefix.len())
                && n[..prefix.len()].eq_ignore_ascii_case(prefix)
        }),
        None => role.names.iter().any(|n| n.eq_ignore_ascii_case(entry)),
    };
    if entries.iter().any(|e| matches(e)) {
        Ok(())
    } else {
        Err("it is not in the provider's allowedRoles".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(names: &[&str], ids: &[&str], denied: bool) -> RoleFacts {
        RoleFacts {
            names: names.iter().map(|s| s.to_string()).collect(),
            ids: ids.iter().map(|s| s.to_string()).collect(),
            denied: denied.then(|| "it administers access".to_string()),
        }
    }

    #[test]
    fn allow_lists_match_names_exactly_or_by_a_trailing_star() {
        let reader = facts(&["Reader", "acdd72a7"], &["acdd72a7"], false);
        let list = |e: &[&str]| e.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(judge_role(&reader, None).is_ok());
        assert!(judge_role(&reader, Some(&list(&["reader"]))).is_ok());
        assert!(judge_role(&reader, Some(&list(&["Read*"]))).is_ok());
        assert!(judge_role(&reader, Some(&list(&["*"]))).is_ok());
        assert!(judge_role(&reader, Some(&list(&["Reade"]))).is_err());
        assert!(judge_role(&reader, Some(&list(&[]))).is_err());
    }

    #[test]
    fn only_an_exact_id_lifts_a_denial() {
        let owner = facts(
            &["Owner", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"],
            &["8e3af657-a8ff-443c-a75c-2fe8c4bcb635"],
            true,
        );
        let list = |e: &[&str]| e.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(judge_role(&owner, None).is_err());
        assert!(judge_role(&owner, Some(&list(&["*"]))).is_err());
        assert!(
            judge_role(&owner, Some(&list(&["Owner"]))).is_err(),
            "a name is not an ID"
        );
        assert!(judge_role(&owner, Some(&list(&["8e3af657-*"]))).is_err());
        assert!(
            judge_role(
                &owner,
                Some(&list(&["8E3AF657-A8FF-443C-A75C-2FE8C4BCB635"]))
            )
            .is_ok()
        );
    }
}
