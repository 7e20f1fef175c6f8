//! PostgreSQL: the engine a fleet shares (feature `postgres`).
//!
//! Bring your own pool (`sqlx::PgPool`, with TLS through rustls when the URL asks for it)
//! or use [`connect`]; [`migrate`] brings the schema up to date under PostgreSQL's
//! advisory lock, so instances starting together migrate once.

use crate::error::store_error;
use mcpsec_core::StoreError;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use std::str::FromStr;

pub use sqlx::PgPool;

/// The migrations in `migrations/postgres`, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How a write transaction starts on PostgreSQL. READ COMMITTED is enough for every
/// transaction in this crate, named here so no server default changes it: each one opens
/// with a conditional write (`UPDATE … WHERE … RETURNING`, an upsert) or a
/// `SELECT … FOR UPDATE`, whose row lock serializes it against every other writer of that
/// row; the statements after it only touch rows that lock protects.
pub(crate) const BEGIN_WRITE: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// Opens a pool on `url` (`postgres://user@host/db?sslmode=verify-full`) with at most
/// `max_connections` connections.
///
/// A URL that does not parse is [`Rejected`](mcpsec_core::StoreErrorKind::Rejected).
/// One connection is opened first and on its own, so an unreachable server fails at once
/// as [`Unavailable`](mcpsec_core::StoreErrorKind::Unavailable) (the pool would retry until
/// its acquire timeout and report a [`Timeout`](mcpsec_core::StoreErrorKind::Timeout)).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    // A URL that does not parse is the caller's mistake, not an outage: Rejected (the
    // sqlx error, which may quote the URL, stays the source and is never displayed).
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::rejected("parse the PostgreSQL URL").with_source(e))?;
    let probe = PgConnection::connect_with(&options)
        .await
        .map_err(|e| store_error("connect to PostgreSQL", e))?;
    probe
        .close()
        .await
        .map_err(|e| store_error("connect to PostgreSQL", e))?;
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .connect_with(options)
        .await
        .map_err(|e| store_error("connect to PostgreSQL", e))
}

/// Applies every migration not yet applied; safe to run again (idempotent) and from
/// several instances at once.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(crate::error::migrate_error)
}

/// Sets up the existing role `login` as a service role for the pool to log in as: a role
/// that does not own the schema (migrations `0007_service_role.sql` and
/// `0008_service_functions.sql`, `mcpsec_grant_service_role`). Run as the schema's owner,
/// on a pool whose `search_path` is the migrated schema, after [`migrate`] (and again
/// after an upgrade that adds a table).
///
/// It grants `login` exactly: membership of [`APP_ROLE`](crate::rls::APP_ROLE), not
/// inherited (`login` is made `NOINHERIT`, so `mcpsec_app`'s rights are its own only
/// inside [`begin_as`](crate::rls::begin_as)); `USAGE` on the schema; `EXECUTE` on the
/// `SECURITY DEFINER` functions the stores call before authentication (API keys, refresh
/// tokens, TOTP enrollments, passkeys, recovery codes, memberships); and `SELECT, INSERT,
/// UPDATE, DELETE` on every table without row-level security but the migrations' ledger.
/// On the tables under row-level security it holds nothing: it reaches one user's rows
/// through a function that names them, never a listing, and a tenant's rows only through
/// `begin_as`.
///
/// `login` must exist and not be a superuser, bypass row-level security or be a member of
/// the owner: otherwise [`Rejected`](mcpsec_core::StoreErrorKind::Rejected), as is the
/// owner lacking the right to grant roles (`CREATEROLE`).
pub async fn grant_service_role(pool: &PgPool, login: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT mcpsec_grant_service_role($1)")
        .bind(login)
        .execute(pool)
        .await
        .map_err(|e| store_error("grant a service role", e))?;
    Ok(())
}
