//! Conformance suite for [`KeysetStore`] backends (feature `testkit`), in the workspace
//! convention (`mcpsec_core::testkit::conformance_suite!`): one public async function per
//! case taking a fresh, empty store, expanded into named tests per backend by
//! [`keyset_store_suite!`](crate::keyset_store_suite).
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test suite: failing loudly is its job"
)]

use crate::{KeysetStore, StoredKeyset};
use mcpsec_core::StoreErrorKind;
use std::sync::Arc;

fn doc(generation: u64, tag: &str) -> StoredKeyset {
    StoredKeyset {
        generation,
        document: format!("{{\"generation\":{generation},\"tag\":\"{tag}\"}}\n").into_bytes(),
    }
}

/// An empty store loads nothing; the first write is a create, and a second create is a
/// conflict that changes nothing.
pub async fn create_only_once(store: Arc<dyn KeysetStore>) {
    assert_eq!(store.load().await.unwrap(), None);
    store.replace(None, doc(1, "a")).await.unwrap();
    let again = store.replace(None, doc(1, "b")).await.unwrap_err();
    assert_eq!(again.kind(), StoreErrorKind::Conflict);
    assert_eq!(store.load().await.unwrap(), Some(doc(1, "a")));
}

/// What `replace` wrote, `load` returns whole, with its generation.
pub async fn replace_then_load_round_trips(store: Arc<dyn KeysetStore>) {
    store.replace(None, doc(1, "a")).await.unwrap();
    store.replace(Some(1), doc(2, "b")).await.unwrap();
    store.replace(Some(2), doc(3, "c")).await.unwrap();
    assert_eq!(store.load().await.unwrap(), Some(doc(3, "c")));
}

/// A write against a generation that is not the stored one is a conflict and changes
/// nothing; so is an update of a store that holds nothing.
pub async fn stale_generation_conflicts(store: Arc<dyn KeysetStore>) {
    let missing = store.replace(Some(1), doc(2, "x")).await.unwrap_err();
    assert_eq!(missing.kind(), StoreErrorKind::Conflict);
    assert_eq!(store.load().await.unwrap(), None);
    store.replace(None, doc(1, "a")).await.unwrap();
    store.replace(Some(1), doc(2, "b")).await.unwrap();
    for stale in [0, 1, 3] {
        let error = store.replace(Some(stale), doc(9, "x")).await.unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Conflict, "expected {stale}");
    }
    assert_eq!(store.load().await.unwrap(), Some(doc(2, "b")));
}

/// Writers racing from the same generation: exactly one wins, and the store holds its
/// document, not a mix.
pub async fn concurrent_replace_one_wins(store: Arc<dyn KeysetStore>) {
    const WRITERS: usize = 8;
    store.replace(None, doc(1, "base")).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        tasks.spawn(async move {
            barrier.wait().await;
            let mine = doc(2, &format!("w{writer}"));
            store.replace(Some(1), mine.clone()).await.map(|()| mine)
        });
    }
    let mut winners = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok(mine) => winners.push(mine),
            Err(error) => assert_eq!(error.kind(), StoreErrorKind::Conflict),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins");
    assert_eq!(store.load().await.unwrap().as_ref(), Some(&winners[0]));
}

/// The watermark, when the store keeps one, is never behind what it wrote.
pub async fn watermark_is_not_behind_the_stored_generation(store: Arc<dyn KeysetStore>) {
    store.replace(None, doc(1, "a")).await.unwrap();
    store.replace(Some(1), doc(2, "b")).await.unwrap();
    let watermark = store.watermark().await.unwrap();
    assert!(
        watermark == 0 || watermark >= 2,
        "a watermark of {watermark} after writing generation 2"
    );
}

/// Expands the [`KeysetStore`] suite into named tests in a module named after the
/// backend: `keyset_store_suite!(memory, |_ns| async { Arc::new(MemoryKeysetStore::new())
/// as Arc<dyn KeysetStore> })` gives `memory::concurrent_replace_one_wins` and so on. The
/// factory is called once per test with that test's `mcpsec_core::testkit::Namespace`; the
/// calling crate needs tokio with `macros` and `rt-multi-thread`.
#[macro_export]
macro_rules! keyset_store_suite {
    ($backend:ident, $factory:expr $(,)?) => {
        $crate::testkit::__conformance_suite!(
            suite = "keyset_store",
            cases = [$crate::keyset_store_testkit],
            backend = $backend,
            factory = $factory,
            tests = [
                create_only_once,
                replace_then_load_round_trips,
                stale_generation_conflicts,
                concurrent_replace_one_wins,
                watermark_is_not_behind_the_stored_generation,
            ],
        );
    };
}
