//! Benchmark rows for mcpsec-store-sql: each store operation against the raw sqlx
//! statement at its core, on the same connection, in the same run.
//!
//! - `store.sqlite_refresh_consume` runs on a temporary SQLite file (removed afterwards).
//! - `store.pg_*` run on the PostgreSQL named by `MCPSEC_BENCH_DATABASE_URL` (else
//!   `MCPSEC_TEST_DATABASE_URL`), in a fresh schema of their own that is migrated first
//!   and dropped when the rows are (best effort). Without a URL they are left out and
//!   [`pg_skip_notice`] says so; a URL that does not connect is an error.
//!
//! Every row drives the async store with a current-thread runtime's `block_on` in the op
//! and in the baseline alike, on one pool of one connection shared by both sides, so the
//! runtime, the pool's acquire (with its liveness ping) and the round trip to the server
//! are paid equally: the ratio is the store's own work over the bare statement's.

use crate::Row;
use mcpsec_access::ScopeSet;
use mcpsec_apikeys::ApiKeyLookup;
use mcpsec_core::{Error, KeyId, StoreError, TokenId, UserId};
use mcpsec_store_sql::{SqlApiKeyStore, SqlRefreshStore, store_error};
use mcpsec_tokens::{
    ConsumeOutcome, FamilyRecord, RefreshRecord, RefreshTokenStore, SessionGrant, TokenHash,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgPool};
use std::hint::black_box;
use std::path::PathBuf;
use std::rc::Rc;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::runtime::Runtime;

/// The SQLite row's name.
const SQLITE_REFRESH: &str = "store.sqlite_refresh_consume";
/// The PostgreSQL rows' names (left out without a database URL).
const PG_REFRESH: &str = "store.pg_refresh_consume";
const PG_APIKEY: &str = "store.pg_apikey_lookup";
const PG_RLS: &str = "store.pg_rls_overhead";
const PG_ROWS: [&str; 3] = [PG_REFRESH, PG_APIKEY, PG_RLS];

/// The variables naming the PostgreSQL database, in order of preference.
const URL_VARS: [&str; 2] = ["MCPSEC_BENCH_DATABASE_URL", "MCPSEC_TEST_DATABASE_URL"];

/// The store's own consuming statement (`SqlRefreshStore::consume_once` opens its
/// transaction with exactly this text), which the refresh baselines run alone.
const RAW_CONSUME: &str = "UPDATE refresh_tokens SET consumed_at = $2
                     WHERE hash = $1 AND consumed_at IS NULL
                       AND EXISTS (SELECT 1 FROM refresh_families f
                                   WHERE f.id = refresh_tokens.family_id AND NOT f.revoked)
                     RETURNING family_id";

/// The columns `SqlApiKeyStore` reads, selected by primary key in the lookup baseline.
const RAW_KEY_BY_ID: &str = "SELECT id, hash, user_id, org_id, scopes, env, name, created_at, \
                             expires_at, last_used_at, status, hint, created_by \
                             FROM api_keys WHERE id = $1";

/// `SqlApiKeyStore::list_by_owner`'s query: one user's keys in one organization.
const LIST_BY_OWNER: &str = "SELECT id, hash, user_id, org_id, scopes, env, name, created_at, \
                             expires_at, last_used_at, status, hint, created_by \
                             FROM api_keys WHERE org_id = $1 AND user_id = $2 \
                             ORDER BY created_at, id";

/// How many keys the listing row's user has, and how many other keys share the table.
const OWN_KEYS: u64 = 10;
const OTHER_KEYS: u64 = 1000;

/// How many API keys the lookup row stores and cycles through.
const KEYS: u64 = 1000;

/// The store rows whose name contains `filter` (all when `None`). PostgreSQL is connected
/// to only when a `store.pg_*` row is wanted and a URL is set.
pub(crate) fn rows(filter: Option<&str>) -> Result<Vec<Row>, Error> {
    let wanted = |name: &str| filter.is_none_or(|f| name.contains(f));
    let mut rows = Vec::new();
    if wanted(SQLITE_REFRESH) {
        rows.push(sqlite_refresh_row()?);
    }
    if PG_ROWS.iter().any(|name| wanted(name))
        && let Some(url) = database_url()
    {
        let pg = Rc::new(PgBench::open(&url)?);
        if wanted(PG_REFRESH) {
            rows.push(pg_refresh_row(&pg)?);
        }
        if wanted(PG_APIKEY) {
            rows.push(pg_apikey_row(&pg)?);
        }
        if wanted(PG_RLS) {
            rows.push(pg_rls_row(&pg)?);
        }
    }
    Ok(rows)
}

