//! Session revocations, signing-key metadata and audit chains on SQL: each trait's
//! conformance suite per backend (`sqlite::<case>`, `postgres::<case>`), writers racing
//! over two pools, and two instances' audit chains in one table.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use mcpsec_core::testkit::Namespace;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh namespace for a test the suite macros do not name.
fn fresh(backend: &str, suite: &str) -> Namespace {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Namespace::new(backend, suite, &format!("{}_{n}", std::process::id()))
}

mod session_revocation {
    use super::common;
    use mcpsec_core::testkit::Namespace;
    use mcpsec_store_sql::SqlSessionRevocation;
    use mcpsec_tokens::SessionRevocation;
    use std::sync::Arc;

    mcpsec_tokens::session_revocation_suite!(sqlite, |ns: Namespace| async move {
        Arc::new(SqlSessionRevocation::new(common::sqlite_pool(&ns).await))
            as Arc<dyn SessionRevocation>
    });
    mcpsec_tokens::session_revocation_suite!(postgres, |ns: Namespace| async move {
        crate::pg_or_sqlite!(ns, SqlSessionRevocation as SessionRevocation)
    });
}

mod signing_key_store {
    use super::common;
    use mcpsec_core::testkit::Namespace;
    use mcpsec_core::{KeyId, StoreErrorKind};
    use mcpsec_store_sql::SqlSigningKeyStore;
    use mcpsec_tokens::{Algorithm, KeyRecord, KeyState, SigningKeyStore};
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    mcpsec_tokens::signing_key_store_suite!(sqlite, |ns: Namespace| async move {
        Arc::new(SqlSigningKeyStore::new(common::sqlite_pool(&ns).await))
            as Arc<dyn SigningKeyStore>
    });
    mcpsec_tokens::signing_key_store_suite!(postgres, |ns: Namespace| async move {
        crate::pg_or_sqlite!(ns, SqlSigningKeyStore as SigningKeyStore)
    });

    fn ring(writer: usize) -> Vec<KeyRecord> {
        let record = |suffix: &str, algorithm, state| KeyRecord {
            kid: KeyId::new(format!("w{writer}-{suffix}").as_str()).unwrap(),
            algorithm,
            state,
        };
        vec![
            record(
                "old",
                Algorithm::RS256,
                KeyState::Retired {
                    until: UNIX_EPOCH + Duration::from_secs(1_767_225_600 + writer as u64),
                },
            ),
            record("cur", Algorithm::EdDSA, KeyState::Current),
            record("next", Algorithm::ES256, KeyState::Next),
        ]
    }

