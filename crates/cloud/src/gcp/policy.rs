//! IAM policy edits, pure: add or remove one member of one role in the
//! unconditional binding, leaving every other binding (and every condition)
//! exactly as it was, so a read-modify-write never drops what others added.

use google_cloud_iam_v1::model::{Binding, Policy};

/// Adds `member` to `role`; false when it was already there.
pub fn add_member(policy: &mut Policy, role: &str, member: &str) -> bool {
    if let Some(binding) = policy
        .bindings
        .iter_mut()
        .find(|b| b.role == role && b.condition.is_none())
    {
        if binding.members.iter().any(|m| m == member) {
            return false;
        }
        binding.members.push(member.to_string());
        return true;
    }
    policy
        .bindings
        .push(Binding::new().set_role(role).set_members([member]));
    true
}

/// Removes `member` from `role`'s unconditional binding; false when absent.
pub fn remove_member(policy: &mut Policy, role: &str, member: &str) -> bool {
    let mut changed = false;
    for binding in policy
        .bindings
        .iter_mut()
        .filter(|b| b.role == role && b.condition.is_none())
    {
        let before = binding.members.len();
        binding.members.retain(|m| m != member);
        changed |= binding.members.len() != before;
    }
    policy.bindings.retain(|b| !b.members.is_empty());
    changed
}

/// The roles `member` holds unconditionally.
pub fn roles_of(policy: &Policy, member: &str) -> Vec<String> {
    policy
        .bindings
        .iter()
        .filter(|b| b.condition.is_none() && b.members.iter().any(|m| m == member))
        .map(|b| b.role.clone())
        .collect()
}

/// The members of `role`.
pub fn members_of(policy: &Policy, role: &str) -> Vec<String> {
    policy
        .bindings
        .iter()
        .filter(|b| b.role == role)
        .flat_map(|b| b.members.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_touch_only_one_member_of_one_role() {
        let mut p = Policy::new().set_bindings([
            Binding::new()
                .set_role("roles/viewer")
                .set_members(["user:a@x", "serviceAccount:s@p"]),
            Binding::new()
                .set_role("roles/editor")
                .set_members(["user:b@x"]),
        ]);
        assert!(add_member(&mut p, "roles/viewer", "user:c@x"));
        assert!(!add_member(&mut p, "roles/viewer", "user:c@x"));
        assert!(add_member(
            &mut p,
            "roles/storage.objectViewer",
            "serviceAccount:s@p"
        ));
        assert_eq!(
            roles_of(&p, "serviceAccount:s@p"),
            vec!["roles/viewer", "roles/storage.objectViewer"]
        );
        assert!(remove_member(
            &mut p,
            "roles/storage.objectViewer",
            "serviceAccount:s@p"
        ));
        assert!(!remove_member(
            &mut p,
            "roles/storage.objectViewer",
            "serviceAccount:s@p"
        ));
        assert_eq!(p.bindings.len(), 2, "empty bindings are dropped");
        assert_eq!(members_of(&p, "roles/editor"), vec!["user:b@x"]);
        assert_eq!(members_of(&p, "roles/viewer").len(), 3);
    }
}
