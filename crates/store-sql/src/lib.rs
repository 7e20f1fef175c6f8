//! # mcpsec-store-sql
//!
//! The mcpsec store traits on SQL: SQLite, the embedded default that needs no server
//! (feature `sqlite`, on by default), and PostgreSQL, the engine a fleet shares (feature
//! `postgres`). Both run the same schema (one migration set per backend, embedded at
//! compile time and applied by `sqlite::migrate` / `postgres::migrate`) and the same
//! queries, and every implementation passes its trait's conformance suite on both.
//!
//! Start with a pool and run the migrations, then wrap the pool in the store you need:
//!
//! | store | trait |
//! | --- | --- |
//! | [`SqlAttemptCounter`] | [`mcpsec_core::AttemptCounter`] |
//! | [`SqlApiKeyStore`] | [`mcpsec_apikeys::ApiKeyLookup`], [`mcpsec_apikeys::ApiKeyStore`] |
//! | [`SqlRefreshStore`] | [`mcpsec_tokens::RefreshTokenStore`] |
//! | [`SqlSessionRevocation`] | [`mcpsec_tokens::SessionRevocation`] |
//! | [`SqlSigningKeyStore`] | [`mcpsec_tokens::SigningKeyStore`] (compare-and-swap on the generation) |
//! | [`SqlChainStorage`] | [`mcpsec_audit::ChainStorage`] (one chain per instance) |
//! | [`SqlMemberships`] | [`mcpsec_access::Memberships`] |
//! | [`SqlReplayGuard`] | [`mcpsec_mfa::TotpReplayGuard`] |
//! | [`SqlRecoveryStore`] | [`mcpsec_mfa::RecoveryCodeStore`] |
//! | [`SqlEmailCodeStore`] | [`mcpsec_mfa::EmailCodeStore`] |
//! | [`SqlPasskeyStore`] | [`mcpsec_mfa::PasskeyStore`] |
//! | [`SqlTotpEnrollments`] | its own API: TOTP enrollments, the secret only sealed by the host's [`mcpsec_core::Sealer`] |
//! | [`SqlKeysetStore`] | [`mcpsec_fieldcrypt::KeysetStore`] |
//! | [`SqlUsageLedger`] | [`mcpsec_fieldcrypt::UsageLedger`] |
//! | [`SqlSubjectKeyStore`] | [`mcpsec_fieldcrypt::SubjectKeyStore`] |
//! | [`SqlRewrapCheckpoints`] | [`mcpsec_fieldcrypt::rewrap::RewrapCheckpoints`] |
//!
//! Every rule that must hold once (a refresh token consumed once, a recovery code used
//! once, a TOTP step accepted once, exact failure counts) is one statement
//! (`UPDATE … WHERE … RETURNING`, `INSERT … ON CONFLICT`) or one transaction whose
//! isolation is named next to its query; nothing is read in Rust and written back. Every
//! failure is a [`mcpsec_core::StoreError`] whose kind comes from [`store_error`], with
//! the sqlx error as its source.
//!
//! ```
//! use mcpsec_core::AttemptCounter;
//! use mcpsec_store_sql::{SqlAttemptCounter, sqlite};
//! use std::time::{Duration, UNIX_EPOCH};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // An in-memory database lives in one connection; use a file for more.
//! let pool = sqlite::connect("sqlite::memory:", 1).await?;
//! sqlite::migrate(&pool).await?;
//!
//! let counter = SqlAttemptCounter::new(pool);
//! let window = Duration::from_secs(900);
//! let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
//! counter.record_failure("203.0.113.7", window, now).await?;
//! let state = counter.record_failure("203.0.113.7", window, now).await?;
//! assert_eq!(state.count, 2);
//! # Ok(()) }
//! ```
//!
//! ## Row-level security (PostgreSQL)
//!
//! Migration `0006_rls.sql` enables and forces row-level security on the tables that hold
//! user and organization resources (`api_keys`, `refresh_families`, `refresh_tokens`,
//! `totp_enrollments`, `passkey_credentials`, `passkey_users`, `recovery_code_sets`,
//! `recovery_codes`, `mcp_services`, `memberships`). Tenant-scoped store methods (those
//! that take a `Principal`: `ApiKeyStore::{insert, list_by_owner, set_status,
//! set_expiry}`, `RefreshTokenStore::revoke_family_as`, `PasskeyStore::{add_credential,
//! remove_credential}`, `RecoveryCodeStore::replace_set`) run in a transaction opened by
//! `rls::begin_as`: switched to the role `mcpsec_app` (`NOLOGIN`, `NOBYPASSRLS`) with the
//! principal's user, organization and role in transaction-local settings, read by the
//! policies through `mcpsec.uid()`, `mcpsec.org_id()`, `mcpsec.role()`. Use
//! `rls::run_as` for your own tenant queries.
//!
//! - **The pool** connects as the role that ran the migrations (the schema's owner; it
//!   needs `CREATEROLE` the first time, or a DBA creates `mcpsec_app` beforehand). Its
//!   `owner_service` policy keeps every row: it runs what has no principal yet — API key
//!   lookups by id, refresh consumes by hash, logins, pruning — each a statement on one
//!   row by its key, never a listing. `SqlApiKeyStore::insert_as_owner` is the operator's
//!   insert on that role (the CLI's bootstrap), never a request's. On every table under
//!   row-level security those statements are `SECURITY DEFINER` functions that reach
//!   only the rows their arguments name (migrations `0007_service_role.sql` for API keys
//!   and refresh tokens, `0008_service_functions.sql` for TOTP enrollments, passkeys,
//!   recovery codes and memberships), so the pool may log in as a service role instead,
//!   with no right on those tables (`postgres::grant_service_role`).
//! - **Guaranteed** for tenant-scoped statements: no principal sees nothing; a user reaches
//!   only their own keys, sessions, tokens, factors and recovery codes (their hashes are
//!   not even readable); one organization never sees another's rows. `mcpsec_app` may
//!   update only the columns the store writes: a key's status and expiry (never its owner,
//!   organization, scopes or hash), a session's `revoked` flag, which a policy lets only
//!   become true. A revoked key stays revoked (a trigger, for every role). A key is
//!   inserted owned by the principal, or by an org admin for a member of the
//!   organization. Every branch that grants an org admin's powers confirms the admin in
//!   `memberships` (a `SECURITY DEFINER` helper), so a demoted admin's stale role claim
//!   reaches nothing: an org admin sees the organization's members and MCP services and
//!   can end a member's session, but does not see a member's API keys (it disables,
//!   revokes or brings nearer the expiry of one by id — never removes or extends it —
//!   through two `SECURITY DEFINER` functions that check its current membership). The
//!   `SECURITY DEFINER` functions read the principal's settings themselves, with a pinned
//!   `search_path`, and call nothing in the shared `mcpsec` schema. Roles follow the
//!   access crate's action table (a test walks it against the policies). `mcpsec_app` is
//!   granted nothing else, so pre-authentication tables (ceremonies, email challenges,
//!   attempt counters, TOTP replay, …) are out of its reach. A refusal (PostgreSQL 42501)
//!   is a `StoreError` of kind `Rejected`.
//! - **Not guaranteed**: the database takes the principal from the application; it does
//!   not verify a token. A compromised application, or the pool's own role, reaches
//!   everything. Scopes and step-up are the Rust check's alone. SQLite has no policies.
//!
//! Not here yet (issue 14): audit chain retention.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("mcpsec-store-sql needs a backend: enable feature `sqlite`, `postgres` or both");

