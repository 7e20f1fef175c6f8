//! Remembering the last accepted TOTP step per user, so a code works once.

use crate::StoreError;
use mcpsec_core::UserId;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// The last accepted TOTP time step per user.
///
/// [`record_step_if_newer`](TotpReplayGuard::record_step_if_newer) must be atomic across
/// the fleet (Redis script, conditional SQL update, a lock in memory): of any number of
/// concurrent calls with the same step, exactly one returns `true`. The conformance suite
/// in `mcpsec_mfa::testkit` checks it with 32 concurrent calls.
#[async_trait::async_trait]
pub trait TotpReplayGuard: Send + Sync + std::fmt::Debug {
    /// Records `step` for `user` if it is newer than the last recorded step; returns
    /// whether it did (false: the code's step was already used, or an older one).
    async fn record_step_if_newer(&self, user: &UserId, step: u64) -> Result<bool, StoreError>;
}

/// In-memory [`TotpReplayGuard`].
#[derive(Debug, Default)]
pub struct MemoryReplayGuard {
    last: Mutex<HashMap<UserId, u64>>,
}

impl MemoryReplayGuard {
    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl TotpReplayGuard for MemoryReplayGuard {
    async fn record_step_if_newer(&self, user: &UserId, step: u64) -> Result<bool, StoreError> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match last.get(user) {
            Some(&seen) if seen >= step => Ok(false),
            _ => {
                last.insert(user.clone(), step);
                Ok(true)
            }
        }
    }
}
