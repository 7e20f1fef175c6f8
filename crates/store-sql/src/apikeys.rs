//! [`ApiKeyLookup`] and [`ApiKeyStore`] on SQL (table `api_keys`).

use crate::error::{corrupt, store_error};
use crate::rls::TenantScope;
use crate::timestamp::{duration_to_db, from_db, from_db_opt, to_db};
use mcpsec_access::{Principal, ScopeSet};
use mcpsec_apikeys::{ApiKeyLookup, ApiKeyRecord, ApiKeyStore, Env, KeyStatus, StoreError};
use mcpsec_core::{KeyId, Label, OrgId, UserId};
use sqlx::Row;
use std::time::{Duration, SystemTime};

sql_store!(
    /// [`ApiKeyStore`] on SQLite or PostgreSQL (table `api_keys`).
    ///
    /// The lookup face reaches one row by its key id; the tenant face adds
    /// `org_id = <the principal's organization>` to every statement, so another
    /// organization's rows read as absent and are never changed. Each method is one
    /// statement; the compare-and-set ones (`replace_hash`, `touch_last_used`,
    /// `set_status`) put their condition in the `WHERE` clause.
    SqlApiKeyStore
);

const COLUMNS: &str = "id, hash, user_id, org_id, scopes, env, name, created_at, expires_at, \
                       last_used_at, status, hint, created_by";

fn status_str(status: KeyStatus) -> &'static str {
    match status {
        KeyStatus::Active => "active",
        KeyStatus::Disabled => "disabled",
        KeyStatus::Revoked => "revoked",
    }
}

fn status_from(text: &str) -> Result<KeyStatus, StoreError> {
    match text {
        "active" => Ok(KeyStatus::Active),
        "disabled" => Ok(KeyStatus::Disabled),
        "revoked" => Ok(KeyStatus::Revoked),
        _ => Err(StoreError::corrupt("an unknown key status")),
    }
}

/// The pre-authentication statements of [`ApiKeyLookup`], one per backend. Each answers
/// with a row when it found (or wrote) the key, and none otherwise.
///
/// SQLite runs them on the table. PostgreSQL calls the `SECURITY DEFINER` functions of
/// migration `0007_service_role.sql`, so a pool logged in as a service role (see
/// `postgres::grant_service_role`) needs no right on
/// `api_keys` itself.
trait LookupSql {
    /// The key's columns ([`COLUMNS`]) by its id (`$1`).
    const GET: &'static str;
    /// The hash `$3` where the key `$1` has the hash `$2`.
    const REPLACE_HASH: &'static str;
    /// The last use `$2` of key `$1`, when the stored one is `$3` or more before it.
    const TOUCH_LAST_USED: &'static str;
    /// Key `$1` revoked; its previous status (nullable) in the one column.
    const REVOKE_BY_HOLDER: &'static str;
}

#[cfg(feature = "sqlite")]
impl LookupSql for sqlx::Sqlite {
    const GET: &'static str = "SELECT id, hash, user_id, org_id, scopes, env, name, created_at, \
                               expires_at, last_used_at, status, hint, created_by \
                               FROM api_keys WHERE id = $1";
    const REPLACE_HASH: &'static str =
        "UPDATE api_keys SET hash = $3 WHERE id = $1 AND hash = $2 RETURNING 1";
    const TOUCH_LAST_USED: &'static str = "UPDATE api_keys SET last_used_at = $2 \
         WHERE id = $1 AND (last_used_at IS NULL OR $2 - last_used_at >= $3) RETURNING 1";
    // `SET` reads the old row, so `previous_status` receives the status this update
    // replaced, returned without a second read.
    const REVOKE_BY_HOLDER: &'static str = "UPDATE api_keys \
         SET previous_status = status, status = 'revoked' WHERE id = $1 \
         RETURNING previous_status";
}

#[cfg(feature = "postgres")]
impl LookupSql for sqlx::Postgres {
    const GET: &'static str = "SELECT id, hash, user_id, org_id, scopes, env, name, \
                               created_at, expires_at, last_used_at, status, hint, created_by \
                               FROM api_key_lookup($1)";
    const REPLACE_HASH: &'static str = "SELECT 1 WHERE api_key_replace_hash($1, $2, $3)";
    const TOUCH_LAST_USED: &'static str = "SELECT 1 WHERE api_key_touch_last_used($1, $2, $3)";
    // NULL (no key): one row whose column is NULL; flattened by the caller.
    const REVOKE_BY_HOLDER: &'static str = "SELECT api_key_revoke_by_holder($1)";
}

