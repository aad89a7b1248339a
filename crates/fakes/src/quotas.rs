//! The clouds' documented rate limits, enforced when a test or the
//! benchmark asks for them: token buckets (the algorithm ARM documents;
//! GCP's per-minute quotas behave alike at this scale) per class of call,
//! answering 429 with a Retry-After when empty.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One limit: sustained calls per second and the bucket's size.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    pub per_second: f64,
    pub burst: f64,
}

/// What `POST /admin/quotas` sets; a class left out is not limited.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Quotas {
    #[serde(default)]
    pub reads: Option<Quota>,
    #[serde(default)]
    pub writes: Option<Quota>,
}

impl Quotas {
    /// Reads and writes, each as (per second, burst).
    pub fn of(reads: (f64, f64), writes: (f64, f64)) -> Self {
        let quota = |(per_second, burst)| Some(Quota { per_second, burst });
        Self {
            reads: quota(reads),
            writes: quota(writes),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Bucket {
    quota: Quota,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(quota: Quota, now: Instant) -> Self {
        Self {
            quota,
            tokens: quota.burst,
            at: now,
        }
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.quota.per_second).min(self.quota.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64(
            (1.0 - self.tokens) / self.quota.per_second.max(0.001),
        ))
    }
}

/// The buckets of one fake.
#[derive(Debug, Default)]
pub struct Limits {
    reads: Option<Bucket>,
    writes: Option<Bucket>,
    /// Calls answered 429 by a quota (not by an injected fault).
    pub throttled: u64,
}

impl Limits {
    pub fn set(&mut self, quotas: Quotas) {
        let now = Instant::now();
        self.reads = quotas.reads.map(|q| Bucket::new(q, now));
        self.writes = quotas.writes.map(|q| Bucket::new(q, now));
    }

    /// `Some(seconds to wait)` when the call's class is out of tokens.
    pub fn exceeded(&mut self, write: bool) -> Option<u64> {
        let bucket = if write {
            &mut self.writes
        } else {
            &mut self.reads
        };
        let wait = bucket.as_mut()?.take(Instant::now()).err()?;
        self.throttled += 1;
        Some(wait.as_secs_f64().ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_serves_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(
            Quota {
                per_second: 2.0,
                burst: 2.0,
            },
            start,
        );
        assert!(bucket.take(start).is_ok());
        assert!(bucket.take(start).is_ok());
        assert_eq!(bucket.take(start), Err(Duration::from_millis(500)));
        assert!(bucket.take(start + Duration::from_millis(500)).is_ok());
    }
}
