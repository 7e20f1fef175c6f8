//! `mcpsec db migrate` and `mcpsec user add`: the operator's bootstrap of a SQL database
//! (mcpsec-store-sql), on SQLite or PostgreSQL.
//!
//! `--database-url` is a SQLite file path (`./mcpsec.db`), a `sqlite:` URL
//! (`sqlite:///var/lib/mcpsec.db`), or a `postgres://` / `postgresql://` URL. Only
//! `db migrate` creates a SQLite file or a schema; every other command refuses a database
//! whose migrations are not all applied, naming the command that fixes it.
//!
//! Nothing here prints the URL: it may hold a password.

use crate::stored_keys::{ListedKey, rfc3339};
use crate::tokens::CliError;
use mcpsec_access::{Memberships, Role};
use mcpsec_apikeys::ApiKeyStore;
use mcpsec_core::{OrgId, StoreError, StoreErrorKind, UserId};
use mcpsec_store_sql::postgres::PgPool;
use mcpsec_store_sql::sqlite::SqlitePool;
use mcpsec_store_sql::{SqlApiKeyStore, SqlMemberships};
use sqlx::Row;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

/// A store error as one line. Connection and timeout failures add the driver's reason
/// ("Connection refused"), which names no data; other kinds keep their source out of the
/// output, since a backend error may quote a row.
pub fn store_failure(e: &StoreError) -> CliError {
    let mut line = format!("database: {e}");
    if matches!(
        e.kind(),
        StoreErrorKind::Unavailable | StoreErrorKind::Timeout
    ) && let Some(source) = std::error::Error::source(e)
    {
        line.push_str(&format!(" ({source})"));
    }
    usage(line)
}

/// Where `--database-url` points. `Debug` prints the URL without its password.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite database: the URL handed to the driver, and the file it names (`None` for
    /// an in-memory database).
    Sqlite {
        /// `sqlite://…`.
        url: String,
        /// The file, when there is one.
        file: Option<PathBuf>,
    },
    /// A PostgreSQL server.
    Postgres(String),
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Sqlite { url, file } => f
                .debug_struct("Sqlite")
                .field("url", &redact_url(url))
                .field("file", file)
                .finish(),
            DatabaseUrl::Postgres(url) => {
                f.debug_tuple("Postgres").field(&redact_url(url)).finish()
            }
        }
    }
}

/// `url` with its password replaced by `[REDACTED]`, for `Debug` output and messages: the
/// `user:password@` part of a `scheme://` URL (up to the last `@` before the query, so an
/// unencoded `/` in the password is covered too) and any `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let query_at = url.find('?').unwrap_or(url.len());
    let (head, query) = url.split_at(query_at);
    let mut out = head.to_owned();
    if let Some(start) = out.find("://").map(|i| i + 3)
        && let Some(at) = out[start..].rfind('@').map(|i| start + i)
        && let Some(colon) = out[start..at].find(':').map(|i| start + i)
    {
        out.replace_range(colon + 1..at, "[REDACTED]");
    }
    if let Some(query) = query.strip_prefix('?') {
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                    format!("{key}=[REDACTED]")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

impl DatabaseUrl {
    /// Reads `--database-url`: `postgres://` and `postgresql://` URLs are PostgreSQL,
    /// `sqlite:` URLs and plain paths SQLite; any other `scheme://` is refused.
    pub fn parse(text: &str) -> Result<DatabaseUrl, CliError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(usage("--database-url: empty"));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(text.to_owned()));
        }
        if let Some(rest) = text.strip_prefix("sqlite:") {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let path = rest.split('?').next().unwrap_or_default();
            let file = match path {
                "" | ":memory:" => None,
                _ if text.contains("mode=memory") => None,
                // The driver %-decodes the path (so `?` and `#` can appear in a name).
                _ => Some(PathBuf::from(percent_decode(path)?)),
            };
            return Ok(DatabaseUrl::Sqlite {
                url: text.to_owned(),
                file,
            });
        }
        if let Some((scheme, _)) = text.split_once("://") {
            let scheme: String = scheme.chars().take(20).collect();
            return Err(usage(format!(
                "--database-url: unsupported scheme {scheme:?}: give a SQLite path, a sqlite: URL, or a postgres:// URL"
            )));
        }
        Ok(DatabaseUrl::Sqlite {
            url: format!("sqlite://{}", percent_encode_path(text)),
            file: Some(PathBuf::from(text)),
        })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseUrl::Sqlite { .. } => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        }
    }
}

