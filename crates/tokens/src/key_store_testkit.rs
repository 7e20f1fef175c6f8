//! Conformance suite for [`SigningKeyStore`] backends (feature `testkit`), in the workspace
//! convention (`mcpsec_core::testkit::conformance_suite!`): one public async function per
//! case taking a fresh, empty store, expanded into named tests per backend by
//! [`signing_key_store_suite!`](crate::signing_key_store_suite):
//!
//! ```ignore
//! mcpsec_tokens::signing_key_store_suite!(memory, |_ns| async {
//!     Arc::new(MemorySigningKeyStore::new()) as Arc<dyn SigningKeyStore>
//! });
//! ```
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test suite: failing loudly is its job"
)]

use crate::{Algorithm, KeyRecord, KeyState, SigningKeyStore};
use mcpsec_core::{KeyId, StoreErrorKind};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

fn record(kid: &str, state: KeyState) -> KeyRecord {
    KeyRecord {
        kid: KeyId::new(kid).unwrap(),
        algorithm: Algorithm::ES256,
        state,
    }
}

fn ring(prefix: &str) -> Vec<KeyRecord> {
    vec![
        record(
            &format!("{prefix}-old"),
            KeyState::Retired {
                until: UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            },
        ),
        record(&format!("{prefix}-cur"), KeyState::Current),
        record(&format!("{prefix}-next"), KeyState::Next),
    ]
}

/// A new store is empty, at generation 0.
pub async fn empty_store_is_generation_zero(store: Arc<dyn SigningKeyStore>) {
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.generation, 0);
    assert!(loaded.records.is_empty());
}

/// What `replace` wrote, `load` returns, states and dates included, in order.
pub async fn replace_then_load_round_trips(store: Arc<dyn SigningKeyStore>) {
    assert_eq!(store.replace(0, ring("a")).await.unwrap(), 1);
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.generation, 1);
    assert_eq!(loaded.records, ring("a"));
    assert_eq!(store.replace(1, ring("b")).await.unwrap(), 2);
    assert_eq!(store.load().await.unwrap().records, ring("b"));
}

/// A write against a generation that is no longer current is a conflict and changes
/// nothing.
pub async fn stale_generation_conflicts(store: Arc<dyn SigningKeyStore>) {
    store.replace(0, ring("a")).await.unwrap();
    for stale in [0, 2, u64::MAX] {
        let error = store.replace(stale, ring("b")).await.unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Conflict, "generation {stale}");
    }
    let loaded = store.load().await.unwrap();
    assert_eq!((loaded.generation, loaded.records), (1, ring("a")));
}

/// Writers racing from the same generation: exactly one wins, and the store holds its
/// records, not a mix.
pub async fn concurrent_replace_one_wins(store: Arc<dyn SigningKeyStore>) {
    const WRITERS: usize = 8;
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mine = ring(&format!("w{writer}"));
            store.replace(0, mine.clone()).await.map(|_| mine)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(records) => winners.push(records),
            Err(error) => assert_eq!(error.kind(), StoreErrorKind::Conflict),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins");
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.generation, 1);
    assert_eq!(loaded.records, winners[0]);
}

/// Expands the [`SigningKeyStore`] suite into named tests in a module named after the
/// backend: `signing_key_store_suite!(memory, |_ns| async { … })` gives
/// `memory::concurrent_replace_one_wins` and so on. The factory is called once per test
/// with that test's `mcpsec_core::testkit::Namespace` and returns a fresh, empty
/// `Arc<dyn SigningKeyStore>`; the calling crate needs tokio with `macros` and
/// `rt-multi-thread`.
#[macro_export]
macro_rules! signing_key_store_suite {
    ($backend:ident, $factory:expr $(,)?) => {
        $crate::testkit::__conformance_suite!(
            suite = "signing_key_store",
            cases = [$crate::key_store_testkit],
            backend = $backend,
            factory = $factory,
            tests = [
                empty_store_is_generation_zero,
                replace_then_load_round_trips,
                stale_generation_conflicts,
                concurrent_replace_one_wins,
            ],
        );
    };
}
