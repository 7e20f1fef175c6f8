//! A bounded cache of verified tokens, so the signature check runs once per token per
//! process. Keyed by SHA-256 of the compact token; a hit re-checks `exp` against the
//! clock; the verifier flushes it whenever its keys change.
//!
//! A flush and a verification can interleave: a token verified with a key that is removed
//! before its claims reach the cache must not be cached. So the cache belongs to one
//! generation of the verifier's keys: [`reset`](VerifiedCache::reset) moves it to a new
//! generation (under the verifier's key lock), and an insert made for an older generation
//! is dropped.

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
    /// The generation of the verifier's keys the entries were verified with.
    generation: u64,
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

    /// Caches `claims`, verified with the keys of `generation`; dropped when the keys have
    /// changed since (the token may name a key that is gone).
    pub(crate) fn insert(&self, key: Key, claims: Arc<VerifiedClaims>, generation: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
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

    /// Forgets every token of the session `sid` (a revoked session). A scan: revocations
    /// are rare, verifications are not, so no second index is kept.
    pub(crate) fn remove_session(&self, sid: &str) {
        let mut inner = self.lock();
        let Inner { entries, order, .. } = &mut *inner;
        entries.retain(|_, claims| claims.sid.as_deref() != Some(sid));
        order.retain(|key| entries.contains_key(key));
    }

    /// Forgets every entry and accepts inserts only for `generation` from now on.
    pub(crate) fn reset(&self, generation: u64) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.order.clear();
        inner.generation = generation;
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
            cache.insert(claims(n).0, Arc::new(sample.clone()), 0);
            assert!(cache.len() <= 2);
        }
        assert!(cache.get(&claims(4).0).is_some());
        assert!(cache.get(&claims(0).0).is_none(), "oldest evicted");
        cache.reset(1);
        assert_eq!(cache.len(), 0);
        cache.insert(claims(1).0, Arc::new(sample.clone()), 0);
        assert_eq!(
            cache.len(),
            0,
            "an insert for an older generation is dropped"
        );
        let off = VerifiedCache::new(0);
        off.insert(claims(1).0, Arc::new(sample), 0);
        assert_eq!(off.len(), 0);
    }

    #[test]
    fn remove_session_drops_only_that_sessions_tokens() {
        let cache = VerifiedCache::new(10);
        let with_sid = |sid: Option<&str>| {
            let mut claims = crate::verify::tests_support::sample_claims();
            claims.sid = sid.map(str::to_owned);
            Arc::new(claims)
        };
        let (a1, a2, b, none) = (
            VerifiedCache::key("a1"),
            VerifiedCache::key("a2"),
            VerifiedCache::key("b"),
            VerifiedCache::key("none"),
        );
        cache.insert(a1, with_sid(Some("sess-a")), 0);
        cache.insert(a2, with_sid(Some("sess-a")), 0);
        cache.insert(b, with_sid(Some("sess-b")), 0);
        cache.insert(none, with_sid(None), 0);
        cache.remove_session("sess-a");
        assert!(cache.get(&a1).is_none() && cache.get(&a2).is_none());
        assert!(cache.get(&b).is_some() && cache.get(&none).is_some());
        assert_eq!(cache.lock().order.len(), 2, "the eviction order follows");
    }

    /// Item 1 of issue 12: the keys change between the signature check and the cache
    /// insert (a hook parks the verifying thread exactly there). The token signed by the
    /// removed key must not be served from the cache afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn removed_key_token_not_served_from_cache() {
        use crate::{Algorithm, JwkSet, KeySource, SigningKey, TokenVerifier};
        use mcpsec_core::{KeyId, ManualClock};
        use std::sync::mpsc;

        const NOW: u64 = 1_767_225_600;
        let leaked = SigningKey::generate(KeyId::new("leaked").unwrap(), Algorithm::EdDSA).unwrap();
        let other = SigningKey::generate(KeyId::new("other").unwrap(), Algorithm::EdDSA).unwrap();
        let mut verifier = TokenVerifier::builder(
            KeySource::Static(JwkSet {
                keys: vec![leaked.public_jwk(), other.public_jwk()],
            }),
            mcpsec_core::NullSink,
        )
        .issuer("https://auth.example")
        .audience("mcp")
        .clock(Arc::new(ManualClock::at_unix(NOW)))
        .build()
        .unwrap();
        let (reached_tx, reached_rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (reached_tx, go_rx) = (Mutex::new(reached_tx), Mutex::new(go_rx));
        verifier.before_insert = crate::verify::tests_support::Hook(Some(Arc::new(move || {
            reached_tx.lock().unwrap().send(()).unwrap();
            go_rx.lock().unwrap().recv().unwrap();
        })));
        let header = serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "leaked"});
        let claims = serde_json::json!({
            "iss": "https://auth.example", "sub": "alice", "aud": "mcp",
            "exp": NOW + 3600, "iat": NOW, "jti": "t-1"
        });
        let token = crate::issue::sign_compact(&leaked, &header, &claims).unwrap();

        let racing = verifier.clone();
        let racing_token = token.clone();
        let handle = tokio::runtime::Handle::current();
        // The hook parks this thread, so the verification runs on a blocking thread.
        let first =
            tokio::task::spawn_blocking(move || handle.block_on(racing.verify(&racing_token)));
        // The verifying thread has checked the signature with the leaked key and is parked
        // before the insert: remove the key now.
        tokio::task::spawn_blocking(move || reached_rx.recv().unwrap())
            .await
            .unwrap();
        verifier
            .set_keys(&JwkSet {
                keys: vec![other.public_jwk()],
            })
            .unwrap();
        go_tx.send(()).unwrap();
        assert!(first.await.unwrap().is_ok(), "verified before the removal");

        verifier.before_insert = crate::verify::tests_support::Hook::default();
        assert_eq!(
            verifier.verify(&token).await.unwrap_err(),
            crate::Error::UnknownKey,
            "a token of the removed key was served from the cache"
        );
    }
}
