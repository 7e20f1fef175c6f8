//! Conformance suites every backend of this crate's store traits must pass (feature
//! `testkit`), in the workspace convention (`mcpsec_core::testkit::suite`): one public async
//! function per case taking a fresh store, and a macro per suite
//! ([`subject_key_store_suite!`](crate::subject_key_store_suite),
//! [`rewrap_checkpoints_suite!`](crate::rewrap_checkpoints_suite),
//! [`usage_ledger_suite!`](crate::usage_ledger_suite)) that expands them into named tests
//! per backend. The SQL and Redis stores run them against real servers, making a fresh
//! schema or key prefix from the `Namespace` their factory is given.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "conformance suites fail loudly on purpose"
)]

use crate::Category;
use crate::rewrap::{Checkpoint, Progress, RewrapCheckpoints};
use crate::subject::{Subject, SubjectKeyState, SubjectKeyStore};
use mcpsec_core::{OrgId, UserId};
use std::sync::Arc;

fn pii() -> Category {
    Category::new("pii").unwrap()
}

fn alice() -> Subject {
    Subject::User(UserId::new("alice").unwrap())
}

fn bob() -> Subject {
    Subject::User(UserId::new("bob").unwrap())
}

async fn create(store: &dyn SubjectKeyStore, subject: &Subject, wrapped: &[u8]) -> Vec<u8> {
    match store
        .create(&pii(), subject, 1, wrapped.to_vec())
        .await
        .unwrap()
    {
        SubjectKeyState::Active { wrapped, .. } => wrapped,
        other => panic!("the key was not created: {other:?}"),
    }
}

async fn shred_alice(store: &dyn SubjectKeyStore) {
    create(store, &alice(), b"alice-v1").await;
    assert!(store.shred(&pii(), &alice()).await.unwrap());
}

/// A subject starts without a key, and generation 1 is the only one made from nothing.
pub async fn first_generation_only_from_absent(store: Arc<dyn SubjectKeyStore>) {
    assert_eq!(
        store.current(&pii(), &alice()).await.unwrap(),
        SubjectKeyState::Absent
    );
    let refused = store
        .create(&pii(), &alice(), 2, b"two".to_vec())
        .await
        .unwrap();
    assert_eq!(refused, SubjectKeyState::Absent, "generation 2 from Absent");
}

/// 32 concurrent creators: exactly one key wins and every creator gets it.
pub async fn concurrent_creators_share_one_key(store: Arc<dyn SubjectKeyStore>) {
    let mut tasks = Vec::new();
    for i in 0..32u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.create(&pii(), &alice(), 1, vec![i; 8]).await.unwrap()
        }));
    }
    let mut winners = std::collections::HashSet::new();
    for task in tasks {
        match task.await.unwrap() {
            SubjectKeyState::Active {
                generation: 1,
                wrapped,
            } => {
                winners.insert(wrapped);
            }
            other => panic!("expected the active key, got {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "every creator must see the one stored key"
    );
}

/// One subject's key is not another subject's, nor another category's.
pub async fn subjects_and_categories_are_independent(store: Arc<dyn SubjectKeyStore>) {
    create(&*store, &alice(), b"alice-v1").await;
    let acme = Subject::Org(OrgId::new("acme").unwrap());
    assert_eq!(
        store.current(&pii(), &acme).await.unwrap(),
        SubjectKeyState::Absent
    );
    let other_category = Category::new("oauth_tokens").unwrap();
    assert_eq!(
        store.current(&other_category, &alice()).await.unwrap(),
        SubjectKeyState::Absent
    );
}

/// Of 8 concurrent shreds exactly one takes effect; the tombstone keeps the generation; a
/// subject without a key is not shredded.
pub async fn shred_takes_effect_once_and_keeps_the_generation(store: Arc<dyn SubjectKeyStore>) {
    create(&*store, &alice(), b"alice-v1").await;
    let mut shreds = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        shreds.push(tokio::spawn(async move {
            store.shred(&pii(), &alice()).await.unwrap()
        }));
    }
    let mut shredded = 0;
    for task in shreds {
        shredded += usize::from(task.await.unwrap());
    }
    assert_eq!(shredded, 1, "exactly one shred takes effect");
    assert_eq!(
        store.current(&pii(), &alice()).await.unwrap(),
        SubjectKeyState::Shredded { generation: 1 }
    );
    assert!(!store.shred(&pii(), &bob()).await.unwrap());
}

