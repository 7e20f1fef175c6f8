//! Test databases: a fresh one per test, removed when the test's pool goes away.
//!
//! - SQLite: a temporary file per test (WAL, several connections, so races are real).
//! - PostgreSQL: a schema per test in the database named by `MCPSEC_TEST_DATABASE_URL`,
//!   made the pool's `search_path` and migrated into; dropped when the last handle on the
//!   pool is dropped (a guard captured by the pool's `after_connect` hook). Without the
//!   variable the test prints a notice and runs on SQLite instead (in CI, where
//!   `CI=true`, a missing variable fails the test); set but unreachable fails the test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcpsec_core::testkit::Namespace;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Connection, Executor, PgPool, SqlitePool};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

/// Removes a test's SQLite files when dropped.
struct SqliteFiles(PathBuf);

impl Drop for SqliteFiles {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A migrated SQLite database in a temporary file of its own.
pub async fn sqlite_pool(ns: &Namespace) -> SqlitePool {
    sqlite_pools(ns).await.0
}

/// Two pools on one migrated SQLite file: two instances sharing a database.
pub async fn sqlite_pools(ns: &Namespace) -> (SqlitePool, SqlitePool) {
    let path = std::env::temp_dir().join(format!(
        "mcpsec-store-sql-{}-{}.db",
        ns.as_str(),
        std::process::id()
    ));
    drop(SqliteFiles(path.clone())); // a leftover of an earlier run
    let files = Arc::new(SqliteFiles(path.clone()));
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(mcpsec_store_sql::sqlite::BUSY_TIMEOUT);
    let open = || {
        let files = Arc::clone(&files);
        SqlitePoolOptions::new()
            .max_connections(6)
            .after_connect(move |_, _| {
                let _keep = Arc::clone(&files);
                Box::pin(async { Ok(()) })
            })
            .connect_with(options.clone())
    };
    let first = open().await.expect("open a temporary SQLite database");
    mcpsec_store_sql::sqlite::migrate(&first)
        .await
        .expect("migrate SQLite");
    let second = open().await.expect("open it again");
    (first, second)
}

/// Drops a test's PostgreSQL schema when dropped.
struct PgSchema {
    url: String,
    schema: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread with a
        // runtime of its own drops the schema, and the test waits for it.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                )))
                .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("warning: could not drop test schema {}", self.schema);
        }
    }
}

/// The PostgreSQL URL, or `None` (with a notice) when tests should not use one.
pub fn database_url() -> Option<String> {
    mcpsec_core::testkit::database_url()
}

/// A pool whose connections work in a fresh, migrated schema named after `ns`; `None`
/// without `MCPSEC_TEST_DATABASE_URL`. Panics (fails the test) when the variable is set
/// and the server cannot be reached.
pub async fn pg_pool(ns: &Namespace) -> Option<PgPool> {
    Some(pg_pools(ns).await?.0)
}

/// Two pools on one fresh, migrated schema: two instances sharing a database.
pub async fn pg_pools(ns: &Namespace) -> Option<(PgPool, PgPool)> {
    let (first, second) = pg_pools_unmigrated(ns).await?;
    mcpsec_store_sql::postgres::migrate(&first)
        .await
        .expect("migrate PostgreSQL");
    Some((first, second))
}

/// Two pools on one fresh, empty schema (for a test that migrates it step by step).
pub async fn pg_pools_unmigrated(ns: &Namespace) -> Option<(PgPool, PgPool)> {
    let url = database_url()?;
    let schema = ns.as_str().to_owned();
    let mut admin = sqlx::PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("MCPSEC_TEST_DATABASE_URL is set but unreachable: {e}"));
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\""
        )))
        .await
        .expect("create the test schema");
    admin.close().await.expect("close");
    let guard = Arc::new(PgSchema {
        url: url.clone(),
        schema: schema.clone(),
    });
    let options = PgConnectOptions::from_str(&url)
        .expect("parse MCPSEC_TEST_DATABASE_URL")
        .options([("search_path", schema.as_str())]);
    let open = || {
        let guard = Arc::clone(&guard);
        PgPoolOptions::new()
            .max_connections(6)
            .after_connect(move |_, _| {
                let _keep = Arc::clone(&guard);
                Box::pin(async { Ok(()) })
            })
            .connect_with(options.clone())
    };
    let first = open().await.expect("connect to the test database");
    let second = open().await.expect("connect again");
    Some((first, second))
}

/// `Arc::new($store::new(pool))` on PostgreSQL, or on SQLite when no PostgreSQL is
/// configured (the notice says so), as `Arc<dyn $tr>`.
#[macro_export]
macro_rules! pg_or_sqlite {
    ($ns:expr, $store:ident as $tr:path) => {{
        let ns = $ns;
        match $crate::common::pg_pool(&ns).await {
            Some(pool) => std::sync::Arc::new($store::new(pool)) as std::sync::Arc<dyn $tr>,
            None => {
                eprintln!("notice: {} runs on SQLite", ns.as_str());
                std::sync::Arc::new($store::new($crate::common::sqlite_pool(&ns).await))
                    as std::sync::Arc<dyn $tr>
            }
        }
    }};
}

/// A real sealer: AES-256-GCM with a fresh key for `category`.
pub fn sealer_for(category: &str) -> Arc<dyn mcpsec_core::Sealer> {
    use mcpsec_core::SecretBytes;
    use mcpsec_fieldcrypt::{Category, FieldCrypt, KeyVersion, KeyringSpec};
    let crypt = FieldCrypt::builder(Arc::new(mcpsec_core::MemorySink::new()))
        .keyring(KeyringSpec {
            category: Category::new(category).unwrap(),
            primary: 1,
            min_decrypt: 1,
            versions: vec![KeyVersion {
                version: 1,
                key: SecretBytes::random(32).unwrap(),
                reserved: 0,
            }],
            index_key: SecretBytes::random(32).unwrap(),
        })
        .build()
        .unwrap();
    Arc::new(crypt)
}
