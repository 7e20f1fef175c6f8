//! Where a user's role comes from: their membership of the organization, looked up at every
//! request, so a demoted user loses rights at their next request and a removed one is
//! refused.

use crate::Role;
use mcpsec_core::{OrgId, UserId};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// A membership store failure (the workspace's one store error); verifiers refuse the
/// request on it.
pub use mcpsec_core::StoreError;

/// The organization memberships a credential verifier reads roles from.
///
/// This is the pre-authentication face of the host's membership table: the verifier asks
/// it before any principal exists, so it takes ids, not a proof. Managing memberships
/// (invite, change a role, remove) is a tenant-scoped operation of the host's and not part
/// of this trait.
///
/// Backends answer from the current state (a read committed after a role change must see
/// it); a cache in front of one bounds how long a demotion takes to bite, so keep it short.
/// An error means "unknown", and verifiers refuse the request on it.
#[async_trait::async_trait]
pub trait Memberships: Send + Sync + std::fmt::Debug {
    /// The role of `user` in `org`, or `None` when `user` is not a member of `org`.
    async fn role(&self, user: &UserId, org: &OrgId) -> Result<Option<Role>, StoreError>;
}

/// The role a verified credential acts with: the member's current role, lowered to the
/// role the credential carries when it carries a less privileged one.
///
/// A role carried by a credential (a token's `role` claim) is a snapshot from when it was
/// issued: it may lower the membership's role, never raise it, so a token minted before a
/// demotion stops carrying the old rights at the next request. `None` when `user` is not a
/// member.
pub async fn resolve_role(
    memberships: &dyn Memberships,
    user: &UserId,
    org: &OrgId,
    carried: Option<Role>,
) -> Result<Option<Role>, StoreError> {
    let current = memberships.role(user, org).await?;
    // `Role`'s order runs from most to least privileged, so the larger is the weaker.
    Ok(current.map(|role| carried.map_or(role, |c| c.max(role))))
}

/// In-memory [`Memberships`]: one lock, so a change is seen by the next lookup.
#[derive(Debug, Default)]
pub struct MemoryMemberships {
    roles: Mutex<HashMap<(UserId, OrgId), Role>>,
}

impl MemoryMemberships {
    /// No members.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `user` a member of `org` with `role`, or changes their role; returns the role
    /// it replaced.
    pub fn set(&self, user: UserId, org: OrgId, role: Role) -> Option<Role> {
        self.lock().insert((user, org), role)
    }

    /// Removes `user` from `org`; returns the role they had.
    pub fn remove(&self, user: &UserId, org: &OrgId) -> Option<Role> {
        self.lock().remove(&(user.clone(), org.clone()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(UserId, OrgId), Role>> {
        self.roles.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl Memberships for MemoryMemberships {
    async fn role(&self, user: &UserId, org: &OrgId) -> Result<Option<Role>, StoreError> {
        Ok(self.lock().get(&(user.clone(), org.clone())).copied())
    }
}
