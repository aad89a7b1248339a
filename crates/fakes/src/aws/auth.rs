//! EKS Auth `AssumeRoleForPodIdentity` and the node's EKS Pod Identity
//! Agent (`GET /v1/credentials`, what a pod's SDK reaches through
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI`), which share one exchange:
//!
//! 1. the ServiceAccount token is verified for real (signature against the
//!    cluster issuer's JWKS, audience `pods.eks.amazonaws.com`, expiry by
//!    the fake's clock);
//! 2. its subject's association is looked up;
//! 3. the role's trust policy is read from moto and evaluated (moto would
//!    hand out credentials for any role), with EKS's session tags and
//!    `aws:SourceAccount`/`aws:SourceArn` as context, so a trust policy the
//!    operator got wrong is refused here as AWS refuses it;
//! 4. moto's STS assumes the role, then the target role when the
//!    association has one (after checking that its trust policy lets the
//!    first role in with the association's external ID).
//!
//! Status codes and error codes follow the eks-auth Smithy model, where
//! `AccessDeniedException` is a 400.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::iam::{AssumeRole, Assumed, MotoError, account_of};
use super::trust::{self, Decision, Principal};
use super::{Cluster, EksCloud, aws_error, eks::Association};
use crate::oidc::{TokenError, Verifier};

/// The service principal pod identity roles trust, which is also the
/// audience of the pod's projected token.
pub const SERVICE: &str = "pods.eks.amazonaws.com";

/// Why an exchange was refused, in eks-auth's terms.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid_token(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidTokenException", message)
    }

    fn access_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "AccessDeniedException", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            message,
        )
    }

    /// As eks-auth answers it (restJson1).
    fn eks_auth(&self) -> Response {
        aws_error(self.status, self.code, self.message.clone())
    }

    /// As the node agent answers it: eks-auth's status passed through.
    fn agent(&self) -> Response {
        agent_error(self.status, self.code, &self.message)
    }
}

pub fn agent_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

/// The pod a verified token stands for.
#[derive(Clone, Debug)]
struct Subject {
    namespace: String,
    service_account: String,
    pod_name: Option<String>,
    pod_uid: Option<String>,
}

/// A successful exchange.
pub struct Exchanged {
    namespace: String,
    service_account: String,
    association_arn: String,
    association_id: String,
    /// The account of the role whose credentials these are.
    account: String,
    assumed: Assumed,
}

/// Verifies `token` for `cluster_name`'s pods and returns the credentials of
/// its association's role (or target role).
pub async fn exchange(
    fake: &EksCloud,
    cluster_name: &str,
    token: &str,
) -> Result<Exchanged, Refusal> {
    let cluster = fake
        .cluster(cluster_name)
        .ok_or_else(|| Refusal::not_found(format!("No cluster found for name: {cluster_name}.")))?;
    let subject = verify(fake, &cluster, token).await?;
    let association = fake
        .association_for(&cluster.name, &subject.namespace, &subject.service_account)
        .ok_or_else(|| {
            Refusal::not_found(format!(
                "No Pod Identity Association found for service account system:serviceaccount:{}:{} in cluster {}.",
                subject.namespace, subject.service_account, cluster.name
            ))
        })?;
    let who = format!(
        "system:serviceaccount:{}:{}",
        subject.namespace, subject.service_account
    );
    let tags = if association.disable_session_tags {
        Vec::new()
    } else {
        session_tags(&cluster, &subject)
    };
    let mut context: BTreeMap<String, String> = tags
        .iter()
        .map(|(k, v)| (format!("aws:RequestTag/{k}"), v.clone()))
        .collect();
    let chained_context = context.clone();
    context.insert("aws:SourceAccount".into(), cluster.account.clone());
    context.insert("aws:SourceArn".into(), cluster.arn());
    check_trust(
        fake,
        &association.role_arn,
        Principal::Service(SERVICE),
        &context,
        !tags.is_empty(),
        &who,
    )
    .await?;
    let session_name = session_name(&cluster.name, &subject.service_account);
    let first = fake
        .moto
        .assume_role(&AssumeRole {
            role_arn: &association.role_arn,
            session_name: &session_name,
            external_id: None,
            tags: &tags,
            signer: None,
        })
        .await
        .map_err(|e| moto_refusal(&association.role_arn, e))?;
    let (role_arn, assumed) = match &association.target_role_arn {
        None => (association.role_arn.clone(), first),
        Some(target) => {
            let assumed = assume_target(
                fake,
                &association,
                target,
                chained_context,
                &tags,
                &session_name,
                &first,
            )
            .await?;
            (target.clone(), assumed)
        }
    };
    Ok(Exchanged {
        namespace: subject.namespace,
        service_account: subject.service_account,
        association_arn: association.arn.clone(),
        association_id: association.id.clone(),
        account: account_of(&role_arn).unwrap_or_default().to_string(),
        assumed,
    })
}

/// The association's role assumes its target role, as EKS chains them: the
/// target's trust policy must let that role in, with the association's
/// external ID when the policy asks for one.
async fn assume_target(
    fake: &EksCloud,
    association: &Association,
    target: &str,
    mut context: BTreeMap<String, String>,
    tags: &[(String, String)],
    session_name: &str,
    first: &Assumed,
) -> Result<Assumed, Refusal> {
    if let Some(external_id) = &association.external_id {
        context.insert("sts:ExternalId".into(), external_id.clone());
    }
    check_trust(
        fake,
        target,
        Principal::Role(&association.role_arn),
        &context,
        !tags.is_empty(),
        &association.role_arn,
    )
    .await?;
    fake.moto
        .assume_role(&AssumeRole {
            role_arn: target,
            session_name,
            external_id: association.external_id.as_deref(),
            tags,
            signer: Some(first.credentials.access_key_id.as_str()),
        })
        .await
        .map_err(|e| moto_refusal(target, e))
}

/// Reads the role's trust policy from moto and evaluates it for
/// `sts:AssumeRole`, plus `sts:TagSession` when session tags are passed
/// (STS asks for that permission only then).
async fn check_trust(
    fake: &EksCloud,
    role_arn: &str,
    principal: Principal<'_>,
    context: &BTreeMap<String, String>,
    tagged: bool,
    who: &str,
) -> Result<(), Refusal> {
    let document = match fake.moto.trust_policy(role_arn).await {
        Ok(Some(document)) => document,
        Ok(None) => {
            fake.state().trust_refusals += 1;
            return Err(Refusal::access_denied(format!(
                "{who} is not authorized to perform sts:AssumeRole on {role_arn}: the role does not exist."
            )));
        }
        Err(e) => {
            return Err(Refusal::internal(format!(
                "Reading the trust policy of {role_arn} failed: {e}"
            )));
        }
    };
    let actions: &[&str] = if tagged {
        &[trust::ASSUME_ROLE, trust::TAG_SESSION]
    } else {
        &[trust::ASSUME_ROLE]
    };
    let request = trust::Request {
        principal,
        actions,
        context,
    };
    match trust::evaluate(&document, &request) {
        Decision::Allowed => Ok(()),
        Decision::Denied(reason) => {
            fake.state().trust_refusals += 1;
            Err(Refusal::access_denied(format!(
                "{who} is not authorized to perform {} on {role_arn}: {reason}.",
                actions.join(" and ")
            )))
        }
    }
}

/// moto refusing to assume a role is an access denial; anything else is
/// the service failing.
fn moto_refusal(role_arn: &str, error: MotoError) -> Refusal {
    match error {
        MotoError::Refused {
            status: 400..=499,
            code,
            message,
        } => Refusal::access_denied(format!(
            "STS refused to assume {role_arn}: {code}: {message}"
        )),
        other => Refusal::internal(format!("Assuming {role_arn} failed: {other}")),
    }
}

/// Checks the token against the cluster's issuer and reads its subject.
async fn verify(fake: &EksCloud, cluster: &Cluster, token: &str) -> Result<Subject, Refusal> {
    let peeked = Verifier::peek(token).map_err(|e| invalid(fake, e.to_string()))?;
    let Some(issuer) = cluster.issuer.as_deref() else {
        return Err(invalid(
            fake,
            format!(
                "Cluster {} has no ServiceAccount issuer configured.",
                cluster.name
            ),
        ));
    };
    // Checked before any key is fetched: the fake reads JWKS only from the
    // cluster's own issuer.
    if peeked.iss.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(invalid(
            fake,
            format!(
                "The token's issuer {} is not the issuer of cluster {}.",
                peeked.iss, cluster.name
            ),
        ));
    }
    let claims = match fake.verifier.verify(token, SERVICE).await {
        Ok(claims) => claims,
        Err(e @ (TokenError::Expired | TokenError::NotYetValid)) => {
            fake.state().expired_assertions_refused += 1;
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "ExpiredTokenException",
                format!("The service account token is not valid now: {e}"),
            ));
        }
        Err(e) => {
            return Err(invalid(
                fake,
                format!("The service account token is invalid: {e}"),
            ));
        }
    };
    let Some((namespace, service_account)) = claims
        .sub
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty())
    else {
        return Err(invalid(
            fake,
            format!(
                "The token's subject {} is not a service account.",
                claims.sub
            ),
        ));
    };
    // The pod the kubelet bound the token to, when it did.
    let extra: Value =
        jsonwebtoken::dangerous::insecure_decode_claims(token).unwrap_or(Value::Null);
    let pod = &extra["kubernetes.io"]["pod"];
    Ok(Subject {
        namespace: namespace.to_string(),
        service_account: service_account.to_string(),
        pod_name: pod["name"].as_str().map(str::to_string),
        pod_uid: pod["uid"].as_str().map(str::to_string),
    })
}

fn invalid(fake: &EksCloud, message: String) -> Refusal {
    fake.state().invalid_tokens_refused += 1;
    Refusal::invalid_token(message)
}

/// The session tags EKS Pod Identity adds (and their `aws:RequestTag/` keys).
fn session_tags(cluster: &Cluster, subject: &Subject) -> Vec<(String, String)> {
    let mut tags = vec![
        ("eks-cluster-arn".to_string(), cluster.arn()),
        ("eks-cluster-name".to_string(), cluster.name.clone()),
        (
            "kubernetes-namespace".to_string(),
            subject.namespace.clone(),
        ),
        (
            "kubernetes-service-account".to_string(),
            subject.service_account.clone(),
        ),
    ];
    if let Some(name) = &subject.pod_name {
        tags.push(("kubernetes-pod-name".to_string(), name.clone()));
    }
    if let Some(uid) = &subject.pod_uid {
        tags.push(("kubernetes-pod-uid".to_string(), uid.clone()));
    }
    tags
}

/// `eks-<cluster>-<service account>`, in STS's session name alphabet
/// (`[\w+=,.@-]`) and length (64).
pub fn session_name(cluster: &str, service_account: &str) -> String {
    format!("eks-{cluster}-{service_account}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect()
}

/// `POST /clusters/{name}/assume-role-for-pod-identity`.
pub async fn assume_role_for_pod_identity(fake: &EksCloud, cluster: &str, body: &[u8]) -> Response {
    let token = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_string))
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            "token is required.",
        );
    };
    match exchange(fake, cluster, &token).await {
        Ok(x) => axum::Json(json!({
            "subject": {"namespace": x.namespace, "serviceAccount": x.service_account},
            "audience": SERVICE,
            "podIdentityAssociation": {
                "associationArn": x.association_arn,
                "associationId": x.association_id,
            },
            "assumedRoleUser": {
                "arn": x.assumed.arn,
                "assumeRoleId": x.assumed.assumed_role_id,
            },
            "credentials": {
                "sessionToken": x.assumed.credentials.session_token,
                "secretAccessKey": x.assumed.credentials.secret_access_key,
                "accessKeyId": x.assumed.credentials.access_key_id,
                "expiration": x.assumed.credentials.expiration,
            },
        }))
        .into_response(),
        Err(refusal) => refusal.eks_auth(),
    }
}

/// `GET /v1/credentials` with the pod's token as `Authorization`, answered
/// in the container credentials format the SDKs read.
pub async fn agent_credentials(
    fake: &EksCloud,
    cluster: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    let cluster = match cluster {
        Some(cluster) => Some(cluster.to_string()),
        None => fake.state().agent_cluster.clone(),
    };
    let Some(cluster) = cluster else {
        return agent_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            "The agent serves no cluster (start the fake with --cluster).",
        );
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_start_matches("Bearer ").trim())
        .unwrap_or_default();
    if token.is_empty() {
        return agent_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            "Service account token cannot be empty.",
        );
    }
    match exchange(fake, &cluster, token).await {
        Ok(x) => axum::Json(json!({
            "AccessKeyId": x.assumed.credentials.access_key_id,
            "SecretAccessKey": x.assumed.credentials.secret_access_key,
            "Token": x.assumed.credentials.session_token,
            "AccountId": x.account,
            "Expiration": crate::clock::rfc3339(x.assumed.credentials.expiration),
        }))
        .into_response(),
        Err(refusal) => refusal.agent(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_fit_sts_rules() {
        assert_eq!(session_name("wib-local", "app"), "eks-wib-local-app");
        let long = session_name("c", &"s".repeat(100));
        assert_eq!(long.len(), 64);
        assert_eq!(session_name("c", "a:b"), "eks-c-a-b");
    }
}
