//! A bounded cache of verified tokens, so the signature check runs once per token per
//! process. Keyed by SHA-256 of the compact token; a hit re-checks `exp` against the
//! clock; the verifier flushes it whenever its keys change.

use crate::VerifiedClaims;
use aws_lc_rs::digest;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

/// Default number of verified tokens remembered.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

type Key = [u8; 32];

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Arc<VerifiedClaims>>,
    /// Insertion order, for first-in-first-out eviction when full.
    order: VecDeque<Key>,
}

#[derive(Debug)]
pub(crate) struct VerifiedCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl VerifiedCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub(crate) fn key(token: &str) -> Key {
        let d = digest::digest(&digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(d.as_ref());
        key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: &Key) -> Option<Arc<VerifiedClaims>> {
        self.lock().entries.get(key).cloned()
    }

    pub(crate) fn insert(&self, key: Key, claims: Arc<VerifiedClaims>) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.entries.insert(key, claims).is_none() {
            inner.order.push_back(key);
        }
        while inner.entries.len() > self.capacity {
            match inner.order.pop_front() {
                Some(old) => {
                    inner.entries.remove(&old);
                }
                None => break,
            }
        }
    }

    pub(crate) fn remove(&self, key: &Key) {
        let mut inner = self.lock();
        inner.entries.remove(key);
        inner.order.retain(|k| k != key);
    }

    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.order.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_a_hard_bound_with_fifo_eviction() {
        let cache = VerifiedCache::new(2);
        let claims = |n: u8| (VerifiedCache::key(&n.to_string()), n);
        let sample = crate::verify::tests_support::sample_claims();
        for n in 0..5u8 {
            cache.insert(claims(n).0, Arc::new(sample.clone()));
            assert!(cache.len() <= 2);
        }
        assert!(cache.get(&claims(4).0).is_some());
        assert!(cache.get(&claims(0).0).is_none(), "oldest evicted");
        cache.clear();
        assert_eq!(cache.len(), 0);
        let off = VerifiedCache::new(0);
        off.insert(claims(1).0, Arc::new(sample));
        assert_eq!(off.len(), 0);
    }
}
