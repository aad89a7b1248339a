//! Reads of objects a whole fleet shares (the IAM OIDC provider every
//! binding's trust policy names, a GCP project's policy), kept for a while:
//! a steady-state resync of 10,000 bindings reads such an object a handful
//! of times instead of 10,000. Used only to confirm a steady state; a
//! reconcile that writes reads live (see [`crate::steps::Observe::recall`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Recent<V> {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> Recent<V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What was read of `key` less than the TTL ago.
    pub fn get(&self, key: &str) -> Option<V> {
        self.get_at(key, Instant::now())
    }

    fn get_at(&self, key: &str, now: Instant) -> Option<V> {
        let mut entries = self.entries();
        match entries.get(key) {
            Some((at, value)) if now.saturating_duration_since(*at) < self.ttl => {
                Some(value.clone())
            }
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, key: &str, value: V) {
        self.entries()
            .insert(key.to_string(), (Instant::now(), value));
    }

    pub fn forget(&self, key: &str) {
        self.entries().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_served_until_it_expires_or_is_forgotten() {
        let recent = Recent::new(Duration::from_secs(60));
        recent.put("arn", 1);
        assert_eq!(recent.get("arn"), Some(1));
        assert_eq!(
            recent.get_at("arn", Instant::now() + Duration::from_secs(61)),
            None
        );
        assert_eq!(recent.get("arn"), None, "an expired entry is dropped");
        recent.put("arn", 2);
        recent.forget("arn");
        assert_eq!(recent.get("arn"), None);
    }
}
