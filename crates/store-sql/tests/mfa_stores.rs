//! The passkey and TOTP enrollment stores on both backends: the `PasskeyStore` conformance
//! suite as named tests (`passkey_store::sqlite::<case>`, `passkey_store::postgres::<case>`),
//! ceremony expiry, and TOTP enrollments sealed by a real `FieldCrypt` (round trip, one
//! confirmation, a sealed value moved to another row does not open, and no secret in any
//! column of any table).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use mcpsec_core::{ManualClock, SealContext, Sealer, SecretBytes};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The conformance suites' `t(0)`.
const T0: u64 = 1_767_225_600;

fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + s)
}

/// A clock at the suites' `t(0)`, where their ceremonies are live.
fn clock() -> ManualClock {
    ManualClock::at(t(0))
}

fn sealer() -> Arc<dyn Sealer> {
    common::sealer_for(mcpsec_store_sql::TOTP_SEAL_CATEGORY)
}

mod passkey_store {
    use super::{clock, common, t};
    use mcpsec_core::testkit::Namespace;
    use mcpsec_core::{SecretBytes, SharedClock, UserId};
    use mcpsec_mfa::{CeremonyId, CeremonyKind, CeremonyLimits, CeremonyRecord, PasskeyStore};
    use mcpsec_store_sql::SqlPasskeyStore;
    use std::sync::Arc;
    use std::time::Duration;

    fn shared(clock: &mcpsec_core::ManualClock) -> SharedClock {
        Arc::new(clock.clone())
    }

    mcpsec_mfa::passkey_store_suite!(sqlite, |ns: Namespace| async move {
        Arc::new(SqlPasskeyStore::new(common::sqlite_pool(&ns).await).with_clock(shared(&clock())))
            as Arc<dyn PasskeyStore>
    });
    mcpsec_mfa::passkey_store_suite!(postgres, |ns: Namespace| async move {
        match common::pg_pool(&ns).await {
            Some(pool) => Arc::new(SqlPasskeyStore::new(pool).with_clock(shared(&clock())))
                as Arc<dyn PasskeyStore>,
            None => {
                eprintln!("notice: {} runs on SQLite", ns.as_str());
                Arc::new(
                    SqlPasskeyStore::new(common::sqlite_pool(&ns).await)
                        .with_clock(shared(&clock())),
                ) as Arc<dyn PasskeyStore>
            }
        }
    });

    /// An expired ceremony is refused by its own user and left in place; a later start
    /// prunes it.
    async fn expired_ceremony_is_refused(
        store: Arc<dyn PasskeyStore>,
        clock: mcpsec_core::ManualClock,
    ) {
        let alice = UserId::new("alice").unwrap();
        let auth = CeremonyKind::Authentication;
        let record = || CeremonyRecord {
            user: alice.clone(),
            kind: auth,
            state: SecretBytes::from_slice(b"{\"state\":1}"),
            expires_at: t(300),
        };
        let old = CeremonyId::generate().unwrap();
        store
            .put_ceremony(&old, record(), t(0), CeremonyLimits::default())
            .await
            .unwrap();
        clock.advance(Duration::from_secs(300));
        assert!(
            store
                .take_ceremony(&old, &alice, auth)
                .await
                .unwrap()
                .is_none(),
            "expired at its expiry instant"
        );
        clock.rewind(Duration::from_secs(1));
        assert!(
            store
                .take_ceremony(&old, &alice, auth)
                .await
                .unwrap()
                .is_some(),
            "a refused take left it in place"
        );

        let (a, b) = (
            CeremonyId::generate().unwrap(),
            CeremonyId::generate().unwrap(),
        );
        store
            .put_ceremony(&a, record(), t(0), CeremonyLimits::default())
            .await
            .unwrap();
        store
            .put_ceremony(&b, record(), t(400), CeremonyLimits::default())
            .await
            .unwrap();
        assert!(
            store
                .take_ceremony(&a, &alice, auth)
                .await
                .unwrap()
                .is_none(),
            "a start at t(400) pruned the ceremony that expired at t(300)"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_expired_ceremony_is_refused() {
        let ns = Namespace::new("sqlite", "mfa_stores", "expired_ceremony");
        let clock = clock();
        let store = SqlPasskeyStore::new(common::sqlite_pool(&ns).await).with_clock(shared(&clock));
        expired_ceremony_is_refused(Arc::new(store), clock).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_expired_ceremony_is_refused() {
        let ns = Namespace::new("postgres", "mfa_stores", "expired_ceremony");
        let Some(pool) = common::pg_pool(&ns).await else {
            return;
        };
        let clock = clock();
        let store = SqlPasskeyStore::new(pool).with_clock(shared(&clock));
        expired_ceremony_is_refused(Arc::new(store), clock).await;
    }
}

/// Every value in every column of every table, as bytes.
async fn sqlite_dump(pool: &sqlx::SqlitePool) -> Vec<Vec<u8>> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(pool)
            .await
            .unwrap();
    assert!(tables.iter().any(|t| t == "totp_enrollments"));
    let mut out = Vec::new();
    for table in tables {
        let columns: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT name FROM pragma_table_info('{table}')"
        )))
        .fetch_all(pool)
        .await
        .unwrap();
        for column in columns {
            let values: Vec<Option<Vec<u8>>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT CAST(\"{column}\" AS BLOB) FROM \"{table}\""
            )))
            .fetch_all(pool)
            .await
            .unwrap();
            out.extend(values.into_iter().flatten());
        }
    }
    out
}

