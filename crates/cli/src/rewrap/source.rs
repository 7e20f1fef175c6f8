//! [`SqlColumnSource`]: fieldcrypt's `RowSource` over one column of the operator's table,
//! and the names ([`Identifier`], [`Target`]) it splices into SQL.

use crate::db::Database;
use crate::tokens::CliError;
use mcpsec_core::SealContext;
use mcpsec_fieldcrypt::format;
use mcpsec_fieldcrypt::rewrap::EncryptedRow;
use mcpsec_fieldcrypt::{Category, Error};
use sqlx::Row;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

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
    pub(super) fn job(&self, category: &Category) -> String {
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
             WHERE {column} IS NOT NULL AND {id} IS NOT NULL ORDER BY {id} LIMIT 1"
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

    /// How many rows hold a value (for the progress bar). Refuses a table where a row
    /// holding a value has no id: it could be neither paged nor written, and raising the
    /// minimum version afterwards would lose it.
    pub async fn count(&self) -> Result<u64, Error> {
        let sql = format!(
            "SELECT COUNT(*), COUNT({}) FROM {} WHERE {} IS NOT NULL",
            self.target.id_column.sql(),
            self.target.table.sql(),
            self.target.column.sql()
        );
        let (rows, with_id): (i64, i64) = match &self.db {
            Database::Sqlite(pool) => sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_one(pool)
                .await
                .map_err(|e| db_error("count the rows", e))?,
            Database::Postgres(pool) => sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_one(pool)
                .await
                .map_err(|e| db_error("count the rows", e))?,
        };
        if rows != with_id {
            return Err(Error::InvalidArgument(
                "some rows holding a value have a NULL id; --id-column must be the table's unique, non-null key",
            ));
        }
        Ok(u64::try_from(rows).unwrap_or(0))
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