/// The columns of [`COLUMNS`], read from a row of either backend.
struct KeyRow {
    id: String,
    hash: String,
    user_id: String,
    org_id: String,
    scopes: String,
    env: String,
    name: String,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    status: String,
    hint: String,
    created_by: String,
}

impl KeyRow {
    fn into_record(self) -> Result<ApiKeyRecord, StoreError> {
        Ok(ApiKeyRecord {
            id: KeyId::new(&self.id).map_err(corrupt("a stored key id"))?,
            hash: self.hash,
            owner: UserId::new(&self.user_id).map_err(corrupt("a stored owner"))?,
            org: OrgId::new(&self.org_id).map_err(corrupt("a stored organization"))?,
            scopes: ScopeSet::parse_strict(&self.scopes).map_err(corrupt("stored scopes"))?,
            env: self
                .env
                .parse::<Env>()
                .map_err(corrupt("a stored environment"))?,
            name: Label::new(&self.name).map_err(corrupt("a stored key name"))?,
            created_at: from_db(self.created_at)?,
            expires_at: from_db_opt(self.expires_at)?,
            last_used_at: from_db_opt(self.last_used_at)?,
            status: status_from(&self.status)?,
            hint: self.hint,
            created_by: UserId::new(&self.created_by).map_err(corrupt("a stored creator"))?,
        })
    }
}

macro_rules! key_row {
    ($row:expr) => {{
        let row = $row;
        let get = |e| store_error("decode an API key row", e);
        KeyRow {
            id: row.try_get("id").map_err(get)?,
            hash: row.try_get("hash").map_err(get)?,
            user_id: row.try_get("user_id").map_err(get)?,
            org_id: row.try_get("org_id").map_err(get)?,
            scopes: row.try_get("scopes").map_err(get)?,
            env: row.try_get("env").map_err(get)?,
            name: row.try_get("name").map_err(get)?,
            created_at: row.try_get("created_at").map_err(get)?,
            expires_at: row.try_get("expires_at").map_err(get)?,
            last_used_at: row.try_get("last_used_at").map_err(get)?,
            status: row.try_get("status").map_err(get)?,
            hint: row.try_get("hint").map_err(get)?,
            created_by: row.try_get("created_by").map_err(get)?,
        }
    }};
}

/// The `INSERT` of `record` (every column), bound; returns early with the error if a time
/// does not fit.
macro_rules! insert_query {
    ($record:expr) => {{
        let record = $record;
        {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO api_keys ({COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            )))
            .bind(record.id.as_str())
            .bind(record.hash.as_str())
            .bind(record.owner.as_str())
            .bind(record.org.as_str())
            .bind(record.scopes.to_string())
            .bind(record.env.as_str())
            .bind(record.name.as_str())
            .bind(to_db(record.created_at)?)
            .bind(record.expires_at.map(to_db).transpose()?)
            .bind(record.last_used_at.map(to_db).transpose()?)
            .bind(status_str(record.status))
            .bind(record.hint.as_str())
            .bind(record.created_by.as_str())
        }
    }};
}

