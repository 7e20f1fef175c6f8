//! Ending a session everywhere: the [`SessionRevocation`] trait the verifier consults for
//! tokens that carry a `sid`, and its in-memory backend.
//!
//! An access token minted from a login session carries the session's id (`sid`, the
//! refresh-token family id). When the session ends — logout, an admin's revocation,
//! refresh-token reuse — [`RefreshTokens`](crate::RefreshTokens) records it here, and a
//! [`TokenVerifier`](crate::TokenVerifier) built with
//! [`sessions`](crate::TokenVerifierBuilder::sessions) refuses the session's access tokens
//! at their next use instead of letting them live out their lifetime.

use mcpsec_core::{StoreError, TokenId};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

/// Revoked login sessions, by session id (`sid`, the refresh-token family id).
///
/// Consulted by the verifier on every verification of a token that carries a `sid`, so a
/// shared backend (SQL, Redis) answers from one place for the whole fleet; a verifier that
/// cannot reach it refuses the token (fail closed). Every backend must make a
/// [`revoke`](SessionRevocation::revoke) visible to every later
/// [`is_revoked`](SessionRevocation::is_revoked) of any instance, until `until` at least.
/// The conformance suite in `mcpsec_tokens::testkit` (`session_revocation_suite!`) checks it.
#[async_trait::async_trait]
pub trait SessionRevocation: Send + Sync + std::fmt::Debug {
    /// Records `sid` as revoked until at least `until`: when the last access token that
    /// can carry it has expired, after which the backend may forget it. Revoking again
    /// keeps the later `until`.
    async fn revoke(&self, sid: &TokenId, until: SystemTime) -> Result<(), StoreError>;

    /// Whether `sid` was revoked (and not yet forgotten after its `until`).
    async fn is_revoked(&self, sid: &TokenId) -> Result<bool, StoreError>;

    /// Forgets the revocations whose `until` is at or before `now`; returns how many went.
    /// Hosts call it on a schedule (a backend with expiring keys may do nothing here).
    async fn prune(&self, now: SystemTime) -> Result<usize, StoreError>;
}

/// In-memory [`SessionRevocation`] for tests and single-process hosts (one process issues,
/// revokes and verifies). A fleet needs a shared backend: a revocation recorded in one
/// process's memory is unknown to the others.
#[derive(Debug, Default)]
pub struct MemorySessionRevocation {
    revoked: Mutex<HashMap<TokenId, SystemTime>>,
}

impl MemorySessionRevocation {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenId, SystemTime>> {
        self.revoked.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl SessionRevocation for MemorySessionRevocation {
    async fn revoke(&self, sid: &TokenId, until: SystemTime) -> Result<(), StoreError> {
        let mut revoked = self.lock();
        let entry = revoked.entry(sid.clone()).or_insert(until);
        *entry = (*entry).max(until);
        Ok(())
    }

    async fn is_revoked(&self, sid: &TokenId) -> Result<bool, StoreError> {
        Ok(self.lock().contains_key(sid))
    }

    async fn prune(&self, now: SystemTime) -> Result<usize, StoreError> {
        let mut revoked = self.lock();
        let before = revoked.len();
        revoked.retain(|_, until| *until > now);
        Ok(before.saturating_sub(revoked.len()))
    }
}
