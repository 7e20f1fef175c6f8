//! Proofs that allow acting on credentials (API keys, refresh families, MFA factors).
//!
//! A lifecycle operation takes the proof of the action that allows it, not a bare user id:
//! `user.manage_tokens` for one's own credentials, or an org admin's `org.manage_members`
//! for a member's (revoking a departed member's keys). The operation then checks that the
//! proof covers the credential's owner ([`Authorized::may_manage`]) and, when it mints a
//! credential, that the new one grants no more than its creator holds
//! ([`Authorized::grants`]).

use crate::{Authorized, Permission, ScopeSet, perm};
use mcpsec_core::{Actor, OrgId, UserId};

mod sealed {
    /// Whose credentials a proof reaches. Sealed: a new permission that reaches other
    /// people's credentials is a decision for this crate, not for a caller.
    pub trait Reach {
        /// Whether the proof reaches credentials of users other than its subject.
        const ANY_MEMBER: bool;
    }
    impl Reach for crate::perm::UserManageTokens {
        const ANY_MEMBER: bool = false;
    }
    impl Reach for crate::perm::OrgManageMembers {
        const ANY_MEMBER: bool = true;
    }
}

/// The permissions that allow managing bearer credentials (API keys, sessions):
/// [`perm::UserManageTokens`] (one's own) and [`perm::OrgManageMembers`] (any member's in
/// the admin's organization). Sealed.
pub trait ManagesCredentials: Permission + sealed::Reach {}

impl ManagesCredentials for perm::UserManageTokens {}
impl ManagesCredentials for perm::OrgManageMembers {}

impl<P: sealed::Reach> Authorized<P> {
    /// Whether this proof allows acting on a credential of `owner` in `org`: always the
    /// same organization, and the subject's own credential unless the proof is an org
    /// admin's `org.manage_members`.
    pub fn may_manage(&self, owner: &UserId, org: &OrgId) -> bool {
        org == self.org() && (P::ANY_MEMBER || owner == self.subject())
    }
}

impl<P> Authorized<P> {
    /// Whether a credential with `scopes` grants nothing beyond what the allowed principal
    /// effectively holds (through the hierarchy), so a credential can only mint narrower
    /// ones: a `user:token`-only token cannot create an `mcp:write` key.
    pub fn grants(&self, scopes: ScopeSet) -> bool {
        scopes.is_subset(self.principal().scopes().effective())
    }

    /// Who acted, for the audit trail of an operation done under this proof: the API key
    /// (with its owner) when the proof was made for a key, otherwise the user.
    pub fn actor(&self) -> Actor {
        self.principal().actor()
    }
}
