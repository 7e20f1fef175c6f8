//! Row-level security: tenant-scoped statements run as a principal, and the database
//! bounds the rows they reach.
//!
//! On PostgreSQL (feature `postgres`) migration `0006_rls.sql` creates the role
//! `mcpsec_app` (`APP_ROLE`: `NOLOGIN`, `NOBYPASSRLS`), the functions `mcpsec.uid()`,
//! `mcpsec.org_id()` and `mcpsec.role()` that read the principal from transaction-local
//! settings, and forced policies on the tables that hold user and organization resources.
//! `begin_as` opens a transaction that has switched to that role with the principal
//! set; `run_as` runs a closure in one and commits it. Every tenant-scoped store method
//! on PostgreSQL (`ApiKeyStore::{insert, list_by_owner, set_status, set_expiry}`,
//! `RefreshTokenStore::revoke_family_as`, `PasskeyStore::{add_credential,
//! remove_credential}`, `RecoveryCodeStore::replace_set`) goes through it with the
//! principal it is given, so a missing `WHERE` clause cannot reach another user's or
//! organization's rows.
//!
//! SQLite has no policies: the same store methods run their statement in a plain
//! transaction, bounded by their `WHERE` clauses alone.

use crate::error::store_error;
use mcpsec_access::Principal;
use mcpsec_core::StoreError;

#[cfg(feature = "postgres")]
pub use postgres::{APP_ROLE, Work, begin_as, begin_as_parts, run_as};

/// How a backend opens the transaction a tenant-scoped statement runs in.
pub(crate) trait TenantScope: sqlx::Database {
    /// A transaction in which statements act as `tenant`.
    fn begin_tenant(
        pool: &sqlx::Pool<Self>,
        tenant: &Principal,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self>, StoreError>> + Send;

    /// A write transaction in which statements act as `tenant`, for a method that reads
    /// and writes under one lock (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: as
    /// [`begin_tenant`](Self::begin_tenant), READ COMMITTED).
    fn begin_tenant_write(
        pool: &sqlx::Pool<Self>,
        tenant: &Principal,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self>, StoreError>> + Send;

    /// After the tenant's own `UPDATE` reached no key: an org admin's status change on a
    /// member's key `id` of the tenant's organization, without reading it. Returns the
    /// status replaced, or `None` (also on a backend whose `UPDATE` already reached it).
    fn admin_set_key_status(
        tx: &mut sqlx::Transaction<'static, Self>,
        tenant: &Principal,
        id: &str,
        status: &'static str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// The same for an expiry; returns whether it wrote.
    fn admin_set_key_expiry(
        tx: &mut sqlx::Transaction<'static, Self>,
        tenant: &Principal,
        id: &str,
        expires_at: Option<i64>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

#[cfg(feature = "sqlite")]
impl TenantScope for sqlx::Sqlite {
    async fn begin_tenant(
        pool: &sqlx::Pool<Self>,
        _tenant: &Principal,
    ) -> Result<sqlx::Transaction<'static, Self>, StoreError> {
        // DEFERRED: each tenant-scoped method runs one statement in it, which takes the
        // write lock itself if it writes.
        pool.begin()
            .await
            .map_err(|e| store_error("begin a tenant statement", e))
    }

    async fn begin_tenant_write(
        pool: &sqlx::Pool<Self>,
        _tenant: &Principal,
    ) -> Result<sqlx::Transaction<'static, Self>, StoreError> {
        pool.begin_with(crate::sqlite::BEGIN_WRITE)
            .await
            .map_err(|e| store_error("begin a tenant write", e))
    }

    // No policies: the tenant's `UPDATE … WHERE org_id = …` already reached every key of
    // the organization.
    async fn admin_set_key_status(
        _tx: &mut sqlx::Transaction<'static, Self>,
        _tenant: &Principal,
        _id: &str,
        _status: &'static str,
    ) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    async fn admin_set_key_expiry(
        _tx: &mut sqlx::Transaction<'static, Self>,
        _tenant: &Principal,
        _id: &str,
        _expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }
}

#[cfg(feature = "postgres")]
impl TenantScope for sqlx::Postgres {
    async fn begin_tenant(
        pool: &sqlx::Pool<Self>,
        tenant: &Principal,
    ) -> Result<sqlx::Transaction<'static, Self>, StoreError> {
        begin_as(pool, tenant).await
    }

    async fn begin_tenant_write(
        pool: &sqlx::Pool<Self>,
        tenant: &Principal,
    ) -> Result<sqlx::Transaction<'static, Self>, StoreError> {
        begin_as(pool, tenant).await
    }

    async fn admin_set_key_status(
        tx: &mut sqlx::Transaction<'static, Self>,
        tenant: &Principal,
        id: &str,
        status: &'static str,
    ) -> Result<Option<String>, StoreError> {
        if tenant.role() != mcpsec_access::Role::OrgAdmin {
            return Ok(None);
        }
        // One statement in a SECURITY DEFINER function (migration 0006): the admin sees
        // no member's key, yet can switch one off by its id.
        sqlx::query_scalar::<_, Option<String>>("SELECT api_key_admin_set_status($1, $2)")
            .bind(id)
            .bind(status)
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| store_error("set a member's API key status", e))
    }