/// `list_active` lists active keys only, in canonical subject order, after a cursor, up to
/// a limit (what a rotation walks).
pub async fn list_active_is_ordered_and_skips_shredded(store: Arc<dyn SubjectKeyStore>) {
    shred_alice(&*store).await;
    create(&*store, &bob(), b"bob-v1").await;
    create(&*store, &Subject::User(UserId::new("carol").unwrap()), b"c").await;
    let listed = store.list_active(&pii(), None, 1000).await.unwrap();
    assert!(
        listed.iter().all(|k| k.subject != alice()),
        "alice is shredded: {listed:?}"
    );
    assert_eq!(listed.len(), 2, "{listed:?}");
    let canonicals: Vec<String> = listed.iter().map(|k| k.subject.canonical()).collect();
    let mut sorted = canonicals.clone();
    sorted.sort();
    assert_eq!(canonicals, sorted, "listed in canonical order");
    let after_bob = store
        .list_active(&pii(), Some(&bob().canonical()), 1000)
        .await
        .unwrap();
    assert_eq!(after_bob.len(), 1);
    assert!(
        after_bob
            .iter()
            .all(|k| k.subject.canonical() > bob().canonical())
    );
    assert!(store.list_active(&pii(), None, 0).await.unwrap().is_empty());
}

/// `replace_wrapped` is a compare-and-swap on generation and old value: a stale value or
/// generation changes nothing, of 16 concurrent re-wrappers exactly one wins, and a
/// shredded key is never revived.
pub async fn replace_wrapped_is_compare_and_swap(store: Arc<dyn SubjectKeyStore>) {
    shred_alice(&*store).await;
    let bobs = create(&*store, &bob(), b"bob-v1").await;
    assert!(
        !store
            .replace_wrapped(&pii(), &bob(), 1, b"stale", b"x".to_vec())
            .await
            .unwrap(),
        "a stale old value must not be replaced"
    );
    assert!(
        !store
            .replace_wrapped(&pii(), &bob(), 2, &bobs, b"x".to_vec())
            .await
            .unwrap(),
        "a wrong generation must not be replaced"
    );
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let store = store.clone();
        let bobs = bobs.clone();
        tasks.push(tokio::spawn(async move {
            store
                .replace_wrapped(&pii(), &bob(), 1, &bobs, vec![i; 4])
                .await
                .unwrap()
        }));
    }
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap());
    }
    assert_eq!(wins, 1);
    assert!(
        !store
            .replace_wrapped(&pii(), &alice(), 1, b"", b"x".to_vec())
            .await
            .unwrap(),
        "a shredded key is never revived by a re-wrap"
    );
}

/// After a shred the old generation is never recreated; only the next one is.
pub async fn after_a_shred_only_the_next_generation_is_created(store: Arc<dyn SubjectKeyStore>) {
    shred_alice(&*store).await;
    assert_eq!(
        store
            .create(&pii(), &alice(), 1, b"again".to_vec())
            .await
            .unwrap(),
        SubjectKeyState::Shredded { generation: 1 }
    );
    assert_eq!(
        store
            .create(&pii(), &alice(), 2, b"fresh".to_vec())
            .await
            .unwrap(),
        SubjectKeyState::Active {
            generation: 2,
            wrapped: b"fresh".to_vec()
        }
    );
}

/// Expands the [`SubjectKeyStore`] suite into named tests in a module named after the
/// backend: `subject_key_store_suite!(memory, |_ns| async { Arc::new(MemorySubjectKeyStore::new())
/// as Arc<dyn SubjectKeyStore> })` gives `memory::concurrent_creators_share_one_key` and so
/// on. The factory is called once per test with that test's
/// `mcpsec_core::testkit::Namespace`.
#[macro_export]
macro_rules! subject_key_store_suite {
    ($backend:ident, $factory:expr $(,)?) => {
        $crate::testkit::__conformance_suite!(
            suite = "subject_key_store",
            cases = [$crate::testkit],
            backend = $backend,
            factory = $factory,
            tests = [
                first_generation_only_from_absent,
                concurrent_creators_share_one_key,
                subjects_and_categories_are_independent,
                shred_takes_effect_once_and_keeps_the_generation,
                list_active_is_ordered_and_skips_shredded,
                replace_wrapped_is_compare_and_swap,
                after_a_shred_only_the_next_generation_is_created,
            ],
        );
    };
}

/// [`RewrapCheckpoints`]: a job starts without a checkpoint, a save is read back whole,
/// a later save replaces it, and jobs are separate.
pub async fn checkpoints_round_trip_per_job(store: Arc<dyn RewrapCheckpoints>) {
    let job = "rewrap-pii";
    assert_eq!(store.load(job).await.unwrap(), None);
    let first = Checkpoint {
        cursor: Some("row-10".into()),
        progress: Progress {
            scanned: 10,
            rewrapped: 7,
            current: 2,
            conflicts: 0,
            failed: 1,
        },
        done: false,
    };
    store.save(job, &first).await.unwrap();
    assert_eq!(store.load(job).await.unwrap(), Some(first.clone()));
    let second = Checkpoint {
        cursor: Some("row-20".into()),
        done: true,
        ..first
    };
    store.save(job, &second).await.unwrap();
    assert_eq!(store.load(job).await.unwrap(), Some(second));
    assert_eq!(store.load("rewrap-other").await.unwrap(), None);
}

