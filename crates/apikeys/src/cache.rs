//! A short-lived cache of keys verified under a slow hash, so Argon2 runs once per key per
//! TTL rather than once per request.
//!
//! Keyed by HMAC-SHA256 of the presented key under a per-process random key (so the cache
//! holds nothing that verifies a key elsewhere); an entry also remembers the stored hash it
//! was checked against, so a re-hash or rotation misses. Flushed per id on disable/revoke.

use mcpsec_core::KeyId;
use mcpsec_core::hmac::{Domain, MacKey};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

type Fingerprint = [u8; 32];

#[derive(Debug)]
struct Entry {
    id: KeyId,
    stored_hash: String,
    verified_at: SystemTime,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Fingerprint, Entry>,
    order: VecDeque<Fingerprint>,
}

/// The fingerprint of a presented key: the key text, unframed (it is the only field).
const FINGERPRINT_DOMAIN: Domain = Domain::new("mcpsec-apikey-cache-v1");

pub(crate) struct VerifiedKeyCache {
    key: MacKey,
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for VerifiedKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedKeyCache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl VerifiedKeyCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Result<Self, crate::Error> {
        Ok(Self {
            // Per process: fingerprints never leave memory, so the key never needs to.
            key: MacKey::random().map_err(|_| crate::Error::Random)?,
            ttl,
            capacity,
            inner: Mutex::new(Inner::default()),
        })
    }

    pub(crate) fn fingerprint(&self, presented: &str) -> Fingerprint {
        self.key
            .input(FINGERPRINT_DOMAIN)
            .raw(presented.as_bytes())
            .tag()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `fingerprint` was verified for `id` against `stored_hash` within the TTL.
    pub(crate) fn hit(
        &self,
        fingerprint: &Fingerprint,
        id: &KeyId,
        stored_hash: &str,
        now: SystemTime,
    ) -> bool {
        self.lock().entries.get(fingerprint).is_some_and(|e| {
            &e.id == id
                && e.stored_hash == stored_hash
                && now
                    .duration_since(e.verified_at)
                    .is_ok_and(|age| age < self.ttl)
        })
    }

    pub(crate) fn insert(
        &self,
        fingerprint: Fingerprint,
        id: KeyId,
        stored_hash: String,
        now: SystemTime,
    ) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner
            .entries
            .insert(
                fingerprint,
                Entry {
                    id,
                    stored_hash,
                    verified_at: now,
                },
            )
            .is_none()
        {
            inner.order.push_back(fingerprint);
        }
        while inner.entries.len() > self.capacity {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            inner.entries.remove(&old);
        }
    }

    /// Drops every entry (a fleet announcement this cache cannot narrow down).
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.order.clear();
    }

    /// Drops every entry for `id` (on disable, revoke, rotation).
    pub(crate) fn forget(&self, id: &KeyId) {
        let mut inner = self.lock();
        let Inner { entries, order } = &mut *inner;
        entries.retain(|_, e| &e.id != id);
        order.retain(|f| entries.contains_key(f));
    }
}
