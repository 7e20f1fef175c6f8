//! `mcpsec crypt rewrap`: re-encrypts one column of the operator's table under its
//! category's primary key after a rotation, resumably.
//!
//! The engine is `mcpsec_fieldcrypt::rewrap`: [`SqlColumnSource`] is its
//! [`RowSource`] over the named table (pages of rows by id, a compare-and-swap write per
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

use crate::db::{Database, DatabaseUrl, store_failure};
use crate::tokens::CliError;
use mcpsec_core::{NullSink, SealContext, SystemClock};
use mcpsec_fieldcrypt::format;
use mcpsec_fieldcrypt::rewrap::{Checkpoint, EncryptedRow, Progress, Rewrap, RewrapCheckpoints};
use mcpsec_fieldcrypt::{Category, Error, FieldCrypt, LocalKeyset, NonceBudget};
use mcpsec_store_sql::SqlRewrapCheckpoints;
use sqlx::Row;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

/// A table or column name the operator gave: a plain identifier, spliced into SQL only
/// quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier(String);

impl Identifier {
    /// Accepts `[A-Za-z_][A-Za-z0-9_]{0,62}` and nothing else, naming `flag` on refusal.
    pub fn parse(flag: &str, text: &str) -> Result<Identifier, CliError> {
        let mut chars = text.chars();
        let plain = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && text.len() <= 63;
        if plain {
            Ok(Identifier(text.to_owned()))
        } else {
            let shown: String = text.chars().take(70).collect();
            Err(usage(format!(
                "{flag}: {shown:?} is not a plain identifier (letters, digits and _, not \
                 starting with a digit, at most 63 characters)"
            )))
        }
    }

    /// The name as given (what the seal context holds).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name quoted for SQL (the same on SQLite and PostgreSQL; a plain identifier
    /// holds no quote to escape).
    fn sql(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

/// Which table and columns hold the ciphertexts.
#[derive(Debug, Clone)]
pub struct Target {
    /// The table.
    pub table: Identifier,
    /// The column holding the ciphertext (text form `mcpsec:fc1:…` or binary).
    pub column: Identifier,
    /// The unique id the rows are paged by (integer, text or, on PostgreSQL, uuid); its
    /// text is the context's `row`.
    pub id_column: Identifier,
    /// The column whose value is the context's `tenant`, if the rows were sealed with one.
    pub tenant_column: Option<Identifier>,
}

impl Target {
    /// The checkpoint's job name: one job per category, table, column, id and tenant
    /// column.
    fn job(&self, category: &Category) -> String {
        let tenant = self
            .tenant_column
            .as_ref()
            .map_or_else(String::new, |t| format!(" tenant {}", t.as_str()));
        format!(
            "mcpsec-cli crypt rewrap {category} {}.{} id {}{tenant}",
            self.table.as_str(),
            self.column.as_str(),
            self.id_column.as_str()
        )
    }
}

/// How the id column compares: the cursor (text) is bound as its own type, so the page
/// condition `id > $1` orders exactly as `ORDER BY id` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdKind {
    Integer,
    Text,
    Uuid,
}

/// A ciphertext as the column holds it, kept to compare against on write.
#[derive(Debug, Clone)]
enum Stored {
    Text(String),
    Binary(Vec<u8>),
}

/// fieldcrypt's [`RowSource`](mcpsec_fieldcrypt::rewrap::RowSource) over one column of
/// a table, on SQLite or PostgreSQL.
///
/// Rows with a `NULL` value are not read. A write is one conditional statement,
/// `UPDATE t SET c = $new WHERE id = $id AND c = $old`, comparing against the value
/// exactly as it was read (text or binary): a row changed since it was read is left
/// alone and reported as not replaced.
#[derive(Debug)]
pub struct SqlColumnSource {
    db: Database,
    target: Target,
    category: String,
    id_kind: IdKind,
    /// The values of the last batch, by cursor, as they were read.
    read: Mutex<HashMap<String, Stored>>,
}

fn db_error(what: &'static str, e: sqlx::Error) -> Error {
    Error::Store(mcpsec_store_sql::store_error(what, e))
}

impl SqlColumnSource {
    /// A source over `target` on `db`, for ciphertexts of `category`. Reads the id
    /// column's type from the first row: a missing table or column is an error that says
    /// so, and so is an id that is not an integer, text or uuid.
    pub async fn new(
        db: Database,
        target: Target,
        category: &Category,
    ) -> Result<SqlColumnSource, CliError> {
        let table = target.table.sql();
        let (id, column) = (
            format!("{table}.{}", target.id_column.sql()),
            format!("{table}.{}", target.column.sql()),
        );
        let type_of = match db {
            Database::Sqlite(_) => "typeof",
            Database::Postgres(_) => "pg_typeof",
        };
        let tenant = target
            .tenant_column
            .as_ref()
            .map_or_else(String::new, |t| format!(", {table}.{}", t.sql()));
        // Names every column the job reads, so a wrong name fails here, before any work.
        let sql = format!(
            "SELECT CAST({type_of}({id}) AS TEXT){tenant} FROM {table} \
             WHERE {column} IS NOT NULL ORDER BY {id} LIMIT 1"
        );
        let probe = |e: sqlx::Error| {
            // The driver's reason names the missing table or column, not row data.
            let reason = match &e {
                sqlx::Error::Database(e) => e.message().to_owned(),
                other => other.to_string(),
            };
            usage(format!(
                "cannot read {}.{} by {}: {reason}",
                target.table.as_str(),
                target.column.as_str(),
                target.id_column.as_str()
            ))
        };
        let kind: Option<String> = match &db {
            Database::Sqlite(pool) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_optional(pool)
                .await
                .map_err(probe)?,
            Database::Postgres(pool) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_optional(pool)
                .await
                .map_err(probe)?,
        };
        let id_kind = match kind.as_deref() {
            // An empty table: nothing to page through.
            None => IdKind::Integer,
            Some("integer" | "smallint" | "bigint") => IdKind::Integer,
            Some("text" | "character varying" | "character") => IdKind::Text,
            Some("uuid") => IdKind::Uuid,
            Some(other) => {
                return Err(usage(format!(
                    "--id-column {}: a column of type {other}; it must be an integer, text or uuid",
                    target.id_column.as_str()
                )));
            }
        };
        Ok(SqlColumnSource {
            db,
            target,
            category: category.as_str().to_owned(),
            id_kind,
            read: Mutex::new(HashMap::new()),
        })
    }

