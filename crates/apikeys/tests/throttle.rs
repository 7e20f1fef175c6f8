//! Throttling that cannot be turned against the owner nor used to learn which ids exist
//! (issue 12 items 10, 11 and 13).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::*;
use mcpsec_apikeys::{
    ApiKeys, AttemptCounter, AttemptState, Env, Error, HashMode, KeyHasher, LockoutPolicy,
    MemoryApiKeyStore, MemoryAttemptCounter, SlowHashPool, Source,
};
use mcpsec_core::{ManualClock, MemorySink};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn policy(threshold: u64) -> LockoutPolicy {
    LockoutPolicy {
        source_threshold: threshold,
        ..LockoutPolicy::default()
    }
}

/// Item 10: an owner behind a NAT shared with an attacker keeps verifying with the right
/// key, in both hash modes, with the slow-hash cache off (so the cache cannot be what lets
/// it through).
#[tokio::test]
async fn throttled_owner_still_verifies_in_both_hash_modes() {
    for (name, mode) in both_modes() {
        let f = fixture_with(mode, |b| {
            b.lockout(policy(2)).slow_hash_cache(Duration::ZERO, 0)
        });
        let (key, _) = f
            .keys
            .create(&victim_proof(), new_key(Env::Live))
            .await
            .unwrap();
        let nat = ip(66);
        // Credential stuffing from the shared address: many ids, none of them the owner's.
        for _ in 0..5 {
            let _ = f.keys.verify(&unknown_id_like(&key), &nat).await;
        }
        assert!(
            matches!(
                f.keys.verify(&unknown_id_like(&key), &nat).await,
                Err(Error::Throttled { .. })
            ),
            "{name}: the shared source is throttled"
        );
        for attempt in 0..10 {
            let verified = f.keys.verify(key.expose_secret(), &nat).await;
            assert!(
                verified.is_ok(),
                "{name}: the owner's right key verifies from the throttled source \
                 (attempt {attempt}): {verified:?}"
            );
        }
    }
}

/// Item 10, the other half: the allowance is small and per key id, so a throttled source
/// cannot spend the slow hash without bound on one id.
#[tokio::test]
async fn throttled_source_slow_hash_allowance_is_bounded_per_key_id() {
    let f = fixture_with(fast_argon2(), |b| {
        b.lockout(policy(1)).slow_hash_cache(Duration::ZERO, 0)
    });
    let (key, _) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let (other, _) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let nat = ip(66);
    for _ in 0..20 {
        let _ = f.keys.verify(&wrong_secret_for(&key), &nat).await;
    }
    assert!(
        matches!(
            f.keys.verify(key.expose_secret(), &nat).await,
            Err(Error::Throttled { .. })
        ),
        "guessing one id from a throttled source used up that id's allowance"
    );
    assert!(
        f.keys.verify(other.expose_secret(), &nat).await.is_ok(),
        "another id's allowance is untouched"
    );
    assert!(
        f.keys.verify(key.expose_secret(), &ip(7)).await.is_ok(),
        "and the key still verifies from any source that is not throttled"
    );
}

/// Item 11: a wrong secret for an existing id and a well-formed unknown id make the same
/// store and counter calls, throttled or not, in both hash modes.
#[tokio::test]
async fn wrong_secret_and_unknown_id_do_the_same_store_and_counter_work() {
    for (name, mode) in both_modes() {
        for throttled in [false, true] {
            let log = CallLog::default();
            let store = Arc::new(CountingStore {
                inner: MemoryApiKeyStore::new(),
                log: log.clone(),
            });
            let counter = Arc::new(CountingCounter {
                inner: MemoryAttemptCounter::default(),
                log: log.clone(),
            });
            let keys = ApiKeys::builder(
                store.clone(),
                members(),
                KeyHasher::new(pepper(1), vec![], mode).unwrap(),
                Arc::new(MemorySink::new()),
            )
            .clock(Arc::new(ManualClock::at_unix(1_767_225_600)))
            .attempt_counter(counter)
            .lockout(policy(if throttled { 1 } else { 1_000 }))
            .build()
            .unwrap();
            let (key, record) = keys
                .create(&victim_proof(), new_key(Env::Live))
                .await
                .unwrap();
            let source = ip(9);
            // Reach the throttle (or not) with junk, which never touches the store.
            let _ = keys.verify("junk", &source).await;
            let _ = log.take(&[]);

            let wrong = keys.verify(&wrong_secret_for(&key), &source).await;
            let unknown_key = unknown_id_like(&key);
            let unknown_id = mcpsec_apikeys::format::parse(&unknown_key)
                .unwrap()
                .id()
                .clone();
            let wrong_calls = log.take(&[&record.id]);
            let unknown = keys.verify(&unknown_key, &source).await;
            let unknown_calls = log.take(&[&unknown_id]);
            assert_eq!(
                wrong.unwrap_err().client_message(),
                unknown.unwrap_err().client_message()
            );
            assert_eq!(
                wrong_calls, unknown_calls,
                "{name}, throttled: {throttled}: a wrong secret and an unknown id must do \
                 the same store and counter work"
            );
        }
    }
}

