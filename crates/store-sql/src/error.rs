//! One mapping from `sqlx::Error` to the workspace's [`StoreError`] kinds.
//!
//! Every store in this crate returns its failures through [`store_error`], so a caller
//! sees the same kind for the same cause on SQLite and PostgreSQL, and the sqlx error
//! rides along as the source (reached by code that decides to log it; `Display` of a
//! [`StoreError`] never quotes it).

use mcpsec_core::{StoreError, StoreErrorKind};

/// The [`StoreError`] for `error`, raised while doing `what` (a fixed description).
///
/// | cause | kind |
/// | --- | --- |
/// | connection refused, I/O, TLS, pool closed, crashed worker, PostgreSQL classes 08 (connection), 53 (resources), 57P01–57P03 (shutdown), SQLite `CANTOPEN`/`IOERR`/`FULL`/`READONLY` | [`Unavailable`](StoreErrorKind::Unavailable) |
/// | pool timed out, statement timeout (57014), lock timeout (55P03), SQLite `BUSY`/`LOCKED` | [`Timeout`](StoreErrorKind::Timeout) |
/// | serialization failure (40001), deadlock (40P01), unique violation | [`Conflict`](StoreErrorKind::Conflict) |
/// | a row that does not decode, a missing column, a missing row that had to exist, undefined table or column (PostgreSQL 42xxx other than 42501, SQLite `ERROR`: schema not migrated), SQLite `CORRUPT`/`NOTADB` | [`Corrupt`](StoreErrorKind::Corrupt) |
/// | insufficient privilege or a row-level security check refusing a row (PostgreSQL 42501: what a principal may not do), other constraint violations (not null, check, foreign key, exclusion), bad data (22xxx), anything else | [`Rejected`](StoreErrorKind::Rejected) |
///
/// An I/O error is [`Unavailable`](StoreErrorKind::Unavailable) wherever it happens. Before
/// `COMMIT` (a connection killed mid-transaction) the database rolls the transaction back,
/// so nothing happened; during `COMMIT` or a single autocommitted statement the outcome is
/// unknown to the caller. No operation here is made unsafe by that: each one either is
/// safe to repeat or, repeated after it did happen, fails closed (a consumed refresh token
/// presented again is reuse; a recovery code used twice is refused).
pub fn store_error(what: &'static str, error: sqlx::Error) -> StoreError {
    StoreError::new(kind_of(&error), what).with_source(error)
}

/// A failed migration: a database error keeps its kind; anything else (a migration
/// applied here that this build does not know, a changed checksum, a dirty version) means
/// the schema is not what this build expects, and someone should look.
pub(crate) fn migrate_error(error: sqlx::migrate::MigrateError) -> StoreError {
    match error {
        sqlx::migrate::MigrateError::Execute(e)
        | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => store_error("migrate", e),
        other => StoreError::corrupt("migrate").with_source(other),
    }
}

/// How many times a write transaction chosen as a deadlock or serialization victim is run
/// again before its [`Conflict`](StoreErrorKind::Conflict) is returned.
pub(crate) const VICTIM_RETRIES: usize = 3;

/// Whether `error` says the database rolled the whole transaction back to break a
/// deadlock (40P01) or a serialization conflict (40001). Nothing of it happened, so running
/// it again is safe even for an operation that is not idempotent (a refresh consume).
pub(crate) fn rolled_back_as_victim(error: &StoreError) -> bool {
    use std::error::Error as _;
    error
        .source()
        .and_then(|s| s.downcast_ref::<sqlx::Error>())
        .and_then(sqlx::Error::as_database_error)
        .and_then(sqlx::error::DatabaseError::code)
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// A stored value that does not parse as the type it should be.
pub(crate) fn corrupt<E>(what: &'static str) -> impl FnOnce(E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| StoreError::corrupt(what).with_source(e)
}

/// The kind [`store_error`] gives `error`.
pub fn kind_of(error: &sqlx::Error) -> StoreErrorKind {
    use StoreErrorKind::{Corrupt, Rejected, Timeout, Unavailable};
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Configuration(_)
        | sqlx::Error::BeginFailed => Unavailable,
        sqlx::Error::PoolTimedOut => Timeout,
        sqlx::Error::Database(db) => database_kind(db.as_ref()),
        sqlx::Error::RowNotFound
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::Protocol(_) => Corrupt,
        // Encode, InvalidArgument, Migrate and variants added later: a request this store
        // cannot carry out as given.
        _ => Rejected,
    }
}