/// Declares a store type: a pool of either backend, `new`, `pool`, `Clone` and a `Debug`
/// that names the backend only.
macro_rules! sql_store {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name<DB: sqlx::Database> {
            pool: sqlx::Pool<DB>,
        }

        impl<DB: sqlx::Database> $name<DB> {
            /// A store on `pool`, whose database has this crate's migrations applied.
            pub fn new(pool: sqlx::Pool<DB>) -> Self {
                Self { pool }
            }

            /// The pool it runs on.
            pub fn pool(&self) -> &sqlx::Pool<DB> {
                &self.pool
            }
        }

        impl<DB: sqlx::Database> Clone for $name<DB> {
            fn clone(&self) -> Self {
                Self { pool: self.pool.clone() }
            }
        }

        impl<DB: sqlx::Database> std::fmt::Debug for $name<DB> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("backend", &DB::NAME)
                    .finish_non_exhaustive()
            }
        }
    };
}

/// Expands `$m!(database type, write-transaction BEGIN, row-lock suffix)` once per enabled
/// backend: the queries are the same, the dialect differs only there.
macro_rules! for_each_backend {
    ($m:ident) => {
        #[cfg(feature = "sqlite")]
        $m!(sqlx::Sqlite, crate::sqlite::BEGIN_WRITE, "");
        #[cfg(feature = "postgres")]
        $m!(sqlx::Postgres, crate::postgres::BEGIN_WRITE, " FOR UPDATE");
    };
}

mod apikeys;
mod attempts;
mod audit;
pub mod error;
mod fieldcrypt;
mod memberships;
mod mfa;
mod passkeys;
#[cfg(feature = "postgres")]
pub mod postgres;
mod refresh;
pub mod rls;
mod sessions;
mod signing_keys;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod timestamp;
mod totp;

pub use apikeys::SqlApiKeyStore;
pub use attempts::SqlAttemptCounter;
pub use audit::SqlChainStorage;
pub use error::store_error;
pub use fieldcrypt::{SqlKeysetStore, SqlRewrapCheckpoints, SqlSubjectKeyStore, SqlUsageLedger};
pub use memberships::SqlMemberships;
pub use mfa::{SqlEmailCodeStore, SqlRecoveryStore, SqlReplayGuard};
pub use passkeys::SqlPasskeyStore;
pub use refresh::SqlRefreshStore;
pub use sessions::SqlSessionRevocation;
pub use signing_keys::SqlSigningKeyStore;
pub use totp::{
    Confirmation, EnrollmentState, LoadedEnrollment, SqlTotpEnrollments, TOTP_SEAL_CATEGORY,
    TotpEnrollmentError,
};

/// The README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
