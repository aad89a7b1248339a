//! The EKS calls of mode PodIdentity, on `aws-sdk-eks`: pod identity
//! associations, each call observed like IAM's and its errors mapped to
//! condition reasons. A cluster EKS does not know reads as `None`, so the
//! plan can say which cluster is missing; deletes of what is gone succeed.

use std::collections::BTreeMap;
use std::future::Future;

use aws_sdk_eks::error::{ProvideErrorMetadata, SdkError};
use wib_api::conditions::Reason;

use super::iam::{error, not_found, paced};
use crate::CloudError;
use crate::calls::Observer;

/// A pod identity association as wib reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Association {
    pub id: String,
    pub arn: String,
    pub role_arn: String,
    pub target_role_arn: Option<String>,
    pub external_id: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// What a new association is made with.
pub struct NewAssociation<'a> {
    pub cluster: &'a str,
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub role_arn: &'a str,
    pub target_role_arn: Option<&'a str>,
    /// Makes a retried create after a lost answer return the association
    /// the first one made instead of a conflict.
    pub token: &'a str,
    pub tags: &'a BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct Eks {
    client: aws_sdk_eks::Client,
    observer: Observer,
    limiter: std::sync::Arc<crate::limiter::Limiter>,
}

fn association(a: &aws_sdk_eks::types::PodIdentityAssociation) -> Association {
    Association {
        id: a.association_id().unwrap_or_default().to_string(),
        arn: a.association_arn().unwrap_or_default().to_string(),
        role_arn: a.role_arn().unwrap_or_default().to_string(),
        target_role_arn: a
            .target_role_arn()
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        external_id: a.external_id().map(str::to_string),
        tags: a
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    }
}

impl Eks {
    pub fn new(
        client: aws_sdk_eks::Client,
        observer: Observer,
        limits: &crate::limiter::Limits,
    ) -> Self {
        Self {
            client,
            observer,
            limiter: std::sync::Arc::new(crate::limiter::Limiter::new(limits)),
        }
    }

    async fn call<T, E, R>(
        &self,
        operation: &str,
        call: impl Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<T, SdkError<E, R>>
    where
        E: ProvideErrorMetadata,
    {
        paced(&self.limiter, &self.observer, operation, call).await
    }

    /// The association of `namespace/service_account` in `cluster` (EKS
    /// allows one); `Ok(None)` when EKS has no such cluster.
    pub async fn find(
        &self,
        cluster: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Option<Option<Association>>, CloudError> {
        let doing = format!(
            "listing the pod identity associations of {namespace}/{service_account} in EKS cluster {cluster}"
        );
        let listed = match self
            .call(
                "ListPodIdentityAssociations",
                self.client
                    .list_pod_identity_associations()
                    .cluster_name(cluster)
                    .namespace(namespace)
                    .service_account(service_account)
                    .send(),
            )
            .await
        {
            Ok(out) => out,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(error(&doing, e)),
        };
        let Some(id) = listed
            .associations()
            .iter()
            .find(|a| {
                a.namespace() == Some(namespace) && a.service_account() == Some(service_account)
            })
            .and_then(|a| a.association_id())
        else {
            return Ok(Some(None));
        };
        self.describe(cluster, id).await.map(Some)
    }

    pub async fn describe(
        &self,
        cluster: &str,
        id: &str,
    ) -> Result<Option<Association>, CloudError> {
        match self
            .call(
                "DescribePodIdentityAssociation",
                self.client
                    .describe_pod_identity_association()
                    .cluster_name(cluster)
                    .association_id(id)
                    .send(),
            )
            .await
        {
            Ok(out) => Ok(out.association().map(association)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(error(
                &format!("reading pod identity association {id} of EKS cluster {cluster}"),
                e,
            )),
        }
    }

    pub async fn create(&self, new: NewAssociation<'_>) -> Result<Association, CloudError> {
        let doing = format!(
            "creating the pod identity association of {}/{} in EKS cluster {}",
            new.namespace, new.service_account, new.cluster
        );
        let out = self
            .call(
                "CreatePodIdentityAssociation",
                self.client
                    .create_pod_identity_association()
                    .cluster_name(new.cluster)
                    .namespace(new.namespace)
                    .service_account(new.service_account)
                    .role_arn(new.role_arn)
                    .set_target_role_arn(new.target_role_arn.map(str::to_string))
                    .client_request_token(new.token)
                    .set_tags(Some(new.tags.clone().into_iter().collect()))
                    .send(),
            )
            .await
            .map_err(|e| error(&doing, e))?;
        out.association().map(association).ok_or_else(|| {
            CloudError::new(Reason::TransientError, format!("{doing}: no association"))
        })
    }

    /// Points the association at `role_arn` (and `target`, or none).
    pub async fn update(
        &self,
        cluster: &str,
        id: &str,
        role_arn: &str,
        target: Option<&str>,
    ) -> Result<(), CloudError> {
        self.call(
            "UpdatePodIdentityAssociation",
            self.client
                .update_pod_identity_association()
                .cluster_name(cluster)
                .association_id(id)
                .role_arn(role_arn)
                // An empty target clears one set before.
                .target_role_arn(target.unwrap_or_default())
                .send(),
        )
        .await
        .map(drop)
        .map_err(|e| {
            error(
                &format!("updating pod identity association {id} of EKS cluster {cluster}"),
                e,
            )
        })
    }

    pub async fn delete(&self, cluster: &str, id: &str) -> Result<(), CloudError> {
        match self
            .call(
                "DeletePodIdentityAssociation",
                self.client
                    .delete_pod_identity_association()
                    .cluster_name(cluster)
                    .association_id(id)
                    .send(),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(error(
                &format!("deleting pod identity association {id} of EKS cluster {cluster}"),
                e,
            )),
        }
    }
}
