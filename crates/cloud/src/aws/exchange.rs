//! `verifyExchange` on AWS: the bound ServiceAccount's token presented as a
//! pod would present it. IRSA: to STS `AssumeRoleWithWebIdentity` for the
//! binding's role, as the SDK does with `AWS_WEB_IDENTITY_TOKEN_FILE` (an
//! unsigned call). PodIdentity: to EKS Auth `AssumeRoleForPodIdentity`, as
//! the node's EKS Pod Identity Agent does for the pod (signed by wib, which
//! needs `eks-auth:AssumeRoleForPodIdentity`).

use aws_sdk_sts::error::SdkError;
use wib_api::binding::AwsMode;
use wib_api::conditions::Reason;

use super::target::Target;
use crate::exchange::{failed, waiting};
use crate::{CloudError, Outcome, Request};

/// The audience EKS Pod Identity's tokens carry.
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";

/// The audience of a pod's token: Pod Identity's, the binding's, or STS's own.
pub fn audience(request: &Request<'_>) -> String {
    if Target::of(request).is_ok_and(|t| t.mode == AwsMode::PodIdentity) {
        return POD_IDENTITY_AUDIENCE.to_string();
    }
    request
        .binding
        .spec
        .aws
        .as_ref()
        .and_then(|a| a.audience.clone())
        .unwrap_or_else(|| super::DEFAULT_AUDIENCE.to_string())
}

/// The exchange in the binding's mode.
pub async fn verify_in_mode(
    clients: &super::Clients,
    request: &Request<'_>,
    outcome: &Outcome,
    token: &str,
) -> Result<(), CloudError> {
    let target = Target::of(request)?;
    match target.mode {
        AwsMode::Irsa => verify(&clients.sts, outcome, token).await,
        AwsMode::PodIdentity => {
            verify_pod_identity(&clients.eks_auth, &target.eks_cluster, token).await
        }
    }
}

async fn verify_pod_identity(
    eks_auth: &aws_sdk_eksauth::Client,
    cluster: &str,
    token: &str,
) -> Result<(), CloudError> {
    let result = eks_auth
        .assume_role_for_pod_identity()
        .cluster_name(cluster)
        .token(token)
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        // EKS Auth's own refusal: the association or the trust statement
        // not visible to it yet.
        Err(aws_sdk_eksauth::error::SdkError::ServiceError(e)) => Err(waiting(format!(
            "EKS Auth refused the ServiceAccount's token in cluster {cluster}: {}",
            e.err()
        ))),
        Err(e) => Err(failed("exchanging the token at EKS Auth", e)),
    }
}

pub async fn verify(
    sts: &aws_sdk_sts::Client,
    outcome: &Outcome,
    token: &str,
) -> Result<(), CloudError> {
    let Some(role_arn) = outcome.status.aws.as_ref().and_then(|a| a.role_arn.clone()) else {
        return Err(CloudError::new(
            Reason::TransientError,
            "the role's ARN is not known yet; retried",
        ));
    };
    let result = sts
        .assume_role_with_web_identity()
        .role_arn(&role_arn)
        .role_session_name("wib-verify-exchange")
        .web_identity_token(token)
        .duration_seconds(900)
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        // STS's own refusal (the trust policy or the OIDC provider not
        // visible yet: IAM is eventually consistent).
        Err(SdkError::ServiceError(e)) => Err(waiting(format!(
            "STS refused the ServiceAccount's token for {role_arn}: {}",
            e.err()
        ))),
        Err(e) => Err(failed("exchanging the token at STS", e)),
    }
}