/// Item 13: the addresses of one IPv6 /64 are one source (a host is usually given a whole
/// /64, so counting per address would give it 2^64 fresh sources).
#[tokio::test]
async fn ipv6_sources_are_grouped_by_64_by_default() {
    let f = fixture_with(HashMode::HmacSha256, |b| b.lockout(policy(3)));
    let (key, _) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let wrong = wrong_secret_for(&key);
    let v6 = |s: &str| Source::Ip(s.parse().unwrap());
    for host in ["2001:db8:0:7::1", "2001:db8:0:7::2", "2001:db8:0:7:ffff::3"] {
        assert_eq!(
            f.keys.verify(&wrong, &v6(host)).await.unwrap_err(),
            Error::SecretMismatch
        );
    }
    assert!(
        matches!(
            f.keys.verify(&wrong, &v6("2001:db8:0:7:1:2:3:4")).await,
            Err(Error::Throttled { .. })
        ),
        "a fourth address of the same /64 is the same, throttled, source"
    );
    assert_eq!(
        f.keys
            .verify(&wrong, &v6("2001:db8:0:8::1"))
            .await
            .unwrap_err(),
        Error::SecretMismatch,
        "the next /64 is another source"
    );
    // IPv4-mapped addresses are IPv4 sources, not one /64 for the whole IPv4 internet.
    assert_eq!(
        f.keys
            .verify(&wrong, &v6("::ffff:198.51.100.1"))
            .await
            .unwrap_err(),
        Error::SecretMismatch
    );
    assert_eq!(
        f.keys
            .verify(&wrong, &v6("::ffff:198.51.100.2"))
            .await
            .unwrap_err(),
        Error::SecretMismatch
    );
}

/// An [`AttemptCounter`] that holds every allowance increment until `n` of them have
/// arrived, so a burst really is concurrent when the allowance is decided.
#[derive(Debug)]
struct BurstCounter {
    inner: MemoryAttemptCounter,
    barrier: tokio::sync::Barrier,
}

#[async_trait::async_trait]
impl AttemptCounter for BurstCounter {
    async fn record_failure(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<AttemptState, mcpsec_core::Error> {
        if subject.starts_with("slow:") {
            self.barrier.wait().await;
        }
        self.inner.record_failure(subject, window, now).await
    }

    async fn release(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptState>, mcpsec_core::Error> {
        self.inner.release(subject, window, now).await
    }

    async fn state(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptState>, mcpsec_core::Error> {
        self.inner.state(subject, window, now).await
    }
}

/// Item 10: the allowance is counted before hashing, so 32 concurrent wrong guesses from
/// a throttled source spend at most the allowance in slow hashes, not 32.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_concurrent_burst_from_a_throttled_source_spends_at_most_the_allowance() {
    const BURST: usize = 32;
    let pool = Arc::new(SlowHashPool::new(2, BURST).unwrap());
    let f = fixture_with(fast_argon2(), |b| {
        b.lockout(policy(1))
            .slow_hash_cache(Duration::ZERO, 0)
            .slow_hash_pool(Arc::clone(&pool))
            .throttled_slow_hash_allowance(3)
            .attempt_counter(Arc::new(BurstCounter {
                inner: MemoryAttemptCounter::default(),
                barrier: tokio::sync::Barrier::new(BURST),
            }))
    });
    let (key, _) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let nat = ip(66);
    let _ = f.keys.verify("junk", &nat).await;
    let before = pool.completed();
    let keys = Arc::new(f.keys);
    let wrong = wrong_secret_for(&key);
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..BURST {
        let (keys, wrong, nat) = (Arc::clone(&keys), wrong.clone(), nat.clone());
        burst.spawn(async move { keys.verify(&wrong, &nat).await.map(|_| ()) });
    }
    while let Some(done) = burst.join_next().await {
        assert!(matches!(done.unwrap(), Err(Error::Throttled { .. })));
    }
    assert_eq!(
        pool.completed() - before,
        3,
        "slow hashes spent by a throttled burst of {BURST} against one id"
    );
}
