//! The field-encryption stores of `mcpsec-fieldcrypt` on SQL: the keyset document
//! ([`KeysetStore`], table `fieldcrypt_keysets`), the nonce ledger ([`UsageLedger`],
//! `fieldcrypt_usage`), per-subject data keys ([`SubjectKeyStore`],
//! `fieldcrypt_subject_keys`) and re-encryption checkpoints ([`RewrapCheckpoints`],
//! `fieldcrypt_rewrap_checkpoints`).
//!
//! Every write is one statement; the only place a read follows a write is
//! [`SubjectKeyStore::create`] reporting the state a concurrent creator left, which writes
//! nothing.

use crate::error::{corrupt, store_error};
use mcpsec_core::StoreError;
use mcpsec_fieldcrypt::rewrap::{Checkpoint, Progress, RewrapCheckpoints};
use mcpsec_fieldcrypt::{
    ActiveSubjectKey, Category, Error, KeysetStore, StoredKeyset, Subject, SubjectKeyState,
    SubjectKeyStore, UsageLedger,
};

sql_store!(
    /// [`KeysetStore`] on SQLite or PostgreSQL: the keyset document in one row of
    /// `fieldcrypt_keysets` (named `default`).
    ///
    /// [`replace`](KeysetStore::replace) is one compare-and-swap statement: a conditional
    /// `UPDATE … WHERE generation = expected`, or for the first write an
    /// `INSERT … ON CONFLICT DO NOTHING`; when no row changed, another writer got in first
    /// and the call is a [`Conflict`](mcpsec_core::StoreErrorKind::Conflict) that wrote
    /// nothing. Of any number of writers from one generation, on any number of instances,
    /// exactly one succeeds. There is no separate watermark
    /// ([`watermark`](KeysetStore::watermark) is 0): the generation lives in the same row
    /// as the document, and a database restored from a backup restores both.
    SqlKeysetStore
);

sql_store!(
    /// [`UsageLedger`] on SQLite or PostgreSQL (table `fieldcrypt_usage`): the nonce budget
    /// of every key version, shared by every instance on the database.
    ///
    /// A reservation is one `INSERT … ON CONFLICT DO UPDATE … RETURNING` whose `SET` reads
    /// the total under the row's lock (PostgreSQL) or the write lock (SQLite) and adds at
    /// most what is left under the limit, so concurrent reservations from any number of
    /// instances never take the total past it. It is committed (durable) when it returns.
    /// Key versions need no registration: a version's first reservation creates its row.
    SqlUsageLedger
);

sql_store!(
    /// [`SubjectKeyStore`] on SQLite or PostgreSQL (table `fieldcrypt_subject_keys`, one
    /// row per category and subject; a shredded key is a row whose `wrapped` is `NULL`).
    ///
    /// Every change is one conditional statement on the row: `create` an
    /// `INSERT … ON CONFLICT` (generation 1) or an `UPDATE` of a tombstone of the previous
    /// generation; `shred` and `replace_wrapped` a conditional `UPDATE`, so of concurrent
    /// callers exactly one takes effect.
    ///
    /// A shred sets the column to `NULL`; the engine may keep the old bytes in free pages
    /// (SQLite, unless `secure_delete` is on) or in a dead row version (PostgreSQL, until
    /// `VACUUM`) for a while, and backups keep them until they expire. The wrapped key is
    /// useless without the category key version that wrapped it: see the erasure notes in
    /// [`mcpsec_fieldcrypt::subject`].
    SqlSubjectKeyStore
);

sql_store!(
    /// [`RewrapCheckpoints`] on SQLite or PostgreSQL (table
    /// `fieldcrypt_rewrap_checkpoints`, one row per job). A save is one upsert, committed
    /// when it returns.
    SqlRewrapCheckpoints
);

/// The row [`SqlKeysetStore`] keeps its document in.
const KEYSET: &str = "default";

/// How many grants a reservation adds, in SQL over the existing row: at most the block,
/// at most what is left under the limit, never negative. `$3` block, `$4` limit.
macro_rules! grant_sql {
    () => {
        "CASE WHEN fieldcrypt_usage.reserved >= $4 THEN 0
              WHEN $3 < $4 - fieldcrypt_usage.reserved THEN $3
              ELSE $4 - fieldcrypt_usage.reserved END"
    };
}