    async fn admin_set_key_expiry(
        tx: &mut sqlx::Transaction<'static, Self>,
        tenant: &Principal,
        id: &str,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        if tenant.role() != mcpsec_access::Role::OrgAdmin {
            return Ok(false);
        }
        sqlx::query_scalar::<_, bool>("SELECT api_key_admin_set_expiry($1, $2)")
            .bind(id)
            .bind(expires_at)
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| store_error("set a member's API key expiry", e))
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use mcpsec_access::Role;
    use mcpsec_core::{OrgId, UserId};
    use sqlx::{PgConnection, PgPool, Postgres, Transaction};
    use std::pin::Pin;

    /// The role tenant-scoped statements run as: `NOLOGIN`, `NOSUPERUSER`, `NOBYPASSRLS`,
    /// granted only the tables tenant-scoped statements use.
    pub const APP_ROLE: &str = "mcpsec_app";

    /// Switches to [`APP_ROLE`] and sets the principal, all transaction-local (the third
    /// argument `true`: reset at commit or rollback, so a pooled connection goes back as
    /// it came). `set_config('role', …)` is `SET LOCAL ROLE` in a form that takes the
    /// other values as bound parameters. An empty value reads as no value (NULL).
    const BECOME: &str = "SELECT set_config('role', 'mcpsec_app', true),
                                 set_config('mcpsec.user_id', $1, true),
                                 set_config('mcpsec.org_id', $2, true),
                                 set_config('mcpsec.role', $3, true)";

    /// Opens a transaction on `pool` (READ COMMITTED, as every transaction of this crate)
    /// acting as `principal` (its user, organization and role) under row-level security:
    /// every statement run on it sees and changes only the rows the policies give that
    /// principal. Dropping it without [`commit`](Transaction::commit) rolls back.
    ///
    /// The pool's role must be a member of [`APP_ROLE`] (migration 0006 grants it to the
    /// role that ran it).
    pub async fn begin_as(
        pool: &PgPool,
        principal: &Principal,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        begin_as_parts(
            pool,
            principal.subject(),
            Some(principal.org()),
            Some(principal.role()),
        )
        .await
    }

    /// [`begin_as`] with the principal given in parts. A `None` organization or role
    /// matches no policy that needs one (a user's own TOTP enrollments still need a role:
    /// every policy does).
    pub async fn begin_as_parts(
        pool: &PgPool,
        user: &UserId,
        org: Option<&OrgId>,
        role: Option<Role>,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = pool
            .begin_with(crate::postgres::BEGIN_WRITE)
            .await
            .map_err(|e| store_error("begin a transaction as a principal", e))?;
        sqlx::query(BECOME)
            .bind(user.as_str())
            .bind(org.map_or("", OrgId::as_str))
            .bind(role.map_or("", Role::as_str))
            .execute(&mut *tx)
            .await
            .map_err(|e| store_error("act as a principal", e))?;
        Ok(tx)
    }

    /// The future a [`run_as`] closure returns, borrowing the connection.
    pub type Work<'c, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

    /// Runs `work` in a transaction acting as `principal` (see [`begin_as`]) and commits
    /// it if `work` succeeds; an error rolls everything back.
    ///
    /// ```no_run
    /// # async fn demo(pool: mcpsec_store_sql::postgres::PgPool, me: mcpsec_access::Principal)
    /// # -> Result<(), mcpsec_core::StoreError> {
    /// let names: Vec<String> = mcpsec_store_sql::rls::run_as(&pool, &me, |conn| {
    ///     Box::pin(async move {
    ///         // No WHERE on the tenant: the policies keep other organizations out.
    ///         sqlx::query_scalar("SELECT name FROM mcp_services ORDER BY name")
    ///             .fetch_all(conn)
    ///             .await
    ///             .map_err(|e| mcpsec_store_sql::store_error("list services", e))
    ///     })
    /// })
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub async fn run_as<T, F>(
        pool: &PgPool,
        principal: &Principal,
        work: F,
    ) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c mut PgConnection) -> Work<'c, T>,
    {
        let mut tx = begin_as(pool, principal).await?;
        let out = work(&mut tx).await?;
        tx.commit()
            .await
            .map_err(|e| store_error("commit a transaction as a principal", e))?;
        Ok(out)
    }
}
