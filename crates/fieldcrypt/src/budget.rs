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
//! The ledger is asynchronous (a database, a file under a lock) and is never called from
//! the encrypting thread: [`FieldCrypt::encrypt`] takes a nonce from this process's
//! allowance with one atomic compare-and-swap, and when less than half of the last block
//! is left it starts the next reservation as a task on the current tokio runtime (one at
//! a time per version). If the allowance runs out before the ledger answers, or the
//! ledger cannot be reached, encryption is refused ([`Error::NonceReservationPending`])
//! rather than going past what was reserved; the async paths
//! ([`FieldCrypt::reserve_ahead`], [`Sealer::seal`](mcpsec_core::Sealer::seal),
//! [`FieldCrypt::encrypt_for_subject`]) wait for the reservation instead. A ledger in
//! this process ([`MemoryLedger`]) answers inline ([`UsageLedger::reserve_now`]).
//!
//! Encryptions under per-subject keys ([`subject`](crate::subject)) are charged to the
//! category's primary version, like the encryption that wraps each subject key: a
//! subject key is never used more than the versions it was used under were charged. The
//! bound is per version, not per subject key: a subject key used across several
//! rotations may reach the sum of those versions' counts, which at 2^32 each is not a
//! load one subject's fields reach.
//!
//! [`FieldCrypt::release_reservations`]: crate::FieldCrypt::release_reservations
//! [`FieldCrypt::encrypt`]: crate::FieldCrypt::encrypt
//! [`FieldCrypt::reserve_ahead`]: crate::FieldCrypt::reserve_ahead
//! [`FieldCrypt::encrypt_for_subject`]: crate::FieldCrypt::encrypt_for_subject

use crate::{Category, Error};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;

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
/// `reserve` is called rarely (once per block of encryptions of a process) and never
/// from the encrypting thread: [`FieldCrypt::encrypt`](crate::FieldCrypt::encrypt) is
/// synchronous and takes nonces from an allowance reserved ahead, and a refill runs as a
/// background task on the current tokio runtime when less than half of the last block is
/// left. When the allowance is spent before the refill answers (or the ledger cannot be
/// reached), encryption is refused with [`Error::NonceReservationPending`]: it never
/// goes past what the ledger granted. Async paths ([`FieldCrypt::reserve_ahead`],
/// [`Sealer::seal`](mcpsec_core::Sealer::seal), subject-key encryption) wait for it.
///
/// `reserve` must atomically add the grant to the version's durable total, so that the
/// total is at least the sum of every process's encryptions, and be durable when it
/// returns. In SQL: `UPDATE … SET reserved = reserved + LEAST(:block, :limit - reserved)
/// … RETURNING`. Its future must not block the thread (do file or socket I/O with tokio).
///
/// [`FieldCrypt::reserve_ahead`]: crate::FieldCrypt::reserve_ahead
#[async_trait::async_trait]
pub trait UsageLedger: Send + Sync + fmt::Debug {
    /// Reserves up to `block` more encryptions for key `version` of `category` without the
    /// total passing `limit`. Returns `(granted, total)`: how many were granted (0 when
    /// the budget is spent) and the total reserved by everyone afterwards.
    async fn reserve(
        &self,
        category: &Category,
        version: u32,
        block: u64,
        limit: u64,
    ) -> Result<(u64, u64), Error>;

    /// The same reservation, answered at once by a ledger that needs no I/O (one inside
    /// this process, like [`MemoryLedger`]), so encryption can refill inline even without
    /// a runtime. `None` (the default) means "ask [`UsageLedger::reserve`]". Must not
    /// block: it runs on the encrypting thread.
    fn reserve_now(
        &self,
        category: &Category,
        version: u32,
        block: u64,
        limit: u64,
    ) -> Option<Result<(u64, u64), Error>> {
        let _ = (category, version, block, limit);
        None
    }

