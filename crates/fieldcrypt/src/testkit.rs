//! Conformance suites every backend of this crate's store traits must pass (feature
//! `testkit`). The SQL and Redis stores run them against real servers.

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

/// Runs the [`SubjectKeyStore`] suite. `unique` keeps runs against a shared server apart.
pub async fn subject_key_store_conformance(store: Arc<dyn SubjectKeyStore>, unique: &str) {
    let category = Category::new("pii").unwrap();
    let alice = Subject::User(UserId::new(format!("alice-{unique}")).unwrap());
    let acme = Subject::Org(OrgId::new(format!("acme-{unique}")).unwrap());

    assert_eq!(
        store.current(&category, &alice).await.unwrap(),
        SubjectKeyState::Absent
    );
    // Generation 1 only from Absent.
    let refused = store
        .create(&category, &alice, 2, b"two".to_vec())
        .await
        .unwrap();
    assert_eq!(refused, SubjectKeyState::Absent, "generation 2 from Absent");

    // 32 concurrent creators: exactly one key wins and everyone gets it.
    let mut tasks = Vec::new();
    for i in 0..32u8 {
        let store = store.clone();
        let (category, alice) = (category.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            store
                .create(&category, &alice, 1, vec![i; 8])
                .await
                .unwrap()
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

    // Subjects and categories are independent.
    assert_eq!(
        store.current(&category, &acme).await.unwrap(),
        SubjectKeyState::Absent
    );
    let other_category = Category::new("oauth_tokens").unwrap();
    assert_eq!(
        store.current(&other_category, &alice).await.unwrap(),
        SubjectKeyState::Absent
    );

    // Shred once; the tombstone keeps the generation.
    let mut shreds = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let (category, alice) = (category.clone(), alice.clone());
        shreds.push(tokio::spawn(async move {
            store.shred(&category, &alice).await.unwrap()
        }));
    }
    let mut shredded = 0;
    for task in shreds {
        shredded += usize::from(task.await.unwrap());
    }
    assert_eq!(shredded, 1, "exactly one shred takes effect");
    assert_eq!(
        store.current(&category, &alice).await.unwrap(),
        SubjectKeyState::Shredded { generation: 1 }
    );
    assert!(!store.shred(&category, &acme).await.unwrap());

    // Listing and compare-and-swap re-wrapping (what a rotation needs).
    let bob = Subject::User(UserId::new(format!("bob-{unique}")).unwrap());
    let SubjectKeyState::Active { wrapped: bobs, .. } = store
        .create(&category, &bob, 1, b"bob-v1".to_vec())
        .await
        .unwrap()
    else {
        panic!("bob's key was not created");
    };
    let listed = store.list_active(&category, None, 1000).await.unwrap();
    let mine: Vec<_> = listed
        .iter()
        .filter(|k| k.subject == bob || k.subject == alice)
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "alice is shredded, bob is active: {listed:?}"
    );
    let canonicals: Vec<String> = listed.iter().map(|k| k.subject.canonical()).collect();
    let mut sorted = canonicals.clone();
    sorted.sort();
    assert_eq!(canonicals, sorted, "listed in canonical order");
    let after_bob = store
        .list_active(&category, Some(&bob.canonical()), 1000)
        .await
        .unwrap();
    assert!(
        after_bob
            .iter()
            .all(|k| k.subject.canonical() > bob.canonical())
    );
    assert!(
        store
            .list_active(&category, None, 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .replace_wrapped(&category, &bob, 1, b"stale", b"x".to_vec())
            .await
            .unwrap(),
        "a stale old value must not be replaced"
    );
    assert!(
        !store
            .replace_wrapped(&category, &bob, 2, &bobs, b"x".to_vec())
            .await
            .unwrap(),
        "a wrong generation must not be replaced"
    );
    // 16 concurrent re-wrappers of the same key: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let store = store.clone();
        let (category, bob, bobs) = (category.clone(), bob.clone(), bobs.clone());
        tasks.push(tokio::spawn(async move {
            store
                .replace_wrapped(&category, &bob, 1, &bobs, vec![i; 4])
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
            .replace_wrapped(&category, &alice, 1, b"", b"x".to_vec())
            .await
            .unwrap(),
        "a shredded key is never revived by a re-wrap"
    );

    // After a shred only the next generation may be created.
    assert_eq!(
        store
            .create(&category, &alice, 1, b"again".to_vec())
            .await
            .unwrap(),
        SubjectKeyState::Shredded { generation: 1 }
    );
    assert_eq!(
        store
            .create(&category, &alice, 2, b"fresh".to_vec())
            .await
            .unwrap(),
        SubjectKeyState::Active {
            generation: 2,
            wrapped: b"fresh".to_vec()
        }
    );
}

/// Runs the [`RewrapCheckpoints`] suite.
pub async fn rewrap_checkpoints_conformance(store: Arc<dyn RewrapCheckpoints>, unique: &str) {
    let job = format!("rewrap-{unique}");
    assert_eq!(store.load(&job).await.unwrap(), None);
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
    store.save(&job, &first).await.unwrap();
    assert_eq!(store.load(&job).await.unwrap(), Some(first.clone()));
    let second = Checkpoint {
        cursor: Some("row-20".into()),
        done: true,
        ..first
    };
    store.save(&job, &second).await.unwrap();
    assert_eq!(store.load(&job).await.unwrap(), Some(second));
    assert_eq!(store.load(&format!("{job}-other")).await.unwrap(), None);
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
