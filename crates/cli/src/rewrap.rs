//! `mcpsec crypt rewrap`: re-encrypts one column of the operator's table under its
//! category's primary key after a rotation, resumably.
//!
//! The engine is `mcpsec_fieldcrypt::rewrap`: [`SqlColumnSource`] is its
//! [`RowSource`](mcpsec_fieldcrypt::rewrap::RowSource) over the named table (pages of rows by id, a compare-and-swap write per
//! row), and `SqlRewrapCheckpoints` keeps the job's checkpoint in the same database
//! (table `fieldcrypt_rewrap_checkpoints`, so the database must be migrated). A run that
//! is interrupted continues from its last checkpoint; a run after a finished one scans
//! the table again from the start (it rewrites nothing when every row is current, which
//! is the check to make before raising the category's minimum version).
//!
//! Table and column names come from the operator and are spliced into SQL: only plain
//! identifiers (`[A-Za-z_][A-Za-z0-9_]{0,62}`) are accepted, and they are quoted.
//!
//! Each row is opened with the context it was sealed with, as `crypt encrypt --context
//! table=T,column=C,row=<id>[,tenant=<tenant column>]` builds it: the table and column
//! names as given, the id as text (decimal for an integer id), and the tenant column's
//! value as text when `--tenant-column` is given (a `NULL` tenant means no tenant).

mod source;

pub use source::{Identifier, SqlColumnSource, Target};

use crate::db::{Database, DatabaseUrl, store_failure};
use crate::tokens::CliError;
use mcpsec_core::{NullSink, SystemClock};
use mcpsec_fieldcrypt::rewrap::{Checkpoint, Progress, Rewrap, RewrapCheckpoints};
use mcpsec_fieldcrypt::{Category, Error, FieldCrypt, LocalKeyset, NonceBudget};
use mcpsec_store_sql::SqlRewrapCheckpoints;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

/// What `crypt rewrap` was asked to do.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// `--database-url`.
    pub database_url: &'a str,
    /// `--keyset`.
    pub keyset: &'a Path,
    /// `--master-key-file`.
    pub master_key_file: Option<&'a Path>,
    /// `--category`.
    pub category: &'a str,
    /// The table and columns.
    pub target: Target,
    /// `--batch`: rows per batch (and per checkpoint).
    pub batch: usize,
    /// `--max-batches`: stop after this many batches (the next run continues).
    pub max_batches: Option<usize>,
}

/// What a `crypt rewrap` run reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The job's counts since it started (a resumed job counts its earlier runs too).
    pub progress: Progress,
    /// Whether every row was scanned.
    pub done: bool,
    /// Whether this run continued an interrupted one.
    pub resumed: bool,
    /// The table and column, for the summary line.
    pub what: String,
}

impl Summary {
    /// The one-line summary printed on standard output.
    pub fn line(&self) -> String {
        let p = &self.progress;
        let state = if self.done {
            "finished"
        } else {
            "stopped; run again to continue"
        };
        let resumed = if self.resumed { ", resumed" } else { "" };
        format!(
            "{}: {} rewrapped, {} already current, {} skipped ({} changed meanwhile, {} could not be opened); {} rows scanned, {state}{resumed}",
            self.what,
            p.rewrapped,
            p.current,
            p.conflicts.saturating_add(p.failed),
            p.conflicts,
            p.failed,
            p.scanned
        )
    }
}

/// Opens the keyset with a nonce reservation sized for the job, so the synchronous
/// re-encryption does not outrun the ledger; the unused part is given back at the end.
async fn open_keyset(
    keyset: &Path,
    master_key_file: Option<&Path>,
    rows: u64,
) -> Result<(Arc<LocalKeyset>, FieldCrypt), CliError> {
    let provider = crate::crypt::master_key(master_key_file, keyset)?;
    let set = Arc::new(
        LocalKeyset::open(PathBuf::from(keyset), provider, Arc::new(SystemClock))
            .await
            .map_err(|e| usage(format!("{}: {e}", keyset.display())))?,
    );
    // Large enough that the refill (started in the background when half is left) lands
    // long before the allowance runs out; small enough that a run killed midway loses
    // little of the version's budget.
    let block = rows.clamp(1, 1 << 16);
    let budget = NonceBudget {
        reserve_block: block,
        first_block: block,
        ..NonceBudget::default()
    };
    // An operator's command has no audit log to write to: no events, by name.
    let builder = FieldCrypt::builder(NullSink).nonce_budget(budget);
    let crypt = set
        .field_crypt(builder)
        .await
        .map_err(|e| usage(format!("{}: {e}", keyset.display())))?;
    Ok((set, crypt))
}

