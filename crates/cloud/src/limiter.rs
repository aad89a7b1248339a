//! Client-side rate limiting per cloud: a token bucket in front of every API
//! call, so a thousand new bindings queue inside wib instead of tripping the
//! cloud's throttling (IAM `Throttling: Rate exceeded`, GCP's ~600 IAM writes
//! a minute, ARM's identity write limits).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The bucket's arithmetic, pure so it can be tested without a clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    /// Tokens added per second.
    pub rate: f64,
    /// Tokens the bucket holds at most (the burst).
    pub burst: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            at: None,
        }
    }

    /// Takes a token at `now`; returns how long the caller must wait first
    /// (zero when a token was there). Tokens taken ahead of time go negative,
    /// so waiting callers are served in order at `rate`.
    pub fn take(&mut self, now: Instant) -> Duration {
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.burst);
        }
        self.at = Some(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// A shared bucket for one cloud's calls.
pub struct Limiter {
    bucket: Mutex<Bucket>,
}

/// `WIB_<CLOUD>_CALLS_PER_SECOND`, else `default`.
pub fn rate_from_env(cloud: &str, default: f64) -> f64 {
    std::env::var(format!(
        "WIB_{}_CALLS_PER_SECOND",
        cloud.to_ascii_uppercase()
    ))
    .ok()
    .and_then(|v| v.parse::<f64>().ok())
    .filter(|r| *r > 0.0)
    .unwrap_or(default)
}

impl Limiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            bucket: Mutex::new(Bucket::new(rate.max(0.1), burst.max(1.0))),
        }
    }

    /// `rate` calls a second, burst twice that.
    pub fn at(rate: f64) -> Self {
        Self::new(rate, rate * 2.0)
    }

    /// Waits for this call's turn.
    pub async fn acquire(&self) {
        let wait = self
            .bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_calls_are_spaced_at_the_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(10.0, 3.0);
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Duration::ZERO);
        }
        // The next callers queue 100 ms apart.
        let waits: Vec<u128> = (0..3).map(|_| bucket.take(start).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 300]);
        // After a quiet second the bucket is full again, never above the burst.
        let later = start + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(bucket.take(later), Duration::ZERO);
        }
        assert!(bucket.take(later) > Duration::ZERO);
    }
}