/// What `mcpsec bench` prints to stderr when it leaves the `store.pg_*` rows out: `Some`
/// when a row matching `filter` needs PostgreSQL and neither `MCPSEC_BENCH_DATABASE_URL`
/// nor `MCPSEC_TEST_DATABASE_URL` is set.
pub fn pg_skip_notice(filter: Option<&str>) -> Option<String> {
    let skipped: Vec<&str> = PG_ROWS
        .into_iter()
        .filter(|name| filter.is_none_or(|f| name.contains(f)))
        .collect();
    if skipped.is_empty() || database_url().is_some() {
        return None;
    }
    Some(format!(
        "notice: skipped the store.pg_* rows ({}): set MCPSEC_BENCH_DATABASE_URL or \
         MCPSEC_TEST_DATABASE_URL to a PostgreSQL database to run them",
        skipped.join(", ")
    ))
}

fn database_url() -> Option<String> {
    URL_VARS
        .into_iter()
        .find_map(|var| std::env::var(var).ok().filter(|url| !url.trim().is_empty()))
}

fn runtime() -> Result<Rc<Runtime>, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(Rc::new)
        .map_err(|_| Error::InvalidArgument("store benchmark setup: runtime"))
}

/// A distinct, random-looking token hash for each `n` (splitmix64), computed in a few
/// nanoseconds: the successors are spread over the primary-key index like real SHA-256
/// hashes, without a digest in the timed op.
fn hash_of(n: u64) -> TokenHash {
    let mut out = [0u8; 32];
    let mut state = n;
    for chunk in out.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes());
    }
    TokenHash(out)
}

/// A live family `id` with its first, unconsumed token `first`.
fn family(id: &str, first: TokenHash) -> Result<(FamilyRecord, RefreshRecord), Error> {
    let start = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let expires = start + Duration::from_secs(30 * 86_400);
    let id = TokenId::new(id)?;
    let family = FamilyRecord {
        id: id.clone(),
        grant: SessionGrant {
            subject: UserId::new("ada")?,
            org: None,
            role: None,
            scopes: ScopeSet::ALL,
            auth_time: start,
            amr: mcpsec_access::AuthMethods::EMPTY,
            acr: None,
        },
        created_at: start,
        last_used_at: start,
        expires_at: expires,
        revoked: false,
    };
    let first = RefreshRecord {
        hash: first,
        family: id,
        issued_at: start,
        consumed_at: None,
        expires_at: expires,
    };
    Ok((family, first))
}

