//! [`PasskeyStore`] on SQL: registered credentials (`passkey_credentials`), ceremonies in
//! progress (`passkey_ceremonies`) and one lock row per user (`passkey_users`).
//!
//! Credentials are public keys and flags, no secret; they carry `user_id` so row-level
//! security can key on them. A ceremony's state holds its challenge and never leaves the
//! server.

use crate::error::{corrupt, rolled_back_as_victim, store_error};
use crate::rls::TenantScope;
use crate::timestamp::{from_db, to_db};
use mcpsec_access::Principal;
use mcpsec_core::{SecretBytes, SharedClock, SystemClock, UserId};
use mcpsec_mfa::{
    CeremonyId, CeremonyKind, CeremonyLimits, CeremonyRecord, CeremonyStored, CredentialAdded,
    PasskeyStore, StoreError, StoredPasskey,
};
use std::sync::Arc;
use std::time::SystemTime;

/// Most expired ceremonies one [`PasskeyStore::put_ceremony`] deletes, so a start never
/// walks the whole table ([`SqlPasskeyStore::prune`] removes them all).
const PRUNE_BATCH: i64 = 64;

/// [`PasskeyStore`] on SQLite or PostgreSQL.
///
/// - A ceremony is taken by one `DELETE … RETURNING` that names its id, user and kind and
///   requires it unexpired at this store's [`Clock`](mcpsec_core::Clock): of concurrent finishes exactly one
///   gets the record; a wrong user or kind, or an expired ceremony, gets `None` and
///   leaves it in place (expired ones are deleted by pruning).
/// - A start and a registration are each one write transaction (PostgreSQL: READ
///   COMMITTED; SQLite: `BEGIN IMMEDIATE`) that first upserts the user's `passkey_users`
///   row and so holds its lock: one user's starts and registrations run one after the
///   other, so the per-user ceremony cap and passkey maximum hold under concurrency.
///   A credential id is unique across users by its primary key (`ON CONFLICT DO
///   NOTHING`, which waits for a concurrent registration of the same id to finish).
/// - A counter update is one conditional `UPDATE`: a compare-and-set on the counter.
///
/// Never [`CeremonyStored::Full`]: the table is bounded by expiry, each start deleting a
/// batch of expired ceremonies, and by [`prune`](Self::prune) on a schedule.
/// A user's `passkey_users` row (a user id and a counter) stays once made: deleting it
/// could race a start that is about to lock it.
pub struct SqlPasskeyStore<DB: sqlx::Database> {
    pool: sqlx::Pool<DB>,
    clock: SharedClock,
}

impl<DB: sqlx::Database> SqlPasskeyStore<DB> {
    /// A store on `pool`, whose database has this crate's migrations applied; ceremonies
    /// expire by the system clock.
    pub fn new(pool: sqlx::Pool<DB>) -> Self {
        Self {
            pool,
            clock: Arc::new(SystemClock),
        }
    }

    /// The same store reading "now" from `clock` when it refuses expired ceremonies (use
    /// the clock the `Passkeys` service uses).
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The pool it runs on.
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }
}

impl<DB: sqlx::Database> Clone for SqlPasskeyStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            clock: Arc::clone(&self.clock),
        }
    }
}

impl<DB: sqlx::Database> std::fmt::Debug for SqlPasskeyStore<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlPasskeyStore")
            .field("backend", &DB::NAME)
            .finish_non_exhaustive()
    }
}

fn kind_to_db(kind: CeremonyKind) -> &'static str {
    match kind {
        CeremonyKind::Registration => "registration",
        CeremonyKind::Authentication => "authentication",
    }
}

