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

    /// What was read of `key` less than the TTL ago, else `read`'s answer,
    /// kept.
    pub async fn get_or_read(
        &self,
        key: &str,
        read: impl std::future::Future<Output = Result<V, crate::CloudError>>,
    ) -> Result<V, crate::CloudError> {
        if let Some(known) = self.get(key) {
            return Ok(known);
        }
        let value = read.await?;
        self.put(key, value.clone());
        Ok(value)
    }

    pub fn forget(&self, key: &str) {
        self.entries().remove(key);
    }
}

/// A fleet listing per key (a resource group, a project, the account),
/// read again when older than the TTL. One read at a time per kind:
/// callers meanwhile wait for it rather than read the cloud themselves, so
/// a thousand bindings re-verified together after a restart make one.
pub struct Listings<T> {
    ttl: Duration,
    by_key: tokio::sync::Mutex<HashMap<String, (Instant, std::sync::Arc<T>)>>,
}

impl<T> Listings<T> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            by_key: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The listing of `key` (case-insensitive), `read` when stale.
    pub async fn get(
        &self,
        key: &str,
        read: impl std::future::Future<Output = Result<T, crate::CloudError>>,
    ) -> Result<std::sync::Arc<T>, crate::CloudError> {
        let key = key.to_ascii_lowercase();
        let mut by_key = self.by_key.lock().await;
        if let Some((taken, listing)) = by_key.get(&key)
            && taken.elapsed() < self.ttl
        {
            return Ok(listing.clone());
        }
        let taken = Instant::now();
        let listing = std::sync::Arc::new(read.await?);
        by_key.insert(key, (taken, listing.clone()));
        Ok(listing)
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

    #[tokio::test]
    async fn a_listing_is_read_once_per_ttl_per_key() {
        let listings = Listings::new(Duration::from_secs(60));
        let reads = std::sync::atomic::AtomicU32::new(0);
        let read = || async {
            reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(7)
        };
        assert_eq!(*listings.get("RG", read()).await.expect("read"), 7);
        assert_eq!(*listings.get("rg", read()).await.expect("kept"), 7);
        listings.get("other", read()).await.expect("read");
        assert_eq!(reads.load(std::sync::atomic::Ordering::Relaxed), 2);
        let expired = Listings::new(Duration::ZERO);
        expired.get("rg", read()).await.expect("read");
        expired.get("rg", read()).await.expect("read again");
        assert_eq!(reads.load(std::sync::atomic::Ordering::Relaxed), 4);
    }
}