macro_rules! impl_api_key_store {
    ($db:ty, $begin:expr, $for_update:literal) => {
        impl SqlApiKeyStore<$db> {
            /// Stores a new record as the pool's own role, outside row-level security and
            /// without a tenant: for an operator's tool holding the database's credentials
            /// (the `mcpsec apikey create` bootstrap), never for a request's principal,
            /// whose keys go through [`ApiKeyStore::insert`]. A duplicate id is Conflict.
            pub async fn insert_as_owner(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
                insert_query!(record)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| store_error("insert an API key", e))?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl ApiKeyLookup for SqlApiKeyStore<$db> {
            async fn get(&self, id: &KeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
                let row = sqlx::query(<$db as LookupSql>::GET)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| store_error("read an API key", e))?;
                row.map(|row| key_row!(row).into_record()).transpose()
            }

            async fn replace_hash(
                &self,
                id: &KeyId,
                expected: &str,
                new: &str,
            ) -> Result<bool, StoreError> {
                // Compare-and-set in one statement: the `WHERE hash = expected` is
                // re-checked under the row lock, so of two concurrent upgrades one wins.
                let done = sqlx::query(<$db as LookupSql>::REPLACE_HASH)
                    .bind(id.as_str())
                    .bind(expected)
                    .bind(new)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| store_error("replace an API key hash", e))?;
                Ok(done.is_some())
            }

            async fn touch_last_used(
                &self,
                id: &KeyId,
                now: SystemTime,
                min_interval: Duration,
            ) -> Result<bool, StoreError> {
                // One conditional update: written only when the last use is older than
                // the interval, checked under the row lock.
                let done = sqlx::query(<$db as LookupSql>::TOUCH_LAST_USED)
                    .bind(id.as_str())
                    .bind(to_db(now)?)
                    .bind(duration_to_db(min_interval))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| store_error("record an API key use", e))?;
                Ok(done.is_some())
            }

            async fn revoke_by_holder(&self, id: &KeyId) -> Result<Option<KeyStatus>, StoreError> {
                // One statement: `SET` reads the old row, so `previous_status` receives
                // the status this update replaced, returned without a second read.
                let previous: Option<Option<String>> =
                    sqlx::query_scalar(<$db as LookupSql>::REVOKE_BY_HOLDER)
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| store_error("revoke an API key", e))?;
                previous.flatten().map(|s| status_from(&s)).transpose()
            }
        }

        #[async_trait::async_trait]
        impl ApiKeyStore for SqlApiKeyStore<$db> {
            async fn insert(
                &self,
                tenant: &Principal,
                record: &ApiKeyRecord,
            ) -> Result<(), StoreError> {
                if &record.org != tenant.org() {
                    return Err(StoreError::rejected("the record is outside the tenant"));
                }
                // As the tenant (PostgreSQL: under row-level security, see `crate::rls`).
                // A duplicate id is a unique violation: Conflict.
                let mut tx = <$db as TenantScope>::begin_tenant(&self.pool, tenant).await?;
                insert_query!(record)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| store_error("insert an API key", e))?;
                tx.commit()
                    .await
                    .map_err(|e| store_error("commit an API key", e))
            }

            async fn list_by_owner(
                &self,
                tenant: &Principal,
                owner: &UserId,
            ) -> Result<Vec<ApiKeyRecord>, StoreError> {
                let mut tx = <$db as TenantScope>::begin_tenant(&self.pool, tenant).await?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM api_keys WHERE org_id = $1 AND user_id = $2
                     ORDER BY created_at, id"
                )))
                .bind(tenant.org().as_str())
                .bind(owner.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| store_error("list API keys", e))?;
                tx.commit()
                    .await
                    .map_err(|e| store_error("end listing API keys", e))?;
                rows.into_iter()
                    .map(|row| key_row!(row).into_record())
                    .collect()
            }

            async fn set_status(
                &self,
                tenant: &Principal,
                id: &KeyId,
                status: KeyStatus,
            ) -> Result<Option<KeyStatus>, StoreError> {
                // One statement: the old status goes to `previous_status` (SET reads the
                // old row) and is returned; a revoked key keeps `revoked`. As the tenant.
                let mut tx = <$db as TenantScope>::begin_tenant(&self.pool, tenant).await?;
                let previous: Option<String> = sqlx::query_scalar(
                    "UPDATE api_keys SET previous_status = status,
                         status = CASE WHEN status = 'revoked' THEN status ELSE $3 END
                     WHERE id = $1 AND org_id = $2 RETURNING previous_status",
                )
                .bind(id.as_str())
                .bind(tenant.org().as_str())
                .bind(status_str(status))
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| store_error("set an API key status", e))?;
                // Out of the tenant's own reach under row-level security: an org admin's
                // change to a member's key (PostgreSQL; nothing to do on SQLite).
                let previous = match previous {
                    Some(previous) => Some(previous),
                    None => {
                        <$db as TenantScope>::admin_set_key_status(
                            &mut tx,
                            tenant,
                            id.as_str(),
                            status_str(status),
                        )
                        .await?
                    }
                };
                tx.commit()
                    .await
                    .map_err(|e| store_error("commit an API key status", e))?;
                previous.map(|s| status_from(&s)).transpose()
            }

            async fn set_expiry(
                &self,
                tenant: &Principal,
                id: &KeyId,
                expires_at: Option<SystemTime>,
            ) -> Result<bool, StoreError> {
                let mut tx = <$db as TenantScope>::begin_tenant(&self.pool, tenant).await?;
                let done = sqlx::query(
                    "UPDATE api_keys SET expires_at = $3 WHERE id = $1 AND org_id = $2",
                )
                .bind(id.as_str())
                .bind(tenant.org().as_str())
                .bind(expires_at.map(to_db).transpose()?)
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error("set an API key expiry", e))?;
                let written = done.rows_affected() == 1
                    || <$db as TenantScope>::admin_set_key_expiry(
                        &mut tx,
                        tenant,
                        id.as_str(),
                        expires_at.map(to_db).transpose()?,
                    )
                    .await?;
                tx.commit()
                    .await
                    .map_err(|e| store_error("commit an API key expiry", e))?;
                Ok(written)
            }
        }
    };
}

for_each_backend!(impl_api_key_store);
