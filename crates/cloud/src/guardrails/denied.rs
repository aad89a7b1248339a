//! The built-in deny list: roles that administer access, impersonate other
//! identities or write federation, on each cloud. A provider's allow-list
//! never lifts these by pattern or display name, only by exact ID.

/// An Azure role definition as ARM returned it.
#[derive(Clone, Copy, Debug)]
pub struct AzureRole<'a> {
    /// The definition's GUID.
    pub guid: &'a str,
    /// `CustomRole` rather than `BuiltInRole`.
    pub custom: bool,
    /// Its control-plane `actions`.
    pub actions: &'a [String],
}

/// Built-in roles that grant access or manage identities: (GUID, why).
const AZURE_ALWAYS: &[(&str, &str)] = &[
    (
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "Owner grants access",
    ),
    (
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        "User Access Administrator grants access",
    ),
    (
        "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
        "Role Based Access Control Administrator grants access",
    ),
    (
        "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59",
        "Managed Identity Contributor writes federated credentials on identities",
    ),
    (
        "f1a07417-d97a-45cb-824c-7a7467783830",
        "Managed Identity Operator assigns identities to resources",
    ),
];
const AZURE_CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";

/// Control-plane operations a custom role must not reach, even by wildcard:
/// they grant access or federate identities (wib's own included).
const AZURE_GUARDED_ACTIONS: &[&str] = &[
    "Microsoft.Authorization/roleAssignments/write",
    "Microsoft.Authorization/roleDefinitions/write",
    "Microsoft.Authorization/elevateAccess/action",
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write",
];

/// Why an Azure role may not be granted at `scope` (its segments), if so.
pub fn azure_denial(role: &AzureRole<'_>, scope: &[&str]) -> Option<String> {
    if let Some((_, why)) = AZURE_ALWAYS
        .iter()
        .find(|(guid, _)| guid.eq_ignore_ascii_case(role.guid))
    {
        return Some((*why).to_string());
    }
    if role.guid.eq_ignore_ascii_case(AZURE_CONTRIBUTOR) && broad_azure_scope(scope) {
        return Some(
            "Contributor on a whole subscription or management group writes federated credentials on every identity in it".into(),
        );
    }
    if role.custom
        && let Some(action) = role.actions.iter().find(|a| {
            a.as_str() == "*"
                || a.to_ascii_lowercase()
                    .starts_with("microsoft.authorization/*")
                || AZURE_GUARDED_ACTIONS.iter().any(|op| glob_covers(a, op))
        })
    {
        return Some(format!(
            "the custom role's action {action:?} reaches role assignments or federated credentials"
        ));
    }
    None
}

/// A subscription, a management group, or the tenant root.
fn broad_azure_scope(scope: &[&str]) -> bool {
    match scope {
        [] => true,
        [subscriptions, _] => subscriptions.eq_ignore_ascii_case("subscriptions"),
        [providers, namespace, groups, ..] => {
            providers.eq_ignore_ascii_case("providers")
                && namespace.eq_ignore_ascii_case("Microsoft.Management")
                && groups.eq_ignore_ascii_case("managementGroups")
        }
        _ => false,
    }
}

/// Whether an action pattern with `*` wildcards covers `operation`,
/// case-insensitively, as ARM evaluates role actions.
fn glob_covers(pattern: &str, operation: &str) -> bool {
    let (pattern, operation) = (pattern.to_ascii_lowercase(), operation.to_ascii_lowercase());
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == operation;
    };
    let Some(mut rest) = operation.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// AWS managed policies that amount to administrator access, by path and
/// name under `arn:<any partition>:iam::aws:policy/`.
const AWS_ADMIN_POLICIES: &[&str] = &[
    "AdministratorAccess",
    "AdministratorAccess-Amplify",
    "AdministratorAccess-AWSElasticBeanstalk",
    "IAMFullAccess",
    "PowerUserAccess",
    "AWSOrganizationsFullAccess",
    "AWSSSOMasterAccountAdministrator",
    "AWSSSODirectoryAdministrator",
];

/// Why an AWS managed policy may not be attached, if so: an
/// administrator-equivalent AWS-managed policy in any partition.
pub fn aws_denial(arn: &str) -> Option<String> {
    let mut fields = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some(service), Some(""), Some(account), Some(resource)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return None;
    };
    let path = resource.strip_prefix("policy/")?;
    let name = path.rsplit('/').next().unwrap_or(path);
    let admin = service.eq_ignore_ascii_case("iam")
        && account.eq_ignore_ascii_case("aws")
        && AWS_ADMIN_POLICIES
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name));
    admin.then(|| format!("{name} is administrator-equivalent"))
}

