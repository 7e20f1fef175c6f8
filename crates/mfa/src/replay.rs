//! Remembering the last accepted TOTP step per enrollment, so a code works once.

use crate::StoreError;
use mcpsec_core::UserId;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Which TOTP enrollment of a user: a fingerprint of the shared secret, bound to the user
/// ([`TotpSecret::enrollment_id`](crate::TotpSecret::enrollment_id)).
///
/// Replay state is kept per enrollment, not per user: a user who re-enrols within one
/// time step must be able to confirm the new authenticator with its first code, which a
/// per-user "last step" would refuse as a replay. The fingerprint is a domain-separated
/// SHA-256 of a secret of at least 128 random bits, so storing it reveals nothing usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnrollmentId(pub [u8; 16]);

/// The last accepted TOTP time step per (user, enrollment).
///
/// [`record_step_if_newer`](TotpReplayGuard::record_step_if_newer) must be atomic across
/// the fleet (Redis script, conditional SQL update, a lock in memory): of any number of
/// concurrent calls with the same step, exactly one returns `true`. Steps of different
/// enrollments of one user are independent. The conformance suite in
/// `mcpsec_mfa::testkit` checks both.
#[async_trait::async_trait]
pub trait TotpReplayGuard: Send + Sync + std::fmt::Debug {
    /// Records `step` for `user`'s `enrollment` if it is newer than the last step recorded
    /// for that enrollment; returns whether it did (false: the code's step was already
    /// used, or an older one).
    async fn record_step_if_newer(
        &self,
        user: &UserId,
        enrollment: &EnrollmentId,
        step: u64,
    ) -> Result<bool, StoreError>;
}

/// In-memory [`TotpReplayGuard`]. It holds one entry per enrollment ever verified:
/// enrollments come from authenticated users, so growth follows re-enrollments, not
/// attackers.
#[derive(Debug, Default)]
pub struct MemoryReplayGuard {
    last: Mutex<HashMap<(UserId, EnrollmentId), u64>>,
}

impl MemoryReplayGuard {
    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl TotpReplayGuard for MemoryReplayGuard {
    async fn record_step_if_newer(
        &self,
        user: &UserId,
        enrollment: &EnrollmentId,
        step: u64,
    ) -> Result<bool, StoreError> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (user.clone(), *enrollment);
        match last.get(&key) {
            Some(&seen) if seen >= step => Ok(false),
            _ => {
                last.insert(key, step);
                Ok(true)
            }
        }
    }
}
