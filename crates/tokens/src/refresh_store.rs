//! Where refresh tokens live: the [`RefreshTokenStore`] trait and its in-memory backend.

use mcpsec_access::{AuthMethods, Principal, Role, ScopeSet};
use mcpsec_core::{OrgId, TokenId, UserId};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

/// SHA-256 of a refresh token: the only form in which a token is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A hash of a 256-bit secret is not itself usable, but there is no need to print it.
        f.write_str("TokenHash(..)")
    }
}

/// What a refresh token carries forward into the access tokens it buys. The session's id
/// is the family's ([`IssuedRefresh::family`](crate::IssuedRefresh)): mint the access token
/// from the [`IssuedRefresh`](crate::IssuedRefresh) ([`TokenIssuer::issue_for_session`](crate::TokenIssuer::issue_for_session)),
/// which carries both, so the token has its `sid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionGrant {
    /// The user.
    pub subject: UserId,
    /// The organization.
    pub org: Option<OrgId>,
    /// The role in the organization.
    pub role: Option<Role>,
    /// The scopes of the session (a rotation never widens them).
    pub scopes: ScopeSet,
    /// When the user authenticated (kept across rotations: refreshing is not logging in).
    pub auth_time: SystemTime,
    /// How.
    pub amr: AuthMethods,
    /// The authentication context class of the login (`acr`), for step-up; never empty.
    pub acr: Option<String>,
}

/// One login session: the chain of refresh tokens that rotate from one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyRecord {
    /// The family's id.
    pub id: TokenId,
    /// What the session grants.
    pub grant: SessionGrant,
    /// When the session started (absolute lifetime counts from here).
    pub created_at: SystemTime,
    /// When a token of the family was last used (idle lifetime counts from here).
    pub last_used_at: SystemTime,
    /// When the session ends whatever happens (its absolute lifetime): from then on
    /// [`RefreshTokenStore::prune`] deletes the family and its tokens.
    pub expires_at: SystemTime,
    /// Revoked (logout, reuse detected): no token of the family works any more.
    pub revoked: bool,
}

/// One refresh token, by hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// SHA-256 of the token.
    pub hash: TokenHash,
    /// The family it belongs to.
    pub family: TokenId,
    /// When it was issued.
    pub issued_at: SystemTime,
    /// When it was consumed, if it was.
    pub consumed_at: Option<SystemTime>,
    /// When it can be deleted: its family's `expires_at` (a token never outlives its
    /// session, and a consumed one is kept until then to detect its reuse).
    pub expires_at: SystemTime,
}

/// The result of [`RefreshTokenStore::consume_once`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumeOutcome {
    /// This call consumed the token; its successor is stored; here is the family as it
    /// was before this use.
    Consumed(FamilyRecord),
    /// The token had already been consumed, at that time; nothing changed.
    AlreadyConsumed {
        /// The family.
        family: FamilyRecord,
        /// When the first use happened.
        consumed_at: SystemTime,
    },
    /// The token's family is revoked; nothing changed.
    FamilyRevoked(FamilyRecord),
    /// No such token.
    NotFound,
}

/// A store failure (the workspace's one store error). Carries no token material.
pub use mcpsec_core::StoreError;

/// Storage for refresh-token families and tokens.
///
/// Every backend must make [`consume_once`](RefreshTokenStore::consume_once) atomic
/// across the whole fleet: of any number of concurrent calls for one token, exactly one
/// returns [`ConsumeOutcome::Consumed`]. In SQL that is a conditional
/// `UPDATE … WHERE hash = $1 AND consumed_at IS NULL` in the same transaction as the
/// successor's insert; in Redis a script; in memory a lock. The conformance suite in
/// `mcpsec_tokens::testkit` checks it with 32 concurrent consumers.
#[async_trait::async_trait]
pub trait RefreshTokenStore: Send + Sync + std::fmt::Debug {
    /// Stores a new family and its first token.
    async fn create_family(
        &self,
        family: &FamilyRecord,
        first: &RefreshRecord,
    ) -> Result<(), StoreError>;

    /// Atomically: if `hash` is a stored, unconsumed token of a family that is not
    /// revoked, marks it consumed at `now`, stores `successor` as a new token of the same
    /// family issued at `now`, sets the family's `last_used_at` to `now`, and returns
    /// `Consumed` with the family as it was before. Otherwise changes nothing and says why.
    async fn consume_once(
        &self,
        hash: &TokenHash,
        successor: &TokenHash,
        now: SystemTime,
    ) -> Result<ConsumeOutcome, StoreError>;

    /// Revokes a family: none of its tokens will be consumed again.
    ///
    /// Pre-authentication face: called on evidence from the family's own tokens (a reuse
    /// detected by [`consume_once`](RefreshTokenStore::consume_once)), before any
    /// principal exists.
    async fn revoke_family(&self, family: &TokenId) -> Result<(), StoreError>;

    /// Revokes `family` as `tenant` (a user ending their own session, an org admin ending a
    /// member's), only if it is the tenant's: a family of the tenant's organization, or,
    /// for a session without an organization, the tenant's own. Returns whether it did;
    /// a family outside the tenant reads as absent and is left alone.
    ///
    /// Tenant face: a SQL backend runs it as that principal under row-level security.
    async fn revoke_family_as(
        &self,
        tenant: &Principal,
        family: &TokenId,
    ) -> Result<bool, StoreError>;