/// Escapes what the SQLite URL parser would read as syntax in a plain path: `%` (it
/// decodes), `?` (parameters) and `#`.
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

fn percent_decode(text: &str) -> Result<String, CliError> {
    let bad = || usage("--database-url: bad %-escape in the SQLite path");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// An open database of either backend.
#[derive(Debug, Clone)]
pub enum Database {
    /// SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the pool of whichever backend `$db` is: the queries
/// are the same text on both (store-sql writes `$1` placeholders for both).
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Database::Sqlite($pool) => $body,
            Database::Postgres($pool) => $body,
        }
    };
}

/// The table sqlx records applied migrations in.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// What `db migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The migrations this run applied: version and description, in order.
    pub applied: Vec<(i64, String)>,
    /// How many migrations this build knows.
    pub known: usize,
    /// The latest version now applied.
    pub latest: Option<i64>,
}

impl MigrateReport {
    /// `applied 0001 stores` per migration, then one summary line.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for (version, description) in &self.applied {
            text.push_str(&format!("applied {version:04} {description}\n"));
        }
        let latest = self
            .latest
            .map_or_else(|| "none".to_owned(), |v| format!("{v:04}"));
        if self.applied.is_empty() {
            text.push_str(&format!(
                "{}: nothing to apply; schema up to date ({} migrations, latest {latest})\n",
                self.backend, self.known
            ));
        } else {
            text.push_str(&format!(
                "{}: applied {} of {} migrations; schema up to date (latest {latest})\n",
                self.backend,
                self.applied.len(),
                self.known
            ));
        }
        text
    }
}

impl Database {
    /// Opens `url`. With `create` (only `db migrate`), a missing SQLite file is created;
    /// otherwise it is an error naming `db migrate`, and so is a database whose schema is
    /// not fully migrated.
    pub async fn open(url: &DatabaseUrl, create: bool) -> Result<Database, CliError> {
        let db = match url {
            DatabaseUrl::Sqlite { url, file } => {
                if let Some(file) = file
                    && !create
                    && !file.exists()
                {
                    return Err(usage(format!(
                        "no SQLite database at {}; create it with `mcpsec db migrate --database-url …`",
                        file.display()
                    )));
                }
                let pool = mcpsec_store_sql::sqlite::connect(url, 2)
                    .await
                    .map_err(|e| connect_failure(&e))?;
                Database::Sqlite(pool)
            }
            DatabaseUrl::Postgres(url) => {
                let pool = mcpsec_store_sql::postgres::connect(url, 2)
                    .await
                    .map_err(|e| connect_failure(&e))?;
                Database::Postgres(pool)
            }
        };
        if !create {
            db.require_migrated().await?;
        }
        Ok(db)
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self {
            Database::Sqlite(_) => &mcpsec_store_sql::sqlite::MIGRATOR,
            Database::Postgres(_) => &mcpsec_store_sql::postgres::MIGRATOR,
        }
    }