/// A refresh-consume row: `store` against `raw_consume`, which runs [`RAW_CONSUME`] on
/// the same pool and says whether it got a row back.
///
/// What is timed. Op: one `consume_once` of the token the previous op stored as its
/// successor, storing a new successor: the whole store operation (its write transaction
/// with the conditional UPDATE, the family read, the successor's INSERT, the family's
/// last-use UPDATE and the COMMIT). The op chains (each consumes what the last one
/// stored), so every op consumes a live, unconsumed token and nothing is inserted outside
/// the store. Baseline: the store's own conditional `UPDATE … RETURNING`, alone, in
/// autocommit, on one token of a second live family; it writes back the `NULL` it finds
/// (`$2` bound to NULL), so the token stays unconsumed and every run matches, updates the
/// row (both engines write a new row version for an unchanged value) and commits. Neither
/// side inserts anything untimed, so there is no refill cost to share.
fn refresh_row(
    name: &'static str,
    runtime: Rc<Runtime>,
    store: Box<dyn RefreshTokenStore>,
    mut raw_consume: impl FnMut(&Runtime, &[u8]) -> bool + 'static,
    keep: Rc<dyn std::any::Any>,
) -> Result<Row, Error> {
    let (op_family, op_first) = family("bench-op", hash_of(0))?;
    let base_hash = hash_of(u64::MAX);
    let (base_family, base_first) = family("bench-base", base_hash)?;
    let now = op_family.created_at + Duration::from_secs(60);
    runtime.block_on(store.create_family(&op_family, &op_first))?;
    runtime.block_on(store.create_family(&base_family, &base_first))?;

    // Both sides must succeed (and the baseline's token stay consumable), or the
    // comparison measures an early failure.
    let mut n: u64 = 0;
    let mut consume = move |rt: &Runtime, store: &dyn RefreshTokenStore| {
        let outcome = rt.block_on(store.consume_once(&hash_of(n), &hash_of(n + 1), now));
        let won = matches!(outcome, Ok(ConsumeOutcome::Consumed(_)));
        if won {
            n += 1;
        }
        won
    };
    let ours_ok = consume(&runtime, store.as_ref()) && consume(&runtime, store.as_ref());
    let raw_ok = raw_consume(&runtime, &base_hash.0) && raw_consume(&runtime, &base_hash.0);
    if !(ours_ok && raw_ok) {
        return Err(Error::InvalidArgument(
            "store benchmark setup: a refresh consume does not succeed",
        ));
    }
    let op_runtime = Rc::clone(&runtime);
    let op_keep = Rc::clone(&keep);
    Ok(Row {
        name,
        baseline: "raw_update_returning",
        op: Box::new(move || {
            let _keep = &op_keep;
            black_box(consume(&op_runtime, store.as_ref()));
        }),
        base: Box::new(move || {
            let _keep = &keep;
            black_box(raw_consume(&runtime, black_box(&base_hash.0)));
        }),
    })
}

/// The SQLite row's temporary database, its pool of one connection and the runtime it
/// lives on; dropping it closes the pool and removes the files.
struct SqliteBench {
    runtime: Rc<Runtime>,
    pool: sqlx::SqlitePool,
    path: PathBuf,
}

impl Drop for SqliteBench {
    fn drop(&mut self) {
        self.runtime.block_on(self.pool.close());
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `store.sqlite_refresh_consume`: see [`refresh_row`]; on a temporary SQLite file opened
/// by `mcpsec_store_sql::sqlite::connect` with one connection (WAL, `synchronous` at
/// sqlx's default FULL: each side's COMMIT syncs the log once).
///
/// Its ratio depends on the disk more than the other rows' do: both sides sync once, and
/// the op runs six statements (BEGIN IMMEDIATE … COMMIT), each a round trip to sqlx's
/// SQLite worker thread, to the baseline's one. When a sync is slow (~150 µs, other
/// processes writing) it dominates both sides and the ratio is ~3.5×; when syncs are fast
/// the statements dominate and it reaches ~10×. Compare figures from one run only.
fn sqlite_refresh_row() -> Result<Row, Error> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = std::env::temp_dir().join(format!("mcpsec-bench-{}-{nanos}.db", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    let runtime = runtime()?;
    let pool = runtime.block_on(mcpsec_store_sql::sqlite::connect(&url, 1))?;
    // From here on the guard removes the files whatever fails.
    let bench = Rc::new(SqliteBench {
        runtime: Rc::clone(&runtime),
        pool: pool.clone(),
        path,
    });
    runtime.block_on(mcpsec_store_sql::sqlite::migrate(&pool))?;
    let store = Box::new(SqlRefreshStore::new(pool.clone()));
    let raw_consume = move |rt: &Runtime, hash: &[u8]| {
        let won = rt.block_on(
            sqlx::query_scalar::<_, String>(RAW_CONSUME)
                .bind(hash)
                .bind(None::<i64>)
                .fetch_optional(&pool),
        );
        matches!(won, Ok(Some(_)))
    };
    refresh_row(SQLITE_REFRESH, runtime, store, raw_consume, bench)
}

/// A fresh, migrated PostgreSQL schema, one pool of one connection working in it, and
/// the runtime both live on; dropping it drops the schema (best effort).
struct PgBench {
    runtime: Rc<Runtime>,
    pool: PgPool,
    url: String,
    schema: String,
}

impl PgBench {
    /// How long the first connection may take before the rows fail.
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    fn open(url: &str) -> Result<Self, Error> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let schema = format!("mcpsec_bench_{}_{nanos}", std::process::id());
        let runtime = runtime()?;
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            store_error(
                "store.pg_* rows: parse MCPSEC_BENCH_DATABASE_URL / MCPSEC_TEST_DATABASE_URL",
                e,
            )
        })?;
        let unreachable = "store.pg_* rows: connect to the PostgreSQL database of \
                           MCPSEC_BENCH_DATABASE_URL / MCPSEC_TEST_DATABASE_URL";
        let pool = runtime.block_on(async {
            let connect = sqlx::postgres::PgConnection::connect_with(&options);
            let mut admin = tokio::time::timeout(Self::CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| StoreError::timeout(unreachable))?
                .map_err(|e| store_error(unreachable, e))?;
            admin
                .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
                .await
                .map_err(|e| store_error("store.pg_* rows: create the benchmark schema", e))?;
            let _ = admin.close().await;
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options.options([("search_path", schema.as_str())]))
                .await
                .map_err(|e| store_error(unreachable, e))?;
            Ok::<_, StoreError>(pool)
        })?;
        // From here on the guard drops the schema whatever fails.
        let bench = Self {
            runtime,
            pool,
            url: url.to_owned(),
            schema,
        };
        bench
            .runtime
            .block_on(mcpsec_store_sql::postgres::migrate(&bench.pool))?;
        Ok(bench)
    }
}

