//! The nonce budget: how many encryptions one key version may perform.
//!
//! With random 96-bit nonces, NIST SP 800-38D §8.3 limits a key to 2^32 encryptions so the
//! chance of a repeated nonce stays below 2^-32. Each key version counts its encryptions;
//! past [`NonceBudget::warn_at`] it is reported as due for rotation, and at
//! [`NonceBudget::refuse_at`] it refuses to encrypt until the category is rotated.
//!
//! Counts are persisted coarsely through a [`UsageLedger`] shared by every process using
//! the keys: each process reserves blocks of encryptions (one durable write per block),
//! adding them to the version's total, and encrypts only within what it reserved. The
//! total is therefore at least the sum of every process's encryptions: a crash can only
//! over-count, never under-count, and the budget holds for a fleet, not only for one
//! process.
//!
//! A process's first block for a version is small ([`NonceBudget::first_block`]) and each
//! later one twice the last, up to [`NonceBudget::reserve_block`]: a process that starts,
//! encrypts a little and stops costs about one small block, so frequent restarts (or
//! short-lived CLI runs) do not exhaust a version, while a busy process still writes
//! rarely. On a clean shutdown, [`FieldCrypt::release_reservations`] gives the unused part
//! of each block back; a crash loses at most the current block.
//!
//! Encryptions under per-subject keys ([`subject`](crate::subject)) are charged to the
//! category's primary version, like the encryption that wraps each subject key: a
//! subject key is never used more than the versions it was used under were charged. The
//! bound is per version, not per subject key: a subject key used across several
//! rotations may reach the sum of those versions' counts, which at 2^32 each is not a
//! load one subject's fields reach.
//!
//! [`FieldCrypt::release_reservations`]: crate::FieldCrypt::release_reservations

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
    /// The largest durable reservation: blocks grow (doubling) up to this.
    pub reserve_block: u64,
    /// A process's first reservation for a version (capped at `reserve_block`).
    pub first_block: u64,
}

impl Default for NonceBudget {
    /// Warn at 2^31, refuse at 2^32, reserve 2^10 first, growing to 2^20 at a time.
    fn default() -> Self {
        Self {
            warn_at: 1 << 31,
            refuse_at: 1 << 32,
            reserve_block: 1 << 20,
            first_block: 1 << 10,
        }
    }
}

impl NonceBudget {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.reserve_block == 0
            || self.first_block == 0
            || self.warn_at > self.refuse_at
            || self.refuse_at > 1 << 32
        {
            return Err(Error::InvalidArgument(
                "nonce budget: need 0 < first_block, 0 < reserve_block and warn_at <= refuse_at <= 2^32",
            ));
        }
        Ok(())
    }

    fn first(&self) -> u64 {
        self.first_block.min(self.reserve_block)
    }
}

/// Where encryption counts are persisted, shared by every process using the keys.
///
/// `reserve` is called rarely (once per [`NonceBudget::reserve_block`] encryptions of a
/// process) and synchronously from the encrypting thread. It must atomically add the grant
/// to the version's durable total, so that the total is at least the sum of every
/// process's encryptions, and be durable when it returns.
pub trait UsageLedger: Send + Sync + fmt::Debug {
    /// Reserves up to `block` more encryptions for key `version` of `category` without the
    /// total passing `limit`. Returns `(granted, total)`: how many were granted (0 when
    /// the budget is spent) and the total reserved by everyone afterwards.
    fn reserve(
        &self,
        category: &Category,
        version: u32,
        block: u64,
        limit: u64,
    ) -> Result<(u64, u64), Error>;

    /// Gives back `unused` encryptions reserved earlier by this process for key `version`
    /// of `category` and never used (a clean shutdown). Must subtract at most `unused`
    /// from the total. The default keeps them reserved, which only over-counts.
    fn release(&self, category: &Category, version: u32, unused: u64) -> Result<(), Error> {
        let _ = (category, version, unused);
        Ok(())
    }
}

/// A ledger in memory: counts survive nothing. For tests, for several [`FieldCrypt`]s of
/// one process, and for hosts that persist counts another way.
///
/// [`FieldCrypt`]: crate::FieldCrypt
#[derive(Debug, Default)]
pub struct MemoryLedger {
    reserved: Mutex<HashMap<(Category, u32), u64>>,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// The total reserved for a key version.
    pub fn reserved(&self, category: &Category, version: u32) -> Option<u64> {
        self.reserved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(category.clone(), version))
            .copied()
    }
}