    /// The versions recorded as applied; empty when the database was never migrated.
    async fn applied_versions(&self) -> Result<BTreeSet<i64>, CliError> {
        let fail = |e| store_failure(&mcpsec_store_sql::store_error("read the migrations", e));
        let exists: bool = match self {
            Database::Sqlite(pool) => {
                let tables: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
                )
                .bind(MIGRATIONS_TABLE)
                .fetch_one(pool)
                .await
                .map_err(fail)?;
                tables > 0
            }
            // Resolved through the search path, as the migrator resolves it.
            Database::Postgres(pool) => sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(MIGRATIONS_TABLE)
                .fetch_one(pool)
                .await
                .map_err(fail)?,
        };
        if !exists {
            return Ok(BTreeSet::new());
        }
        let versions: Vec<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                .fetch_all(pool)
                .await
                .map_err(fail)?
        });
        Ok(versions.into_iter().collect())
    }

    /// Refuses a database missing any migration this build knows.
    async fn require_migrated(&self) -> Result<(), CliError> {
        let applied = self.applied_versions().await?;
        let missing = self
            .migrator()
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .count();
        if missing > 0 {
            return Err(usage(format!(
                "the {} database is not migrated ({missing} of {} migrations missing); run `mcpsec db migrate --database-url …` first",
                self.backend(),
                self.migrator().iter().count()
            )));
        }
        Ok(())
    }

    /// Applies every migration not yet applied (idempotent; on PostgreSQL under the
    /// migrator's advisory lock, so instances migrating together apply each once) and
    /// reports which this run applied.
    pub async fn migrate(&self) -> Result<MigrateReport, CliError> {
        let before = self.applied_versions().await?;
        match self {
            Database::Sqlite(pool) => mcpsec_store_sql::sqlite::migrate(pool).await,
            Database::Postgres(pool) => mcpsec_store_sql::postgres::migrate(pool).await,
        }
        .map_err(|e| migrate_failure(&e))?;
        let after = self.applied_versions().await?;
        let applied = self
            .migrator()
            .iter()
            .filter(|m| after.contains(&m.version) && !before.contains(&m.version))
            .map(|m| (m.version, m.description.to_string()))
            .collect();
        Ok(MigrateReport {
            backend: self.backend(),
            applied,
            known: self.migrator().iter().count(),
            latest: after.last().copied(),
        })
    }

    /// The API key store on this database.
    pub fn api_keys(&self) -> Arc<dyn ApiKeyStore> {
        on_pool!(self, pool => Arc::new(SqlApiKeyStore::new(pool.clone())))
    }

    /// The memberships on this database.
    pub fn memberships(&self) -> Arc<dyn Memberships> {
        on_pool!(self, pool => Arc::new(SqlMemberships::new(pool.clone())))
    }

    /// `user add`: makes `user` a member of `org` with `role`, creating both when new, or
    /// changes their role (one transaction in the store).
    pub async fn add_user(&self, user: &UserId, org: &OrgId, role: Role) -> Result<(), CliError> {
        on_pool!(self, pool => SqlMemberships::new(pool.clone()).set_role(user, org, role).await)
            .map_err(|e| store_failure(&e))
    }

    /// The public columns of `owner`'s keys (in `org` only, when given), by
    /// organization and then oldest first; `status` says `expired` for an active key
    /// past its expiry at `now`. The hash column is never read.
    ///
    /// The operator's view, on the connection's own role (on PostgreSQL, the owner of the
    /// tables, whose policy reaches every row), not a tenant's.
    pub async fn list_keys(
        &self,
        owner: &UserId,
        org: Option<&OrgId>,
        now: SystemTime,
    ) -> Result<Vec<ListedKey>, CliError> {
        let fail = |e| store_failure(&mcpsec_store_sql::store_error("list API keys", e));
        let mut sql = "SELECT id, org_id, name, hint, env, scopes, status, created_at, \
                       expires_at, last_used_at FROM api_keys WHERE user_id = $1"
            .to_owned();
        if org.is_some() {
            sql.push_str(" AND org_id = $2");
        }
        sql.push_str(" ORDER BY org_id, created_at, id");
        on_pool!(self, pool => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(owner.as_str());
            if let Some(org) = org {
                query = query.bind(org.as_str());
            }
            let rows = query.fetch_all(pool).await.map_err(fail)?;
            rows.iter()
                .map(|row| {
                    let get_text = |name: &str| row.try_get::<String, _>(name).map_err(fail);
                    let get_time = |name: &str| {
                        row.try_get::<Option<i64>, _>(name)
                            .map_err(fail)?
                            .map(micros_to_time)
                            .transpose()
                    };
                    let created_at = get_time("created_at")?
                        .ok_or_else(|| usage("database: an API key without a creation time"))?;
                    let expires_at = get_time("expires_at")?;
                    let mut status = get_text("status")?;
                    if status == "active" && expires_at.is_some_and(|at| at <= now) {
                        status = "expired".to_owned();
                    }
                    Ok(ListedKey {
                        id: get_text("id")?,
                        org: get_text("org_id")?,
                        name: get_text("name")?,
                        hint: get_text("hint")?,
                        env: get_text("env")?,
                        scopes: get_text("scopes")?,
                        status,
                        created_at: rfc3339(created_at),
                        expires_at: expires_at.map(rfc3339),
                        last_used_at: get_time("last_used_at")?.map(rfc3339),
                    })
                })
                .collect()
        })
    }

    /// Whether `user` exists (was added by `user add`).
    pub async fn user_exists(&self, user: &UserId) -> Result<bool, CliError> {
        let fail = |e| store_failure(&mcpsec_store_sql::store_error("read a user", e));
        let count: i64 = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE id = $1")
                .bind(user.as_str())
                .fetch_one(pool)
                .await
                .map_err(fail)?
        });
        Ok(count > 0)
    }
}

