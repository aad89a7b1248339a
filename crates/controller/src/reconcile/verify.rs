//! Ready that means the exchange works (the provider's `verifyExchange`):
//! once the cloud side is written and the ServiceAccount annotated, wib
//! asks the API server for a short-lived token of that ServiceAccount and
//! exchanges it with the cloud as a pod would, until the cloud accepts it.
//! The token lives in this function's memory only: it is never logged,
//! stored, put in an Event or in the status.
//!
//! Tenant reach: the token is of the binding's own ServiceAccount, in its
//! own namespace, for the cloud's audience, valid ten minutes; wib mints
//! none for anything a binding names outside its namespace, and a tenant
//! cannot turn verification on (it is the provider's, cluster-scoped).

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use wib_api::WorkloadIdentityBinding;
use wib_api::conditions::{self, EXCHANGE_VERIFIED, Reason};

use super::plan::Admitted;
use super::status::{CloudStep, ServiceAccountStep};
use crate::context::Context;
use wib_cloud::Lookup;

/// The shortest lifetime the API server grants a requested token.
const TOKEN_SECONDS: i64 = 600;

/// How often, at least, a binding waiting for propagation tries again:
/// propagation ends within minutes, and the error backoff (up to five
/// minutes) would leave it not Ready long after the cloud accepts it. One
/// token and one exchange per waiting binding per poll.
pub const POLL: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether `status` waits for the cloud to accept the exchange.
pub fn waiting(status: &wib_api::WorkloadIdentityBindingStatus) -> bool {
    conditions::find(&status.conditions, EXCHANGE_VERIFIED)
        .is_some_and(|c| c.status == "False" && c.reason == Reason::WaitingForPropagation.as_str())
}

/// What verification found.
#[derive(Clone, Debug, PartialEq)]
pub enum ExchangeStep {
    /// The provider does not ask for it, or there is nothing to verify yet
    /// (the cloud or ServiceAccount step did not finish, GKE's own pool).
    NotAsked,
    Verified,
    /// Not verified: `WaitingForPropagation` while the cloud does not
    /// accept the token yet (why, and for how long), or why the token could
    /// not be had or the exchange not tried.
    Failed {
        reason: Reason,
        message: String,
    },
}

pub async fn step(
    binding: &WorkloadIdentityBinding,
    admitted: &Admitted,
    cloud_step: &CloudStep,
    service_account: &ServiceAccountStep,
    ctx: &Context,
) -> ExchangeStep {
    let provider = &admitted.provider;
    let (CloudStep::Done(outcome), ServiceAccountStep::Ready) = (cloud_step, service_account)
    else {
        return ExchangeStep::NotAsked;
    };
    if !provider.spec.verify_exchange {
        return ExchangeStep::NotAsked;
    }
    let Lookup::Ready(cloud) = ctx.clouds.lookup(admitted.cloud) else {
        return ExchangeStep::NotAsked;
    };
    let Some(issuer) = provider.status.as_ref().and_then(|s| s.issuer.clone()) else {
        return ExchangeStep::NotAsked;
    };
    let request = wib_cloud::Request::new(binding, provider, &issuer);
    let Some(audience) = cloud.exchange_audience(&request, outcome) else {
        return ExchangeStep::NotAsked;
    };
    if still_verified(binding, outcome) {
        return ExchangeStep::Verified;
    }
    let token = match token(binding, &audience, ctx).await {
        Ok(token) => token,
        Err(e) => {
            return ExchangeStep::Failed {
                reason: Reason::TransientError,
                message: format!(
                    "requesting a token of ServiceAccount {:?} to verify the exchange: {e} (the chart's verifyExchange.enabled lets wib create ServiceAccount tokens)",
                    binding.service_account_name()
                ),
            };
        }
    };
    let endpoints = ctx.settings.webhook.exchange_endpoints();
    let verified = cloud
        .verify_exchange(&request, outcome, &token, &endpoints)
        .await;
    drop(token);
    tracing::debug!(result = ?verified.as_ref().map_err(|e| &e.message), "verified the token exchange");
    match verified {
        Ok(()) => ExchangeStep::Verified,
        Err(e) if e.reason == Reason::WaitingForPropagation => {
            let waited = waited(binding, (ctx.clock)());
            ExchangeStep::Failed {
                reason: e.reason,
                message: format!(
                    "the cloud side is in place but does not accept ServiceAccount {:?}'s token yet (waiting {waited} s; retried): {}",
                    binding.service_account_name(),
                    e.message
                ),
            }
        }
        Err(e) => ExchangeStep::Failed {
            reason: e.reason,
            message: e.message,
        },
    }
}

