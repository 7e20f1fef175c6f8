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
                sqlx::query(
                    "INSERT INTO memberships (user_id, org_id, role) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id, org_id) DO UPDATE SET role = excluded.role",
                )
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
                let role: Option<String> = sqlx::query_scalar(
                    "DELETE FROM memberships WHERE user_id = $1 AND org_id = $2 RETURNING role",
                )
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
                let role: Option<String> = sqlx::query_scalar(
                    "SELECT role FROM memberships WHERE user_id = $1 AND org_id = $2",
                )
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
