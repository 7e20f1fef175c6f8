//! [`RefreshTokenStore`] on SQL (tables `refresh_families` and `refresh_tokens`).

use crate::error::{VICTIM_RETRIES, corrupt, rolled_back_as_victim, store_error};
use crate::rls::TenantScope;
use crate::timestamp::{from_db, from_db_opt, to_db};
use mcpsec_access::{AuthMethod, AuthMethods, Principal, Role, ScopeSet};
use mcpsec_core::{OrgId, TokenId, UserId};
use mcpsec_tokens::{
    ConsumeOutcome, FamilyRecord, RefreshRecord, RefreshTokenStore, SessionGrant, StoreError,
    TokenHash,
};
use sqlx::Row;
use std::time::SystemTime;

sql_store!(
    /// [`RefreshTokenStore`] on SQLite or PostgreSQL (tables `refresh_families`,
    /// `refresh_tokens`; a token row is deleted with its family).
    ///
    /// [`consume_once`](RefreshTokenStore::consume_once) hinges on a conditional `UPDATE …
    /// WHERE consumed_at IS NULL … RETURNING`: of any number of concurrent consumers of
    /// one token, on any number of instances, exactly one gets the row back. The successor
    /// and the family's last use are written with it, all or nothing: on PostgreSQL in the
    /// same statement (a data-modifying `WITH`, one round trip, the family locked first so
    /// a racing revocation wins cleanly), on SQLite in one `BEGIN IMMEDIATE` transaction.
    /// A failure leaves the token unconsumed.
    SqlRefreshStore
);

#[cfg_attr(
    not(feature = "sqlite"),
    allow(dead_code, reason = "used by the SQLite statements only")
)]
const FAMILY_COLUMNS: &str = "id, user_id, org_id, role, scopes, auth_time, amr, acr, \
                              created_at, last_used_at, expires_at, revoked";

