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
//! Not here yet (issue 14): audit chain retention, row-level
//! security policies. The schema already carries `user_id`/`org_id`
//! on every tenant table for the policies.
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