const RESERVE: &str = concat!(
    "INSERT INTO fieldcrypt_usage (category, version, reserved, last_grant)
     VALUES ($1, $2, CASE WHEN $3 < $4 THEN $3 ELSE $4 END, CASE WHEN $3 < $4 THEN $3 ELSE $4 END)
     ON CONFLICT (category, version) DO UPDATE SET
         reserved = fieldcrypt_usage.reserved + ",
    grant_sql!(),
    ",
         last_grant = ",
    grant_sql!(),
    "
     RETURNING last_grant, reserved"
);

const RELEASE: &str = "
    UPDATE fieldcrypt_usage
    SET reserved = CASE WHEN reserved > $3 THEN reserved - $3 ELSE 0 END
    WHERE category = $1 AND version = $2";

const CREATE_FIRST: &str = "
    INSERT INTO fieldcrypt_subject_keys (category, subject, generation, wrapped)
    VALUES ($1, $2, 1, $3)
    ON CONFLICT (category, subject) DO UPDATE
        SET generation = fieldcrypt_subject_keys.generation
    RETURNING generation, wrapped";

const CREATE_NEXT: &str = "
    UPDATE fieldcrypt_subject_keys SET generation = $3, wrapped = $4
    WHERE category = $1 AND subject = $2 AND wrapped IS NULL AND generation = $3 - 1
    RETURNING generation, wrapped";

const LIST_ACTIVE: &str = "
    SELECT subject, generation, wrapped FROM fieldcrypt_subject_keys
    WHERE category = $1 AND wrapped IS NOT NULL AND ($2 IS NULL OR subject > $2)
    ORDER BY subject LIMIT $3";

const SAVE_CHECKPOINT: &str = "
    INSERT INTO fieldcrypt_rewrap_checkpoints
        (job, last_cursor, scanned, rewrapped, already_current, conflicts, failed, done)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (job) DO UPDATE SET
        last_cursor = excluded.last_cursor, scanned = excluded.scanned,
        rewrapped = excluded.rewrapped, already_current = excluded.already_current,
        conflicts = excluded.conflicts, failed = excluded.failed, done = excluded.done";

/// A count as stored; a count past `i64::MAX` is refused.
fn count_to_db(count: u64) -> Result<i64, StoreError> {
    i64::try_from(count).map_err(|_| StoreError::rejected("a count the store cannot hold"))
}

/// A stored count; a negative one is corrupt.
fn count_from_db(count: i64) -> Result<u64, StoreError> {
    u64::try_from(count).map_err(corrupt("a negative stored count"))
}

/// A stored generation or version.
fn u32_from_db(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(corrupt("a stored generation out of range"))
}

