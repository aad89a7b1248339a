//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's
//! leaderelection does: only the holder reconciles; a holder that cannot
//! renew within the renew deadline stops, and another replica takes over
//! once the lease has expired.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

/// Timing of the election (client-go's defaults are 15 s / 10 s / 2 s).
#[derive(Clone, Debug)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
}

/// What one look at the lease decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write the lease with us as holder (`transition`: the holder changes).
    Take { transition: bool },
    /// Someone else holds a live lease.
    Wait,
}

/// Pure: may `identity` take or renew `lease` at `now`?
pub fn decide(lease: &LeaseSpec, identity: &str, now: Timestamp) -> Decision {
    let holder = lease.holder_identity.as_deref().unwrap_or_default();
    if holder == identity {
        return Decision::Take { transition: false };
    }
    let duration = i64::from(lease.lease_duration_seconds.unwrap_or(0));
    let renewed = lease.renew_time.as_ref().map(|t| t.0);
    let expired = match renewed {
        Some(t) => t.as_second() + duration < now.as_second(),
        None => true,
    };
    if holder.is_empty() || expired {
        Decision::Take { transition: true }
    } else {
        Decision::Wait
    }
}

impl LeaderElection {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_take().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                    return;
                }
                Ok(false) => {}
                Err(error) => tracing::debug!(%error, "lease not taken"),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews the lease until it cannot for `renew_deadline`; returns then.
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            match self.try_take().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.name, "another replica took the lease");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "renewing the lease failed");
                    if last_renewal.elapsed() > self.timing.renew_deadline {
                        tracing::error!(lease = %self.name, "could not renew the lease within the renew deadline");
                        return;
                    }
                }
            }
        }
    }

    /// Gives the lease up on graceful shutdown so another replica need not
    /// wait for it to expire.
    pub async fn release(&self) {
        if let Ok(mut lease) = self.api.get(&self.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            if self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
                .is_ok()
            {
                tracing::info!(lease = %self.name, "released leadership");
            }
        }
    }

    /// One attempt to create, take over or renew the lease. Optimistic
    /// concurrency (resourceVersion) makes two replicas' attempts exclusive.
    async fn try_take(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(15);
        match self.api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                match decide(spec, &self.identity, now) {
                    Decision::Wait => Ok(false),
                    Decision::Take { transition } => {
                        if transition {
                            spec.acquire_time = Some(MicroTime(now));
                            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                        }
                        spec.holder_identity = Some(self.identity.clone());
                        spec.lease_duration_seconds = Some(seconds);
                        spec.renew_time = Some(MicroTime(now));
                        match self
                            .api
                            .replace(&self.name, &PostParams::default(), &lease)
                            .await
                        {
                            Ok(_) => Ok(true),
                            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                            Err(e) => Err(e),
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: Option<i64>, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            renew_time: renewed.map(|s| MicroTime(Timestamp::from_second(s).expect("time"))),
            lease_duration_seconds: Some(duration),
            ..Default::default()
        }
    }

    #[test]
    fn decide_cases() {
        let now = Timestamp::from_second(1_000).expect("time");
        let cases = [
            (
                "our own lease is renewed",
                lease(Some("me"), Some(999), 15),
                Decision::Take { transition: false },
            ),
            (
                "a live lease of another is respected",
                lease(Some("other"), Some(990), 15),
                Decision::Wait,
            ),
            (
                "an expired lease is taken over",
                lease(Some("other"), Some(900), 15),
                Decision::Take { transition: true },
            ),
            (
                "a released lease is taken",
                lease(None, Some(999), 1),
                Decision::Take { transition: true },
            ),
            (
                "a lease never renewed is taken",
                lease(Some("other"), None, 15),
                Decision::Take { transition: true },
            ),
        ];
        for (name, spec, want) in cases {
            assert_eq!(decide(&spec, "me", now), want, "{name}");
        }
    }
}
