//! Client-side rate limiting per cloud: token buckets in front of every API
//! call, one per class of call the cloud limits separately (ARM's reads and
//! writes per subscription and principal, managed-identity writes, GCP IAM's
//! reads and writes per project). Each starts at the cloud's documented
//! limit, halves at the first throttling answer and climbs back over
//! [`RECOVERY`], the way the AWS SDKs' adaptive retry mode does: a thousand
//! new bindings go as fast as the cloud allows, and a cloud that is busier
//! than its documentation (other clients on the same subscription) slows
//! wib down instead of failing bindings.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a class takes to climb from its floor back to its ceiling
/// after the last throttling answer.
pub const RECOVERY: Duration = Duration::from_secs(30);
/// Concurrent calls throttled together are one signal: a class is halved
/// at most once per this interval.
const ONE_SIGNAL: Duration = Duration::from_secs(1);
/// The share of a cloud's documented burst wib spends at once. The cloud's
/// bucket counts calls as they arrive, and the network bunches arrivals: a
/// client spending the whole burst finds the cloud's bucket empty at the
/// next bunch, and its sustained calls meet throttling.
const BURST_SHARE: f64 = 0.9;
/// The lowest a class is slowed to, as a share of its ceiling.
const FLOOR: f64 = 1.0 / 16.0;

/// One class of calls and its documented limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Class {
    pub name: &'static str,
    /// Sustained calls per second (the bucket's refill).
    pub per_second: f64,
    /// Calls the bucket holds at most.
    pub burst: f64,
}

/// The classes a cloud limits separately.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits(pub Vec<Class>);

pub const READ: &str = "read";
pub const WRITE: &str = "write";

impl Limits {
    /// Reads and writes at `reads`/`writes` per second, bursts of a second.
    pub fn reads_writes(reads: f64, writes: f64) -> Self {
        Self(vec![
            Class {
                name: READ,
                per_second: reads,
                burst: reads,
            },
            Class {
                name: WRITE,
                per_second: writes,
                burst: writes,
            },
        ])
    }

    /// Every class at `per_second` (tests, and a deliberate override).
    pub fn flat(per_second: f64) -> Self {
        Self::reads_writes(per_second, per_second)
    }

    /// `WIB_<CLOUD>_CALLS_PER_SECOND`, when set, replaces every class's
    /// sustained rate (a platform that shares the cloud's quota with other
    /// tools keeps wib below its share); the classes stay adaptive.
    pub fn from_env(self, cloud: &str) -> Self {
        let key = format!("WIB_{}_CALLS_PER_SECOND", cloud.to_ascii_uppercase());
        self.overridden(std::env::var(key).ok().and_then(|v| v.parse::<f64>().ok()))
    }

    pub fn overridden(self, rate: Option<f64>) -> Self {
        match rate {
            Some(rate) if rate > 0.0 => Self(
                self.0
                    .into_iter()
                    .map(|c| Class {
                        per_second: rate,
                        burst: c.burst.max(rate),
                        ..c
                    })
                    .collect(),
            ),
            _ => self,
        }
    }
}