fn amr_text(methods: AuthMethods) -> String {
    methods
        .iter()
        .map(AuthMethod::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

fn amr_from(text: &str) -> Result<AuthMethods, StoreError> {
    text.split(' ')
        .filter(|m| !m.is_empty())
        .try_fold(AuthMethods::EMPTY, |set, name| {
            AuthMethod::from_amr(name)
                .map(|m| set.with(m))
                .ok_or(StoreError::corrupt("an unknown stored amr value"))
        })
}

/// The columns of [`FAMILY_COLUMNS`], read from a row of either backend.
struct FamilyRow {
    id: String,
    user_id: String,
    org_id: Option<String>,
    role: Option<String>,
    scopes: String,
    auth_time: i64,
    amr: String,
    acr: Option<String>,
    created_at: i64,
    last_used_at: i64,
    expires_at: i64,
    revoked: bool,
}

impl FamilyRow {
    fn into_record(self) -> Result<FamilyRecord, StoreError> {
        Ok(FamilyRecord {
            id: TokenId::new(&self.id).map_err(corrupt("a stored family id"))?,
            grant: SessionGrant {
                subject: UserId::new(&self.user_id).map_err(corrupt("a stored subject"))?,
                org: self
                    .org_id
                    .map(OrgId::new)
                    .transpose()
                    .map_err(corrupt("a stored organization"))?,
                role: self
                    .role
                    .map(|r| r.parse::<Role>())
                    .transpose()
                    .map_err(corrupt("a stored role"))?,
                scopes: ScopeSet::parse_strict(&self.scopes).map_err(corrupt("stored scopes"))?,
                auth_time: from_db(self.auth_time)?,
                amr: amr_from(&self.amr)?,
                acr: self.acr,
            },
            created_at: from_db(self.created_at)?,
            last_used_at: from_db(self.last_used_at)?,
            expires_at: from_db(self.expires_at)?,
            revoked: self.revoked,
        })
    }
}

macro_rules! family_row {
    ($row:expr) => {{
        let row = $row;
        let get = |e| store_error("decode a refresh family row", e);
        FamilyRow {
            id: row.try_get("id").map_err(get)?,
            user_id: row.try_get("user_id").map_err(get)?,
            org_id: row.try_get("org_id").map_err(get)?,
            role: row.try_get("role").map_err(get)?,
            scopes: row.try_get("scopes").map_err(get)?,
            auth_time: row.try_get("auth_time").map_err(get)?,
            amr: row.try_get("amr").map_err(get)?,
            acr: row.try_get("acr").map_err(get)?,
            created_at: row.try_get("created_at").map_err(get)?,
            last_used_at: row.try_get("last_used_at").map_err(get)?,
            expires_at: row.try_get("expires_at").map_err(get)?,
            revoked: row.try_get("revoked").map_err(get)?,
        }
    }};
}

/// The principal-less statements on families and tokens, one per backend. SQLite runs
/// them on the tables; PostgreSQL calls the `SECURITY DEFINER` functions of migration
/// `0007_service_role.sql`, so a pool logged in as a service role (see
/// `postgres::grant_service_role`) needs no right on
/// `refresh_families` or `refresh_tokens`.
trait RefreshSql {
    /// The family `$1`'s [`FAMILY_COLUMNS`].
    const FAMILY_GET: &'static str;
    /// The token `$1`'s `family_id` and `consumed_at`.
    const TOKEN_STATE: &'static str;
    /// Family `$1` revoked.
    const REVOKE_FAMILY: &'static str;
    /// Every live family of subject `$1` revoked; their ids.
    const REVOKE_ALL: &'static str;
}

#[cfg(feature = "sqlite")]
impl RefreshSql for sqlx::Sqlite {
    const FAMILY_GET: &'static str = "SELECT id, user_id, org_id, role, scopes, auth_time, \
        amr, acr, created_at, last_used_at, expires_at, revoked \
        FROM refresh_families WHERE id = $1";
    const TOKEN_STATE: &'static str =
        "SELECT family_id, consumed_at FROM refresh_tokens WHERE hash = $1";
    const REVOKE_FAMILY: &'static str = "UPDATE refresh_families SET revoked = TRUE WHERE id = $1";
    const REVOKE_ALL: &'static str = "UPDATE refresh_families SET revoked = TRUE WHERE user_id = $1 AND NOT revoked RETURNING id";
}

#[cfg(feature = "postgres")]
impl RefreshSql for sqlx::Postgres {
    const FAMILY_GET: &'static str = "SELECT id, user_id, org_id, role, scopes, auth_time, \
        amr, acr, created_at, last_used_at, expires_at, revoked FROM refresh_family_get($1)";
    const TOKEN_STATE: &'static str = "SELECT family_id, consumed_at FROM refresh_token_state($1)";
    const REVOKE_FAMILY: &'static str = "SELECT refresh_revoke_family($1)";
    const REVOKE_ALL: &'static str = "SELECT refresh_revoke_all($1)";
}

const INSERT_TOKEN: &str = "INSERT INTO refresh_tokens
    (hash, family_id, user_id, issued_at, consumed_at, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6)";

macro_rules! impl_refresh_store {
    ($db:ty, $begin:expr, $for_update:literal) => {
        impl SqlRefreshStore<$db> {
            async fn read_family<'e, E>(
                executor: E,
                id: &str,
            ) -> Result<Option<FamilyRecord>, StoreError>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                let row = sqlx::query(<$db as RefreshSql>::FAMILY_GET)
                    .bind(id)
                    .fetch_optional(executor)
                    .await
                    .map_err(|e| store_error("read a refresh family", e))?;
                row.map(|row| family_row!(row).into_record()).transpose()
            }

            /// One run of [`consume_once`](RefreshTokenStore::consume_once) as a write
            /// transaction of four statements: SQLite's way (PostgreSQL runs
            /// [`consume_attempt`](Self::consume_attempt) as one statement instead).
            #[cfg_attr(
                feature = "postgres",
                allow(dead_code, reason = "used by the SQLite expansion only")
            )]
            async fn consume_in_transaction(
                &self,
                hash: &TokenHash,
                successor: &TokenHash,
                now: SystemTime,
            ) -> Result<ConsumeOutcome, StoreError> {
                let now_db = to_db(now)?;
                // One write transaction (PostgreSQL: READ COMMITTED; SQLite: IMMEDIATE,
                // i.e. serialized). It opens with the conditional UPDATE: its
                // `consumed_at IS NULL` is re-checked under the token's row lock, so of
                // concurrent consumers exactly one gets a row back; the others change
                // nothing. The successor and the family's last use follow in the same
                // transaction, so an error rolls the consume back.
                let mut tx = self
                    .pool
                    .begin_with($begin)
                    .await
                    .map_err(|e| store_error("begin consuming a refresh token", e))?;
                let won: Option<String> = sqlx::query_scalar(
                    "UPDATE refresh_tokens SET consumed_at = $2
                     WHERE hash = $1 AND consumed_at IS NULL
                       AND EXISTS (SELECT 1 FROM refresh_families f
                                   WHERE f.id = refresh_tokens.family_id AND NOT f.revoked)
                     RETURNING family_id",
                )
                .bind(&hash.0[..])
                .bind(now_db)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| store_error("consume a refresh token", e))?;
                let Some(family_id) = won else {
                    tx.rollback()
                        .await
                        .map_err(|e| store_error("end a refresh consume", e))?;
                    return self.explain(hash).await;
                };
                // The family as it was before this use.
                let family = Self::read_family(&mut *tx, &family_id)
                    .await?
                    .ok_or(StoreError::corrupt("a refresh token without its family"))?;
                sqlx::query(INSERT_TOKEN)
                    .bind(&successor.0[..])
                    .bind(family_id.as_str())
                    .bind(family.grant.subject.as_str())
                    .bind(now_db)
                    .bind(None::<i64>)
                    .bind(to_db(family.expires_at)?)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| store_error("store the successor refresh token", e))?;
                sqlx::query("UPDATE refresh_families SET last_used_at = $2 WHERE id = $1")
                    .bind(family_id.as_str())
                    .bind(now_db)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| store_error("record a refresh family use", e))?;
                tx.commit()
                    .await
                    .map_err(|e| store_error("commit a refresh consume", e))?;
                Ok(ConsumeOutcome::Consumed(family))
            }

            /// Why a consume that changed nothing changed nothing (a read after the
            /// conditional write failed; nothing is written on it).
            async fn explain(&self, hash: &TokenHash) -> Result<ConsumeOutcome, StoreError> {
                let token: Option<(String, Option<i64>)> =
                    sqlx::query_as(<$db as RefreshSql>::TOKEN_STATE)
                        .bind(&hash.0[..])
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| store_error("read a refresh token", e))?;
                let Some((family_id, consumed_at)) = token else {
                    return Ok(ConsumeOutcome::NotFound);
                };
                let Some(family) = Self::read_family(&self.pool, &family_id).await? else {
                    // Pruned between the two reads.
                    return Ok(ConsumeOutcome::NotFound);
                };
                if family.revoked {
                    return Ok(ConsumeOutcome::FamilyRevoked(family));
                }
                match from_db_opt(consumed_at)? {
                    Some(consumed_at) => Ok(ConsumeOutcome::AlreadyConsumed {
                        family,
                        consumed_at,
                    }),
                    // Unconsumed and live now, yet the conditional update missed it: a
                    // state no sequence of calls produces.
                    None => Err(StoreError::corrupt("a live token the consume missed")),
                }
            }
        }

        #[async_trait::async_trait]
        impl RefreshTokenStore for SqlRefreshStore<$db> {
            async fn create_family(
                &self,
                family: &FamilyRecord,
                first: &RefreshRecord,
            ) -> Result<(), StoreError> {
                self.insert_family(family, first).await
            }

            async fn consume_once(
                &self,
                hash: &TokenHash,
                successor: &TokenHash,
                now: SystemTime,
            ) -> Result<ConsumeOutcome, StoreError> {
                // A deadlock victim (a consume racing `prune` of the same family, which
                // takes the family's and the tokens' locks in the other order) was rolled
                // back whole: run it again, a bounded number of times.
                let mut tries = 0;
                loop {
                    match self.consume_attempt(hash, successor, now).await {
                        Err(e) if tries < VICTIM_RETRIES && rolled_back_as_victim(&e) => {
                            tries += 1;
                        }
                        outcome => return outcome,
                    }
                }
            }

            async fn revoke_family(&self, family: &TokenId) -> Result<(), StoreError> {
                sqlx::query(<$db as RefreshSql>::REVOKE_FAMILY)
                    .bind(family.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| store_error("revoke a refresh family", e))?;
                Ok(())
            }

            async fn revoke_family_as(
                &self,
                tenant: &Principal,
                family: &TokenId,
            ) -> Result<bool, StoreError> {
                // One statement: the tenant condition is part of the WHERE clause (the
                // organization's family, or the tenant's own organization-less session),
                // run as the tenant (PostgreSQL: under row-level security, `crate::rls`).
                let mut tx = <$db as TenantScope>::begin_tenant(&self.pool, tenant).await?;
                let done = sqlx::query(
                    "UPDATE refresh_families SET revoked = TRUE
                     WHERE id = $1
                       AND ((org_id IS NOT NULL AND org_id = $2)
                            OR (org_id IS NULL AND user_id = $3))",
                )
                .bind(family.as_str())
                .bind(tenant.org().as_str())
                .bind(tenant.subject().as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error("revoke a refresh family", e))?;
                tx.commit()
                    .await
                    .map_err(|e| store_error("commit a refresh family revocation", e))?;
                Ok(done.rows_affected() == 1)
            }

            async fn revoke_all(&self, subject: &UserId) -> Result<Vec<TokenId>, StoreError> {
                // One statement: a family created by a racing rotation is either seen
                // (and revoked) or committed after it, never half-revoked.
                let ids: Vec<String> = sqlx::query_scalar(<$db as RefreshSql>::REVOKE_ALL)
                    .bind(subject.as_str())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| store_error("revoke a subject's refresh families", e))?;
                ids.iter()
                    .map(|id| TokenId::new(id).map_err(corrupt("a stored family id")))
                    .collect()
            }

            async fn family(&self, family: &TokenId) -> Result<Option<FamilyRecord>, StoreError> {
                Self::read_family(&self.pool, family.as_str()).await
            }

            async fn prune(&self, now: SystemTime) -> Result<usize, StoreError> {
                // A deadlock victim (see `consume_once`) is run again, boundedly.
                let mut tries = 0;
                loop {
                    match self.prune_in_transaction(now).await {
                        Err(e) if tries < VICTIM_RETRIES && rolled_back_as_victim(&e) => {
                            tries += 1;
                        }
                        pruned => return pruned,
                    }
                }
            }
        }
    };
}

