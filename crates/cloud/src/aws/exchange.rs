//! `verifyExchange` on AWS: the bound ServiceAccount's token presented to
//! STS `AssumeRoleWithWebIdentity` for the binding's role, as the SDK in a
//! pod does with `AWS_WEB_IDENTITY_TOKEN_FILE` (an unsigned call).

use aws_sdk_sts::error::SdkError;
use wib_api::conditions::Reason;

use crate::exchange::{failed, waiting};
use crate::{CloudError, Outcome, Request};

/// The audience of a pod's token: the binding's, or STS's own.
pub fn audience(request: &Request<'_>) -> String {
    request
        .binding
        .spec
        .aws
        .as_ref()
        .and_then(|a| a.audience.clone())
        .unwrap_or_else(|| super::DEFAULT_AUDIENCE.to_string())
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