/// The bucket's arithmetic, pure so it can be tested without a clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    /// Tokens added per second now.
    pub rate: f64,
    /// The documented rate, which `rate` climbs back to.
    pub ceiling: f64,
    /// Tokens the bucket holds at most (the burst).
    pub burst: f64,
    tokens: f64,
    at: Option<Instant>,
    slowed_at: Option<Instant>,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        let rate = rate.max(0.1);
        Self {
            rate,
            ceiling: rate,
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            at: None,
            slowed_at: None,
        }
    }

    fn advance(&mut self, now: Instant) {
        if let Some(at) = self.at {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
            let climb = self.ceiling * (1.0 - FLOOR) * elapsed / RECOVERY.as_secs_f64();
            self.rate = (self.rate + climb).min(self.ceiling);
        }
        self.at = Some(now);
    }

    /// Takes a token at `now`; returns how long the caller must wait first
    /// (zero when a token was there). Tokens taken ahead of time go negative,
    /// so waiting callers are served in order at `rate`.
    pub fn take(&mut self, now: Instant) -> Duration {
        self.advance(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    /// The cloud answered "slow down" (and maybe for how long): halve the
    /// rate (once per signal, never below the floor), spend what the burst
    /// had left, and keep the class quiet for the wait it named.
    pub fn throttled(&mut self, now: Instant, wait: Option<Duration>) {
        self.advance(now);
        let pause = wait.map_or(0.0, |w| w.as_secs_f64() * self.rate);
        if self
            .slowed_at
            .is_some_and(|at| now.saturating_duration_since(at) < ONE_SIGNAL)
        {
            self.tokens = self.tokens.min(-pause);
            return;
        }
        self.slowed_at = Some(now);
        self.rate = (self.rate / 2.0).max(self.ceiling * FLOOR);
        self.tokens = self.tokens.min(0.0) - pause;
    }

    /// When the class was last slowed down.
    pub fn slowed_at(&self) -> Option<Instant> {
        self.slowed_at
    }
}

/// A cloud's buckets, shared by its clients.
pub struct Limiter {
    classes: Vec<(&'static str, Mutex<Bucket>)>,
}

impl Limiter {
    pub fn new(limits: &Limits) -> Self {
        Self {
            classes: limits
                .0
                .iter()
                .map(|c| {
                    let bucket = Bucket::new(c.per_second, c.burst * BURST_SHARE);
                    (c.name, Mutex::new(bucket))
                })
                .collect(),
        }
    }

    fn buckets<'a>(
        &'a self,
        classes: &'a [&str],
    ) -> impl Iterator<Item = std::sync::MutexGuard<'a, Bucket>> + 'a {
        self.classes
            .iter()
            .filter(|(name, _)| classes.contains(name))
            .map(|(_, bucket)| bucket.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits for this call's turn in every class it belongs to.
    /// A caller that waited through a throttling answer queues again at
    /// the slower rate: its turn was given out at the old one.
    pub async fn acquire(&self, classes: &[&str]) {
        loop {
            let now = Instant::now();
            let wait = self
                .buckets(classes)
                .map(|mut b| b.take(now))
                .max()
                .unwrap_or_default();
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
            let slowed_meanwhile = self
                .buckets(classes)
                .any(|b| b.slowed_at().is_some_and(|at| at > now));
            if !slowed_meanwhile {
                return;
            }
        }
    }

    /// The cloud throttled a call of these classes, naming a wait or not.
    pub fn throttled(&self, classes: &[&str], wait: Option<Duration>) {
        let now = Instant::now();
        for mut bucket in self.buckets(classes) {
            bucket.throttled(now, wait);
        }
    }

    /// A class's current rate (for the operator's metrics and tests).
    pub fn rate(&self, class: &str) -> Option<f64> {
        self.buckets(&[class]).next().map(|b| b.rate)
    }
}

/// The class of a call by its operation name (see [`crate::calls::is_write`]).
pub fn read_or_write(operation: &str) -> &'static [&'static str] {
    if crate::calls::is_write(operation) {
        &[WRITE]
    } else {
        &[READ]
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

    #[test]
    fn throttling_halves_the_rate_once_per_signal_down_to_the_floor_and_it_climbs_back() {
        let start = Instant::now();
        let mut bucket = Bucket::new(16.0, 16.0);
        bucket.throttled(start, None);
        assert_eq!(bucket.rate, 8.0);
        // Ten calls in flight throttled together are one signal.
        for _ in 0..10 {
            bucket.throttled(start + Duration::from_millis(100), None);
        }
        assert!(
            (bucket.rate - 8.0).abs() < 0.1,
            "halved once: {}",
            bucket.rate
        );
        let mut at = start;
        for _ in 0..10 {
            at += ONE_SIGNAL;
            bucket.throttled(at, None);
        }
        assert_eq!(bucket.rate, 1.0, "the floor is a sixteenth");
        // The burst is spent: the next call waits.
        assert!(bucket.take(at) > Duration::ZERO);
        // Quiet for the recovery period: back at the documented rate.
        bucket.take(at + RECOVERY);
        assert_eq!(bucket.rate, 16.0);
    }

    #[test]
    fn a_wait_the_cloud_names_keeps_the_class_quiet_that_long() {
        let start = Instant::now();
        let mut bucket = Bucket::new(10.0, 10.0);
        bucket.throttled(start, Some(Duration::from_secs(2)));
        // Halved to 5 a second, and two seconds' worth of turns spent.
        assert!(bucket.take(start) >= Duration::from_secs(2));
    }

    #[test]
    fn a_call_waits_for_every_class_it_belongs_to() {
        let limiter = Limiter::new(&Limits(vec![
            Class {
                name: WRITE,
                per_second: 100.0,
                burst: 100.0,
            },
            Class {
                name: "identity-write",
                per_second: 1.0,
                burst: 1.0,
            },
        ]));
        let now = Instant::now();
        let both = ["write", "identity-write"];
        let waits: Vec<Duration> = (0..2)
            .map(|_| {
                limiter
                    .buckets(&both)
                    .map(|mut b| b.take(now))
                    .max()
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(waits, [Duration::ZERO, Duration::from_secs(1)]);
        limiter.throttled(&["identity-write"], None);
        assert_eq!(limiter.rate("identity-write"), Some(0.5));
        assert_eq!(limiter.rate(WRITE), Some(100.0));
    }

    #[test]
    fn an_override_replaces_every_rate_and_keeps_the_bursts() {
        let documented = Limits(vec![Class {
            name: READ,
            per_second: 25.0,
            burst: 250.0,
        }]);
        assert_eq!(documented.clone().overridden(None), documented);
        let raised = documented.clone().overridden(Some(1000.0));
        assert_eq!(
            (raised.0[0].per_second, raised.0[0].burst),
            (1000.0, 1000.0)
        );
        let lowered = documented.overridden(Some(5.0));
        assert_eq!((lowered.0[0].per_second, lowered.0[0].burst), (5.0, 250.0));
    }
}
