//! Identities no binding may take: wib's own (what it authenticates as, read
//! from its environment) and the provider's `protectedIdentities`. A binding
//! that names one — to create over it, adopt it, share it or federate its own
//! ServiceAccount onto it — would let a tenant act as wib, or as whatever the
//! platform team set aside.

use std::sync::LazyLock;

use wib_api::ClusterIdentityProvider;
use wib_api::conditions::Reason;

use crate::CloudError;

/// wib's own identities, as its environment names them: the Azure client
/// ID, the AWS role (ARN and name), the GCP service account it impersonates.
static OWN: LazyLock<Vec<String>> = LazyLock::new(|| {
    let env = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
    let mut own = Vec::new();
    own.extend(env("AZURE_CLIENT_ID"));
    if let Some(arn) = env("AWS_ROLE_ARN") {
        own.extend(arn.rsplit('/').next().map(str::to_string));
        own.push(arn);
    }
    own.extend(
        std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
            .and_then(|path| std::fs::read_to_string(path).ok())
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|config| {
                impersonated_email(config["service_account_impersonation_url"].as_str()?)
            }),
    );
    own
});

/// `…/serviceAccounts/<email>:generateAccessToken` → `<email>`.
pub fn impersonated_email(url: &str) -> Option<String> {
    let rest = url.rsplit_once("/serviceAccounts/")?.1;
    let email = rest.split_once(':').map_or(rest, |(email, _)| email);
    (!email.is_empty()).then(|| email.to_string())
}

/// Refuses, before any write, when any of `names` (how the cloud knows the
/// identity: name, resource ID, client ID, ARN, email) is wib's own or in the
/// provider's `protectedIdentities`; case-insensitive. The message does not
/// say which list matched.
pub fn check(
    names: &[&str],
    provider: &ClusterIdentityProvider,
    what: &str,
) -> Result<(), CloudError> {
    check_against(names, &OWN, &provider.spec.protected_identities, what)
}

fn check_against(
    names: &[&str],
    own: &[String],
    listed: &[String],
    what: &str,
) -> Result<(), CloudError> {
    // An ARN or resource ID also protects the name it ends in, so a binding
    // cannot walk around it by naming the role or identity instead.
    let protected = own.iter().chain(listed).any(|p| {
        let short = p.rsplit('/').next().unwrap_or(p);
        names
            .iter()
            .any(|n| !n.is_empty() && (n.eq_ignore_ascii_case(p) || n.eq_ignore_ascii_case(short)))
    });
    if protected {
        return Err(CloudError::new(
            Reason::IdentityProtected,
            format!(
                "{what} is protected (wib's own identity, or listed in the provider's protectedIdentities); nothing was changed"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_and_listed_identities_are_refused_whatever_the_case() {
        let own = vec![
            "arn:aws:iam::123456789012:role/wib".to_string(),
            "wib".to_string(),
        ];
        let listed = vec!["break-glass".to_string()];
        let refused = |names: &[&str]| check_against(names, &own, &listed, "x").is_err();
        assert!(refused(&["WIB"]));
        assert!(refused(&["other", "arn:aws:iam::123456789012:role/wib"]));
        assert!(refused(&["Break-Glass"]));
        let by_arn = vec!["arn:aws:iam::123456789012:role/ops/break-glass".to_string()];
        assert!(check_against(&["BREAK-GLASS"], &[], &by_arn, "x").is_err());
        assert!(!refused(&["team-a-app"]));
        assert!(!refused(&[""]));
    }

    #[test]
    fn the_impersonated_account_is_read_from_the_credential_url() {
        assert_eq!(
            impersonated_email(
                "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/wib@p.iam.gserviceaccount.com:generateAccessToken"
            )
            .as_deref(),
            Some("wib@p.iam.gserviceaccount.com")
        );
        assert_eq!(impersonated_email("https://example/none"), None);
    }
}