fn connect_failure(e: &StoreError) -> CliError {
    match store_failure(e) {
        CliError::Usage(line) | CliError::Invalid(line) => usage(format!(
            "cannot open the database: {}",
            line.strip_prefix("database: ").unwrap_or(&line)
        )),
    }
}

/// A migration failure, with the migrator's reason (a checksum mismatch, a version this
/// build does not know): those name migrations, never rows.
fn migrate_failure(e: &StoreError) -> CliError {
    let mut line = format!("database: {e}");
    if let Some(source) = std::error::Error::source(e) {
        line.push_str(&format!(" ({source})"));
    }
    usage(line)
}

/// A stored time: microseconds since the Unix epoch (both backends).
fn micros_to_time(micros: i64) -> Result<SystemTime, CliError> {
    u64::try_from(micros)
        .ok()
        .and_then(|m| UNIX_EPOCH.checked_add(std::time::Duration::from_micros(m)))
        .ok_or_else(|| usage("database: a stored time is out of range"))
}

/// A single-threaded runtime with I/O and timers, for the database commands.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| usage(format!("cannot start the runtime: {e}")))
}

/// Parses a user id argument, naming the flag on error.
pub fn user_id(flag: &str, text: &str) -> Result<UserId, CliError> {
    UserId::new(text).map_err(|e| usage(format!("{flag}: {e}")))
}

/// Parses an organization id argument, naming the flag on error.
pub fn org_id(flag: &str, text: &str) -> Result<OrgId, CliError> {
    OrgId::new(text).map_err(|e| usage(format!("{flag}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_a_password() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db:5432/x",
                "postgres://app:[REDACTED]@db:5432/x",
            ),
            (
                "postgres://app:pa/ss@db/x",
                "postgres://app:[REDACTED]@db/x",
            ),
            (
                "postgresql://db/x?user=app&password=s3cret&sslmode=require",
                "postgresql://db/x?user=app&password=[REDACTED]&sslmode=require",
            ),
            ("postgres://app@db/x", "postgres://app@db/x"),
        ] {
            assert_eq!(redact_url(url), shown);
            let parsed = DatabaseUrl::parse(url).unwrap();
            let debug = format!("{parsed:?}");
            assert!(
                !debug.contains("s3cret") && !debug.contains("pa/ss"),
                "{debug}"
            );
        }
        let request = crate::stored_keys::CreateRequest {
            database_url: "postgres://app:s3cret@db/x".to_owned(),
            owner: "alice".to_owned(),
            org: "acme".to_owned(),
            scopes: mcpsec_access::ScopeSet::parse_strict("mcp:read").unwrap(),
            name: "ci".to_owned(),
            env: mcpsec_apikeys::Env::Live,
            expires: None,
            pepper_file: PathBuf::from("pepper"),
            pepper_version: 1,
        };
        let debug = format!("{request:?}");
        assert!(
            !debug.contains("s3cret") && debug.contains("[REDACTED]"),
            "{debug}"
        );
    }

    #[test]
    fn urls_pick_the_backend() {
        assert_eq!(
            DatabaseUrl::parse("postgres://u@h/db").unwrap(),
            DatabaseUrl::Postgres("postgres://u@h/db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("postgresql://h/db").unwrap().backend(),
            "postgres"
        );
        assert_eq!(
            DatabaseUrl::parse("/tmp/a?b#c%d.db").unwrap(),
            DatabaseUrl::Sqlite {
                url: "sqlite:///tmp/a%3Fb%23c%25d.db".into(),
                file: Some("/tmp/a?b#c%d.db".into())
            }
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/x%3F.db?mode=rwc").unwrap(),
            DatabaseUrl::Sqlite {
                url: "sqlite:///var/x%3F.db?mode=rwc".into(),
                file: Some("/var/x?.db".into())
            }
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite::memory:").unwrap(),
            DatabaseUrl::Sqlite {
                url: "sqlite::memory:".into(),
                file: None
            }
        );
        for bad in ["", "mysql://h/db", "sqlite://bad%zz"] {
            assert!(matches!(DatabaseUrl::parse(bad), Err(CliError::Usage(_))));
        }
    }
}
