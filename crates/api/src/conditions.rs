//! The condition types and the fixed CamelCase reason vocabulary wib reports,
//! and the pure helper that carries `lastTransitionTime` across reconciles.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Summary: the binding (or provider) is fully in its desired state.
pub const READY: &str = "Ready";
/// kstatus: wib is working towards the desired state.
pub const RECONCILING: &str = "Reconciling";
/// kstatus: wib cannot make progress without a change to the spec or the environment.
pub const STALLED: &str = "Stalled";
pub const IDENTITY_READY: &str = "IdentityReady";
pub const FEDERATION_READY: &str = "FederationReady";
pub const ROLE_ASSIGNMENTS_READY: &str = "RoleAssignmentsReady";
pub const SERVICE_ACCOUNT_READY: &str = "ServiceAccountReady";
/// With the provider's `verifyExchange`: a token of the bound ServiceAccount
/// was exchanged with the cloud, as a pod's would be.
pub const EXCHANGE_VERIFIED: &str = "ExchangeVerified";
/// Binding: every pod of the ServiceAccount that wib's webhook admitted
/// carries the current identity (set only where the webhook runs).
pub const PODS_READY: &str = "PodsReady";
/// Binding: the ConfigMap `spec.outputs.configMap` names holds the
/// identity's facts (set only when outputs are asked for).
pub const OUTPUTS_READY: &str = "OutputsReady";
/// Provider: the issuer's discovery document and JWKS are readable anonymously.
pub const ISSUER_READY: &str = "IssuerReady";
/// Provider: wib's own credentials work for every cloud the provider configures.
pub const CLOUD_CREDENTIALS_READY: &str = "CloudCredentialsReady";

