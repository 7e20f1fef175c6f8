//! The error mapping against real backends: each `StoreError` kind from the cause it is
//! documented for, with the sqlx error kept as the source.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use mcpsec_access::{AuthMethods, Authentication, CredentialKind, Role, ScopeSet};
use mcpsec_apikeys::{ApiKeyLookup, ApiKeyRecord, ApiKeyStore, Env, KeyStatus};
use mcpsec_core::testkit::Namespace;
use mcpsec_core::{KeyId, Label, OrgId, StoreErrorKind, UserId};
use mcpsec_store_sql::{SqlApiKeyStore, store_error};
use sqlx::{Connection, Executor};
use std::error::Error as _;
use std::time::{Duration, UNIX_EPOCH};

fn ns(backend: &str, case: &str) -> Namespace {
    Namespace::new(backend, "errors", case)
}

fn tenant() -> mcpsec_access::Principal {
    mcpsec_access::danger::principal(
        UserId::new("alice").unwrap(),
        OrgId::new("acme").unwrap(),
        Role::Developer,
        ScopeSet::parse_strict("user:token").unwrap(),
        CredentialKind::AccessToken,
        Authentication {
            at: None,
            methods: AuthMethods::EMPTY,
        },
    )
}

fn record(id: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: KeyId::new(id).unwrap(),
        hash: "hmac-sha256$v1$AAAA".to_owned(),
        owner: UserId::new("alice").unwrap(),
        org: OrgId::new("acme").unwrap(),
        scopes: ScopeSet::parse_strict("mcp:read").unwrap(),
        env: Env::Live,
        name: Label::new("ci").unwrap(),
        created_at: UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        expires_at: None,
        last_used_at: None,
        status: KeyStatus::Active,
        hint: "abcd".to_owned(),
        created_by: UserId::new("alice").unwrap(),
    }
}

/// A duplicate, a value the schema refuses, a row that does not decode and a query
/// before migration, on one backend.
macro_rules! data_errors {
    ($backend:ident, $pool:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn duplicate_key_id_is_a_conflict() {
                let Some(pool) = $pool(&ns(stringify!($backend), "duplicate")).await else {
                    return;
                };
                let store = SqlApiKeyStore::new(pool);
                store.insert(&tenant(), &record("k1")).await.unwrap();
                let e = store.insert(&tenant(), &record("k1")).await.unwrap_err();
                assert_eq!(e.kind(), StoreErrorKind::Conflict);
                assert!(e.source().is_some(), "the sqlx error is the source");
            }

            #[tokio::test]
            async fn check_violation_is_rejected() {
                let Some(pool) = $pool(&ns(stringify!($backend), "check")).await else {
                    return;
                };
                let e = sqlx::query("INSERT INTO attempt_counters VALUES ('s', -1, 0, 0)")
                    .execute(&pool)
                    .await
                    .unwrap_err();
                assert_eq!(store_error("insert", e).kind(), StoreErrorKind::Rejected);
            }

            #[tokio::test]
            async fn a_stored_row_that_does_not_parse_is_corrupt() {
                let Some(pool) = $pool(&ns(stringify!($backend), "corrupt")).await else {
                    return;
                };
                let store = SqlApiKeyStore::new(pool.clone());
                store.insert(&tenant(), &record("k1")).await.unwrap();
                sqlx::query("UPDATE api_keys SET scopes = 'root:everything'")
                    .execute(&pool)
                    .await
                    .unwrap();
                let e = store.get(&KeyId::new("k1").unwrap()).await.unwrap_err();
                assert_eq!(e.kind(), StoreErrorKind::Corrupt);
                let e = sqlx::query_scalar::<_, i64>("SELECT 'not a number'")
                    .fetch_one(&pool)
                    .await
                    .unwrap_err();
                assert_eq!(store_error("decode", e).kind(), StoreErrorKind::Corrupt);
            }

            #[tokio::test]
            async fn a_closed_pool_is_unavailable() {
                let Some(pool) = $pool(&ns(stringify!($backend), "closed")).await else {
                    return;
                };
                pool.close().await;
                let e = SqlApiKeyStore::new(pool)
                    .get(&KeyId::new("k1").unwrap())
                    .await
                    .unwrap_err();
                assert_eq!(e.kind(), StoreErrorKind::Unavailable);
            }
        }
    };
}

async fn sqlite(ns: &Namespace) -> Option<sqlx::SqlitePool> {
    Some(common::sqlite_pool(ns).await)
}

data_errors!(sqlite, sqlite);
data_errors!(postgres, common::pg_pool);

