//! SQLite: the embedded default (feature `sqlite`): a file, or memory, and no server.
//!
//! [`connect`] opens a pool set up for the stores: WAL journal (readers never wait for the
//! writer), foreign keys on, a busy timeout so concurrent writers queue instead of failing,
//! and the file created when missing. [`migrate`] brings the schema up to date.

use crate::error::store_error;
use mcpsec_core::StoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use std::str::FromStr;
use std::time::Duration;

pub use sqlx::SqlitePool;

/// The migrations in `migrations/sqlite`, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How a write transaction starts on SQLite: `IMMEDIATE` takes the database's write lock
/// at `BEGIN`, so the transaction is serialized against every other writer from its first
/// read (SQLite's only isolation level is SERIALIZABLE; a deferred transaction that reads
/// and then writes could instead fail with `BUSY` when it tries to upgrade its lock).
pub(crate) const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// How long a writer waits for the write lock before failing with a
/// [`Timeout`](mcpsec_core::StoreErrorKind::Timeout).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a pool on `url` (`sqlite://path/to/file.db`, `sqlite::memory:`), creating the
/// file if it is missing, with at most `max_connections` connections.
///
/// An in-memory database lives in one connection: give it `max_connections = 1` (each
/// further connection would open a separate, empty database).
pub async fn connect(url: &str, max_connections: u32) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| store_error("parse the SQLite URL", e))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .connect_with(options)
        .await
        .map_err(|e| store_error("connect to SQLite", e))
}

/// Applies every migration not yet applied; safe to run again (idempotent).
pub async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(crate::error::migrate_error)
}