/// Expands the [`RewrapCheckpoints`] suite into named tests in a module named after the
/// backend, like [`subject_key_store_suite!`](crate::subject_key_store_suite).
#[macro_export]
macro_rules! rewrap_checkpoints_suite {
    ($backend:ident, $factory:expr $(,)?) => {
        $crate::testkit::__conformance_suite!(
            suite = "rewrap_checkpoints",
            cases = [$crate::testkit],
            backend = $backend,
            factory = $factory,
            tests = [checkpoints_round_trip_per_job],
        );
    };
}

/// The [`UsageLedger`](crate::UsageLedger) suite (the nonce budget's shared count): one
/// public async function per case, each taking a fresh ledger, expanded into named tests per
/// backend by [`usage_ledger_suite!`](crate::usage_ledger_suite).
///
/// The ledger under test must know key version 1 of the categories `pii` and `contact`
/// (a keyset-backed ledger creates them in its factory).
pub mod usage_ledger {
    use crate::{Category, UsageLedger};
    use std::sync::Arc;

    fn pii() -> Category {
        Category::new("pii").unwrap()
    }

    fn contact() -> Category {
        Category::new("contact").unwrap()
    }

    /// Reservations are granted whole up to the limit, then in part, then not at all; the
    /// total never passes the limit.
    pub async fn reserve_grants_up_to_the_limit(ledger: Arc<dyn UsageLedger>) {
        assert_eq!(ledger.reserve(&pii(), 1, 10, 25).await.unwrap(), (10, 10));
        assert_eq!(ledger.reserve(&pii(), 1, 10, 25).await.unwrap(), (10, 20));
        assert_eq!(
            ledger.reserve(&pii(), 1, 10, 25).await.unwrap(),
            (5, 25),
            "only what is left under the limit"
        );
        assert_eq!(
            ledger.reserve(&pii(), 1, 10, 25).await.unwrap(),
            (0, 25),
            "a spent budget grants nothing"
        );
    }

    /// Categories keep separate counts.
    pub async fn categories_are_counted_apart(ledger: Arc<dyn UsageLedger>) {
        assert_eq!(ledger.reserve(&pii(), 1, 10, 10).await.unwrap(), (10, 10));
        assert_eq!(
            ledger.reserve(&contact(), 1, 4, 10).await.unwrap(),
            (4, 4),
            "another category's spent budget does not count"
        );
    }

    /// Of 32 concurrent reservations of 10 under a limit of 100, exactly 100 are granted:
    /// the reservation is one atomic read-modify-write, never two processes both reading
    /// the same total.
    pub async fn concurrent_reservations_never_pass_the_limit(ledger: Arc<dyn UsageLedger>) {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let ledger = Arc::clone(&ledger);
            tasks.spawn(async move { ledger.reserve(&pii(), 1, 10, 100).await.unwrap() });
        }
        let mut granted = 0;
        while let Some(done) = tasks.join_next().await {
            let (g, total) = done.expect("task");
            assert!(total <= 100, "a total past the limit: {total}");
            granted += g;
        }
        assert_eq!(
            granted, 100,
            "every nonce of the budget granted exactly once"
        );
        assert_eq!(ledger.reserve(&pii(), 1, 10, 100).await.unwrap(), (0, 100));
    }

    /// A release gives back at most what it names (keeping it all reserved is allowed: it
    /// only over-counts), and never lets a later reservation pass the limit.
    pub async fn release_never_reopens_more_than_was_given_back(ledger: Arc<dyn UsageLedger>) {
        assert_eq!(ledger.reserve(&pii(), 1, 10, 100).await.unwrap(), (10, 10));
        ledger.release(&pii(), 1, 4).await.unwrap();
        let (granted, total) = ledger.reserve(&pii(), 1, 1000, 100).await.unwrap();
        assert_eq!(total, 100);
        assert!(
            (90..=94).contains(&granted),
            "granted {granted} after giving back 4 of 10"
        );
    }
}

/// Expands the [`UsageLedger`](crate::UsageLedger) suite into named tests in a module named
/// after the backend: `usage_ledger_suite!(memory, |_ns| async { Arc::new(MemoryLedger::new())
/// as Arc<dyn UsageLedger> })` gives `memory::concurrent_reservations_never_pass_the_limit`
/// and so on. The factory is called once per test with that test's
/// `mcpsec_core::testkit::Namespace`; the calling crate needs tokio with `macros` and
/// `rt-multi-thread`.
#[macro_export]
macro_rules! usage_ledger_suite {
    ($backend:ident, $factory:expr $(,)?) => {
        $crate::testkit::__conformance_suite!(
            suite = "usage_ledger",
            cases = [$crate::testkit::usage_ledger],
            backend = $backend,
            factory = $factory,
            tests = [
                reserve_grants_up_to_the_limit,
                categories_are_counted_apart,
                concurrent_reservations_never_pass_the_limit,
                release_never_reopens_more_than_was_given_back,
            ],
        );
    };
}

#[doc(hidden)]
pub use mcpsec_core::testkit::__conformance_suite;