#[tokio::test]
async fn sqlite_busy_past_the_timeout_is_a_timeout() {
    let (pool, _) = common::sqlite_pools(&ns("sqlite", "busy")).await;
    let mut holder = pool.acquire().await.unwrap();
    holder.execute("BEGIN IMMEDIATE").await.unwrap();
    let path = sqlx::query_scalar::<_, String>("SELECT file FROM pragma_database_list")
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    let impatient = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_millis(50));
    let mut other = sqlx::SqliteConnection::connect_with(&impatient)
        .await
        .unwrap();
    let e = sqlx::query("INSERT INTO users (id) VALUES ('u')")
        .execute(&mut other)
        .await
        .unwrap_err();
    assert_eq!(store_error("write", e).kind(), StoreErrorKind::Timeout);
    holder.execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn sqlite_unmigrated_schema_is_corrupt() {
    let pool = mcpsec_store_sql::sqlite::connect("sqlite::memory:", 1)
        .await
        .unwrap();
    let e = SqlApiKeyStore::new(pool)
        .get(&KeyId::new("k1").unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        StoreErrorKind::Corrupt,
        "no such table: not migrated"
    );
}

#[tokio::test]
async fn postgres_connection_refused_is_unavailable() {
    let e = mcpsec_store_sql::postgres::connect("postgres://postgres@127.0.0.1:1/test", 1)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Unavailable);
}

#[tokio::test]
async fn postgres_url_that_does_not_parse_is_rejected_and_not_quoted() {
    let e = mcpsec_store_sql::postgres::connect("postgres://u:hunter2@[bad/test", 1)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Rejected);
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[tokio::test]
async fn postgres_statement_timeout_and_pool_timeout_are_timeouts() {
    let Some(pool) = common::pg_pool(&ns("postgres", "timeouts")).await else {
        return;
    };
    let mut conn = pool.acquire().await.unwrap();
    conn.execute("SET statement_timeout = 20").await.unwrap();
    let e = sqlx::query("SELECT pg_sleep(5)")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert_eq!(
        store_error("sleep", e).kind(),
        StoreErrorKind::Timeout,
        "57014"
    );
    conn.execute("RESET statement_timeout").await.unwrap();
    drop(conn);

    let url = common::database_url().unwrap();
    let one = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(50))
        .connect(&url)
        .await
        .unwrap();
    let _held = one.acquire().await.unwrap();
    let e = one.acquire().await.unwrap_err();
    assert_eq!(store_error("acquire", e).kind(), StoreErrorKind::Timeout);
}

#[tokio::test]
async fn postgres_serialization_failure_is_a_conflict() {
    let Some(pool) = common::pg_pool(&ns("postgres", "serialization")).await else {
        return;
    };
    let mut a = pool.acquire().await.unwrap();
    let mut b = pool.acquire().await.unwrap();
    for conn in [&mut a, &mut b] {
        conn.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            .await
            .unwrap();
        conn.execute("SELECT COUNT(*) FROM users").await.unwrap();
    }
    a.execute("INSERT INTO users (id) VALUES ('a')")
        .await
        .unwrap();
    b.execute("INSERT INTO users (id) VALUES ('b')")
        .await
        .unwrap();
    a.execute("COMMIT").await.unwrap();
    let e = b.execute("COMMIT").await.unwrap_err();
    assert_eq!(
        store_error("commit", e).kind(),
        StoreErrorKind::Conflict,
        "40001"
    );
}

/// A connection killed mid-transaction (`pg_terminate_backend` from another connection)
/// leaves nothing of the transaction behind, fails as `Unavailable`, and the pool goes on
/// with a fresh connection.
#[tokio::test]
async fn postgres_connection_killed_mid_transaction_is_unavailable_and_leaves_nothing() {
    let Some(pool) = common::pg_pool(&ns("postgres", "killed")).await else {
        return;
    };
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO users (id) VALUES ('half-written')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(killed);
    let e = sqlx::query("INSERT INTO orgs (id) VALUES ('after')")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert_eq!(store_error("write", e).kind(), StoreErrorKind::Unavailable);
    drop(tx);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "nothing of the killed transaction is left");
}

#[tokio::test]
async fn sqlite_tables_are_strict_a_wrong_type_is_rejected() {
    let pool = common::sqlite_pool(&ns("sqlite", "strict")).await;
    let e = sqlx::query("INSERT INTO attempt_counters VALUES ('s', 'many', 0, 0)")
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(store_error("insert", e).kind(), StoreErrorKind::Rejected);
}
