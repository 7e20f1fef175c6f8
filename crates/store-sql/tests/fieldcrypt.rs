//! The field-encryption stores on SQL: the fieldcrypt conformance suites as named tests per
//! backend, the keyset store's compare-and-swap across two instances, 32 nonce-ledger
//! reservations racing over two pools against one budget, and field encryption end to end
//! with its keyset and nonce ledger in the database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use mcpsec_core::testkit::Namespace;
use mcpsec_core::{ManualClock, NullSink, SealContext, SecretBytes, StoreErrorKind};
use mcpsec_fieldcrypt::{
    Category, FieldCrypt, KeyVersion, KeyringSpec, KeysetStore, LocalKeyset, LocalMasterKey,
    StoredKeyset, Subject, SubjectKeyStore, UsageLedger,
};
use mcpsec_store_sql::{SqlKeysetStore, SqlSubjectKeyStore, SqlUsageLedger};
use std::sync::Arc;

mod subject_key_store {
    use super::common;
    use mcpsec_core::testkit::Namespace;
    use mcpsec_fieldcrypt::SubjectKeyStore;
    use mcpsec_store_sql::SqlSubjectKeyStore;
    use std::sync::Arc;

    mcpsec_fieldcrypt::subject_key_store_suite!(sqlite, |ns: Namespace| async move {
        Arc::new(SqlSubjectKeyStore::new(common::sqlite_pool(&ns).await))
            as Arc<dyn SubjectKeyStore>
    });
    mcpsec_fieldcrypt::subject_key_store_suite!(postgres, |ns: Namespace| async move {
        crate::pg_or_sqlite!(ns, SqlSubjectKeyStore as SubjectKeyStore)
    });
}

mod rewrap_checkpoints {
    use super::common;
    use mcpsec_core::testkit::Namespace;
    use mcpsec_fieldcrypt::rewrap::RewrapCheckpoints;
    use mcpsec_store_sql::SqlRewrapCheckpoints;
    use std::sync::Arc;

    mcpsec_fieldcrypt::rewrap_checkpoints_suite!(sqlite, |ns: Namespace| async move {
        Arc::new(SqlRewrapCheckpoints::new(common::sqlite_pool(&ns).await))
            as Arc<dyn RewrapCheckpoints>
    });
    mcpsec_fieldcrypt::rewrap_checkpoints_suite!(postgres, |ns: Namespace| async move {
        crate::pg_or_sqlite!(ns, SqlRewrapCheckpoints as RewrapCheckpoints)
    });
}

mod usage_ledger {
    use super::common;
    use mcpsec_core::testkit::Namespace;
    use mcpsec_fieldcrypt::UsageLedger;
    use mcpsec_store_sql::SqlUsageLedger;
    use std::sync::Arc;

    mcpsec_fieldcrypt::usage_ledger_suite!(sqlite, |ns: Namespace| async move {
        Arc::new(SqlUsageLedger::new(common::sqlite_pool(&ns).await)) as Arc<dyn UsageLedger>
    });
    mcpsec_fieldcrypt::usage_ledger_suite!(postgres, |ns: Namespace| async move {
        crate::pg_or_sqlite!(ns, SqlUsageLedger as UsageLedger)
    });
}

/// The suite the memory and file keyset stores pass: a create only once, load after a
/// write, a stale generation refused, one winner of concurrent writers.
mod keyset_store {
    use super::common;
    use mcpsec_core::testkit::Namespace;
    use mcpsec_fieldcrypt::KeysetStore;
    use mcpsec_store_sql::SqlKeysetStore;
    use std::sync::Arc;

    mcpsec_fieldcrypt::keyset_store_suite!(sqlite, |ns: Namespace| async move {
        Arc::new(SqlKeysetStore::new(common::sqlite_pool(&ns).await)) as Arc<dyn KeysetStore>
    });
    mcpsec_fieldcrypt::keyset_store_suite!(postgres, |ns: Namespace| async move {
        crate::pg_or_sqlite!(ns, SqlKeysetStore as KeysetStore)
    });
}

const RACERS: u64 = 32;

fn pii() -> Category {
    Category::new("pii").unwrap()
}

fn master() -> Arc<LocalMasterKey> {
    Arc::new(LocalMasterKey::from_bytes(&SecretBytes::new(vec![7; 32])).unwrap())
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at_unix(1_764_000_000))
}

fn doc(generation: u64, tag: &str) -> StoredKeyset {
    StoredKeyset {
        generation,
        document: format!("{{\"generation\":{generation},\"tag\":\"{tag}\"}}\n").into_bytes(),
    }
}