/// GCP roles that act as other identities or administer access.
const GCP_DENIED: &[&str] = &[
    "roles/iam.serviceAccountTokenCreator",
    "roles/iam.serviceAccountOpenIdTokenCreator",
    "roles/iam.serviceAccountUser",
    "roles/iam.workloadIdentityUser",
    "roles/iam.serviceAccountKeyAdmin",
    "roles/iam.serviceAccountAdmin",
    "roles/iam.securityAdmin",
    "roles/iam.roleAdmin",
    "roles/iam.organizationRoleAdmin",
    "roles/iam.workloadIdentityPoolAdmin",
];

/// Why a GCP role may not be granted, if so.
pub fn gcp_denial(role: &str) -> Option<String> {
    let lower = role.to_ascii_lowercase();
    if ["roles/owner", "roles/editor", "roles/viewer"].contains(&lower.as_str()) {
        return Some(format!("{role} is a basic role"));
    }
    if GCP_DENIED.iter().any(|d| d.eq_ignore_ascii_case(role)) {
        return Some(format!(
            "{role} impersonates service accounts or administers IAM"
        ));
    }
    if lower.starts_with("roles/resourcemanager.") {
        return Some(format!("{role} administers projects, folders or their IAM"));
    }
    if lower.starts_with("projects/") || lower.starts_with("organizations/") {
        return Some(format!(
            "{role} is a custom role, whose permissions wib does not judge"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn azure(guid: &str, custom: bool, actions: &[&str], scope: &str) -> bool {
        let actions: Vec<String> = actions.iter().map(|s| s.to_string()).collect();
        let segments: Vec<&str> = scope.trim_start_matches('/').split('/').collect();
        azure_denial(
            &AzureRole {
                guid,
                custom,
                actions: &actions,
            },
            &segments,
        )
        .is_some()
    }

    #[test]
    fn azure_denials_follow_the_definition_not_its_name() {
        let rg = "/subscriptions/S/resourceGroups/apps";
        let sub = "/subscriptions/S";
        let mg = "/providers/Microsoft.Management/managementGroups/root";
        assert!(azure(
            "8E3AF657-A8FF-443C-A75C-2FE8C4BCB635",
            false,
            &[],
            rg
        ));
        assert!(azure(
            "f1a07417-d97a-45cb-824c-7a7467783830",
            false,
            &[],
            rg
        ));
        assert!(
            !azure(AZURE_CONTRIBUTOR, false, &["*"], rg),
            "Contributor on a group"
        );
        assert!(azure(AZURE_CONTRIBUTOR, false, &["*"], sub));
        assert!(azure(AZURE_CONTRIBUTOR, false, &["*"], mg));
        assert!(!azure(
            "acdd72a7-3385-48ef-bd42-f606fba81ae7",
            false,
            &["*/read"],
            sub
        ));
        for action in [
            "*",
            "Microsoft.Authorization/*",
            "microsoft.authorization/*/write",
            "Microsoft.Authorization/roleAssignments/*",
            "Microsoft.ManagedIdentity/*",
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/write",
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write",
            "*/write",
        ] {
            assert!(azure("custom-guid", true, &[action], rg), "{action}");
        }
        for action in [
            "Microsoft.KeyVault/vaults/read",
            "Microsoft.Storage/*",
            "*/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/read",
        ] {
            assert!(!azure("custom-guid", true, &[action], rg), "{action}");
        }
    }

    #[test]
    fn aws_administrator_policies_in_every_partition_and_spelling() {
        for arn in [
            "arn:aws:iam::aws:policy/AdministratorAccess",
            "arn:aws:iam::aws:policy/administratoraccess",
            "arn:aws-us-gov:iam::aws:policy/AdministratorAccess",
            "arn:aws-cn:iam::aws:policy/IAMFullAccess",
            "arn:aws-iso-b:iam::aws:policy/PowerUserAccess",
            "arn:aws:iam::aws:policy/job-function/../AdministratorAccess",
        ] {
            assert!(aws_denial(arn).is_some(), "{arn}");
        }
        for arn in [
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
            "arn:aws:iam::123456789012:policy/AdministratorAccess",
            "arn:aws:s3:::AdministratorAccess",
        ] {
            assert!(aws_denial(arn).is_none(), "{arn}");
        }
    }

    #[test]
    fn gcp_denials() {
        for role in [
            "roles/owner",
            "roles/OWNER",
            "roles/Editor",
            "roles/viewer",
            "roles/iam.serviceAccountTokenCreator",
            "roles/IAM.SERVICEACCOUNTUSER",
            "roles/iam.workloadIdentityUser",
            "roles/iam.serviceAccountKeyAdmin",
            "roles/iam.serviceAccountAdmin",
            "roles/resourcemanager.projectIamAdmin",
            "roles/resourcemanager.organizationAdmin",
            "projects/p/roles/anything",
            "organizations/1/roles/anything",
        ] {
            assert!(gcp_denial(role).is_some(), "{role}");
        }
        for role in ["roles/storage.objectViewer", "roles/pubsub.subscriber"] {
            assert!(gcp_denial(role).is_none(), "{role}");
        }
    }
}
