//! [`AttemptCounter`] on SQL: one row per subject, counted by one upsert.

use crate::error::store_error;
use crate::timestamp::{duration_to_db, from_db, to_db};
use mcpsec_core::{AttemptCounter, AttemptState};
use std::time::{Duration, SystemTime};

sql_store!(
    /// [`AttemptCounter`] on SQLite or PostgreSQL (table `attempt_counters`).
    ///
    /// Every call is one statement: a failure is an upsert whose `SET` reads the old row
    /// under its lock, so N concurrent failures leave the count exactly N higher on every
    /// backend and every instance. A row counted down to zero reads as no row (it is
    /// reused by the next failure, which starts a new window).
    SqlAttemptCounter
);

const RECORD: &str = "
    INSERT INTO attempt_counters (subject, failures, window_start, last_failure)
    VALUES ($1, 1, $2, $2)
    ON CONFLICT (subject) DO UPDATE SET
        failures = CASE
            WHEN attempt_counters.failures > 0 AND $2 - attempt_counters.window_start < $3
            THEN attempt_counters.failures + 1 ELSE 1 END,
        window_start = CASE
            WHEN attempt_counters.failures > 0 AND $2 - attempt_counters.window_start < $3
            THEN attempt_counters.window_start ELSE $2 END,
        last_failure = $2
    RETURNING failures, window_start, last_failure";

const RELEASE: &str = "
    UPDATE attempt_counters SET failures = failures - 1
    WHERE subject = $1 AND failures > 0 AND $2 - window_start < $3
    RETURNING failures, window_start, last_failure";

const STATE: &str = "
    SELECT failures, window_start, last_failure FROM attempt_counters
    WHERE subject = $1 AND failures > 0 AND $2 - window_start < $3";

fn state((failures, start, last): (i64, i64, i64)) -> Result<AttemptState, mcpsec_core::Error> {
    Ok(AttemptState {
        count: u64::try_from(failures)
            .map_err(crate::error::corrupt("a negative failure count"))?,
        window_start: from_db(start)?,
        last_failure: from_db(last)?,
    })
}

macro_rules! impl_attempt_counter {
    ($db:ty, $begin:expr, $for_update:literal) => {
        impl SqlAttemptCounter<$db> {
            /// Deletes every subject whose window (of length `window`) has ended at `now`
            /// or whose count is back to zero; returns how many went. The memory counter
            /// bounds its subjects; a table is bounded by calling this on a schedule.
            ///
            /// One statement: a failure racing it either restarted the window first (the
            /// row no longer matches when re-checked under its lock, and stays) or lands
            /// after it (and starts a new row).
            pub async fn prune(
                &self,
                window: Duration,
                now: SystemTime,
            ) -> Result<u64, mcpsec_core::StoreError> {
                let done = sqlx::query(
                    "DELETE FROM attempt_counters
                     WHERE failures = 0 OR $1 - window_start >= $2",
                )
                .bind(to_db(now)?)
                .bind(duration_to_db(window))
                .execute(&self.pool)
                .await
                .map_err(|e| store_error("prune failure counts", e))?;
                Ok(done.rows_affected())
            }
        }

        #[async_trait::async_trait]
        impl AttemptCounter for SqlAttemptCounter<$db> {
            async fn record_failure(
                &self,
                subject: &str,
                window: Duration,
                now: SystemTime,
            ) -> Result<AttemptState, mcpsec_core::Error> {
                // One statement: `INSERT … ON CONFLICT DO UPDATE` takes the row's lock
                // (PostgreSQL) or the write lock (SQLite) and its `SET` reads the row as
                // locked, so the increment is atomic; a window that ended restarts at 1.
                let row: (i64, i64, i64) = sqlx::query_as(RECORD)
                    .bind(subject)
                    .bind(to_db(now)?)
                    .bind(duration_to_db(window))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| store_error("count a failure", e))?;
                state(row)
            }

            async fn release(
                &self,
                subject: &str,
                window: Duration,
                now: SystemTime,
            ) -> Result<Option<AttemptState>, mcpsec_core::Error> {
                // One conditional `UPDATE … RETURNING`: only a live window with a count
                // above zero is decremented, so the count never goes negative and a late
                // release never reaches into the next window.
                let row: Option<(i64, i64, i64)> = sqlx::query_as(RELEASE)
                    .bind(subject)
                    .bind(to_db(now)?)
                    .bind(duration_to_db(window))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| store_error("release a failure", e))?;
                match row {
                    Some(row) => Ok(Some(state(row)?).filter(|s| s.count > 0)),
                    None => Ok(None),
                }
            }

            async fn state(
                &self,
                subject: &str,
                window: Duration,
                now: SystemTime,
            ) -> Result<Option<AttemptState>, mcpsec_core::Error> {
                let row: Option<(i64, i64, i64)> = sqlx::query_as(STATE)
                    .bind(subject)
                    .bind(to_db(now)?)
                    .bind(duration_to_db(window))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| store_error("read a failure count", e))?;
                row.map(state).transpose()
            }
        }
    };
}

for_each_backend!(impl_attempt_counter);