fn job_failure(e: &Error) -> CliError {
    match e {
        Error::Store(e) => store_failure(e),
        other => usage(format!("rewrap: {other}")),
    }
}

/// `crypt rewrap`: runs (or resumes) the job to the end of the table, or for
/// `max_batches` batches, drawing a bar on a terminal. Refuses bad names, a category the
/// keyset lacks and an unmigrated database before reading any row.
pub fn run(options: &Options<'_>) -> Result<Summary, CliError> {
    let category =
        Category::new(options.category).map_err(|e| usage(format!("--category: {e}")))?;
    if options.batch == 0 || options.batch > 100_000 {
        return Err(usage("--batch: 1 to 100000 rows"));
    }
    let target = &options.target;
    if target.column == target.id_column || target.tenant_column.as_ref() == Some(&target.column) {
        return Err(usage(
            "--column must differ from --id-column and --tenant-column",
        ));
    }
    let url = DatabaseUrl::parse(options.database_url)?;
    let runtime = crate::db::runtime()?;
    runtime.block_on(async {
        let db = Database::open(&url, false).await?;
        let checkpoints: Box<dyn RewrapCheckpoints> = match &db {
            Database::Sqlite(pool) => Box::new(SqlRewrapCheckpoints::new(pool.clone())),
            Database::Postgres(pool) => Box::new(SqlRewrapCheckpoints::new(pool.clone())),
        };
        let target = options.target.clone();
        let job_name = target.job(&category);
        let what = format!("{}.{}", target.table.as_str(), target.column.as_str());
        let source = SqlColumnSource::new(db, target, &category).await?;
        let total = source.count().await.map_err(|e| job_failure(&e))?;
        let (_set, crypt) = open_keyset(options.keyset, options.master_key_file, total).await?;
        if !crypt.categories().contains(&category) {
            return Err(usage(format!(
                "--category: the keyset has no category {category}"
            )));
        }
        let job = Rewrap::new(&crypt, &source, &*checkpoints, job_name.as_str())
            .batch_size(options.batch);
        let saved = checkpoints
            .load(&job_name)
            .await
            .map_err(|e| job_failure(&e))?;
        let resumed = saved
            .as_ref()
            .is_some_and(|c| !c.done && c.cursor.is_some());
        if saved.as_ref().is_some_and(|c| c.done) {
            // A finished job runs again from the first row: the confirming pass.
            job.restart().await.map_err(|e| job_failure(&e))?;
        }
        let start = saved.filter(|c| !c.done).map_or(0, |c| c.progress.scanned);
        let bar = crate::progress::rows(total.max(start), &format!("rewrap {what}"));
        bar.set_position(start);
        let result = drive(&job, &crypt, &bar, options.max_batches).await;
        bar.finish_and_clear();
        // Unused nonces go back to the ledger; one that cannot take them keeps them (an
        // over-count, which is safe).
        let _ = crypt.release_reservations().await;
        let checkpoint = result.map_err(|e| job_failure(&e))?;
        Ok(Summary {
            progress: checkpoint.progress,
            done: checkpoint.done,
            resumed,
            what,
        })
    })
}

/// Runs the job one batch at a time, moving the bar after each checkpoint.
async fn drive(
    job: &Rewrap<'_>,
    crypt: &FieldCrypt,
    bar: &indicatif::ProgressBar,
    max_batches: Option<usize>,
) -> Result<Checkpoint, Error> {
    let mut batches = 0usize;
    let mut waits = 0u32;
    loop {
        let checkpoint = match job.run(Some(1)).await {
            Ok(checkpoint) => checkpoint,
            // The nonce allowance ran out before the ledger answered: the batch stopped
            // before its checkpoint, so it is read again (rows already rewritten count
            // as current then). Wait for a reservation and go on.
            Err(Error::NonceReservationPending { .. }) if waits < 3 => {
                waits += 1;
                crypt.reserve_ahead().await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        bar.set_position(checkpoint.progress.scanned);
        if checkpoint.done {
            return Ok(checkpoint);
        }
        batches += 1;
        if max_batches.is_some_and(|max| batches >= max) {
            return Ok(checkpoint);
        }
    }
}