/// Every value in every column of every table of the test's schema, as bytes (`bytea`
/// as stored, everything else as its text).
async fn pg_dump(pool: &sqlx::PgPool) -> Vec<Vec<u8>> {
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text
         FROM information_schema.columns WHERE table_schema = current_schema()",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(columns.iter().any(|(t, _, _)| t == "totp_enrollments"));
    let mut out = Vec::new();
    for (table, column, data_type) in columns {
        if data_type == "bytea" {
            let values: Vec<Option<Vec<u8>>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT \"{column}\" FROM \"{table}\""
            )))
            .fetch_all(pool)
            .await
            .unwrap();
            out.extend(values.into_iter().flatten());
        } else {
            let values: Vec<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT \"{column}\"::text FROM \"{table}\""
            )))
            .fetch_all(pool)
            .await
            .unwrap();
            out.extend(values.into_iter().flatten().map(String::into_bytes));
        }
    }
    out
}

/// The forms a leaked secret could take: raw bytes, base32 (either case, padded or
/// not) and hex.
fn secret_forms(raw: &[u8], base32: &str) -> Vec<Vec<u8>> {
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let unpadded = base32.trim_end_matches('=');
    vec![
        raw.to_vec(),
        base32.as_bytes().to_vec(),
        unpadded.as_bytes().to_vec(),
        unpadded.to_ascii_lowercase().into_bytes(),
        hex.clone().into_bytes(),
        hex.to_ascii_uppercase().into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A place other than `totp_enrollments`: a secret sealed there and pasted into the table
/// must not open.
fn foreign_context() -> SealContext {
    SealContext::new("totp_secrets", "elsewhere", "secret", "alice").unwrap()
}

/// The TOTP enrollment cases, for one backend: `$pool` gives `Option<Pool>` for a
/// namespace, `$dump` every stored value.
macro_rules! totp_cases {
    ($backend:ident, $pool:path, $dump:path) => {
        mod $backend {
            use super::*;
            use mcpsec_core::UserId;
            use mcpsec_core::testkit::Namespace;
            use mcpsec_mfa::{EnrollmentId, TotpAlgorithm, TotpConfig, TotpSecret};
            use mcpsec_store_sql::{Confirmation, SqlTotpEnrollments, TotpEnrollmentError};

            fn ns(case: &str) -> Namespace {
                Namespace::new(stringify!($backend), "mfa_stores_totp", case)
            }

            fn user(name: &str) -> UserId {
                UserId::new(name).unwrap()
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn totp_enrollment_round_trips_and_is_confirmed_once() {
                let Some(pool) = $pool(&ns("round_trip")).await else {
                    return;
                };
                let store = SqlTotpEnrollments::new(pool, sealer());
                let alice = user("alice");
                let secret = TotpSecret::generate().unwrap();
                let config = TotpConfig {
                    algorithm: TotpAlgorithm::Sha256,
                    digits: 8,
                    step: 60,
                    skew: 2,
                };
                let id = store
                    .save_pending(&alice, &secret, config, t(0))
                    .await
                    .unwrap();
                assert_eq!(id, secret.enrollment_id(&alice));
                assert!(matches!(
                    store.save_pending(&alice, &secret, config, t(1)).await,
                    Err(TotpEnrollmentError::Duplicate)
                ));
                let loaded = store.load(&alice, &id).await.unwrap().unwrap();
                assert_eq!(
                    loaded.secret.to_base32().expose_secret(),
                    secret.to_base32().expose_secret()
                );
                assert_eq!(loaded.config, config);
                assert_eq!(
                    (loaded.state.created_at, loaded.state.confirmed_at),
                    (t(0), None)
                );
                assert!(store.load(&user("bob"), &id).await.unwrap().is_none());

                let listed = store.list(&alice).await.unwrap();
                let [only] = listed.as_slice() else {
                    panic!("one enrollment listed: {listed:?}");
                };
                assert_eq!((only.enrollment, only.confirmed_at), (id, None));

                // 32 concurrent confirmations: exactly one confirms.
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..32 {
                    let store = store.clone();
                    let alice = alice.clone();
                    tasks.spawn(async move { store.confirm(&alice, &id, t(5)).await.unwrap() });
                }
                let mut confirmed = 0;
                while let Some(outcome) = tasks.join_next().await {
                    match outcome.unwrap() {
                        Confirmation::Confirmed => confirmed += 1,
                        Confirmation::AlreadyConfirmed => {}
                        other => panic!("{other:?}"),
                    }
                }
                assert_eq!(confirmed, 1);
                assert_eq!(
                    store.confirm(&alice, &id, t(6)).await.unwrap(),
                    Confirmation::AlreadyConfirmed
                );
                assert_eq!(
                    store.confirm(&user("bob"), &id, t(6)).await.unwrap(),
                    Confirmation::Unknown,
                    "another user's enrollment"
                );
                assert_eq!(
                    store
                        .confirm(&alice, &EnrollmentId([7; 16]), t(6))
                        .await
                        .unwrap(),
                    Confirmation::Unknown
                );
                let loaded = store.load(&alice, &id).await.unwrap().unwrap();
                assert_eq!(loaded.state.confirmed_at, Some(t(5)));

                // Invalid parameters are refused before anything is written.
                let other = TotpSecret::generate().unwrap();
                let bad = TotpConfig {
                    digits: 5,
                    ..TotpConfig::default()
                };
                assert!(matches!(
                    store.save_pending(&alice, &other, bad, t(7)).await,
                    Err(TotpEnrollmentError::Refused(_))
                ));
                assert_eq!(store.list(&alice).await.unwrap().len(), 1);

                assert!(store.remove(&alice, &id).await.unwrap());
                assert!(!store.remove(&alice, &id).await.unwrap());
                assert!(store.load(&alice, &id).await.unwrap().is_none());
                assert!(store.list(&alice).await.unwrap().is_empty());
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn totp_sealed_secret_moved_to_another_row_does_not_open() {
                let Some(pool) = $pool(&ns("moved_row")).await else {
                    return;
                };
                let sealer = sealer();
                let store = SqlTotpEnrollments::new(pool.clone(), Arc::clone(&sealer));
                let (alice, bob) = (user("alice"), user("bob"));
                let alices = TotpSecret::generate().unwrap();
                let bobs = TotpSecret::generate().unwrap();
                let config = TotpConfig::default();
                let a = store.save_pending(&alice, &alices, config, t(0)).await.unwrap();
                let b = store.save_pending(&bob, &bobs, config, t(0)).await.unwrap();
                assert!(store.load(&bob, &b).await.unwrap().is_some());

                // Alice's sealed secret pasted into Bob's row.
                sqlx::query(
                    "UPDATE totp_enrollments SET sealed_secret =
                         (SELECT sealed_secret FROM totp_enrollments WHERE user_id = 'alice')
                     WHERE user_id = 'bob'",
                )
                .execute(&pool)
                .await
                .unwrap();
                assert!(matches!(
                    store.load(&bob, &b).await,
                    Err(TotpEnrollmentError::Unsealable(_))
                ));

                // Alice's parameters edited in place (a wider skew).
                sqlx::query(
                    "UPDATE totp_enrollments SET config = 'SHA1.6.30.2' WHERE user_id = 'alice'",
                )
                .execute(&pool)
                .await
                .unwrap();
                assert!(matches!(
                    store.load(&alice, &a).await,
                    Err(TotpEnrollmentError::Unsealable(_))
                ));

                // A value sealed by the same sealer for another place does not open here.
                let foreign = alices.seal(sealer.as_ref(), &foreign_context()).await.unwrap();
                sqlx::query(
                    "UPDATE totp_enrollments SET sealed_secret = $1, config = 'SHA1.6.30.1'
                     WHERE user_id = 'alice'",
                )
                .bind(foreign.as_slice())
                .execute(&pool)
                .await
                .unwrap();
                assert!(matches!(
                    store.load(&alice, &a).await,
                    Err(TotpEnrollmentError::Unsealable(_))
                ));

                // A sealer without a key for TOTP secrets refuses, and nothing is written.
                let wrong = SqlTotpEnrollments::new(pool, crate::common::sealer_for("pii"));
                let carol = user("carol");
                assert!(matches!(
                    wrong
                        .save_pending(&carol, &TotpSecret::generate().unwrap(), config, t(0))
                        .await,
                    Err(TotpEnrollmentError::Refused(_))
                ));
                assert!(wrong.list(&carol).await.unwrap().is_empty());
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn totp_raw_tables_hold_no_secret() {
                let Some(pool) = $pool(&ns("raw_tables")).await else {
                    return;
                };
                let store = SqlTotpEnrollments::new(pool.clone(), sealer());
                let alice = user("alice");
                let raw = SecretBytes::random(20).unwrap();
                let secret = TotpSecret::from_bytes(SecretBytes::from_slice(raw.expose_secret()))
                    .unwrap();
                let base32 = secret.to_base32();
                let id = store
                    .save_pending(&alice, &secret, TotpConfig::default(), t(0))
                    .await
                    .unwrap();
                store.confirm(&alice, &id, t(1)).await.unwrap();
                // The replay guard's row for the same enrollment, as a login would leave it.
                mcpsec_mfa::TotpReplayGuard::record_step_if_newer(
                    &mcpsec_store_sql::SqlReplayGuard::new(pool.clone()),
                    &alice,
                    &id,
                    58_907_520,
                )
                .await
                .unwrap();

                let values = $dump(&pool).await;
                let sealed: Vec<u8> =
                    sqlx::query_scalar("SELECT sealed_secret FROM totp_enrollments")
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                assert!(
                    values.iter().any(|v| *v == sealed),
                    "the dump reads the sealed column"
                );
                for form in secret_forms(raw.expose_secret(), base32.expose_secret()) {
                    for value in &values {
                        assert!(!contains(value, &form), "a TOTP secret found in a raw table");
                    }
                }
                // And the store still opens what it sealed.
                let loaded = store.load(&alice, &id).await.unwrap().unwrap();
                assert_eq!(loaded.secret.to_base32().expose_secret(), base32.expose_secret());
            }
        }
    };
}

/// A migrated SQLite pool (always available).
async fn sqlite_pool(ns: &mcpsec_core::testkit::Namespace) -> Option<sqlx::SqlitePool> {
    Some(common::sqlite_pool(ns).await)
}

/// A migrated PostgreSQL schema; `None` (the test skips with a notice) without
/// `MCPSEC_TEST_DATABASE_URL`.
async fn pg_pool(ns: &mcpsec_core::testkit::Namespace) -> Option<sqlx::PgPool> {
    common::pg_pool(ns).await
}

mod totp_enrollments {
    use super::*;
    totp_cases!(sqlite, super::sqlite_pool, super::sqlite_dump);
    totp_cases!(postgres, super::pg_pool, super::pg_dump);
}