impl Drop for PgBench {
    fn drop(&mut self) {
        let (pool, url, schema) = (&self.pool, &self.url, &self.schema);
        let dropped = self.runtime.block_on(async {
            pool.close().await;
            let mut conn = sqlx::PgConnection::connect(url).await?;
            conn.execute(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            )))
            .await?;
            conn.close().await
        });
        if dropped.is_err() {
            eprintln!("warning: could not drop the benchmark schema {schema}");
        }
    }
}

/// `store.pg_refresh_consume`: see [`refresh_row`]; on PostgreSQL, one connection.
///
/// Round trips: the op makes seven (the pool's liveness ping, BEGIN, the conditional
/// UPDATE, the family read, the successor INSERT, the family UPDATE, COMMIT), the
/// baseline two (ping, UPDATE); each side syncs one commit. With a ~115 µs round trip and
/// a ~230 µs commit (pgbench on the development VM) that is ~2.2×, whatever the store's
/// Rust does. A single data-modifying statement (`WITH won AS (UPDATE …), ins AS (INSERT
/// … SELECT), upd AS (UPDATE refresh_families …) SELECT …`) measured 1.09× under pgbench.
fn pg_refresh_row(pg: &Rc<PgBench>) -> Result<Row, Error> {
    let store = Box::new(SqlRefreshStore::new(pg.pool.clone()));
    let pool = pg.pool.clone();
    let raw_consume = move |rt: &Runtime, hash: &[u8]| {
        let won = rt.block_on(
            sqlx::query_scalar::<_, String>(RAW_CONSUME)
                .bind(hash)
                .bind(None::<i64>)
                .fetch_optional(&pool),
        );
        matches!(won, Ok(Some(_)))
    };
    let keep: Rc<dyn std::any::Any> = Rc::clone(pg) as Rc<dyn std::any::Any>;
    refresh_row(PG_REFRESH, Rc::clone(&pg.runtime), store, raw_consume, keep)
}

/// Stores `count` active API keys with ids `{prefix}{i:08}` (`i` from 0), owner and
/// organization given as SQL expressions of `i`, in one `INSERT … SELECT` (setup only).
fn store_keys(
    pg: &PgBench,
    prefix: &'static str,
    owner: &'static str,
    org: &'static str,
    count: u64,
) -> Result<(), Error> {
    let last = i64::try_from(count.saturating_sub(1)).unwrap_or(i64::MAX);
    let insert = format!(
        "INSERT INTO api_keys (id, hash, user_id, org_id, scopes, env, name, created_at, \
         expires_at, last_used_at, status, hint, created_by)
         SELECT $1 || lpad(i::text, 8, '0'), $2, {owner}, {org}, $3, 'live', 'bench-key',
                1767225600000000 + i, NULL, NULL, 'active', 'a1b2', {owner}
         FROM generate_series(0, $4::bigint) AS i"
    );
    pg.runtime
        .block_on(
            sqlx::query(sqlx::AssertSqlSafe(insert))
                .bind(prefix)
                .bind("hmac-sha256$v1$bm90LWEtcmVhbC1tYWMtb25seS1hLWJlbmNoLWZpeHR1cmUA")
                .bind(ScopeSet::ALL.to_string())
                .bind(last)
                .execute(&pg.pool),
        )
        .map_err(|e| store_error("store.pg_* rows: store the benchmark API keys", e))?;
    Ok(())
}