for_each_backend!(impl_refresh_store);

#[cfg(feature = "sqlite")]
impl SqlRefreshStore<sqlx::Sqlite> {
    /// A family and its first token on SQLite: one transaction, both or neither (a
    /// duplicate id or hash is a unique violation: Conflict).
    async fn insert_family(
        &self,
        family: &FamilyRecord,
        first: &RefreshRecord,
    ) -> Result<(), StoreError> {
        let grant = &family.grant;
        let mut tx = self
            .pool
            .begin_with(crate::sqlite::BEGIN_WRITE)
            .await
            .map_err(|e| store_error("begin creating a refresh family", e))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO refresh_families ({FAMILY_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        )))
        .bind(family.id.as_str())
        .bind(grant.subject.as_str())
        .bind(grant.org.as_ref().map(OrgId::as_str))
        .bind(grant.role.map(Role::as_str))
        .bind(grant.scopes.to_string())
        .bind(to_db(grant.auth_time)?)
        .bind(amr_text(grant.amr))
        .bind(grant.acr.as_deref())
        .bind(to_db(family.created_at)?)
        .bind(to_db(family.last_used_at)?)
        .bind(to_db(family.expires_at)?)
        .bind(family.revoked)
        .execute(&mut *tx)
        .await
        .map_err(|e| store_error("insert a refresh family", e))?;
        sqlx::query(INSERT_TOKEN)
            .bind(&first.hash.0[..])
            .bind(first.family.as_str())
            .bind(grant.subject.as_str())
            .bind(to_db(first.issued_at)?)
            .bind(first.consumed_at.map(to_db).transpose()?)
            .bind(to_db(first.expires_at)?)
            .execute(&mut *tx)
            .await
            .map_err(|e| store_error("insert a refresh token", e))?;
        tx.commit()
            .await
            .map_err(|e| store_error("commit a refresh family", e))
    }

    /// One run of [`prune`](RefreshTokenStore::prune).
    async fn prune_in_transaction(&self, now: SystemTime) -> Result<usize, StoreError> {
        let now = to_db(now)?;
        // One write transaction: expired families go with their tokens (ON DELETE
        // CASCADE), then tokens past their own expiry.
        let mut tx = self
            .pool
            .begin_with(crate::sqlite::BEGIN_WRITE)
            .await
            .map_err(|e| store_error("begin pruning refresh families", e))?;
        let families = sqlx::query("DELETE FROM refresh_families WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| store_error("prune refresh families", e))?
            .rows_affected();
        sqlx::query("DELETE FROM refresh_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| store_error("prune refresh tokens", e))?;
        tx.commit()
            .await
            .map_err(|e| store_error("commit a refresh prune", e))?;
        usize::try_from(families).map_err(corrupt("a row count"))
    }

    /// One consume on SQLite: the write transaction (`BEGIN IMMEDIATE` serializes the
    /// writers; SQLite has no data-modifying `WITH`).
    async fn consume_attempt(
        &self,
        hash: &TokenHash,
        successor: &TokenHash,
        now: SystemTime,
    ) -> Result<ConsumeOutcome, StoreError> {
        self.consume_in_transaction(hash, successor, now).await
    }
}

/// The PostgreSQL consume: one statement, so one round trip and no explicit transaction.
/// It calls the `SECURITY DEFINER` function `refresh_consume` (migration
/// `0007_service_role.sql`), whose body is that one statement: a data-modifying `WITH`.
///
/// Locks, in this order: the family row (`FOR NO KEY UPDATE` in the `EXISTS`, re-checking
/// `NOT revoked` on its newest version), then the token row (the `used` UPDATE re-checks
/// `consumed_at IS NULL` under it: READ COMMITTED re-evaluation). So concurrent consumers
/// of one family queue on the family lock and exactly one gets a row back, the others'
/// whole statement returning nothing and changing nothing; and a revocation either
/// commits first (the family no longer matches: nothing is consumed, the answer is
/// `FamilyRevoked`) or waits for this consume to commit (it happened before the
/// revocation, whose effect then covers the successor too). Family before token is also
/// the order `prune` takes them in (families, then their tokens by cascade). The
/// successor insert and the family's `last_used_at` run in the same statement (all or
/// nothing), and `prior` is read from the statement's snapshot, so the family comes back
/// as it was before this use.
#[cfg(feature = "postgres")]
const CONSUME_PG: &str = "SELECT id, user_id, org_id, role, scopes, auth_time, amr, acr, \
                          created_at, last_used_at, expires_at, revoked \
                          FROM refresh_consume($1, $2, $3)";

#[cfg(feature = "postgres")]
impl SqlRefreshStore<sqlx::Postgres> {
    /// One consume on PostgreSQL: [`CONSUME_PG`], one statement.
    async fn consume_attempt(
        &self,
        hash: &TokenHash,
        successor: &TokenHash,
        now: SystemTime,
    ) -> Result<ConsumeOutcome, StoreError> {
        let row = sqlx::query(CONSUME_PG)
            .bind(&hash.0[..])
            .bind(to_db(now)?)
            .bind(&successor.0[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error("consume a refresh token", e))?;
        match row {
            Some(row) => Ok(ConsumeOutcome::Consumed(family_row!(row).into_record()?)),
            None => self.explain(hash).await,
        }
    }

    /// A family and its first token on PostgreSQL: one call of `refresh_create_family`
    /// (one function, one transaction; a duplicate id or hash is Conflict).
    async fn insert_family(
        &self,
        family: &FamilyRecord,
        first: &RefreshRecord,
    ) -> Result<(), StoreError> {
        let grant = &family.grant;
        sqlx::query(
            "SELECT refresh_create_family($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             $13, $14, $15, $16, $17)",
        )
        .bind(family.id.as_str())
        .bind(grant.subject.as_str())
        .bind(grant.org.as_ref().map(OrgId::as_str))
        .bind(grant.role.map(Role::as_str))
        .bind(grant.scopes.to_string())
        .bind(to_db(grant.auth_time)?)
        .bind(amr_text(grant.amr))
        .bind(grant.acr.as_deref())
        .bind(to_db(family.created_at)?)
        .bind(to_db(family.last_used_at)?)
        .bind(to_db(family.expires_at)?)
        .bind(family.revoked)
        .bind(&first.hash.0[..])
        .bind(first.family.as_str())
        .bind(to_db(first.issued_at)?)
        .bind(first.consumed_at.map(to_db).transpose()?)
        .bind(to_db(first.expires_at)?)
        .execute(&self.pool)
        .await
        .map_err(|e| store_error("create a refresh family", e))?;
        Ok(())
    }

    /// One run of [`prune`](RefreshTokenStore::prune): `refresh_prune`, expired families
    /// (their tokens by cascade) then expired tokens, in one function call.
    async fn prune_in_transaction(&self, now: SystemTime) -> Result<usize, StoreError> {
        let families: i64 = sqlx::query_scalar("SELECT refresh_prune($1)")
            .bind(to_db(now)?)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| store_error("prune refresh families", e))?;
        usize::try_from(families).map_err(corrupt("a row count"))
    }
}