/// Every reason wib puts on a condition. The README documents each one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Everything this condition covers is in place.
    Provisioned,
    /// A reconcile is under way.
    Progressing,
    /// The ServiceAccount carries wib's fields.
    Applied,
    /// No condition fails.
    AsExpected,
    /// The binding's cloud has no provider implementation in this build.
    CloudNotImplemented,
    /// The provider does not configure the binding's cloud.
    CloudNotConfigured,
    /// wib's client for the binding's cloud did not start (its own
    /// configuration or credentials); the operator log and the message say why.
    CloudUnavailable,
    /// `providerRef` names no ClusterIdentityProvider, or none is the default.
    ProviderNotFound,
    /// More than one ClusterIdentityProvider is annotated default.
    ProviderAmbiguous,
    /// The binding's namespace is outside the provider's `namespaceSelector`.
    NamespaceNotAllowed,
    /// Another binding already claims this ServiceAccount for this cloud.
    ServiceAccountConflict,
    /// `create: false` and the ServiceAccount does not exist.
    ServiceAccountNotFound,
    /// The API server refused wib's write to the ServiceAccount (an admission
    /// policy or webhook, a quota); its message says why.
    ServiceAccountRefused,
    /// A cloud identity of the wanted name exists and `adoption` forbids taking it over.
    AdoptionNotAllowed,
    /// The identity is wib's own or in the provider's `protectedIdentities`.
    IdentityProtected,
    /// The identity belongs to another namespace, which has not shared it
    /// with this one.
    IdentityNotShared,
    /// A federation entry of wib's name on the identity names another
    /// subject: wib never overwrites it.
    FederationConflict,
    /// The identity is new and the cloud has not replicated its principal yet.
    WaitingForPrincipalReplication,
    /// Azure allows 20 federated credentials per identity.
    FederatedCredentialLimit,
    /// The AWS trust policy would exceed its size quota.
    TrustPolicyTooLarge,
    /// A requested role does not exist (Azure role definition, AWS managed
    /// policy, GCP role).
    RoleNotFound,
    /// A requested role is not in the provider's `allowedRoles` (or is
    /// denied by default), or a Key Vault permission needs the provider's
    /// `azure.allowedSensitiveKeyVaultPermissions`.
    RoleNotAllowed,
    /// A requested AWS policy is not allowed by the provider.
    PolicyNotAllowed,
    /// A requested scope is outside the provider's `allowedScopes`, or the
    /// identity's subscription, resource group or location is not one the
    /// provider allows.
    ScopeNotAllowed,
    /// The AWS audience is not `sts.amazonaws.com` nor in the provider's
    /// `aws.allowedAudiences`.
    AudienceNotAllowed,
    /// A policy document in the spec is not one: not JSON, nested past
    /// any policy's depth, or without a `Statement`.
    InvalidPolicyDocument,
    /// A cloud quota (attachments per role, inline policy size ...) would be exceeded.
    QuotaExceeded,
    /// wib's own cloud credentials were refused.
    CloudAuthorizationFailed,
    /// wib's own token was refused or could not be had (an expired access
    /// token or assertion, a token endpoint that failed): retried with a
    /// fresh one, and the token file read again, with backoff.
    CloudAuthenticationFailed,
    /// The cloud throttled wib; it retries after the time the cloud asked for.
    Throttled,
    /// The cloud or the API server failed transiently; wib retries with backoff.
    TransientError,
    /// The issuer's discovery document or JWKS cannot be read.
    IssuerUnreachable,
    /// Deletion waits for a cloud that cannot be reached.
    DeletionBlocked,
    /// A provider's deletion waits for the bindings that still use it.
    ProviderInUse,
    /// Every pod of the ServiceAccount admitted by the webhook carries the
    /// current identity.
    PodsCurrent,
    /// Pods of the ServiceAccount run without the current identity (created
    /// before it was Ready or before it changed) and need a restart.
    PodsNeedRestart,
    /// `spec.outputs.configMap` names a ConfigMap this binding did not make:
    /// wib does not write it.
    OutputConflict,
    /// The cloud side is written but does not accept the ServiceAccount's
    /// token yet (replication, eventual consistency): retried.
    WaitingForPropagation,
    /// The cloud's token exchange was verified (`ExchangeVerified`).
    ExchangeWorks,
    /// A vault in `azure.keyVaultAccessPolicies` does not exist, or
    /// authorizes with Azure RBAC, where access policies have no effect.
    KeyVaultNotUsable,
    /// Another EKS pod identity association (not this binding's) exists for
    /// the ServiceAccount: EKS allows one, and wib never overwrites it.
    AssociationConflict,
    /// The spec combines fields only its resolved settings show to clash
    /// (a field of IRSA in mode PodIdentity, the provider's default).
    InvalidSpec,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Provisioned => "Provisioned",
            Reason::PodsCurrent => "PodsCurrent",
            Reason::PodsNeedRestart => "PodsNeedRestart",
            Reason::OutputConflict => "OutputConflict",
            Reason::KeyVaultNotUsable => "KeyVaultNotUsable",
            Reason::AssociationConflict => "AssociationConflict",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::WaitingForPropagation => "WaitingForPropagation",
            Reason::ExchangeWorks => "ExchangeWorks",
            Reason::Progressing => "Progressing",
            Reason::Applied => "Applied",
            Reason::AsExpected => "AsExpected",
            Reason::CloudNotImplemented => "CloudNotImplemented",
            Reason::CloudNotConfigured => "CloudNotConfigured",
            Reason::CloudUnavailable => "CloudUnavailable",
            Reason::ProviderNotFound => "ProviderNotFound",
            Reason::ProviderAmbiguous => "ProviderAmbiguous",
            Reason::NamespaceNotAllowed => "NamespaceNotAllowed",
            Reason::ServiceAccountConflict => "ServiceAccountConflict",
            Reason::ServiceAccountNotFound => "ServiceAccountNotFound",
            Reason::ServiceAccountRefused => "ServiceAccountRefused",
            Reason::AdoptionNotAllowed => "AdoptionNotAllowed",
            Reason::IdentityProtected => "IdentityProtected",
            Reason::IdentityNotShared => "IdentityNotShared",
            Reason::FederationConflict => "FederationConflict",
            Reason::WaitingForPrincipalReplication => "WaitingForPrincipalReplication",
            Reason::FederatedCredentialLimit => "FederatedCredentialLimit",
            Reason::TrustPolicyTooLarge => "TrustPolicyTooLarge",
            Reason::RoleNotFound => "RoleNotFound",
            Reason::RoleNotAllowed => "RoleNotAllowed",
            Reason::PolicyNotAllowed => "PolicyNotAllowed",
            Reason::ScopeNotAllowed => "ScopeNotAllowed",
            Reason::AudienceNotAllowed => "AudienceNotAllowed",
            Reason::InvalidPolicyDocument => "InvalidPolicyDocument",
            Reason::QuotaExceeded => "QuotaExceeded",
            Reason::CloudAuthorizationFailed => "CloudAuthorizationFailed",
            Reason::CloudAuthenticationFailed => "CloudAuthenticationFailed",
            Reason::Throttled => "Throttled",
            Reason::TransientError => "TransientError",
            Reason::IssuerUnreachable => "IssuerUnreachable",
            Reason::DeletionBlocked => "DeletionBlocked",
            Reason::ProviderInUse => "ProviderInUse",
        }
    }

    /// Whether only a change to the spec or the environment can clear this
    /// reason (kstatus `Stalled`), as opposed to a retry.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Reason::CloudNotImplemented
                | Reason::CloudNotConfigured
                | Reason::CloudUnavailable
                | Reason::ProviderNotFound
                | Reason::ProviderAmbiguous
                | Reason::NamespaceNotAllowed
                | Reason::ServiceAccountConflict
                | Reason::ServiceAccountNotFound
                | Reason::AdoptionNotAllowed
                | Reason::IdentityProtected
                | Reason::IdentityNotShared
                | Reason::FederationConflict
                | Reason::FederatedCredentialLimit
                | Reason::TrustPolicyTooLarge
                | Reason::RoleNotFound
                | Reason::RoleNotAllowed
                | Reason::KeyVaultNotUsable
                | Reason::AssociationConflict
                | Reason::InvalidSpec
                | Reason::PolicyNotAllowed
                | Reason::ScopeNotAllowed
                | Reason::AudienceNotAllowed
                | Reason::InvalidPolicyDocument
                | Reason::QuotaExceeded
                | Reason::CloudAuthorizationFailed
        )
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition as computed by a reconcile, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Ready, Reconciling and Stalled all saying `reason` (Reconciling true:
/// wib keeps at it), with every step condition of `previous` kept as it
/// was: for an object whose steps are not run now (a deletion waiting).
pub fn waiting(
    previous: &[Condition],
    reason: Reason,
    message: &str,
    generation: Option<i64>,
    now: Time,
) -> Vec<Condition> {
    let summary = [
        Desired::new(READY, false, reason, message),
        Desired::new(RECONCILING, true, reason, message),
        Desired::new(STALLED, false, reason, ""),
    ];
    let mut conditions = merge(previous, &summary, generation, now);
    conditions.extend(
        previous
            .iter()
            .filter(|c| ![READY, RECONCILING, STALLED].contains(&c.type_.as_str()))
            .cloned(),
    );
    conditions
}

/// Builds the condition list to write: each desired condition keeps the
/// previous `lastTransitionTime` unless its status changed, so a reconcile
/// that changes nothing produces an identical list. Conditions wib no longer
/// reports are dropped.
pub fn merge(
    previous: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: Time,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" };
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == d.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: d.type_.to_string(),
                status: status.to_string(),
                reason: d.reason.as_str().to_string(),
                message: d.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Conditions whose status or reason differ between two lists:
/// each is a transition worth an Event.
pub fn transitions<'a>(previous: &[Condition], next: &'a [Condition]) -> Vec<&'a Condition> {
    next.iter()
        .filter(|n| {
            !previous
                .iter()
                .any(|p| p.type_ == n.type_ && p.status == n.status && p.reason == n.reason)
        })
        .collect()
}

