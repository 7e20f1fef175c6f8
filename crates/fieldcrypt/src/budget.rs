//! The nonce budget: how many encryptions one key version may perform.
//!
//! With random 96-bit nonces, NIST SP 800-38D §8.3 limits a key to 2^32 encryptions so the
//! chance of a repeated nonce stays below 2^-32. Each key version counts its encryptions;
//! past [`NonceBudget::warn_at`] it is reported as due for rotation, and at
//! [`NonceBudget::refuse_at`] it refuses to encrypt until the category is rotated.
//!
//! Counts are persisted coarsely through a [`UsageLedger`]: before the count passes what
//! the ledger has recorded, a further block is reserved (one durable write per
//! [`NonceBudget::reserve_block`] encryptions). After a restart the count resumes from the
//! reservation, so a crash can only over-count, never under-count.

use crate::{Category, Error};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Thresholds of the nonce budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceBudget {
    /// From this many encryptions the key version is reported as due for rotation.
    pub warn_at: u64,
    /// At this many encryptions the key version refuses to encrypt.
    pub refuse_at: u64,
    /// How many encryptions each durable reservation covers.
    pub reserve_block: u64,
}

impl Default for NonceBudget {
    /// Warn at 2^31, refuse at 2^32, reserve 2^20 at a time.
    fn default() -> Self {
        Self {
            warn_at: 1 << 31,
            refuse_at: 1 << 32,
            reserve_block: 1 << 20,
        }
    }
}

impl NonceBudget {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.reserve_block == 0 || self.warn_at > self.refuse_at || self.refuse_at > 1 << 32 {
            return Err(Error::InvalidArgument(
                "nonce budget: need 0 < reserve_block and warn_at <= refuse_at <= 2^32",
            ));
        }
        Ok(())
    }
}

/// Where encryption counts are persisted.
///
/// `reserve` is called rarely (once per [`NonceBudget::reserve_block`] encryptions) and
/// synchronously from the encrypting thread; it must be durable when it returns.
pub trait UsageLedger: Send + Sync + fmt::Debug {
    /// Records that key `version` of `category` may have performed up to `through`
    /// encryptions.
    fn reserve(&self, category: &Category, version: u32, through: u64) -> Result<(), Error>;
}

/// A ledger in memory: counts survive nothing. For tests and for hosts that persist counts
/// another way.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    reserved: Mutex<HashMap<(Category, u32), u64>>,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// What was last reserved for a key version.
    pub fn reserved(&self, category: &Category, version: u32) -> Option<u64> {
        self.reserved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(category.clone(), version))
            .copied()
    }
}

impl UsageLedger for MemoryLedger {
    fn reserve(&self, category: &Category, version: u32, through: u64) -> Result<(), Error> {
        self.reserved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((category.clone(), version), through);
        Ok(())
    }
}

/// How far a key version is into its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetState {
    /// Below the warning threshold.
    Ok,
    /// At or past the warning threshold: rotate soon.
    RotateSoon,
    /// At the limit: encryption under this version is refused.
    Exhausted,
}

/// One key version's count.
#[derive(Debug)]
pub(crate) struct Usage {
    used: AtomicU64,
    reserved: AtomicU64,
    reserving: Mutex<()>,
}

impl Usage {
    /// A count resuming from what the ledger last recorded.
    pub(crate) fn resume(reserved: u64) -> Self {
        Self {
            used: AtomicU64::new(reserved),
            reserved: AtomicU64::new(reserved),
            reserving: Mutex::new(()),
        }
    }

    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn state(&self, budget: &NonceBudget) -> BudgetState {
        let used = self.used();
        if used >= budget.refuse_at {
            BudgetState::Exhausted
        } else if used >= budget.warn_at {
            BudgetState::RotateSoon
        } else {
            BudgetState::Ok
        }
    }

    /// Takes one encryption from the budget, reserving a further block first when needed.
    pub(crate) fn take(
        &self,
        budget: &NonceBudget,
        ledger: &dyn UsageLedger,
        category: &Category,
        version: u32,
    ) -> Result<(), Error> {
        let exhausted = || Error::NonceBudgetExhausted {
            category: category.to_string(),
            version,
        };
        // `fetch_update` never passes the limit, so the count stays meaningful.
        let previous = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < budget.refuse_at).then_some(used + 1)
            })
            .map_err(|_| exhausted())?;
        let count = previous + 1;
        if count > self.reserved.load(Ordering::Acquire) {
            let _guard = self
                .reserving
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let reserved = self.reserved.load(Ordering::Acquire);
            if count > reserved {
                let through = reserved
                    .saturating_add(budget.reserve_block)
                    .max(count)
                    .min(budget.refuse_at);
                ledger.reserve(category, version, through)?;
                self.reserved.store(through, Ordering::Release);
            }
        }
        Ok(())
    }
}