fn database_kind(db: &dyn sqlx::error::DatabaseError) -> StoreErrorKind {
    use StoreErrorKind::{Conflict, Corrupt, Rejected, Timeout, Unavailable};
    if db.is_unique_violation() {
        return Conflict;
    }
    let code = db.code();
    let code = code.as_deref().unwrap_or_default();
    // PostgreSQL reports a SQLSTATE (always five characters); SQLite its extended result
    // code as a number (below 10000, so never five digits).
    if code.len() != 5
        && let Ok(extended) = code.parse::<u32>()
    {
        return match extended & 0xff {
            1 => Corrupt,                    // ERROR: no such table or column (not migrated)
            5 | 6 => Timeout,                // BUSY, LOCKED: busy_timeout ran out
            8 | 10 | 13 | 14 => Unavailable, // READONLY, IOERR, FULL, CANTOPEN
            11 | 26 => Corrupt,              // CORRUPT, NOTADB
            _ => Rejected,                   // CONSTRAINT (non-unique), MISMATCH, …
        };
    }
    match code {
        "57014" | "55P03" => Timeout, // query_canceled (statement_timeout), lock_not_available
        "40001" | "40P01" => Conflict, // serialization_failure, deadlock_detected
        "57P01" | "57P02" | "57P03" => Unavailable, // admin/crash shutdown, cannot connect now
        c if c.starts_with("08") || c.starts_with("53") => Unavailable,
        "42501" => Rejected, // insufficient_privilege, row-level security refusal
        c if c.starts_with("42") || c.starts_with("XX") => Corrupt,
        _ => Rejected,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sqlx::error::{DatabaseError, ErrorKind};
    use std::borrow::Cow;
    use std::error::Error as _;

    /// A database error with a given code, as either driver would report it.
    #[derive(Debug)]
    struct Coded(&'static str, ErrorKind);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "code {}", self.0)
        }
    }
    impl std::error::Error for Coded {}
    impl DatabaseError for Coded {
        fn message(&self) -> &str {
            "test"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            match self.1 {
                ErrorKind::UniqueViolation => ErrorKind::UniqueViolation,
                ErrorKind::CheckViolation => ErrorKind::CheckViolation,
                ErrorKind::NotNullViolation => ErrorKind::NotNullViolation,
                ErrorKind::ForeignKeyViolation => ErrorKind::ForeignKeyViolation,
                _ => ErrorKind::Other,
            }
        }
    }

    fn db(code: &'static str, kind: ErrorKind) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Coded(code, kind)))
    }

    #[test]
    fn connection_failures_are_unavailable() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        for e in [
            sqlx::Error::Io(refused),
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
            db("08006", ErrorKind::Other),
            db("57P01", ErrorKind::Other),
            db("53300", ErrorKind::Other),
            db("14", ErrorKind::Other),
            db("778", ErrorKind::Other), // SQLITE_IOERR_WRITE
        ] {
            assert_eq!(kind_of(&e), StoreErrorKind::Unavailable, "{e}");
        }
    }

    #[test]
    fn timeouts_are_timeouts() {
        for e in [
            sqlx::Error::PoolTimedOut,
            db("57014", ErrorKind::Other),
            db("55P03", ErrorKind::Other),
            db("5", ErrorKind::Other),
            db("517", ErrorKind::Other), // SQLITE_BUSY_SNAPSHOT
        ] {
            assert_eq!(kind_of(&e), StoreErrorKind::Timeout, "{e}");
        }
    }

    #[test]
    fn lost_races_and_duplicates_are_conflicts() {
        for e in [
            db("40001", ErrorKind::Other),
            db("40P01", ErrorKind::Other),
            db("23505", ErrorKind::UniqueViolation),
            db("2067", ErrorKind::UniqueViolation), // SQLITE_CONSTRAINT_UNIQUE
            db("1555", ErrorKind::UniqueViolation), // SQLITE_CONSTRAINT_PRIMARYKEY
        ] {
            assert_eq!(kind_of(&e), StoreErrorKind::Conflict, "{e}");
        }
    }

    #[test]
    fn undecodable_rows_and_missing_schema_are_corrupt() {
        let bad = Box::<dyn std::error::Error + Send + Sync>::from("bad row");
        for e in [
            sqlx::Error::Decode(bad),
            sqlx::Error::ColumnNotFound("hash".into()),
            sqlx::Error::RowNotFound,
            db("42P01", ErrorKind::Other), // undefined_table
            db("11", ErrorKind::Other),
            db("1", ErrorKind::Other), // SQLITE_ERROR: no such table
        ] {
            assert_eq!(kind_of(&e), StoreErrorKind::Corrupt, "{e}");
        }
    }

    #[test]
    fn other_constraint_violations_are_rejected() {
        for e in [
            db("23502", ErrorKind::NotNullViolation),
            db("23514", ErrorKind::CheckViolation),
            db("23503", ErrorKind::ForeignKeyViolation),
            db("275", ErrorKind::CheckViolation), // SQLITE_CONSTRAINT_CHECK
            db("22003", ErrorKind::Other),        // numeric_value_out_of_range
            db("42501", ErrorKind::Other),        // insufficient_privilege, RLS refusal
        ] {
            assert_eq!(kind_of(&e), StoreErrorKind::Rejected, "{e}");
        }
    }

    #[test]
    fn only_deadlock_and_serialization_victims_are_run_again() {
        for code in ["40P01", "40001"] {
            assert!(rolled_back_as_victim(&store_error(
                "x",
                db(code, ErrorKind::Other)
            )));
        }
        for e in [
            db("23505", ErrorKind::UniqueViolation),
            db("57014", ErrorKind::Other),
            sqlx::Error::PoolTimedOut,
        ] {
            assert!(!rolled_back_as_victim(&store_error("x", e)));
        }
        assert!(!rolled_back_as_victim(&StoreError::conflict("no source")));
    }

    #[test]
    fn the_sqlx_error_is_the_source_and_never_displayed() {
        let e = store_error("consume", db("40001", ErrorKind::Other));
        assert_eq!(e.kind(), StoreErrorKind::Conflict);
        assert_eq!(e.to_string(), "store conflict: consume");
        let source = e.source().unwrap();
        assert!(source.to_string().contains("code 40001"));
    }
}