/// A status that carries standard conditions.
pub trait WithConditions {
    fn conditions(&self) -> &[Condition];
}

impl WithConditions for crate::WorkloadIdentityBindingStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

impl WithConditions for crate::ClusterIdentityProviderStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("valid timestamp"))
    }

    fn ready(status: bool, reason: Reason) -> Desired {
        Desired::new(READY, status, reason, "m")
    }

    #[test]
    fn merge_keeps_transition_time_when_status_is_unchanged() {
        let first = merge(&[], &[ready(false, Reason::Progressing)], Some(1), at(10));
        let cases = [
            // (next desired, expected transition time)
            (ready(false, Reason::CloudNotImplemented), 10),
            (ready(true, Reason::Provisioned), 20),
        ];
        for (desired, want) in cases {
            let next = merge(&first, &[desired], Some(2), at(20));
            assert_eq!(next[0].last_transition_time, at(want), "{next:?}");
            assert_eq!(next[0].observed_generation, Some(2));
        }
    }

    #[test]
    fn merge_of_the_same_desired_state_is_identical() {
        let desired = [
            ready(true, Reason::Provisioned),
            Desired::new(STALLED, false, Reason::AsExpected, ""),
        ];
        let first = merge(&[], &desired, Some(3), at(1));
        let again = merge(&first, &desired, Some(3), at(99));
        assert_eq!(first, again);
    }

    #[test]
    fn transitions_report_status_and_reason_changes_only() {
        let before = merge(&[], &[ready(false, Reason::Progressing)], Some(1), at(1));
        let same_reason_new_message = merge(
            &before,
            &[Desired::new(READY, false, Reason::Progressing, "x")],
            Some(1),
            at(2),
        );
        assert!(transitions(&before, &same_reason_new_message).is_empty());
        let new_reason = merge(
            &before,
            &[ready(false, Reason::ProviderNotFound)],
            Some(1),
            at(2),
        );
        assert_eq!(transitions(&before, &new_reason).len(), 1);
        let flipped = merge(&before, &[ready(true, Reason::Provisioned)], Some(1), at(2));
        assert_eq!(transitions(&before, &flipped)[0].status, "True");
    }

    #[test]
    fn terminal_reasons_are_the_ones_needing_a_human() {
        assert!(Reason::RoleNotAllowed.is_terminal());
        assert!(!Reason::Throttled.is_terminal());
        assert!(!Reason::WaitingForPrincipalReplication.is_terminal());
        assert!(!Reason::DeletionBlocked.is_terminal());
    }
}