/// `store.pg_apikey_lookup`: `SqlApiKeyStore`'s pre-authentication `get` by key id (one
/// `SELECT` by primary key, then the row decoded and validated into an `ApiKeyRecord`)
/// against the same `SELECT` run raw, its row fetched and not decoded. Both sides cycle
/// through the same [`KEYS`] stored keys in the same order.
fn pg_apikey_row(pg: &Rc<PgBench>) -> Result<Row, Error> {
    let ids: Vec<String> = (0..KEYS).map(|i| format!("benchkey{i:08}")).collect();
    let key_ids = ids.iter().map(KeyId::new).collect::<Result<Vec<_>, _>>()?;
    // One statement: keys `benchkey00000000`… spread over 100 users in 10 organizations.
    store_keys(pg, "benchkey", "'u' || (i % 100)", "'o' || (i % 10)", KEYS)?;
    let store = SqlApiKeyStore::new(pg.pool.clone());
    let ours_ok = key_ids
        .iter()
        .all(|id| matches!(pg.runtime.block_on(store.get(id)), Ok(Some(_))));
    let raw_ok = matches!(
        pg.runtime.block_on(
            sqlx::query(RAW_KEY_BY_ID)
                .bind(ids.first().map_or("", String::as_str))
                .fetch_optional(&pg.pool)
        ),
        Ok(Some(_))
    );
    if !(ours_ok && raw_ok) {
        return Err(Error::InvalidArgument(
            "store benchmark setup: an API key lookup does not succeed",
        ));
    }
    let (op_pg, base_pg) = (Rc::clone(pg), Rc::clone(pg));
    let (mut op_i, mut base_i) = (0usize, 0usize);
    Ok(Row {
        name: PG_APIKEY,
        baseline: "raw_select_by_pk",
        op: Box::new(move || {
            op_i = (op_i + 1) % key_ids.len().max(1);
            if let Some(id) = key_ids.get(op_i) {
                let found = op_pg.runtime.block_on(store.get(black_box(id)));
                black_box(matches!(found, Ok(Some(_))));
            }
        }),
        base: Box::new(move || {
            base_i = (base_i + 1) % ids.len().max(1);
            if let Some(id) = ids.get(base_i) {
                let row = base_pg.runtime.block_on(
                    sqlx::query(RAW_KEY_BY_ID)
                        .bind(black_box(id.as_str()))
                        .fetch_optional(&base_pg.pool),
                );
                black_box(matches!(row, Ok(Some(_))));
            }
        }),
    })
}

