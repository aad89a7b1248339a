//! What wib added to the cluster's shared IAM OIDC providers that nothing
//! uses any more: client IDs no binding asks for, and providers for issuers
//! the cluster left. Only what wib's tags say wib made is ever removed.

use std::collections::BTreeSet;

use wib_api::ClusterIdentityProvider;
use wib_api::provider::AwsProvider as AwsDefaults;

use super::iam::Iam;
use super::naming;
use crate::ownership;
use crate::{CloudError, InUse};

/// Both parts, client IDs first.
pub async fn prune(
    iam: &Iam,
    provider: &ClusterIdentityProvider,
    issuer: &str,
    in_use: &InUse,
) -> Result<Vec<String>, CloudError> {
    let Some(defaults) = provider
        .spec
        .aws
        .as_ref()
        .filter(|d| d.create_oidc_provider)
    else {
        return Ok(Vec::new());
    };
    let mut removed = client_ids(iam, defaults, issuer, &in_use.audiences).await?;
    let cluster = &provider.spec.cluster_name;
    removed.extend(retired_issuers(iam, defaults, cluster, issuer, &in_use.issuers).await?);
    Ok(removed)
}

/// Removes the client IDs wib added to the cluster's IAM OIDC provider (by
/// its tags) that no binding uses any more: the provider allows 100, and a
/// client ID nobody uses is one more audience tokens are accepted for.
/// Client IDs wib did not add, and STS's, are never touched.
async fn client_ids(
    iam: &Iam,
    defaults: &AwsDefaults,
    issuer: &str,
    in_use: &BTreeSet<String>,
) -> Result<Vec<String>, CloudError> {
    let arn = defaults
        .oidc_provider_arn
        .clone()
        .unwrap_or_else(|| naming::oidc_provider_arn(&defaults.account_id, issuer));
    let Some(found) = iam.get_oidc_provider(&arn).await? else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    let added = found
        .tags
        .iter()
        .filter(|(k, _)| k.starts_with(naming::TAG_ADDED_CLIENT_ID));
    for (key, client_id) in added {
        if in_use.contains(client_id) {
            continue;
        }
        if found.client_ids.contains(client_id) {
            iam.remove_audience(&arn, client_id).await?;
            removed.push(format!("removed unused client ID {client_id} from {arn}"));
        }
        // Untagged only once the client ID is gone, so a crash never
        // leaves one wib added without its tag.
        iam.untag_oidc_provider(&arn, key).await?;
    }
    Ok(removed)
}

/// Deletes the IAM OIDC providers wib created for this cluster (by its tag)
/// for an issuer no provider of the cluster has any more: after an `issuer`
/// change every trust statement is re-keyed to the new one, and the old
/// provider would otherwise stay, trusting tokens of an issuer the cluster
/// left. Providers wib did not create are never touched.
async fn retired_issuers(
    iam: &Iam,
    defaults: &AwsDefaults,
    cluster: &str,
    issuer: &str,
    issuers: &BTreeSet<String>,
) -> Result<Vec<String>, CloudError> {
    let kept: BTreeSet<String> = issuers
        .iter()
        .map(String::as_str)
        .chain([issuer])
        .map(naming::issuer_key)
        .collect();
    let account = format!("arn:aws:iam::{}:", defaults.account_id);
    let mut removed = Vec::new();
    for arn in iam.list_oidc_providers().await? {
        let retired = arn.starts_with(&account)
            && naming::issuer_key_of_arn(&arn).is_some_and(|k| !kept.contains(k));
        if !retired {
            continue;
        }
        let Some(found) = iam.get_oidc_provider(&arn).await? else {
            continue;
        };
        if found.tags.get(ownership::TAG_CLUSTER).map(String::as_str) == Some(cluster) {
            iam.delete_oidc_provider(&arn).await?;
            removed.push(format!(
                "deleted {arn}, created by wib for an issuer cluster {cluster} no longer has"
            ));
        }
    }
    Ok(removed)
}