impl UsageLedger for MemoryLedger {
    fn reserve(
        &self,
        category: &Category,
        version: u32,
        block: u64,
        limit: u64,
    ) -> Result<(u64, u64), Error> {
        let mut reserved = self.reserved.lock().unwrap_or_else(PoisonError::into_inner);
        let total = reserved.entry((category.clone(), version)).or_insert(0);
        let granted = block.min(limit.saturating_sub(*total));
        *total += granted;
        Ok((granted, *total))
    }

    fn release(&self, category: &Category, version: u32, unused: u64) -> Result<(), Error> {
        let mut reserved = self.reserved.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(total) = reserved.get_mut(&(category.clone(), version)) {
            *total = total.saturating_sub(unused);
        }
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

/// One key version's count in this process.
#[derive(Debug)]
pub(crate) struct Usage {
    /// Encryptions by this process (including refused attempts past the budget).
    local: AtomicU64,
    /// How far `local` may go on what this process has reserved.
    allowance: AtomicU64,
    /// The ledger's total at the last reservation: at least every process's use.
    reserved: AtomicU64,
    /// The size of the next reservation (0: none yet, start with the first block).
    next_block: AtomicU64,
    /// Allowance given back to the ledger, which `local` includes but was never used.
    released: AtomicU64,
    reserving: Mutex<()>,
}

impl Usage {
    /// A count resuming from the ledger's total for the version.
    pub(crate) fn resume(reserved: u64) -> Self {
        Self {
            local: AtomicU64::new(0),
            allowance: AtomicU64::new(0),
            reserved: AtomicU64::new(reserved),
            next_block: AtomicU64::new(0),
            released: AtomicU64::new(0),
            reserving: Mutex::new(()),
        }
    }

    /// The ledger's total as last seen (an upper bound on encryptions by all processes).
    pub(crate) fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Acquire)
    }

    /// Encryptions by this process.
    pub(crate) fn local(&self) -> u64 {
        self.local
            .load(Ordering::Acquire)
            .saturating_sub(self.released.load(Ordering::Acquire))
    }

    pub(crate) fn state(&self, budget: &NonceBudget) -> BudgetState {
        let reserved = self.reserved();
        if reserved >= budget.refuse_at
            && self.local.load(Ordering::Acquire) >= self.allowance.load(Ordering::Acquire)
        {
            BudgetState::Exhausted
        } else if reserved >= budget.warn_at {
            BudgetState::RotateSoon
        } else {
            BudgetState::Ok
        }
    }

    /// Takes one encryption from the budget, reserving a further block first when this
    /// process's allowance is used up.
    pub(crate) fn take(
        &self,
        budget: &NonceBudget,
        ledger: &dyn UsageLedger,
        category: &Category,
        version: u32,
    ) -> Result<(), Error> {
        let count = self.local.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if count <= self.allowance.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self
            .reserving
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while count > self.allowance.load(Ordering::Acquire) {
            let block = match self.next_block.load(Ordering::Acquire) {
                0 => budget.first(),
                next => next.min(budget.reserve_block),
            };
            let (granted, total) = ledger.reserve(category, version, block, budget.refuse_at)?;
            self.reserved.fetch_max(total, Ordering::AcqRel);
            if granted == 0 {
                return Err(Error::NonceBudgetExhausted {
                    category: category.to_string(),
                    version,
                });
            }
            self.next_block.store(
                block.saturating_mul(2).min(budget.reserve_block),
                Ordering::Release,
            );
            self.allowance.fetch_add(granted, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Ends this process's allowance and returns how much of it was never used, for the
    /// ledger to take back. An encryption racing with this either got a nonce before (and
    /// is counted as used) or reserves anew after.
    pub(crate) fn release(&self) -> u64 {
        let _guard = self
            .reserving
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let allowance = self.allowance.load(Ordering::Acquire);
        // Raising the count to the allowance claims every nonce left in one atomic step.
        let used = self.local.fetch_max(allowance, Ordering::AcqRel);
        let unused = allowance.saturating_sub(used);
        self.released.fetch_add(unused, Ordering::AcqRel);
        let _ = self
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |total| {
                Some(total.saturating_sub(unused))
            });
        self.next_block.store(0, Ordering::Release);
        unused
    }
}