/// Two instances on one database: a writer holding a generation the other has moved past
/// is refused and changes nothing; a second first write is refused too.
async fn stale_writer_on_another_instance_is_refused(stores: [Arc<dyn KeysetStore>; 2]) {
    let [a, b] = stores;
    a.replace(None, doc(1, "a")).await.unwrap();
    let refused = b.replace(None, doc(1, "b")).await.unwrap_err();
    assert_eq!(refused.kind(), StoreErrorKind::Conflict);
    // Both read generation 1; B writes first.
    let read_by_a = a.load().await.unwrap().unwrap();
    assert_eq!(b.load().await.unwrap().unwrap(), read_by_a);
    b.replace(Some(1), doc(2, "b")).await.unwrap();
    let stale = a
        .replace(Some(read_by_a.generation), doc(2, "a"))
        .await
        .unwrap_err();
    assert_eq!(stale.kind(), StoreErrorKind::Conflict);
    assert_eq!(a.load().await.unwrap(), Some(doc(2, "b")));
    assert_eq!(a.watermark().await.unwrap(), 0, "no separate watermark");
}

/// Two keyset handles on two instances rotate one after the other; the second's copy is
/// stale, its write is refused by the store, and it starts again from the first's
/// document: both rotations are kept (versions 1, 2, 3), none overwritten.
async fn rotations_on_two_instances_are_both_kept(stores: [Arc<dyn KeysetStore>; 2]) {
    let [a, b] = stores;
    let first = LocalKeyset::create_in(a.clone(), master(), &[pii()], clock())
        .await
        .unwrap();
    let second = LocalKeyset::open_in(b, master(), clock()).await.unwrap();
    assert_eq!(first.rotate(&pii(), None).await.unwrap().0, 2);
    assert_eq!(second.rotate(&pii(), None).await.unwrap().0, 3);
    let reopened = LocalKeyset::open_in(a, master(), clock()).await.unwrap();
    assert_eq!(reopened.info()[0].versions, vec![1, 2, 3]);
}

/// `RACERS` tasks, alternating between two ledgers on one database, each reserving blocks
/// of 7 against a budget of 100 until refused: exactly the budget is granted, no total
/// ever passes it, and the stored total is the budget.
async fn reservations_never_pass_the_budget(ledgers: [Arc<dyn UsageLedger>; 2]) {
    const BUDGET: u64 = 100;
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS as usize));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..RACERS {
        let ledger = Arc::clone(&ledgers[(i % 2) as usize]);
        let barrier = Arc::clone(&barrier);
        tasks.spawn(async move {
            barrier.wait().await;
            let mut mine = 0;
            loop {
                let (granted, total) = ledger.reserve(&pii(), 1, 7, BUDGET).await.unwrap();
                assert!(total <= BUDGET, "a total past the budget: {total}");
                if granted == 0 {
                    return mine;
                }
                mine += granted;
            }
        });
    }
    let mut granted = 0;
    while let Some(mine) = tasks.join_next().await {
        granted += mine.expect("task");
    }
    assert_eq!(granted, BUDGET, "every nonce of the budget granted once");
    assert_eq!(
        ledgers[1].reserve(&pii(), 1, 0, BUDGET).await.unwrap(),
        (0, BUDGET)
    );
}

/// Subject keys are listed and paged in byte order of the canonical subject (what Rust's
/// string order is), whatever the database's collation: `B` before `a`, `org:` before
/// `user:`.
async fn subject_keys_page_in_byte_order(store: Arc<dyn SubjectKeyStore>) {
    let subjects = ["user:a", "user:B", "org:Z", "user:_b", "org:a"];
    for canonical in subjects {
        let subject = Subject::parse_canonical(canonical).unwrap();
        store
            .create(&pii(), &subject, 1, canonical.as_bytes().to_vec())
            .await
            .unwrap();
    }
    let mut expected: Vec<&str> = subjects.to_vec();
    expected.sort_unstable();
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_active(&pii(), after.as_deref(), 2)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.subject.canonical());
        listed.extend(page.iter().map(|k| k.subject.canonical()));
    }
    assert_eq!(listed, expected);
}

/// A keyring for `pii` whose key the test holds, so two instances can share it.
fn shared_keyring() -> KeyringSpec {
    KeyringSpec {
        category: pii(),
        primary: 1,
        min_decrypt: 1,
        versions: vec![KeyVersion {
            version: 1,
            key: SecretBytes::new(vec![42; 32]),
            reserved: 0,
        }],
        index_key: SecretBytes::new(vec![43; 32]),
    }
}