/// `store.pg_rls_overhead`: one user's API-key listing (`list_by_owner`'s query, 10 rows
/// of 1,010) through the row-level-security helper against the same query run directly.
///
/// What is timed. Op: `rls::begin_as_parts` (BEGIN at READ COMMITTED, then one statement
/// switching to the `mcpsec_app` role with the principal in transaction-local settings),
/// the listing under the `api_keys` policies, and the COMMIT: everything a tenant-scoped
/// read costs on top of the query. Baseline: the same query, autocommit, as the pool's
/// superuser, which row-level security does not apply to. Both fetch every row and
/// decode none. Round trips: five (ping, BEGIN, the role switch, the query, COMMIT)
/// against two (ping, query), so ~2× on a local server; the policies' own cost does not
/// show beside them in these figures.
fn pg_rls_row(pg: &Rc<PgBench>) -> Result<Row, Error> {
    store_keys(
        pg,
        "rlsother",
        "'u' || (i % 100)",
        "'o' || (i % 10)",
        OTHER_KEYS,
    )?;
    store_keys(pg, "rlsownkey", "'ada'", "'acme'", OWN_KEYS)?;
    let user = UserId::new("ada")?;
    let org = mcpsec_core::OrgId::new("acme")?;
    let role = mcpsec_access::Role::Developer;
    let expected = usize::try_from(OWN_KEYS).unwrap_or(usize::MAX);

    async fn as_tenant(
        pool: &PgPool,
        user: &UserId,
        org: &mcpsec_core::OrgId,
        role: mcpsec_access::Role,
    ) -> Result<usize, StoreError> {
        let mut tx =
            mcpsec_store_sql::rls::begin_as_parts(pool, user, Some(org), Some(role)).await?;
        let rows = sqlx::query(LIST_BY_OWNER)
            .bind(org.as_str())
            .bind(user.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| store_error("list API keys as a tenant", e))?;
        tx.commit()
            .await
            .map_err(|e| store_error("end listing API keys", e))?;
        Ok(black_box(rows).len())
    }
    async fn as_superuser(
        pool: &PgPool,
        user: &UserId,
        org: &mcpsec_core::OrgId,
    ) -> Result<usize, StoreError> {
        let rows = sqlx::query(LIST_BY_OWNER)
            .bind(org.as_str())
            .bind(user.as_str())
            .fetch_all(pool)
            .await
            .map_err(|e| store_error("list API keys", e))?;
        Ok(black_box(rows).len())
    }

    // Both sides must see the user's keys (the policy lets a developer list their own),
    // or the comparison measures an empty listing.
    let ours = pg
        .runtime
        .block_on(as_tenant(&pg.pool, &user, &org, role))?;
    let raw = pg.runtime.block_on(as_superuser(&pg.pool, &user, &org))?;
    if ours != expected || raw != expected {
        return Err(Error::InvalidArgument(
            "store benchmark setup: the RLS listing does not return the user's keys",
        ));
    }
    let (op_pg, base_pg) = (Rc::clone(pg), Rc::clone(pg));
    let (op_user, op_org) = (user.clone(), org.clone());
    Ok(Row {
        name: PG_RLS,
        baseline: "superuser_query_no_rls",
        op: Box::new(move || {
            let listed = op_pg
                .runtime
                .block_on(as_tenant(&op_pg.pool, &op_user, &op_org, role));
            black_box(listed.is_ok());
        }),
        base: Box::new(move || {
            let listed = base_pg
                .runtime
                .block_on(as_superuser(&base_pg.pool, &user, &org));
            black_box(listed.is_ok());
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sqlite_row_runs_and_removes_its_database() {
        let mut rows = rows(Some(SQLITE_REFRESH)).unwrap();
        assert_eq!(rows.len(), 1);
        let m = crate::measure(&mut rows[0], Duration::from_millis(20));
        assert_eq!(
            (m.name, m.baseline),
            (SQLITE_REFRESH, "raw_update_returning")
        );
        assert!(m.ns_per_op > 0.0 && m.baseline_ns_per_op > 0.0);
        drop(rows);
        let prefix = format!("mcpsec-bench-{}-", std::process::id());
        let left = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
            .count();
        assert_eq!(left, 0);
    }

    /// With a database URL (CI sets one), every PostgreSQL row runs and its schema is
    /// dropped with the rows; without one they are left out and the notice names them.
    #[test]
    fn the_postgres_rows_run_in_a_schema_they_drop() {
        let Some(url) = database_url() else {
            assert!(rows(Some("store.pg")).unwrap().is_empty());
            let notice = pg_skip_notice(Some("store.pg")).unwrap();
            assert!(PG_ROWS.iter().all(|name| notice.contains(name)), "{notice}");
            return;
        };
        assert_eq!(pg_skip_notice(None), None);
        let mut rows = rows(Some("store.pg")).unwrap();
        let names: Vec<_> = rows.iter().map(|row| row.name).collect();
        assert_eq!(names, PG_ROWS);
        for row in &mut rows {
            let m = crate::measure(row, Duration::from_millis(20));
            assert!(
                m.ns_per_op > 0.0 && m.baseline_ns_per_op > 0.0,
                "{}",
                m.name
            );
        }
        drop(rows);
        let runtime = runtime().unwrap();
        let left: i64 = runtime.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1")
                .bind(format!("mcpsec_bench_{}_%", std::process::id()))
                .fetch_one(&mut conn)
                .await
                .unwrap()
        });
        assert_eq!(left, 0);
    }
}
