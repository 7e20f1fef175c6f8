//! The MFA stores on SQL: [`TotpReplayGuard`] (table `totp_replay`),
//! [`RecoveryCodeStore`] (`recovery_code_sets`, `recovery_codes`) and [`EmailCodeStore`]
//! (`email_challenges`, `email_cooldowns`). Only hashes and step numbers are stored.

use crate::error::{corrupt, store_error};
use crate::rls::TenantScope;
use crate::timestamp::{from_db, to_db};
use mcpsec_access::Principal;
use mcpsec_core::{Label, UserId};
use mcpsec_mfa::{
    AttemptOutcome, ChallengeKey, ChallengeRecord, CodeHash, Cooldown, EmailCodeStore,
    EnrollmentId, RecoveryCodeStore, StoreError, TotpReplayGuard,
};
use std::time::SystemTime;
use subtle::ConstantTimeEq;

sql_store!(
    /// [`TotpReplayGuard`] on SQLite or PostgreSQL: the last accepted step per user and
    /// enrollment, advanced by one conditional upsert, so of concurrent uses of one code
    /// exactly one is accepted.
    SqlReplayGuard
);

sql_store!(
    /// [`RecoveryCodeStore`] on SQLite or PostgreSQL: one row per unused code hash.
    /// A use is one `DELETE` (exactly one of concurrent uses removes the row); a new set
    /// replaces the old one in one write transaction that first locks the user's set row.
    SqlRecoveryStore
);

sql_store!(
    /// [`EmailCodeStore`] on SQLite or PostgreSQL: the latest challenge per user, purpose
    /// and flow, and the resend cooldown per user and purpose.
    ///
    /// An attempt is one write transaction that locks the challenge row first
    /// (PostgreSQL: `SELECT … FOR UPDATE` at READ COMMITTED; SQLite: `BEGIN IMMEDIATE`),
    /// compares the code hash in constant time, then deletes the row or counts the wrong
    /// attempt: concurrent attempts queue on the lock, so the right code is consumed once
    /// and wrong attempts are counted exactly. The cooldown is one conditional upsert.
    SqlEmailCodeStore
);

fn step_to_db(step: u64) -> Result<i64, StoreError> {
    i64::try_from(step).map_err(|_| StoreError::rejected("a TOTP step the store cannot hold"))
}

fn count_from(rows: u64) -> Result<usize, StoreError> {
    usize::try_from(rows).map_err(corrupt("a row count"))
}

/// A recovery code's use and the count left, per backend: run before the user is
/// authenticated, on `recovery_codes` (under row-level security). On PostgreSQL each is a
/// call of a `SECURITY DEFINER` function of migration 0008 (one user's codes, named by
/// the argument); on SQLite the statement itself.
trait RecoverySql {
    /// User `$1`'s code with hash `$2` deleted: a row when this call removed it.
    const CONSUME: &'static str;
    /// How many codes user `$1` has left: one count.
    const REMAINING: &'static str;
}

#[cfg(feature = "sqlite")]
impl RecoverySql for sqlx::Sqlite {
    const CONSUME: &'static str =
        "DELETE FROM recovery_codes WHERE user_id = $1 AND hash = $2 RETURNING 1";
    const REMAINING: &'static str = "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1";
}

#[cfg(feature = "postgres")]
impl RecoverySql for sqlx::Postgres {
    const CONSUME: &'static str = "SELECT 1 WHERE recovery_code_consume($1, $2)";
    const REMAINING: &'static str = "SELECT recovery_codes_remaining($1)";
}

