//! [`Memberships`] on SQL (tables `orgs`, `users`, `memberships`).

use crate::error::{corrupt, store_error};
use mcpsec_access::{Memberships, Role, StoreError};
use mcpsec_core::{OrgId, UserId};

sql_store!(
    /// [`Memberships`] on SQLite or PostgreSQL: organizations, users, and each user's
    /// role in an organization (`memberships`, keyed by user and organization).
    ///
    /// [`role`](Memberships::role) reads the committed row at every call, so a demotion or
    /// a removal bites at the next request. [`set_role`](Self::set_role) and
    /// [`remove`](Self::remove) are the operator's bootstrap (`mcpsec user add`); managing
    /// members as a tenant goes through the host's authorization first.
    SqlMemberships
);

/// The statements on `memberships` (under row-level security) the service login runs,
/// per backend: a role read before a request is authorized, and the operator's bootstrap.
/// On PostgreSQL each is a call of a `SECURITY DEFINER` function of migration 0008 (one
/// user's membership of one organization, named by the arguments); on SQLite the
/// statement itself.
trait MembershipSql {
    /// User `$1` made a member of `$2` with role `$3`, or given that role.
    const SET: &'static str;
    /// User `$1`'s membership of `$2` removed: the role it had, or no row.
    const REMOVE: &'static str;
    /// User `$1`'s role in `$2`, or no row.
    const ROLE: &'static str;
}

#[cfg(feature = "sqlite")]
impl MembershipSql for sqlx::Sqlite {
    const SET: &'static str = "INSERT INTO memberships (user_id, org_id, role) \
         VALUES ($1, $2, $3) ON CONFLICT (user_id, org_id) DO UPDATE SET role = excluded.role";
    const REMOVE: &'static str =
        "DELETE FROM memberships WHERE user_id = $1 AND org_id = $2 RETURNING role";
    const ROLE: &'static str = "SELECT role FROM memberships WHERE user_id = $1 AND org_id = $2";
}

#[cfg(feature = "postgres")]
impl MembershipSql for sqlx::Postgres {
    const SET: &'static str = "SELECT membership_set($1, $2, $3)";
    // A NULL answer (no membership) becomes no row, as the statement's.
    const REMOVE: &'static str =
        "SELECT had FROM membership_remove($1, $2) AS had WHERE had IS NOT NULL";
    const ROLE: &'static str =
        "SELECT role FROM membership_role($1, $2) AS role WHERE role IS NOT NULL";
}

macro_rules! impl_memberships {
    ($db:ty, $begin:expr, $for_update:literal) => {
        impl SqlMemberships<$db> {
            /// Makes `user` a member of `org` with `role`, or changes their role, creating
            /// the organization and the user when they are new; all or nothing (one
            /// write transaction of three idempotent upserts).
            pub async fn set_role(
                &self,
                user: &UserId,
                org: &OrgId,
                role: Role,
            ) -> Result<(), StoreError> {
                let mut tx = self
                    .pool
                    .begin_with($begin)
                    .await
                    .map_err(|e| store_error("begin setting a membership", e))?;
                sqlx::query("INSERT INTO orgs (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
                    .bind(org.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| store_error("create an organization", e))?;
                sqlx::query("INSERT INTO users (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
                    .bind(user.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| store_error("create a user", e))?;
                sqlx::query(<$db as MembershipSql>::SET)
                    .bind(user.as_str())
                    .bind(org.as_str())
                    .bind(role.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| store_error("set a membership", e))?;
                tx.commit()
                    .await
                    .map_err(|e| store_error("commit a membership", e))
            }

            /// Removes `user` from `org` (one `DELETE … RETURNING`); returns the role they
            /// had.
            pub async fn remove(
                &self,
                user: &UserId,
                org: &OrgId,
            ) -> Result<Option<Role>, StoreError> {
                let role: Option<String> = sqlx::query_scalar(<$db as MembershipSql>::REMOVE)
                    .bind(user.as_str())
                    .bind(org.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| store_error("remove a membership", e))?;
                role.map(|r| r.parse::<Role>().map_err(corrupt("a stored role")))
                    .transpose()
            }
        }

        #[async_trait::async_trait]
        impl Memberships for SqlMemberships<$db> {
            async fn role(&self, user: &UserId, org: &OrgId) -> Result<Option<Role>, StoreError> {
                let role: Option<String> = sqlx::query_scalar(<$db as MembershipSql>::ROLE)
                    .bind(user.as_str())
                    .bind(org.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| store_error("read a membership", e))?;
                role.map(|r| r.parse::<Role>().map_err(corrupt("a stored role")))
                    .transpose()
            }
        }
    };
}

for_each_backend!(impl_memberships);