/// A bound the ledger compares with: past `i64::MAX` it is `i64::MAX`, which no total
/// reaches, so a block or limit that large is as good as unbounded.
fn saturate(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The state of a subject-key row (`wrapped` `NULL`: shredded).
fn subject_state((generation, wrapped): (i64, Option<Vec<u8>>)) -> Result<SubjectKeyState, Error> {
    let generation = u32_from_db(generation)?;
    Ok(match wrapped {
        Some(wrapped) => SubjectKeyState::Active {
            generation,
            wrapped,
        },
        None => SubjectKeyState::Shredded { generation },
    })
}

type CheckpointRow = (Option<String>, i64, i64, i64, i64, i64, bool);

fn checkpoint(row: CheckpointRow) -> Result<Checkpoint, StoreError> {
    let (cursor, scanned, rewrapped, current, conflicts, failed, done) = row;
    Ok(Checkpoint {
        cursor,
        progress: Progress {
            scanned: count_from_db(scanned)?,
            rewrapped: count_from_db(rewrapped)?,
            current: count_from_db(current)?,
            conflicts: count_from_db(conflicts)?,
            failed: count_from_db(failed)?,
        },
        done,
    })
}

macro_rules! impl_fieldcrypt_stores {
    ($db:ty, $begin:expr, $for_update:literal) => {
        #[async_trait::async_trait]
        impl KeysetStore for SqlKeysetStore<$db> {
            async fn load(&self) -> Result<Option<StoredKeyset>, StoreError> {
                // One row read by one statement: one write's document, never a mix.
                let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT generation, document FROM fieldcrypt_keysets WHERE name = $1",
                )
                .bind(KEYSET)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| store_error("load the keyset", e))?;
                row.map(|(generation, document)| {
                    Ok(StoredKeyset {
                        generation: count_from_db(generation)?,
                        document,
                    })
                })
                .transpose()
            }

            async fn replace(
                &self,
                expected: Option<u64>,
                next: StoredKeyset,
            ) -> Result<(), StoreError> {
                let generation = count_to_db(next.generation)?;
                let written = match expected {
                    // One statement: the primary key lets one first write in; every other
                    // finds the row and inserts nothing.
                    None => sqlx::query(
                        "INSERT INTO fieldcrypt_keysets (name, generation, document)
                         VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                    )
                    .bind(KEYSET)
                    .bind(generation)
                    .bind(next.document)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| store_error("create the keyset", e))?
                    .rows_affected(),
                    // A generation no row can hold is not the stored one.
                    Some(expected) => match i64::try_from(expected) {
                        Err(_) => 0,
                        // One conditional UPDATE (the compare-and-swap): the generation is
                        // re-checked under the row's lock, so of writers racing from one
                        // generation exactly one changes the row.
                        Ok(expected) => sqlx::query(
                            "UPDATE fieldcrypt_keysets SET generation = $2, document = $3
                             WHERE name = $1 AND generation = $4",
                        )
                        .bind(KEYSET)
                        .bind(generation)
                        .bind(next.document)
                        .bind(expected)
                        .execute(&self.pool)
                        .await
                        .map_err(|e| store_error("replace the keyset", e))?
                        .rows_affected(),
                    },
                };
                if written == 1 {
                    Ok(())
                } else {
                    Err(StoreError::conflict("the keyset changed since it was read"))
                }
            }
        }

        #[async_trait::async_trait]
        impl UsageLedger for SqlUsageLedger<$db> {
            async fn reserve(
                &self,
                category: &Category,
                version: u32,
                block: u64,
                limit: u64,
            ) -> Result<(u64, u64), Error> {
                // One statement (`INSERT … ON CONFLICT DO UPDATE … RETURNING`): the `SET`
                // reads the total under the row's lock, so concurrent reservations are
                // applied one after another and the total never passes `limit`.
                let (granted, total): (i64, i64) = sqlx::query_as(RESERVE)
                    .bind(category.as_str())
                    .bind(i64::from(version))
                    .bind(saturate(block))
                    .bind(saturate(limit))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| store_error("reserve nonces", e))?;
                Ok((count_from_db(granted)?, count_from_db(total)?))
            }

            async fn release(
                &self,
                category: &Category,
                version: u32,
                unused: u64,
            ) -> Result<(), Error> {
                // One statement: subtracts at most `unused`, never below zero.
                sqlx::query(RELEASE)
                    .bind(category.as_str())
                    .bind(i64::from(version))
                    .bind(saturate(unused))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| store_error("release nonces", e))?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl SubjectKeyStore for SqlSubjectKeyStore<$db> {
            async fn current(
                &self,
                category: &Category,
                subject: &Subject,
            ) -> Result<SubjectKeyState, Error> {
                let row: Option<(i64, Option<Vec<u8>>)> = sqlx::query_as(
                    "SELECT generation, wrapped FROM fieldcrypt_subject_keys
                     WHERE category = $1 AND subject = $2",
                )
                .bind(category.as_str())
                .bind(subject.canonical())
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| store_error("read a subject key", e))?;
                row.map_or(Ok(SubjectKeyState::Absent), subject_state)
            }

            async fn create(
                &self,
                category: &Category,
                subject: &Subject,
                generation: u32,
                wrapped: Vec<u8>,
            ) -> Result<SubjectKeyState, Error> {
                let row: Option<(i64, Option<Vec<u8>>)> = match generation {
                    0 => None,
                    // One statement: the first key is inserted, or a concurrent creator's
                    // row is returned as it stands (the no-op update locks and returns it).
                    1 => sqlx::query_as(CREATE_FIRST)
                        .bind(category.as_str())
                        .bind(subject.canonical())
                        .bind(wrapped)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| store_error("create a subject key", e))?,
                    // One conditional UPDATE: only the tombstone of the previous generation
                    // becomes the new key, re-checked under the row's lock.
                    _ => sqlx::query_as(CREATE_NEXT)
                        .bind(category.as_str())
                        .bind(subject.canonical())
                        .bind(i64::from(generation))
                        .bind(wrapped)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| store_error("create a subject key", e))?,
                };
                match row {
                    Some(row) => subject_state(row),
                    // Nothing was written: report what is there (a concurrent creator's
                    // key, or the state that refused this generation).
                    None => self.current(category, subject).await,
                }
            }

            async fn shred(&self, category: &Category, subject: &Subject) -> Result<bool, Error> {
                // One conditional UPDATE: of concurrent shreds exactly one finds the key.
                let done = sqlx::query(
                    "UPDATE fieldcrypt_subject_keys SET wrapped = NULL
                     WHERE category = $1 AND subject = $2 AND wrapped IS NOT NULL",
                )
                .bind(category.as_str())
                .bind(subject.canonical())
                .execute(&self.pool)
                .await
                .map_err(|e| store_error("shred a subject key", e))?;
                Ok(done.rows_affected() == 1)
            }

            async fn list_active(
                &self,
                category: &Category,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<ActiveSubjectKey>, Error> {
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(LIST_ACTIVE)
                    .bind(category.as_str())
                    .bind(after)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| store_error("list subject keys", e))?;
                rows.into_iter()
                    .map(|(subject, generation, wrapped)| {
                        Ok(ActiveSubjectKey {
                            subject: Subject::parse_canonical(&subject)
                                .map_err(corrupt("a stored subject"))?,
                            generation: u32_from_db(generation)?,
                            wrapped,
                        })
                    })
                    .collect()
            }

            async fn replace_wrapped(
                &self,
                category: &Category,
                subject: &Subject,
                generation: u32,
                old: &[u8],
                new: Vec<u8>,
            ) -> Result<bool, Error> {
                // One conditional UPDATE (compare-and-swap on generation and old value): a
                // shredded key (`wrapped` NULL) never matches, so it is never revived.
                let done = sqlx::query(
                    "UPDATE fieldcrypt_subject_keys SET wrapped = $5
                     WHERE category = $1 AND subject = $2 AND generation = $3
                       AND wrapped = $4",
                )
                .bind(category.as_str())
                .bind(subject.canonical())
                .bind(i64::from(generation))
                .bind(old)
                .bind(new)
                .execute(&self.pool)
                .await
                .map_err(|e| store_error("re-wrap a subject key", e))?;
                Ok(done.rows_affected() == 1)
            }
        }

        #[async_trait::async_trait]
        impl RewrapCheckpoints for SqlRewrapCheckpoints<$db> {
            async fn load(&self, job: &str) -> Result<Option<Checkpoint>, Error> {
                let row: Option<CheckpointRow> = sqlx::query_as(
                    "SELECT last_cursor, scanned, rewrapped, already_current, conflicts,
                            failed, done
                     FROM fieldcrypt_rewrap_checkpoints WHERE job = $1",
                )
                .bind(job)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| store_error("load a rewrap checkpoint", e))?;
                Ok(row.map(checkpoint).transpose()?)
            }

            async fn save(&self, job: &str, checkpoint: &Checkpoint) -> Result<(), Error> {
                let progress = &checkpoint.progress;
                // One upsert: the whole checkpoint replaces the last one.
                sqlx::query(SAVE_CHECKPOINT)
                    .bind(job)
                    .bind(checkpoint.cursor.as_deref())
                    .bind(count_to_db(progress.scanned)?)
                    .bind(count_to_db(progress.rewrapped)?)
                    .bind(count_to_db(progress.current)?)
                    .bind(count_to_db(progress.conflicts)?)
                    .bind(count_to_db(progress.failed)?)
                    .bind(checkpoint.done)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| store_error("save a rewrap checkpoint", e))?;
                Ok(())
            }
        }
    };
}

for_each_backend!(impl_fieldcrypt_stores);
