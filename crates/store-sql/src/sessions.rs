//! [`SessionRevocation`] on SQL (table `session_revocations`).
//!
//! [`JtiRevocation`](mcpsec_tokens::JtiRevocation) has no SQL store here: it is a
//! synchronous check that must answer from memory on the request path (its docs say a
//! host keeps the set current from its store), so it is not a store trait.

use crate::error::{corrupt, store_error};
use crate::timestamp::to_db;
use mcpsec_core::{StoreError, TokenId};
use mcpsec_tokens::SessionRevocation;
use std::time::SystemTime;

sql_store!(
    /// [`SessionRevocation`] on SQLite or PostgreSQL (table `session_revocations`): one
    /// row per revoked session id, with the time after which it may be forgotten.
    ///
    /// Each call is one statement, so a revocation committed by one instance is seen by
    /// every later [`is_revoked`](SessionRevocation::is_revoked) on any instance sharing
    /// the database. [`prune`](SessionRevocation::prune), called on a schedule, keeps the
    /// table bounded by the sessions whose access tokens can still be alive.
    SqlSessionRevocation
);

/// One upsert: a second revocation of a session keeps the later `until` (the `SET` reads
/// the row under its lock, so concurrent revocations never shorten each other).
const REVOKE: &str = "
    INSERT INTO session_revocations (sid, until) VALUES ($1, $2)
    ON CONFLICT (sid) DO UPDATE SET until = CASE
        WHEN excluded.until > session_revocations.until THEN excluded.until
        ELSE session_revocations.until END";

macro_rules! impl_session_revocation {
    ($db:ty, $begin:expr, $for_update:literal) => {
        #[async_trait::async_trait]
        impl SessionRevocation for SqlSessionRevocation<$db> {
            async fn revoke(&self, sid: &TokenId, until: SystemTime) -> Result<(), StoreError> {
                sqlx::query(REVOKE)
                    .bind(sid.as_str())
                    .bind(to_db(until)?)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| store_error("revoke a session", e))?;
                Ok(())
            }

            async fn is_revoked(&self, sid: &TokenId) -> Result<bool, StoreError> {
                // Like the memory backend, a revocation past its `until` still counts
                // until it is pruned: forgetting is prune's job, never a read's.
                let found: Option<String> =
                    sqlx::query_scalar("SELECT sid FROM session_revocations WHERE sid = $1")
                        .bind(sid.as_str())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| store_error("read a session revocation", e))?;
                Ok(found.is_some())
            }

            async fn prune(&self, now: SystemTime) -> Result<usize, StoreError> {
                // One statement; a revocation extended concurrently past `now` is
                // re-checked under its row lock and stays.
                let done = sqlx::query("DELETE FROM session_revocations WHERE until <= $1")
                    .bind(to_db(now)?)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| store_error("prune session revocations", e))?;
                usize::try_from(done.rows_affected()).map_err(corrupt("a row count"))
            }
        }
    };
}

for_each_backend!(impl_session_revocation);
