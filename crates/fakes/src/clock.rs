//! The fakes' notion of now: the system clock plus an offset an admin call
//! moves forward, so tests make access tokens and presented assertions
//! expire on demand instead of waiting an hour.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub struct Clock {
    offset_secs: AtomicU64,
}

impl Clock {
    /// Seconds since the Unix epoch, as the fake sees it.
    pub fn now(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        real + self.offset_secs.load(Ordering::Relaxed)
    }

    /// Moves the fake's time forward; it never goes back.
    pub fn advance(&self, secs: u64) -> u64 {
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
        self.now()
    }
}

/// An RFC 3339 UTC timestamp with whole seconds, as Google prints them
/// (google-auth refuses fractional ones in `expireTime`).
pub fn rfc3339(unix: u64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    i64::try_from(unix)
        .ok()
        .and_then(|u| time::OffsetDateTime::from_unix_timestamp(u).ok())
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_now_forward() {
        let clock = Clock::default();
        let before = clock.now();
        let after = clock.advance(7200);
        assert!(after >= before + 7200);
    }

    #[test]
    fn timestamps_have_whole_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_824_000), "2026-11-28T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 86_399), "2000-02-29T23:59:59Z");
    }
}
