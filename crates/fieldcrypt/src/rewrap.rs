//! Re-encrypting stored fields under the primary key after a rotation: a resumable job.
//!
//! The host provides its rows through [`RowSource`] (ordered by a cursor, with a
//! compare-and-swap write) and a place for the checkpoint ([`RewrapCheckpoints`]). The job
//! reads a batch, re-encrypts every ciphertext that is not under its category's primary
//! key, writes each back only if the row still holds the ciphertext it read, and then
//! saves the cursor. It is idempotent: a row already under the primary key is skipped, so
//! a job interrupted between a write and its checkpoint re-reads that batch and changes
//! nothing twice. When a run finishes (`done`) with no failures, and a run after
//! [`Rewrap::restart`] rewrites nothing, the category's minimum decryption version can be
//! raised (after [`FieldCrypt::rewrap_subject_keys`] if subject keys are used).
//!
//! Subject-keyed rows are counted as `current`: their own key does not change on a
//! rotation; the subject keys are re-wrapped by [`FieldCrypt::rewrap_subject_keys`].

use crate::{Error, FieldCrypt};
use mcpsec_core::SealContext;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

/// One encrypted field of one row.
#[derive(Debug, Clone)]
pub struct EncryptedRow {
    /// Where the row sits in the source's order (a primary key); opaque to the job.
    pub cursor: String,
    /// The field's encryption context.
    pub context: SealContext,
    /// The stored ciphertext (binary form).
    pub ciphertext: Vec<u8>,
}

/// The host's rows.
#[async_trait::async_trait]
pub trait RowSource: Send + Sync + fmt::Debug {
    /// Up to `limit` rows strictly after `after` (from the start when `None`), in cursor
    /// order. An empty batch ends the job.
    async fn next_batch(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EncryptedRow>, Error>;

    /// Replaces the row's ciphertext with `new` if and only if it still holds
    /// `row.ciphertext`. Returns whether it did (false: changed concurrently, left alone).
    async fn replace(&self, row: &EncryptedRow, new: Vec<u8>) -> Result<bool, Error>;
}

/// Counts of one job, cumulative over resumed runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Rows read.
    pub scanned: u64,
    /// Rows re-encrypted and written.
    pub rewrapped: u64,
    /// Rows already under the primary key (or subject-keyed), left alone.
    pub current: u64,
    /// Rows that changed between read and write, left alone (a re-run picks them up if
    /// they are still old).
    pub conflicts: u64,
    /// Rows that failed to decrypt (tampered, wrong context, retired key), left alone.
    pub failed: u64,
}

/// Where a job stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last cursor fully processed.
    pub cursor: Option<String>,
    /// Counts so far.
    pub progress: Progress,
    /// Whether the source was exhausted.
    pub done: bool,
}

/// Where checkpoints are kept, by job name.
#[async_trait::async_trait]
pub trait RewrapCheckpoints: Send + Sync + fmt::Debug {
    /// The job's checkpoint, if it ran before.
    async fn load(&self, job: &str) -> Result<Option<Checkpoint>, Error>;
    /// Saves the job's checkpoint (durably, before returning).
    async fn save(&self, job: &str, checkpoint: &Checkpoint) -> Result<(), Error>;
}

/// Checkpoints in memory.
#[derive(Debug, Default)]
pub struct MemoryCheckpoints {
    jobs: Mutex<HashMap<String, Checkpoint>>,
}

impl MemoryCheckpoints {
    /// No checkpoints yet.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl RewrapCheckpoints for MemoryCheckpoints {
    async fn load(&self, job: &str) -> Result<Option<Checkpoint>, Error> {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(jobs.get(job).cloned())
    }

    async fn save(&self, job: &str, checkpoint: &Checkpoint) -> Result<(), Error> {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.insert(job.to_owned(), checkpoint.clone());
        Ok(())
    }
}

/// Whether an error is about one stored ciphertext (left alone and counted as failed) rather
/// than about the keys, the ledger or the machine (which stop the job).
pub(crate) fn is_row_failure(error: &Error) -> bool {
    matches!(
        error,
        Error::Decrypt
            | Error::Malformed(_)
            | Error::TooLarge(_)
            | Error::UnsupportedVersion(_)
            | Error::WrongCategory
            | Error::SubjectRequired
            | Error::Shredded
            | Error::UnknownKeyVersion { .. }
            | Error::KeyVersionRetired { .. }
            | Error::KeyMismatch { .. }
    )
}

/// A re-encryption job.
#[derive(Debug)]
pub struct Rewrap<'a> {
    crypt: &'a FieldCrypt,
    source: &'a dyn RowSource,
    checkpoints: &'a dyn RewrapCheckpoints,
    job: String,
    batch: usize,
}

impl<'a> Rewrap<'a> {
    /// A job named `job` (its checkpoint key) over `source`, 500 rows per batch.
    pub fn new(
        crypt: &'a FieldCrypt,
        source: &'a dyn RowSource,
        checkpoints: &'a dyn RewrapCheckpoints,
        job: impl Into<String>,
    ) -> Self {
        Self {
            crypt,
            source,
            checkpoints,
            job: job.into(),
            batch: 500,
        }
    }

    /// Rows per batch (1 to 100,000).
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch = rows.clamp(1, 100_000);
        self
    }

    /// Forgets the job's checkpoint, so the next [`Rewrap::run`] scans every row again
    /// (to confirm, after a finished run, that nothing old is left: it reports
    /// `rewrapped == 0`).
    pub async fn restart(&self) -> Result<(), Error> {
        self.checkpoints
            .save(&self.job, &Checkpoint::default())
            .await
    }

    /// Runs from the saved checkpoint until the source is exhausted or `max_batches`
    /// batches are done (to spread the work, or to stop cleanly). Returns the checkpoint
    /// reached. An error (the source or the checkpoint store failing) stops the run; the
    /// last saved checkpoint is where the next run resumes.
    pub async fn run(&self, max_batches: Option<usize>) -> Result<Checkpoint, Error> {
        let mut checkpoint = self.checkpoints.load(&self.job).await?.unwrap_or_default();
        let mut batches = 0usize;
        while !checkpoint.done && max_batches.is_none_or(|max| batches < max) {
            let rows = self
                .source
                .next_batch(checkpoint.cursor.as_deref(), self.batch)
                .await?;
            if rows.is_empty() {
                checkpoint.done = true;
                self.checkpoints.save(&self.job, &checkpoint).await?;
                break;
            }
            for row in &rows {
                checkpoint.progress.scanned += 1;
                match self.crypt.reencrypt(&row.ciphertext, &row.context) {
                    Ok(None) => checkpoint.progress.current += 1,
                    Ok(Some(new)) => {
                        if self.source.replace(row, new).await? {
                            checkpoint.progress.rewrapped += 1;
                        } else {
                            checkpoint.progress.conflicts += 1;
                        }
                    }
                    Err(error) if is_row_failure(&error) => checkpoint.progress.failed += 1,
                    // The keys, the ledger or the machine failed, not the row: stop here, so
                    // the next run resumes from the last checkpoint and retries these rows.
                    Err(error) => return Err(error),
                }
                checkpoint.cursor = Some(row.cursor.clone());
            }
            self.checkpoints.save(&self.job, &checkpoint).await?;
            batches += 1;
        }
        Ok(checkpoint)
    }
}