/// A count or limit as stored (saturating: a limit past `i64::MAX` is no limit).
fn limit_to_db(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored passkey row.
type PasskeyRow = (Vec<u8>, i64, Vec<u8>, i64);

fn passkey_from(
    (credential_id, counter, passkey, created_at): PasskeyRow,
) -> Result<StoredPasskey, StoreError> {
    Ok(StoredPasskey {
        credential_id,
        counter: u32::try_from(counter).map_err(corrupt("a passkey counter out of range"))?,
        passkey,
        created_at: from_db(created_at)?,
    })
}

const PRUNE_SOME: &str = "
    DELETE FROM passkey_ceremonies WHERE id IN (
        SELECT id FROM passkey_ceremonies WHERE expires_at <= $1
        ORDER BY expires_at LIMIT $2)";

const PUT_CEREMONY: &str = "
    INSERT INTO passkey_ceremonies (id, user_id, kind, state, expires_at, seq)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (id) DO UPDATE SET
        user_id = excluded.user_id, kind = excluded.kind, state = excluded.state,
        expires_at = excluded.expires_at, seq = excluded.seq";

const TRIM_CEREMONIES: &str = "
    DELETE FROM passkey_ceremonies WHERE user_id = $1 AND seq NOT IN (
        SELECT seq FROM passkey_ceremonies WHERE user_id = $1 ORDER BY seq DESC LIMIT $2)";

const TAKE_CEREMONY: &str = "
    DELETE FROM passkey_ceremonies
    WHERE id = $1 AND user_id = $2 AND kind = $3 AND expires_at > $4
    RETURNING state, expires_at";

const LOCK_USER: &str = "
    INSERT INTO passkey_users (user_id, ceremony_seq) VALUES ($1, 0)
    ON CONFLICT (user_id) DO UPDATE SET ceremony_seq = passkey_users.ceremony_seq";

const ADD_CREDENTIAL: &str = "
    INSERT INTO passkey_credentials (credential_id, user_id, counter, passkey, created_at)
    SELECT $1, $2, $3, $4, $5
    WHERE (SELECT COUNT(*) FROM passkey_credentials WHERE user_id = $2) < $6
    ON CONFLICT (credential_id) DO NOTHING
    RETURNING created_at";

/// The statements the service login runs before anyone is authenticated, on the tables
/// under row-level security (`passkey_users`, `passkey_credentials`), per backend. On
/// PostgreSQL each is a call of a `SECURITY DEFINER` function of migration 0008 (one
/// user's rows, named by the argument); on SQLite the statement itself.
trait PreAuthSql {
    /// User `$1`'s row upserted and locked; its next ceremony sequence number.
    const LOCK_USER_FOR_CEREMONY: &'static str;
    /// User `$1`'s credential ids, counters, passkeys and registration times, oldest first.
    const CREDENTIALS: &'static str;
    /// User `$1`'s credential `$2` given counter `$3` and passkey `$4`, compare-and-set on
    /// the counter: a row when it changed.
    const UPDATE_CREDENTIAL: &'static str;
}

#[cfg(feature = "sqlite")]
impl PreAuthSql for sqlx::Sqlite {
    const LOCK_USER_FOR_CEREMONY: &'static str = "
        INSERT INTO passkey_users (user_id, ceremony_seq) VALUES ($1, 1)
        ON CONFLICT (user_id) DO UPDATE SET ceremony_seq = passkey_users.ceremony_seq + 1
        RETURNING ceremony_seq";
    const CREDENTIALS: &'static str = "
        SELECT credential_id, counter, passkey, created_at FROM passkey_credentials
        WHERE user_id = $1 ORDER BY created_at, credential_id";
    const UPDATE_CREDENTIAL: &'static str = "
        UPDATE passkey_credentials SET counter = $3, passkey = $4
        WHERE user_id = $1 AND credential_id = $2
          AND (counter < $3 OR (counter = 0 AND $3 = 0))
        RETURNING 1";
}

#[cfg(feature = "postgres")]
impl PreAuthSql for sqlx::Postgres {
    const LOCK_USER_FOR_CEREMONY: &'static str = "SELECT passkey_ceremony_seq($1)";
    const CREDENTIALS: &'static str = "
        SELECT credential_id, counter, passkey, created_at FROM passkey_credentials_of($1)
        ORDER BY created_at, credential_id";
    const UPDATE_CREDENTIAL: &'static str =
        "SELECT 1 WHERE passkey_update_credential($1, $2, $3, $4)";
}

macro_rules! impl_passkey_store {
    ($db:ty, $begin:expr, $for_update:literal) => {
        impl SqlPasskeyStore<$db> {
            /// Deletes every ceremony expired at `now`; returns how many went. Call it on a
            /// schedule: starts only delete a batch each.
            pub async fn prune(&self, now: SystemTime) -> Result<u64, StoreError> {
                // One statement: an expired ceremony can no longer be taken, so deleting
                // it races with nothing.
                let done = sqlx::query("DELETE FROM passkey_ceremonies WHERE expires_at <= $1")
                    .bind(to_db(now)?)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| store_error("prune passkey ceremonies", e))?;
                Ok(done.rows_affected())
            }
        }

        #[async_trait::async_trait]
        impl PasskeyStore for SqlPasskeyStore<$db> {
            async fn put_ceremony(
                &self,
                id: &CeremonyId,
                record: CeremonyRecord,
                now: SystemTime,
                limits: CeremonyLimits,
            ) -> Result<CeremonyStored, StoreError> {
                // A bounded batch of expired ceremonies, in its own statement before the
                // transaction. Two starts pruning at once may lock the same rows in another
                // order; the one chosen as deadlock victim leaves them to the other.
                let pruned = sqlx::query(PRUNE_SOME)
                    .bind(to_db(now)?)
                    .bind(PRUNE_BATCH)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| store_error("prune passkey ceremonies", e));
                if let Err(e) = pruned
                    && !rolled_back_as_victim(&e)
                {
                    return Err(e);
                }
                let user = record.user.as_str();
                // One write transaction (PostgreSQL: READ COMMITTED; SQLite: IMMEDIATE).
                // The upsert of the user's row comes first and holds its lock to the end,
                // so one user's starts run one after the other, and the trimming DELETE (a
                // new statement, so a new snapshot) sees every ceremony committed before:
                // the user never ends with more than `per_user`.
                let mut tx = self
                    .pool
                    .begin_with($begin)
                    .await
                    .map_err(|e| store_error("begin storing a passkey ceremony", e))?;
                let seq: i64 = sqlx::query_scalar(<$db as PreAuthSql>::LOCK_USER_FOR_CEREMONY)
                    .bind(user)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| store_error("lock a user's passkey ceremonies", e))?;
                // A colliding id (2^-256) replaces the old record, as in memory.
                sqlx::query(PUT_CEREMONY)
                    .bind(id.as_str())
                    .bind(user)
                    .bind(kind_to_db(record.kind))
                    .bind(record.state.expose_secret())
                    .bind(to_db(record.expires_at)?)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| store_error("store a passkey ceremony", e))?;
                sqlx::query(TRIM_CEREMONIES)
                    .bind(user)
                    .bind(limit_to_db(limits.per_user.max(1)))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| store_error("drop a user's oldest passkey ceremony", e))?;
                tx.commit()
                    .await
                    .map_err(|e| store_error("commit a passkey ceremony", e))?;
                Ok(CeremonyStored::Stored)
            }

            async fn take_ceremony(
                &self,
                id: &CeremonyId,
                user: &UserId,
                kind: CeremonyKind,
            ) -> Result<Option<CeremonyRecord>, StoreError> {
                // One statement: of concurrent DELETEs of one row exactly one removes and
                // returns it (the others find it gone under the row lock or write lock). A
                // row of another user or kind, or expired, is not matched and stays.
                let row: Option<(Vec<u8>, i64)> = sqlx::query_as(TAKE_CEREMONY)
                    .bind(id.as_str())
                    .bind(user.as_str())
                    .bind(kind_to_db(kind))
                    .bind(to_db(self.clock.now())?)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| store_error("take a passkey ceremony", e))?;
                row.map(|(state, expires_at)| {
                    Ok(CeremonyRecord {
                        user: user.clone(),
                        kind,
                        state: SecretBytes::new(state),
                        expires_at: from_db(expires_at)?,
                    })
                })
                .transpose()
            }

            async fn add_credential(
                &self,
                tenant: &Principal,
                passkey: StoredPasskey,
                max: usize,
            ) -> Result<CredentialAdded, StoreError> {
                let user = tenant.subject().as_str();
                // One write transaction (PostgreSQL: READ COMMITTED; SQLite: IMMEDIATE)
                // that first locks the user's row, so the count in the conditional INSERT
                // sees every registration of this user committed before: of concurrent
                // registrations exactly the ones that fit win. The credential id's
                // primary key decides between users: `ON CONFLICT DO NOTHING` waits for a
                // concurrent insert of the same id and does nothing if it committed.
                // As the tenant (PostgreSQL: under row-level security, `crate::rls`).
                let mut tx =
                    <$db as TenantScope>::begin_tenant_write(&self.pool, tenant).await?;
                sqlx::query(LOCK_USER)
                    .bind(user)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| store_error("lock a user's passkeys", e))?;
                let added: Option<i64> = sqlx::query_scalar(ADD_CREDENTIAL)
                    .bind(passkey.credential_id.as_slice())
                    .bind(user)
                    .bind(i64::from(passkey.counter))
                    .bind(passkey.passkey.as_slice())
                    .bind(to_db(passkey.created_at)?)
                    .bind(limit_to_db(max))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| store_error("register a passkey", e))?;
                let outcome = if added.is_some() {
                    CredentialAdded::Added
                } else {
                    // Nothing was written; which refusal it was, for the answer only.
                    // Under the user's lock their count is exact: below `max`, only the
                    // id's primary key can have refused it. At `max`, a duplicate id wins
                    // over the maximum (as in memory) where it is visible: this statement
                    // runs as the tenant, so on PostgreSQL it sees only the user's own
                    // ids, and another user's id at `max` answers TooMany.
                    let (own, taken): (i64, i64) = sqlx::query_as(
                        "SELECT
                             (SELECT COUNT(*) FROM passkey_credentials WHERE user_id = $1),
                             (SELECT COUNT(*) FROM passkey_credentials WHERE credential_id = $2)",
                    )
                    .bind(user)
                    .bind(passkey.credential_id.as_slice())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| store_error("read a user's passkeys", e))?;
                    if taken > 0 || own < limit_to_db(max) {
                        CredentialAdded::DuplicateId
                    } else {
                        CredentialAdded::TooMany
                    }
                };
                tx.commit()
                    .await
                    .map_err(|e| store_error("commit a passkey registration", e))?;
                Ok(outcome)
            }

            async fn credentials(&self, user: &UserId) -> Result<Vec<StoredPasskey>, StoreError> {
                let rows: Vec<PasskeyRow> = sqlx::query_as(<$db as PreAuthSql>::CREDENTIALS)
                    .bind(user.as_str())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| store_error("read passkeys", e))?;
                rows.into_iter().map(passkey_from).collect()
            }

            async fn update_credential(
                &self,
                user: &UserId,
                updated: StoredPasskey,
            ) -> Result<bool, StoreError> {
                // One conditional UPDATE, a compare-and-set: the counter condition is
                // checked again under the row lock (PostgreSQL re-reads the row a
                // concurrent update committed) or the write lock (SQLite), so of
                // concurrent updates with one counter exactly one changes the row. The
                // registration time stays as registered.
                let done = sqlx::query(<$db as PreAuthSql>::UPDATE_CREDENTIAL)
                    .bind(user.as_str())
                    .bind(updated.credential_id.as_slice())
                    .bind(i64::from(updated.counter))
                    .bind(updated.passkey.as_slice())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| store_error("update a passkey counter", e))?;
                Ok(done.is_some())
            }

            async fn remove_credential(
                &self,
                tenant: &Principal,
                credential_id: &[u8],
            ) -> Result<bool, StoreError> {
                // One statement, as the tenant (PostgreSQL: under row-level security).
                let mut tx = <$db as TenantScope>::begin_tenant(&self.pool, tenant).await?;
                let done = sqlx::query(
                    "DELETE FROM passkey_credentials WHERE user_id = $1 AND credential_id = $2",
                )
                .bind(tenant.subject().as_str())
                .bind(credential_id)
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error("remove a passkey", e))?;
                tx.commit()
                    .await
                    .map_err(|e| store_error("commit a passkey removal", e))?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

for_each_backend!(impl_passkey_store);