    /// How many rows hold a value (for the progress bar).
    pub async fn count(&self) -> Result<u64, Error> {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE {} IS NOT NULL",
            self.target.table.sql(),
            self.target.column.sql()
        );
        let count: i64 = match &self.db {
            Database::Sqlite(pool) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(pool)
                .await
                .map_err(|e| db_error("count the rows", e))?,
            Database::Postgres(pool) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(pool)
                .await
                .map_err(|e| db_error("count the rows", e))?,
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// `$n` as the id column's type.
    fn id_param(&self, n: u8) -> String {
        match self.id_kind {
            IdKind::Uuid => format!("CAST(${n} AS uuid)"),
            IdKind::Integer | IdKind::Text => format!("${n}"),
        }
    }

    fn context(&self, row: &str, tenant: Option<String>) -> Result<SealContext, Error> {
        let context = SealContext::new(
            self.category.as_str(),
            self.target.table.as_str(),
            self.target.column.as_str(),
            row,
        )?;
        Ok(match tenant {
            Some(tenant) => context.with_tenant(tenant)?,
            None => context,
        })
    }

    /// One fetched row as the engine's row, remembering the value as stored.
    fn decode<R>(&self, row: &R, read: &mut HashMap<String, Stored>) -> Result<EncryptedRow, Error>
    where
        R: Row,
        usize: sqlx::ColumnIndex<R>,
        for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        let cursor: String = row.try_get(0).map_err(|e| db_error("read a row id", e))?;
        let (stored, ciphertext) = match row.try_get::<String, _>(1) {
            // Text that is not the text form stays as its bytes: the engine counts it as
            // a row that failed to open (malformed), and it is never written.
            Ok(text) => {
                let bytes = format::from_text(&text).unwrap_or_else(|_| text.clone().into_bytes());
                (Stored::Text(text), bytes)
            }
            Err(_) => {
                let bytes: Vec<u8> = row
                    .try_get(1)
                    .map_err(|e| db_error("read a ciphertext", e))?;
                (Stored::Binary(bytes.clone()), bytes)
            }
        };
        let tenant: Option<String> = if self.target.tenant_column.is_some() {
            row.try_get(2).map_err(|e| db_error("read a tenant", e))?
        } else {
            None
        };
        let context = self.context(&cursor, tenant)?;
        read.insert(cursor.clone(), stored);
        Ok(EncryptedRow {
            cursor,
            context,
            ciphertext,
        })
    }
}

/// Binds the cursor as the id column's type.
macro_rules! bind_id {
    ($query:expr, $kind:expr, $cursor:expr) => {
        match $kind {
            IdKind::Integer => $query.bind($cursor.parse::<i64>().map_err(|_| {
                Error::InvalidArgument("an integer id column gave a cursor that is not an integer")
            })?),
            IdKind::Text | IdKind::Uuid => $query.bind($cursor.to_owned()),
        }
    };
}

#[async_trait::async_trait]
impl mcpsec_fieldcrypt::rewrap::RowSource for SqlColumnSource {
    async fn next_batch(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EncryptedRow>, Error> {
        let Target {
            table,
            column,
            id_column,
            tenant_column,
        } = &self.target;
        // Qualified with the table everywhere: `ORDER BY "id"` alone would name the output
        // column `CAST("id" AS TEXT)` (which both engines call `id`) and sort as text,
        // out of step with the integer `"id" > $1`.
        let (table, id) = (table.sql(), id_column.sql());
        let (column, id) = (format!("{table}.{}", column.sql()), format!("{table}.{id}"));
        let tenant = tenant_column.as_ref().map_or_else(String::new, |t| {
            format!(", CAST({table}.{} AS TEXT)", t.sql())
        });
        let after_clause = if after.is_some() {
            format!(" AND {id} > {}", self.id_param(1))
        } else {
            String::new()
        };
        let limit_param = if after.is_some() { "$2" } else { "$1" };
        let sql = format!(
            "SELECT CAST({id} AS TEXT), {column}{tenant} FROM {table} \
             WHERE {column} IS NOT NULL{after_clause} ORDER BY {id} LIMIT {limit_param}"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut read = HashMap::new();
        let rows = match &self.db {
            Database::Sqlite(pool) => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                if let Some(after) = after {
                    query = bind_id!(query, self.id_kind, after);
                }
                let rows = query
                    .bind(limit)
                    .fetch_all(pool)
                    .await
                    .map_err(|e| db_error("read a batch of rows", e))?;
                rows.iter()
                    .map(|row| self.decode(row, &mut read))
                    .collect::<Result<Vec<_>, _>>()?
            }
            Database::Postgres(pool) => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                if let Some(after) = after {
                    query = bind_id!(query, self.id_kind, after);
                }
                let rows = query
                    .bind(limit)
                    .fetch_all(pool)
                    .await
                    .map_err(|e| db_error("read a batch of rows", e))?;
                rows.iter()
                    .map(|row| self.decode(row, &mut read))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        *self.read.lock().unwrap_or_else(PoisonError::into_inner) = read;
        Ok(rows)
    }

    async fn replace(&self, row: &EncryptedRow, new: Vec<u8>) -> Result<bool, Error> {
        let stored = self
            .read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&row.cursor)
            .cloned()
            .ok_or(Error::InvalidArgument(
                "a row that was not read is not written",
            ))?;
        let sql = format!(
            "UPDATE {table} SET {column} = $1 WHERE {id} = {param} AND {column} = $3",
            table = self.target.table.sql(),
            column = self.target.column.sql(),
            id = self.target.id_column.sql(),
            param = self.id_param(2),
        );
        // One conditional UPDATE (compare-and-swap on the value as read): a row rewritten
        // since it was read no longer matches and is left alone.
        macro_rules! cas {
            ($pool:expr) => {{
                let query = sqlx::query(sqlx::AssertSqlSafe(sql));
                let query = match &stored {
                    Stored::Text(_) => query.bind(format::to_text(&new)),
                    Stored::Binary(_) => query.bind(new),
                };
                let query = bind_id!(query, self.id_kind, row.cursor.as_str());
                let query = match stored {
                    Stored::Text(old) => query.bind(old),
                    Stored::Binary(old) => query.bind(old),
                };
                query
                    .execute($pool)
                    .await
                    .map_err(|e| db_error("write a re-encrypted row", e))?
                    .rows_affected()
            }};
        }
        let changed = match &self.db {
            Database::Sqlite(pool) => cas!(pool),
            Database::Postgres(pool) => cas!(pool),
        };
        Ok(changed >= 1)
    }
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
    let block = rows.clamp(1, 1 << 20);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_identifiers_are_accepted() {
        for good in ["users", "_x", "Users_2", &"a".repeat(63)] {
            assert_eq!(Identifier::parse("--table", good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "1users",
            "users; DROP TABLE x",
            "users\"",
            "a.b",
            "naïve",
            "a-b",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(Identifier::parse("--table", bad), Err(CliError::Usage(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            Identifier::parse("--table", "users").unwrap().sql(),
            "\"users\""
        );
    }
}