/// Field encryption with its state in the database: a keyset created in the keyset store
/// on one instance seals a value that a keyset opened from the store on another instance
/// opens; and two `FieldCrypt`s counting nonces in the SQL ledger seal and open each
/// other's values, both charged to the one stored total.
async fn fieldcrypt_end_to_end(
    keysets: [Arc<dyn KeysetStore>; 2],
    ledgers: [Arc<dyn UsageLedger>; 2],
) {
    let here = SealContext::new("pii", "users", "phone", "user-42").unwrap();

    // Keys from the keyset row (its own nonce counts are kept in the document, written
    // through the same compare-and-swap).
    let [a, b] = keysets;
    let first = Arc::new(
        LocalKeyset::create_in(a, master(), &[pii()], clock())
            .await
            .unwrap(),
    );
    let crypt = first
        .field_crypt(FieldCrypt::builder(NullSink))
        .await
        .unwrap();
    let sealed = crypt.encrypt_text(b"+44 20 7946 0000", &here).unwrap();
    let second = Arc::new(LocalKeyset::open_in(b, master(), clock()).await.unwrap());
    let other = second
        .field_crypt(FieldCrypt::builder(NullSink))
        .await
        .unwrap();
    assert_eq!(
        other
            .decrypt_text(&sealed, &here)
            .await
            .unwrap()
            .expose_secret(),
        b"+44 20 7946 0000"
    );

    // Nonces counted in the SQL ledger by two instances.
    let [la, lb] = ledgers;
    let build = |ledger: Arc<dyn UsageLedger>| {
        FieldCrypt::builder(NullSink)
            .ledger(ledger)
            .keyring(shared_keyring())
            .build()
            .unwrap()
    };
    let (one, two) = (build(la.clone()), build(lb));
    one.reserve_ahead().await.unwrap();
    two.reserve_ahead().await.unwrap();
    let sealed = one.encrypt(b"card on file", &here).unwrap();
    let back = two.encrypt(b"reply", &here).unwrap();
    assert_eq!(
        two.decrypt(&sealed, &here).await.unwrap().expose_secret(),
        b"card on file"
    );
    assert_eq!(
        one.decrypt(&back, &here).await.unwrap().expose_secret(),
        b"reply"
    );
    let (_, total) = la.reserve(&pii(), 1, 0, u64::MAX).await.unwrap();
    let first_block = mcpsec_fieldcrypt::NonceBudget::default().first_block;
    assert_eq!(
        total,
        2 * first_block,
        "both instances' reservations counted"
    );
    // A clean shutdown gives the unused part back to the shared total.
    one.release_reservations().await.unwrap();
    two.release_reservations().await.unwrap();
    let (_, total) = la.reserve(&pii(), 1, 0, u64::MAX).await.unwrap();
    assert_eq!(total, 2, "two encryptions stay counted");
}

/// The tests above as named tests for one backend; `$pools` turns a namespace into two
/// pools on one database (or `None`: skip).
macro_rules! two_instances {
    ($backend:ident, $db:ty, $pools:path) => {
        mod $backend {
            use super::*;

            async fn pools(case: &str) -> Option<(sqlx::Pool<$db>, sqlx::Pool<$db>)> {
                $pools(&Namespace::new(
                    stringify!($backend),
                    "fieldcrypt_sql",
                    case,
                ))
                .await
            }

            fn keysets(a: &sqlx::Pool<$db>, b: &sqlx::Pool<$db>) -> [Arc<dyn KeysetStore>; 2] {
                [
                    Arc::new(SqlKeysetStore::new(a.clone())),
                    Arc::new(SqlKeysetStore::new(b.clone())),
                ]
            }

            fn ledgers(a: &sqlx::Pool<$db>, b: &sqlx::Pool<$db>) -> [Arc<dyn UsageLedger>; 2] {
                [
                    Arc::new(SqlUsageLedger::new(a.clone())),
                    Arc::new(SqlUsageLedger::new(b.clone())),
                ]
            }

            #[tokio::test]
            async fn keyset_stale_writer_on_another_instance_is_refused() {
                let Some((a, b)) = pools("stale_writer").await else {
                    return;
                };
                stale_writer_on_another_instance_is_refused(keysets(&a, &b)).await;
            }

            #[tokio::test]
            async fn keyset_rotations_on_two_instances_are_both_kept() {
                let Some((a, b)) = pools("two_rotations").await else {
                    return;
                };
                rotations_on_two_instances_are_both_kept(keysets(&a, &b)).await;
            }

            #[tokio::test]
            async fn subject_keys_are_paged_in_byte_order() {
                let Some((a, _)) = pools("byte_order").await else {
                    return;
                };
                subject_keys_page_in_byte_order(Arc::new(SqlSubjectKeyStore::new(a))).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn nonce_ledger_reserved_by_32_racers_on_two_instances_never_passes_the_budget() {
                let Some((a, b)) = pools("ledger_race").await else {
                    return;
                };
                reservations_never_pass_the_budget(ledgers(&a, &b)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fieldcrypt_on_sql_seals_and_a_second_instance_opens() {
                let Some((a, b)) = pools("end_to_end").await else {
                    return;
                };
                fieldcrypt_end_to_end(keysets(&a, &b), ledgers(&a, &b)).await;
            }
        }
    };
}

async fn sqlite_pools(ns: &Namespace) -> Option<(sqlx::SqlitePool, sqlx::SqlitePool)> {
    Some(common::sqlite_pools(ns).await)
}

two_instances!(sqlite, sqlx::Sqlite, sqlite_pools);
two_instances!(postgres, sqlx::Postgres, common::pg_pools);