    /// Gives back `unused` encryptions reserved earlier by this process for key `version`
    /// of `category` and never used (a clean shutdown). Must subtract at most `unused`
    /// from the total. The default keeps them reserved, which only over-counts.
    async fn release(&self, category: &Category, version: u32, unused: u64) -> Result<(), Error> {
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

impl MemoryLedger {
    pub(crate) fn grant(
        &self,
        category: &Category,
        version: u32,
        block: u64,
        limit: u64,
    ) -> (u64, u64) {
        let mut reserved = self.reserved.lock().unwrap_or_else(PoisonError::into_inner);
        let total = reserved.entry((category.clone(), version)).or_insert(0);
        let granted = block.min(limit.saturating_sub(*total));
        *total += granted;
        (granted, *total)
    }
}

#[async_trait::async_trait]
impl UsageLedger for MemoryLedger {
    async fn reserve(
        &self,
        category: &Category,
        version: u32,
        block: u64,
        limit: u64,
    ) -> Result<(u64, u64), Error> {
        Ok(self.grant(category, version, block, limit))
    }

    fn reserve_now(
        &self,
        category: &Category,
        version: u32,
        block: u64,
        limit: u64,
    ) -> Option<Result<(u64, u64), Error>> {
        Some(Ok(self.grant(category, version, block, limit)))
    }

    async fn release(&self, category: &Category, version: u32, unused: u64) -> Result<(), Error> {
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
    /// Encryptions by this process (never more than `allowance`).
    local: AtomicU64,
    /// How far `local` may go on what this process has reserved.
    allowance: AtomicU64,
    /// The ledger's total at the last reservation: at least every process's use.
    reserved: AtomicU64,
    /// The size of the next reservation (0: none yet, start with the first block).
    next_block: AtomicU64,
    /// The last grant: a refill starts when half of it is left.
    last_grant: AtomicU64,
    /// Allowance given back to the ledger, which `local` includes but was never used.
    released: AtomicU64,
    /// The ledger granted nothing: the version's budget is spent.
    exhausted: AtomicBool,
    /// A reservation is under way (at most one per version and process).
    refilling: AtomicBool,
    /// Woken when a reservation ends, for the async paths waiting on it.
    refilled: Notify,
    /// Serialises adding a grant with giving the allowance back.
    granting: Mutex<()>,
}

/// What one reservation asks the ledger for.
struct Ask {
    block: u64,
    limit: u64,
    reserve_block: u64,
}

/// Clears `refilling` and wakes the waiters however the reservation ends (answer, error,
/// a dropped or panicking task), so no waiter hangs on a refill that will never land.
struct Refilling(Arc<Usage>);

impl Drop for Refilling {
    fn drop(&mut self) {
        self.0.refilling.store(false, Ordering::Release);
        self.0.refilled.notify_waiters();
    }
}

impl Usage {
    /// A count resuming from the ledger's total for the version.
    pub(crate) fn resume(reserved: u64) -> Self {
        Self {
            local: AtomicU64::new(0),
            allowance: AtomicU64::new(0),
            reserved: AtomicU64::new(reserved),
            next_block: AtomicU64::new(0),
            last_grant: AtomicU64::new(0),
            released: AtomicU64::new(0),
            exhausted: AtomicBool::new(false),
            refilling: AtomicBool::new(false),
            refilled: Notify::new(),
            granting: Mutex::new(()),
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

    /// Claims one nonce of the allowance, returning how many are left after it, or `None`
    /// when the allowance is spent (then nothing is counted).
    fn claim(&self) -> Option<u64> {
        let mut used = self.local.load(Ordering::Acquire);
        loop {
            let allowance = self.allowance.load(Ordering::Acquire);
            if used >= allowance {
                return None;
            }
            match self.local.compare_exchange_weak(
                used,
                used.saturating_add(1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(allowance.saturating_sub(used).saturating_sub(1)),
                Err(now) => used = now,
            }
        }
    }

    fn ask(&self, budget: &NonceBudget) -> Ask {
        let block = match self.next_block.load(Ordering::Acquire) {
            0 => budget.first(),
            next => next.min(budget.reserve_block),
        };
        Ask {
            block,
            limit: budget.refuse_at,
            reserve_block: budget.reserve_block,
        }
    }

    /// Takes one encryption from the budget without waiting on the ledger: from the
    /// allowance, refilled ahead in the background. Fails closed when the allowance is
    /// spent and no reservation has landed ([`Error::NonceReservationPending`]) or the
    /// budget is spent ([`Error::NonceBudgetExhausted`]).
    pub(crate) fn take(
        self: &Arc<Self>,
        budget: &NonceBudget,
        ledger: &Arc<dyn UsageLedger>,
        category: &Category,
        version: u32,
    ) -> Result<(), Error> {
        for attempt in 0..2 {
            if let Some(left) = self.claim() {
                if left <= self.last_grant.load(Ordering::Acquire) / 2
                    && !self.exhausted.load(Ordering::Acquire)
                {
                    self.refill(budget, ledger, category, version);
                }
                return Ok(());
            }
            if self.exhausted.load(Ordering::Acquire) {
                return Err(exhausted(category, version));
            }
            if attempt == 0 {
                // An in-process ledger answers here; another refills in the background.
                self.refill(budget, ledger, category, version);
            }
        }
        Err(Error::NonceReservationPending {
            category: category.to_string(),
            version,
        })
    }

    /// Starts a reservation unless one is under way: answered inline by a ledger that
    /// can ([`UsageLedger::reserve_now`]), otherwise on a task of the current runtime.
    /// Without a runtime nothing is started; the async paths reserve instead.
    fn refill(
        self: &Arc<Self>,
        budget: &NonceBudget,
        ledger: &Arc<dyn UsageLedger>,
        category: &Category,
        version: u32,
    ) {
        if self.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let guard = Refilling(self.clone());
        let ask = self.ask(budget);
        if let Some(answer) = ledger.reserve_now(category, version, ask.block, ask.limit) {
            let _ = self.apply(answer, &ask);
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (ledger, category) = (ledger.clone(), category.clone());
        runtime.spawn(async move {
            let answer = ledger
                .reserve(&category, version, ask.block, ask.limit)
                .await;
            // A failed refill is retried by the next encryption below the mark.
            let _ = guard.0.apply(answer, &ask);
            drop(guard);
        });
    }

    /// Waits until at least one nonce is available, reserving if needed (the async
    /// paths). Errors: the ledger's, or [`Error::NonceBudgetExhausted`].
    pub(crate) async fn reserve(
        self: &Arc<Self>,
        budget: &NonceBudget,
        ledger: &Arc<dyn UsageLedger>,
        category: &Category,
        version: u32,
    ) -> Result<(), Error> {
        loop {
            if self.local.load(Ordering::Acquire) < self.allowance.load(Ordering::Acquire) {
                return Ok(());
            }
            if self.exhausted.load(Ordering::Acquire) {
                return Err(exhausted(category, version));
            }
            let notified = self.refilled.notified();
            if self.refilling.swap(true, Ordering::AcqRel) {
                notified.await;
                continue;
            }
            let guard = Refilling(self.clone());
            let ask = self.ask(budget);
            let answer = ledger
                .reserve(category, version, ask.block, ask.limit)
                .await;
            self.apply(answer, &ask)?;
            drop(guard);
        }
    }

    /// Adds a ledger's answer to the allowance.
    fn apply(&self, answer: Result<(u64, u64), Error>, ask: &Ask) -> Result<(), Error> {
        let (granted, total) = answer?;
        let _guard = self.granting.lock().unwrap_or_else(PoisonError::into_inner);
        self.reserved.fetch_max(total, Ordering::AcqRel);
        if granted == 0 {
            self.exhausted.store(true, Ordering::Release);
            return Ok(());
        }
        self.next_block.store(
            ask.block.saturating_mul(2).min(ask.reserve_block),
            Ordering::Release,
        );
        self.last_grant.store(granted, Ordering::Release);
        self.allowance.fetch_add(granted, Ordering::AcqRel);
        Ok(())
    }

    /// Ends this process's allowance and returns how much of it was never used, for the
    /// ledger to take back. An encryption racing with this either got a nonce before (and
    /// is counted as used) or reserves anew after.
    pub(crate) fn release(&self) -> u64 {
        let _guard = self.granting.lock().unwrap_or_else(PoisonError::into_inner);
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
        self.last_grant.store(0, Ordering::Release);
        // Given back: the ledger may grant again.
        self.exhausted.store(false, Ordering::Release);
        unused
    }
}

fn exhausted(category: &Category, version: u32) -> Error {
    Error::NonceBudgetExhausted {
        category: category.to_string(),
        version,
    }
}