/// Verified before, for this generation and identity, and nothing was
/// written since: a steady state mints no token.
fn still_verified(binding: &WorkloadIdentityBinding, outcome: &wib_cloud::Outcome) -> bool {
    let Some(previous) = binding.status.as_ref() else {
        return false;
    };
    let verified = conditions::find(&previous.conditions, EXCHANGE_VERIFIED).is_some_and(|c| {
        c.status == "True" && c.observed_generation == binding.metadata.generation
    });
    verified && outcome.writes.is_empty() && previous.identity == outcome.status.identity
}

/// Seconds since verification started waiting (0 the first time).
fn waited(binding: &WorkloadIdentityBinding, now: Time) -> i64 {
    binding
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, EXCHANGE_VERIFIED))
        .filter(|c| c.status == "False" && c.reason == Reason::WaitingForPropagation.as_str())
        .map(|c| (now.0.as_second() - c.last_transition_time.0.as_second()).max(0))
        .unwrap_or(0)
}

/// A token of the binding's ServiceAccount for `audience`, as the kubelet
/// would project it into a pod.
async fn token(
    binding: &WorkloadIdentityBinding,
    audience: &str,
    ctx: &Context,
) -> Result<String, kube::Error> {
    let api: Api<ServiceAccount> =
        Api::namespaced(ctx.client.clone(), &binding.namespace().unwrap_or_default());
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![audience.to_string()]),
            expiration_seconds: Some(TOKEN_SECONDS),
            ..Default::default()
        }),
        ..Default::default()
    };
    let issued = api
        .create_token_request(
            &binding.service_account_name(),
            &PostParams::default(),
            &request,
        )
        .await?;
    Ok(issued.status.and_then(|s| s.token).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use k8s_openapi::jiff::Timestamp;

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).expect("time"))
    }

    /// A binding at generation 2 for `identity`, whose ExchangeVerified
    /// condition says `status` with `reason` since second 100.
    fn binding(
        identity: &str,
        status: &str,
        reason: &str,
        generation: i64,
    ) -> WorkloadIdentityBinding {
        let mut b: WorkloadIdentityBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "wib.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
            "metadata": {"name": "b", "namespace": "ns", "generation": 2},
            "spec": {"serviceAccount": {"name": "sa"}, "azure": {}},
        }))
        .expect("binding");
        b.status = Some(wib_api::WorkloadIdentityBindingStatus {
            identity: Some(identity.into()),
            conditions: vec![Condition {
                type_: EXCHANGE_VERIFIED.into(),
                status: status.into(),
                reason: reason.into(),
                message: String::new(),
                observed_generation: Some(generation),
                last_transition_time: at(100),
            }],
            ..Default::default()
        });
        b
    }

    fn outcome(identity: &str, writes: &[&str]) -> wib_cloud::Outcome {
        let mut o = wib_cloud::Outcome::default();
        o.status.identity = Some(identity.into());
        o.writes = writes.iter().map(|w| w.to_string()).collect();
        o
    }

    #[test]
    fn a_steady_state_mints_no_token_and_any_change_verifies_again() {
        let verified = binding("cid", "True", "ExchangeWorks", 2);
        assert!(still_verified(&verified, &outcome("cid", &[])));
        assert!(!still_verified(
            &verified,
            &outcome("cid", &["created federated credential x"])
        ));
        assert!(!still_verified(&verified, &outcome("another", &[])));
        let older = binding("cid", "True", "ExchangeWorks", 1);
        assert!(!still_verified(&older, &outcome("cid", &[])));
        let waiting = binding("cid", "False", "WaitingForPropagation", 2);
        assert!(!still_verified(&waiting, &outcome("cid", &[])));
    }

    #[test]
    fn only_a_binding_waiting_for_propagation_polls() {
        let status = |b: WorkloadIdentityBinding| b.status.expect("status");
        assert!(waiting(&status(binding(
            "cid",
            "False",
            "WaitingForPropagation",
            2
        ))));
        assert!(!waiting(&status(binding(
            "cid",
            "False",
            "TransientError",
            2
        ))));
        assert!(!waiting(&status(binding(
            "cid",
            "True",
            "ExchangeWorks",
            2
        ))));
    }

    #[test]
    fn the_wait_is_counted_from_when_waiting_began() {
        let waiting = binding("cid", "False", "WaitingForPropagation", 2);
        assert_eq!(waited(&waiting, at(112)), 12);
        let verified = binding("cid", "True", "ExchangeWorks", 2);
        assert_eq!(waited(&verified, at(112)), 0);
    }
}