macro_rules! impl_mfa_stores {
    ($db:ty, $begin:expr, $for_update:literal) => {
        #[async_trait::async_trait]
        impl TotpReplayGuard for SqlReplayGuard<$db> {
            async fn record_step_if_newer(
                &self,
                user: &UserId,
                enrollment: &EnrollmentId,
                step: u64,
            ) -> Result<bool, StoreError> {
                // One statement: the upsert's `WHERE last_step < new step` is checked under
                // the row lock (PostgreSQL) or the write lock (SQLite), so of concurrent
                // calls with one step exactly one returns a row.
                let won: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO totp_replay (user_id, enrollment, last_step) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id, enrollment) DO UPDATE SET last_step = excluded.last_step
                     WHERE totp_replay.last_step < excluded.last_step
                     RETURNING last_step",
                )
                .bind(user.as_str())
                .bind(&enrollment.0[..])
                .bind(step_to_db(step)?)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| store_error("record a TOTP step", e))?;
                Ok(won.is_some())
            }
        }

        #[async_trait::async_trait]
        impl RecoveryCodeStore for SqlRecoveryStore<$db> {
            async fn replace_set(
                &self,
                tenant: &Principal,
                hashes: Vec<CodeHash>,
            ) -> Result<(), StoreError> {
                let user = tenant.subject().as_str();
                // One write transaction (PostgreSQL: READ COMMITTED; SQLite: IMMEDIATE).
                // The upsert of the user's set row comes first and takes its lock, so two
                // concurrent replacements run one after the other: the later one's DELETE
                // (a new statement, hence a new snapshot) sees the earlier one's codes,
                // and no mix of two sets survives. As the tenant (PostgreSQL: under
                // row-level security, `crate::rls`).
                let mut tx =
                    <$db as TenantScope>::begin_tenant_write(&self.pool, tenant).await?;
                sqlx::query(
                    "INSERT INTO recovery_code_sets (user_id, generation) VALUES ($1, 1)
                     ON CONFLICT (user_id) DO UPDATE
                     SET generation = recovery_code_sets.generation + 1",
                )
                .bind(user)
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error("lock a recovery code set", e))?;
                sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                    .bind(user)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| store_error("delete recovery codes", e))?;
                for hash in &hashes {
                    // No conflict target: naming (user_id, hash) would need the right to
                    // read `hash`, which the tenant role is not given (migration 0006); the
                    // primary key is the table's only unique constraint.
                    sqlx::query(
                        "INSERT INTO recovery_codes (user_id, hash) VALUES ($1, $2)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(user)
                    .bind(&hash[..])
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| store_error("insert a recovery code", e))?;
                }
                tx.commit()
                    .await
                    .map_err(|e| store_error("commit recovery codes", e))
            }

            async fn consume_once(&self, user: &UserId, hash: &CodeHash) -> Result<bool, StoreError> {
                // One statement: of concurrent DELETEs of one row exactly one removes it
                // (the others find it gone under the row lock).
                let done = sqlx::query(<$db as RecoverySql>::CONSUME)
                    .bind(user.as_str())
                    .bind(&hash[..])
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| store_error("use a recovery code", e))?;
                Ok(done.is_some())
            }

            async fn remaining(&self, user: &UserId) -> Result<usize, StoreError> {
                let count: i64 = sqlx::query_scalar(<$db as RecoverySql>::REMAINING)
                        .bind(user.as_str())
                        .fetch_one(&self.pool)
                        .await
                        .map_err(|e| store_error("count recovery codes", e))?;
                count_from(u64::try_from(count).map_err(corrupt("a row count"))?)
            }
        }

        impl SqlEmailCodeStore<$db> {
            /// Deletes the challenges that expired and the cooldowns that ended at or
            /// before `now`; returns how many rows went. Call it on a schedule: a challenge
            /// nobody attempts is otherwise never removed.
            pub async fn prune(&self, now: SystemTime) -> Result<u64, StoreError> {
                let now = to_db(now)?;
                // Two independent single-statement deletes: a row either expired (and
                // nothing can revive it: `put` replaces it, `attempt` refuses it) or stays.
                let challenges = sqlx::query("DELETE FROM email_challenges WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| store_error("prune email challenges", e))?
                    .rows_affected();
                let cooldowns = sqlx::query("DELETE FROM email_cooldowns WHERE until_at <= $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| store_error("prune email cooldowns", e))?
                    .rows_affected();
                Ok(challenges.saturating_add(cooldowns))
            }
        }

        #[async_trait::async_trait]
        impl EmailCodeStore for SqlEmailCodeStore<$db> {
            async fn put(&self, key: &ChallengeKey, record: ChallengeRecord) -> Result<(), StoreError> {
                // One upsert: the new challenge replaces any earlier one of the flow.
                sqlx::query(
                    "INSERT INTO email_challenges
                         (user_id, purpose, flow, hash, sent_at, expires_at, attempts)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (user_id, purpose, flow) DO UPDATE SET
                         hash = excluded.hash, sent_at = excluded.sent_at,
                         expires_at = excluded.expires_at, attempts = excluded.attempts",
                )
                .bind(key.user.as_str())
                .bind(key.purpose.as_str())
                .bind(key.flow.as_str())
                .bind(&record.hash[..])
                .bind(to_db(record.sent_at)?)
                .bind(to_db(record.expires_at)?)
                .bind(i64::from(record.attempts))
                .execute(&self.pool)
                .await
                .map_err(|e| store_error("store an email challenge", e))?;
                Ok(())
            }

            async fn try_start_cooldown(
                &self,
                user: &UserId,
                purpose: &Label,
                now: SystemTime,
                until: SystemTime,
            ) -> Result<Cooldown, StoreError> {
                // One conditional upsert: a new row, or a row whose cooldown has ended,
                // takes the new end; a running one is left alone and returns no row.
                let started: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO email_cooldowns (user_id, purpose, until_at) VALUES ($1, $2, $4)
                     ON CONFLICT (user_id, purpose) DO UPDATE SET until_at = excluded.until_at
                     WHERE email_cooldowns.until_at <= $3
                     RETURNING until_at",
                )
                .bind(user.as_str())
                .bind(purpose.as_str())
                .bind(to_db(now)?)
                .bind(to_db(until)?)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| store_error("start an email cooldown", e))?;
                if started.is_some() {
                    return Ok(Cooldown::Started);
                }
                // The running cooldown's end, for the answer only (nothing is written on
                // it; the row can only move later, and only once it has ended).
                let running: Option<i64> = sqlx::query_scalar(
                    "SELECT until_at FROM email_cooldowns WHERE user_id = $1 AND purpose = $2",
                )
                .bind(user.as_str())
                .bind(purpose.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| store_error("read an email cooldown", e))?;
                match running {
                    Some(until) => Ok(Cooldown::Running { until: from_db(until)? }),
                    None => Err(StoreError::corrupt("a running cooldown that is not stored")),
                }
            }

            async fn attempt(
                &self,
                key: &ChallengeKey,
                candidate: &[u8; 32],
                now: SystemTime,
                max_attempts: u32,
            ) -> Result<AttemptOutcome, StoreError> {
                let now = to_db(now)?;
                // One write transaction that starts by locking the challenge row
                // (PostgreSQL: SELECT … FOR UPDATE at READ COMMITTED, which waits for and
                // then reads the latest committed row; SQLite: BEGIN IMMEDIATE holds the
                // write lock throughout). The hash is compared in Rust in constant time and
                // the row deleted or its attempts counted before the lock is released.
                let mut tx = self
                    .pool
                    .begin_with($begin)
                    .await
                    .map_err(|e| store_error("begin an email code attempt", e))?;
                let row: Option<(Vec<u8>, i64, i64)> = sqlx::query_as(concat!(
                    "SELECT hash, expires_at, attempts FROM email_challenges
                     WHERE user_id = $1 AND purpose = $2 AND flow = $3",
                    $for_update
                ))
                .bind(key.user.as_str())
                .bind(key.purpose.as_str())
                .bind(key.flow.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| store_error("read an email challenge", e))?;
                let Some((hash, expires_at, attempts)) = row else {
                    tx.rollback()
                        .await
                        .map_err(|e| store_error("end an email code attempt", e))?;
                    return Ok(AttemptOutcome::NotFound);
                };
                let outcome = if now >= expires_at {
                    AttemptOutcome::Expired
                } else if attempts >= i64::from(max_attempts) {
                    AttemptOutcome::TooManyAttempts
                } else if bool::from(hash.as_slice().ct_eq(candidate.as_slice())) {
                    AttemptOutcome::Consumed
                } else {
                    AttemptOutcome::Wrong
                };
                let write = if outcome == AttemptOutcome::Wrong {
                    "UPDATE email_challenges SET attempts = attempts + 1
                     WHERE user_id = $1 AND purpose = $2 AND flow = $3"
                } else {
                    "DELETE FROM email_challenges
                     WHERE user_id = $1 AND purpose = $2 AND flow = $3"
                };
                sqlx::query(write)
                    .bind(key.user.as_str())
                    .bind(key.purpose.as_str())
                    .bind(key.flow.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| store_error("settle an email code attempt", e))?;
                tx.commit()
                    .await
                    .map_err(|e| store_error("commit an email code attempt", e))?;
                Ok(outcome)
            }
        }
    };
}

for_each_backend!(impl_mfa_stores);
