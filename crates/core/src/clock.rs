//! Where time comes from.
//!
//! Every mcpsec crate reads time through a [`Clock`] so that tests can move time by hand
//! instead of sleeping, and so that expiry logic has exactly one source of "now".

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
///
/// Implementations must be cheap to call and safe to share between threads.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// The current time as whole seconds since the Unix epoch (0 for times before it).
    fn unix_seconds(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock shared between components, as hosts pass it around.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock. Use this in production.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to. Clones share the same time, so a test can keep
/// one handle and give another to the code under test.
#[derive(Debug, Clone)]
pub struct ManualClock {
    /// Nanoseconds since the Unix epoch. An atomic, not a lock: reads never block.
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock stopped at `secs` seconds after the Unix epoch.
    pub fn at_unix(secs: u64) -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(secs.saturating_mul(1_000_000_000))),
        }
    }

    /// A clock stopped at `time` (times before the epoch are clamped to it).
    pub fn at(time: SystemTime) -> Self {
        let clock = Self::at_unix(0);
        clock.set(time);
        clock
    }

    /// Moves the clock forward by `by` (saturating far in the future).
    pub fn advance(&self, by: Duration) {
        let add = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update with a saturating add: never wraps around to the past.
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(add))
            });
    }

    /// Moves the clock backward by `by`, as a misbehaving NTP step would; for tests of
    /// code that must survive a clock going back.
    pub fn rewind(&self, by: Duration) {
        let sub = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(sub))
            });
    }

    /// Sets the clock to `time` (times before the epoch are clamped to it).
    pub fn set(&self, time: SystemTime) {
        let nanos = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.nanos.store(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::at_unix(1_000);
        let shared: SharedClock = Arc::new(clock.clone());
        assert_eq!(shared.unix_seconds(), 1_000);
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(shared.unix_seconds(), 1_001);
        assert_eq!(shared.now(), UNIX_EPOCH + Duration::from_millis(1_001_500));
        clock.rewind(Duration::from_secs(5_000));
        assert_eq!(shared.unix_seconds(), 0, "rewind saturates at the epoch");
    }

    #[test]
    fn manual_clock_saturates_instead_of_wrapping() {
        let clock = ManualClock::at_unix(u64::MAX);
        clock.advance(Duration::MAX);
        assert!(clock.unix_seconds() > 500 * 365 * 24 * 3600);
    }

    #[test]
    fn set_clamps_pre_epoch_times() {
        let clock = ManualClock::at(UNIX_EPOCH - Duration::from_secs(10));
        assert_eq!(clock.unix_seconds(), 0);
    }

    #[test]
    fn system_clock_is_after_2024() {
        assert!(SystemClock.unix_seconds() > 1_700_000_000);
    }
}