    /// 16 writers from generation 0, alternating between two pools (two instances):
    /// exactly one wins, the others get `Conflict`, and the store holds the winner's
    /// records at generation 1.
    async fn sixteen_replacers_one_wins(stores: [Arc<dyn SigningKeyStore>; 2]) {
        const WRITERS: usize = 16;
        let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
        let mut tasks = tokio::task::JoinSet::new();
        for writer in 0..WRITERS {
            let store = Arc::clone(&stores[writer % 2]);
            let barrier = Arc::clone(&barrier);
            tasks.spawn(async move {
                barrier.wait().await;
                store.replace(0, ring(writer)).await.map(|g| (g, writer))
            });
        }
        let mut winners = Vec::new();
        while let Some(result) = tasks.join_next().await {
            match result.unwrap() {
                Ok(won) => winners.push(won),
                Err(e) => assert_eq!(e.kind(), StoreErrorKind::Conflict, "{e}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
        let (generation, writer) = winners[0];
        assert_eq!(generation, 1);
        for store in &stores {
            let loaded = store.load().await.unwrap();
            assert_eq!((loaded.generation, loaded.records), (1, ring(writer)));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_sixteen_replacers_over_two_pools_one_wins() {
        let (a, b) = common::sqlite_pools(&super::fresh("sqlite", "keyring_race")).await;
        sixteen_replacers_one_wins([
            Arc::new(SqlSigningKeyStore::new(a)),
            Arc::new(SqlSigningKeyStore::new(b)),
        ])
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_sixteen_replacers_over_two_pools_one_wins() {
        let ns = super::fresh("postgres", "keyring_race");
        let Some((a, b)) = common::pg_pools(&ns).await else {
            return;
        };
        sixteen_replacers_one_wins([
            Arc::new(SqlSigningKeyStore::new(a)),
            Arc::new(SqlSigningKeyStore::new(b)),
        ])
        .await;
    }
}

mod chain_storage {
    use super::common;
    use mcpsec_audit::testkit::chain_storage::ChainStorageHarness;
    use mcpsec_audit::{
        AppendError, Batch, Chain, ChainConfig, ChainSink, ChainStorage, CheckpointKey,
        CheckpointPolicy, Error, FileSinkConfig, Reason, Record, VerifyOptions, verify_bytes,
    };
    use mcpsec_core::{
        EventKind, ManualClock, Outcome, SecurityEvent, ServiceId, SharedClock, StoreErrorKind,
        UserId,
    };
    use mcpsec_store_sql::SqlChainStorage;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// A backend under the suite: a fresh database, the suite's instance, appends that
    /// fail (half a batch inserted, then rolled back) while switched on.
    struct Harness<DB: sqlx::Database> {
        pool: sqlx::Pool<DB>,
        faults: Arc<AtomicBool>,
    }

    fn conformance() -> ServiceId {
        ServiceId::new("conformance").unwrap()
    }

    fn parse(text: &[u8]) -> Vec<Record> {
        text.split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| Record::parse(line).unwrap())
            .collect()
    }

    macro_rules! harness {
        ($db:ty) => {
            #[async_trait::async_trait]
            impl ChainStorageHarness for Harness<$db> {
                async fn open(&self) -> Box<dyn ChainStorage> {
                    // The suite's key is its own: this open checks hashes, numbers and
                    // links (the two-instance test below checks signatures too).
                    let storage =
                        SqlChainStorage::<$db>::open(self.pool.clone(), conformance(), &[])
                            .await
                            .unwrap()
                            .with_append_faults(Some(Arc::clone(&self.faults)));
                    Box::new(storage)
                }
                async fn stored(&self) -> Vec<Record> {
                    parse(
                        &SqlChainStorage::<$db>::export_jsonl(&self.pool, &conformance())
                            .await
                            .unwrap(),
                    )
                }
                fn refuse_appends(&self, refuse: bool) {
                    self.faults.store(refuse, Ordering::SeqCst);
                }
            }
        };
    }
    harness!(sqlx::Sqlite);
    harness!(sqlx::Postgres);

    /// Either backend's harness (PostgreSQL falls back to SQLite without a server).
    struct AnyHarness(Box<dyn ChainStorageHarness>);

    #[async_trait::async_trait]
    impl ChainStorageHarness for AnyHarness {
        async fn open(&self) -> Box<dyn ChainStorage> {
            self.0.open().await
        }
        async fn stored(&self) -> Vec<Record> {
            self.0.stored().await
        }
        fn refuse_appends(&self, refuse: bool) {
            self.0.refuse_appends(refuse);
        }
    }

    async fn sqlite_harness() -> AnyHarness {
        let pool = common::sqlite_pool(&super::fresh("sqlite", "chain_storage")).await;
        AnyHarness(Box::new(Harness {
            pool,
            faults: Arc::default(),
        }))
    }

    async fn postgres_harness() -> AnyHarness {
        match common::pg_pool(&super::fresh("postgres", "chain_storage")).await {
            Some(pool) => AnyHarness(Box::new(Harness {
                pool,
                faults: Arc::default(),
            })),
            None => sqlite_harness().await,
        }
    }

    mcpsec_audit::chain_storage_suite!(sqlite, super::sqlite_harness());
    mcpsec_audit::chain_storage_suite!(postgres, super::postgres_harness());

    fn clock() -> SharedClock {
        Arc::new(ManualClock::at_unix(1_767_225_600))
    }

    fn critical(user: &str) -> SecurityEvent {
        SecurityEvent::new(
            EventKind::AuthnTokenReuse,
            Outcome::Failure,
            std::time::UNIX_EPOCH,
        )
        .with_user(UserId::new(user).unwrap())
    }

    fn event_count(records: &[Record]) -> usize {
        records.iter().filter(|r| r.event().is_some()).count()
    }

    /// `n` records of a new chain of `instance`, and their JSON lines.
    fn batch(instance: &ServiceId, user: &str, n: usize) -> (Vec<Record>, Vec<u8>) {
        let mut chain = Chain::resume(
            ChainConfig::new(instance.clone()),
            0,
            mcpsec_audit::Digest::GENESIS,
        );
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let records: Vec<Record> = (0..n)
            .map(|_| chain.append(critical(user), now).unwrap())
            .collect();
        let mut lines = Vec::new();
        for r in &records {
            r.write_json(&mut lines).unwrap();
            lines.push(b'\n');
        }
        (records, lines)
    }

    macro_rules! chain_tests {
        ($module:ident, $db:ty, $pools:path) => {
            mod $module {
                use super::*;

                async fn pools(ns: &str) -> Option<(sqlx::Pool<$db>, sqlx::Pool<$db>)> {
                    $pools(&crate::fresh(stringify!($module), ns)).await
                }

                /// Two instances on one database append to their own chains at once;
                /// each chain verifies on its own, and a row tampered in one chain
                /// fails that chain's verification only.
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn two_instances_chain_and_verify_independently() {
                    let Some((pool_a, pool_b)) = pools("two_instances").await else {
                        return;
                    };
                    let key = Arc::new(CheckpointKey::generate().unwrap());
                    let keys = vec![*key.public_key()];
                    let (api1, api2) = (
                        ServiceId::new("api-1").unwrap(),
                        ServiceId::new("api-2").unwrap(),
                    );
                    let mut sinks = Vec::new();
                    for (pool, instance) in [(&pool_a, &api1), (&pool_b, &api2)] {
                        let storage =
                            SqlChainStorage::<$db>::open(pool.clone(), instance.clone(), &keys)
                                .await
                                .unwrap();
                        let chain = ChainConfig::new(instance.clone()).with_checkpoints(
                            Arc::clone(&key),
                            CheckpointPolicy {
                                every_records: 7,
                                every: Duration::from_secs(3600),
                            },
                        );
                        let config = FileSinkConfig::new(chain, clock());
                        sinks.push(Arc::new(
                            ChainSink::with_storage(Box::new(storage), config).unwrap(),
                        ));
                    }
                    let mut tasks = tokio::task::JoinSet::new();
                    for i in 0..20 {
                        for (sink, name) in sinks.iter().zip(["ada", "bob"]) {
                            let sink = Arc::clone(sink);
                            tasks.spawn(async move {
                                sink.append(critical(&format!("{name}-{i}"))).await
                            });
                        }
                    }
                    while let Some(done) = tasks.join_next().await {
                        done.unwrap().unwrap();
                    }
                    for sink in &sinks {
                        sink.close().unwrap();
                    }
                    let options = VerifyOptions::with_keys(keys.clone());
                    for instance in [&api1, &api2] {
                        let text = SqlChainStorage::<$db>::export_jsonl(&pool_a, instance)
                            .await
                            .unwrap();
                        let report = verify_bytes(&text, &options).unwrap();
                        assert!(report.authenticated);
                        assert_eq!(report.chains.len(), 1, "{instance}: its own chain only");
                        assert_eq!(event_count(&parse(&text)), 20);
                    }

                    let changed = sqlx::query(
                        "UPDATE audit_records SET line = replace(line, '\"ada-3\"', '\"eve-3\"')
                         WHERE instance = 'api-1' AND line LIKE '%\"ada-3\"%'",
                    )
                    .execute(&pool_b)
                    .await
                    .unwrap();
                    assert_eq!(changed.rows_affected(), 1);
                    let text = SqlChainStorage::<$db>::export_jsonl(&pool_a, &api1)
                        .await
                        .unwrap();
                    match verify_bytes(&text, &options) {
                        Err(Error::Tampered(finding)) => {
                            assert_eq!(finding.reason, Reason::Modified)
                        }
                        other => panic!("the tampered chain verified: {other:?}"),
                    }
                    let text = SqlChainStorage::<$db>::export_jsonl(&pool_a, &api2)
                        .await
                        .unwrap();
                    verify_bytes(&text, &options).expect("the other chain still verifies");
                }

                /// A record changed after the last signed one is found when the chain is
                /// opened, before anything is chained onto it.
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn open_refuses_a_tampered_unsigned_tail() {
                    let Some((pool, _)) = pools("tampered_tail").await else {
                        return;
                    };
                    let instance = ServiceId::new("api-1").unwrap();
                    let storage = SqlChainStorage::<$db>::open(pool.clone(), instance.clone(), &[])
                        .await
                        .unwrap();
                    let sink = ChainSink::with_storage(
                        Box::new(storage),
                        FileSinkConfig::new(ChainConfig::new(instance.clone()), clock()),
                    )
                    .unwrap();
                    for name in ["ada", "bob", "cy"] {
                        sink.append(critical(name)).await.unwrap();
                    }
                    sink.close().unwrap();
                    drop(sink);
                    SqlChainStorage::<$db>::open(pool.clone(), instance.clone(), &[])
                        .await
                        .expect("untouched, it opens");
                    sqlx::query(
                        "UPDATE audit_records SET line = replace(line, '\"bob\"', '\"eve\"')
                         WHERE instance = 'api-1' AND seq = 2",
                    )
                    .execute(&pool)
                    .await
                    .unwrap();
                    match SqlChainStorage::<$db>::open(pool.clone(), instance, &[]).await {
                        Err(Error::Tampered(finding)) => {
                            assert_eq!((finding.reason, finding.line), (Reason::Modified, 2))
                        }
                        other => panic!("opened a tampered chain: {other:?}"),
                    }
                }

                /// A batch longer than one multi-row INSERT is stored whole, in order,
                /// and reopens at its last record.
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn a_large_batch_is_stored_whole() {
                    let Some((pool, _)) = pools("large_batch").await else {
                        return;
                    };
                    let instance = ServiceId::new("api-1").unwrap();
                    let mut storage =
                        SqlChainStorage::<$db>::open(pool.clone(), instance.clone(), &[])
                            .await
                            .unwrap();
                    let (records, lines) = batch(&instance, "ada", 600);
                    storage
                        .append_batch(Batch {
                            records: &records,
                            lines: &lines,
                        })
                        .unwrap();
                    assert_eq!(storage.position(), 600);
                    let text = SqlChainStorage::<$db>::export_jsonl(&pool, &instance)
                        .await
                        .unwrap();
                    assert_eq!(text, lines);
                    let reopened = SqlChainStorage::<$db>::open(pool, instance, &[])
                        .await
                        .unwrap();
                    let head = reopened.opened_head();
                    assert_eq!((head.last_seq, head.unsigned_tail), (600, Some((1, 600))));
                    assert_eq!(head.head, records[599].hash);
                }

                /// A chain whose last checkpoint another key signed, or cut back before
                /// the checkpoint its mirror holds, is refused on open.
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn open_holds_the_chain_to_its_mirrored_checkpoint() {
                    let Some((pool, _)) = pools("mirrored").await else {
                        return;
                    };
                    let key = Arc::new(CheckpointKey::generate().unwrap());
                    let keys = vec![*key.public_key()];
                    let instance = ServiceId::new("api-1").unwrap();
                    let storage =
                        SqlChainStorage::<$db>::open(pool.clone(), instance.clone(), &keys)
                            .await
                            .unwrap();
                    let chain = ChainConfig::new(instance.clone())
                        .with_checkpoints(Arc::clone(&key), CheckpointPolicy::default());
                    let sink = ChainSink::with_storage(
                        Box::new(storage),
                        FileSinkConfig::new(chain, clock()),
                    )
                    .unwrap();
                    sink.append(critical("ada")).await.unwrap();
                    sink.close().unwrap();
                    drop(sink);
                    let stored = parse(
                        &SqlChainStorage::<$db>::export_jsonl(&pool, &instance)
                            .await
                            .unwrap(),
                    );
                    let checkpoint = stored.last().unwrap().clone();
                    assert_eq!(checkpoint.seq, 2);
                    SqlChainStorage::<$db>::open_mirrored(
                        pool.clone(),
                        instance.clone(),
                        &keys,
                        Some(&checkpoint),
                    )
                    .await
                    .expect("the chain holds its mirrored checkpoint");
                    let other = CheckpointKey::generate().unwrap();
                    match SqlChainStorage::<$db>::open(
                        pool.clone(),
                        instance.clone(),
                        &[*other.public_key()],
                    )
                    .await
                    {
                        Err(Error::Tampered(finding)) => {
                            assert_eq!((finding.reason, finding.line), (Reason::BadSignature, 2))
                        }
                        other => panic!("adopted a chain signed with another key: {other:?}"),
                    }
                    sqlx::query("DELETE FROM audit_records WHERE seq = 2")
                        .execute(&pool)
                        .await
                        .unwrap();
                    match SqlChainStorage::<$db>::open_mirrored(
                        pool.clone(),
                        instance,
                        &keys,
                        Some(&checkpoint),
                    )
                    .await
                    {
                        Err(Error::Tampered(finding)) => {
                            assert_eq!(finding.reason, Reason::Truncated)
                        }
                        other => panic!("opened a truncated chain: {other:?}"),
                    }
                }

                /// Opening on a current-thread runtime is refused (the sink's writer
                /// thread could not run queries there).
                #[tokio::test(flavor = "current_thread")]
                async fn open_needs_a_multi_thread_runtime() {
                    let Some((pool, _)) = pools("current_thread").await else {
                        return;
                    };
                    let opened =
                        SqlChainStorage::<$db>::open(pool, ServiceId::new("api-1").unwrap(), &[])
                            .await;
                    assert!(matches!(opened, Err(Error::Config(_))), "{opened:?}");
                }

                /// Two storages writing one instance's chain: the second writer's batch
                /// hits the key `(instance, seq)` and is refused whole as a conflict.
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn a_second_writer_of_one_chain_conflicts() {
                    let Some((pool_a, pool_b)) = pools("second_writer").await else {
                        return;
                    };
                    let instance = ServiceId::new("api-1").unwrap();
                    let mut first = SqlChainStorage::<$db>::open(pool_a, instance.clone(), &[])
                        .await
                        .unwrap();
                    let mut second =
                        SqlChainStorage::<$db>::open(pool_b.clone(), instance.clone(), &[])
                            .await
                            .unwrap();
                    let (records, lines) = batch(&instance, "ada", 2);
                    first
                        .append_batch(Batch {
                            records: &records,
                            lines: &lines,
                        })
                        .unwrap();
                    let (records, lines) = batch(&instance, "eve", 2);
                    match second.append_batch(Batch {
                        records: &records,
                        lines: &lines,
                    }) {
                        Err(AppendError::Refused(Error::Store(e))) => {
                            assert_eq!(e.kind(), StoreErrorKind::Conflict)
                        }
                        other => panic!("a second writer appended: {other:?}"),
                    }
                    let stored = parse(
                        &SqlChainStorage::<$db>::export_jsonl(&pool_b, &instance)
                            .await
                            .unwrap(),
                    );
                    assert_eq!(stored.len(), 2);
                    assert!(
                        stored
                            .iter()
                            .all(|r| r.to_json().unwrap().contains("\"ada\""))
                    );
                }
            }
        };
    }

    async fn sqlite_pools(
        ns: &mcpsec_core::testkit::Namespace,
    ) -> Option<(sqlx::SqlitePool, sqlx::SqlitePool)> {
        Some(common::sqlite_pools(ns).await)
    }

    chain_tests!(sqlite_chains, sqlx::Sqlite, sqlite_pools);
    chain_tests!(postgres_chains, sqlx::Postgres, common::pg_pools);
}