    /// Revokes every family of `subject` in one statement (`UPDATE … SET revoked = true
    /// WHERE subject = $1 AND NOT revoked`), so a family created by a rotation racing the
    /// call is either revoked or was never the subject's; returns the families it revoked
    /// (`RETURNING id`; already revoked ones are not listed), whose sessions the caller then
    /// revokes. For "sign out everywhere" and for a departed or compromised account: call
    /// it through [`RefreshTokens::revoke_all`](crate::RefreshTokens::revoke_all), which
    /// also ends the sessions' access tokens.
    async fn revoke_all(&self, subject: &UserId) -> Result<Vec<TokenId>, StoreError>;

    /// Reads a family.
    async fn family(&self, family: &TokenId) -> Result<Option<FamilyRecord>, StoreError>;

    /// Deletes every family whose `expires_at` is at or before `now` with all its tokens,
    /// and every token whose own `expires_at` has passed; returns how many families went.
    /// Live families and their tokens (consumed ones included) stay. Hosts call it on a
    /// schedule; without it the store grows with every login and every rotation.
    async fn prune(&self, now: SystemTime) -> Result<usize, StoreError>;
}

#[derive(Debug, Default)]
struct Tables {
    families: HashMap<TokenId, FamilyRecord>,
    tokens: HashMap<TokenHash, RefreshRecord>,
}

/// In-memory [`RefreshTokenStore`] for tests and single-process hosts: one lock over
/// both tables makes every operation atomic.
#[derive(Debug, Default)]
pub struct MemoryRefreshStore {
    tables: Mutex<Tables>,
}

impl MemoryRefreshStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl RefreshTokenStore for MemoryRefreshStore {
    async fn create_family(
        &self,
        family: &FamilyRecord,
        first: &RefreshRecord,
    ) -> Result<(), StoreError> {
        let mut t = self.lock();
        if t.families.contains_key(&family.id) || t.tokens.contains_key(&first.hash) {
            return Err(StoreError::conflict("duplicate family or token"));
        }
        t.families.insert(family.id.clone(), family.clone());
        t.tokens.insert(first.hash, first.clone());
        Ok(())
    }

    async fn consume_once(
        &self,
        hash: &TokenHash,
        successor: &TokenHash,
        now: SystemTime,
    ) -> Result<ConsumeOutcome, StoreError> {
        let mut t = self.lock();
        let Some(record) = t.tokens.get(hash).cloned() else {
            return Ok(ConsumeOutcome::NotFound);
        };
        let family = t
            .families
            .get(&record.family)
            .cloned()
            .ok_or(StoreError::corrupt("token without family"))?;
        if family.revoked {
            return Ok(ConsumeOutcome::FamilyRevoked(family));
        }
        if let Some(consumed_at) = record.consumed_at {
            return Ok(ConsumeOutcome::AlreadyConsumed {
                family,
                consumed_at,
            });
        }
        if t.tokens.contains_key(successor) {
            return Err(StoreError::conflict("successor already stored"));
        }
        if let Some(r) = t.tokens.get_mut(hash) {
            r.consumed_at = Some(now);
        }
        let next = RefreshRecord {
            hash: *successor,
            family: record.family.clone(),
            issued_at: now,
            consumed_at: None,
            expires_at: family.expires_at,
        };
        t.tokens.insert(*successor, next);
        if let Some(f) = t.families.get_mut(&record.family) {
            f.last_used_at = now;
        }
        Ok(ConsumeOutcome::Consumed(family))
    }

    async fn revoke_family(&self, family: &TokenId) -> Result<(), StoreError> {
        if let Some(f) = self.lock().families.get_mut(family) {
            f.revoked = true;
        }
        Ok(())
    }

    async fn revoke_family_as(
        &self,
        tenant: &Principal,
        family: &TokenId,
    ) -> Result<bool, StoreError> {
        let mut t = self.lock();
        let Some(f) = t.families.get_mut(family) else {
            return Ok(false);
        };
        let theirs = match &f.grant.org {
            Some(org) => org == tenant.org(),
            None => &f.grant.subject == tenant.subject(),
        };
        if theirs {
            f.revoked = true;
        }
        Ok(theirs)
    }

    async fn revoke_all(&self, subject: &UserId) -> Result<Vec<TokenId>, StoreError> {
        let mut revoked = Vec::new();
        for f in self.lock().families.values_mut() {
            if f.grant.subject == *subject && !f.revoked {
                f.revoked = true;
                revoked.push(f.id.clone());
            }
        }
        Ok(revoked)
    }

    async fn family(&self, family: &TokenId) -> Result<Option<FamilyRecord>, StoreError> {
        Ok(self.lock().families.get(family).cloned())
    }

    async fn prune(&self, now: SystemTime) -> Result<usize, StoreError> {
        let mut t = self.lock();
        let before = t.families.len();
        t.families.retain(|_, f| f.expires_at > now);
        let pruned = before.saturating_sub(t.families.len());
        let Tables { families, tokens } = &mut *t;
        tokens.retain(|_, r| r.expires_at > now && families.contains_key(&r.family));
        Ok(pruned)
    }
}
