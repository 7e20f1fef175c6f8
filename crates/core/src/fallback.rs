//! An opt-in local fallback for a fleet-shared [`AttemptCounter`].
//!
//! By default a counter whose backend is unreachable fails closed: every call returns a
//! retryable [`StoreError`](crate::StoreError) and the callers in mcpsec refuse the attempt
//! they were budgeting (an API key, a TOTP code). A host that prefers to keep serving
//! during an outage wraps its shared counter in [`FallbackAttemptCounter`] and says how
//! many instances the fleet runs: while the shared counter is unreachable, failures are
//! counted in a local [`MemoryAttemptCounter`], each one counting as `fleet_size`, so a
//! fleet-wide threshold of `T` trips on any one instance after about `T / fleet_size` of
//! its own failures. An attacker who spreads guesses over the whole fleet then gets about
//! the fleet-wide budget, never `fleet_size` times it.

use crate::{AttemptCounter, AttemptState, Error, MemoryAttemptCounter};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// An [`AttemptCounter`] that uses `primary` (Redis, SQL: a counter the fleet shares) and,
/// only while `primary` fails with a retryable error
/// ([`Unavailable`](crate::StoreErrorKind::Unavailable) or
/// [`Timeout`](crate::StoreErrorKind::Timeout)), a local counter whose counts are scaled
/// by the fleet size.
///
/// - Any other error of `primary` (corrupt data, a rejected call) is returned as it is:
///   the fallback covers an outage, not a broken store.
/// - While degraded, every count read or returned is the local count × `fleet_size`, so a
///   budget of `T` allows about `T / fleet_size` failures per instance (rounded up).
/// - Each call tries `primary` first: the first call it answers ends the degraded period.
///   Failures counted locally during the outage are not lost then: until their window
///   ends, a subject's state is the higher of the shared and the local (scaled) state, so
///   an outage never resets anyone's budget.
/// - Entering and leaving the degraded state is logged (`tracing` warn, target
///   `mcpsec::fallback`; no subject is logged), and [`degraded_calls`](Self::degraded_calls)
///   counts the calls answered locally, for a metric.
///
/// Off unless the host builds one: without it an outage refuses (fail closed).
///
/// While degraded, counts move in steps of `fleet_size`, so a caller that acts when a
/// count *equals* a threshold (an alert at exactly `T`) may step over it (use
/// [`AttemptCounter::crossed`], which knows the step), and a rule
/// "allow the attempt that takes the count to exactly one more" never passes (stricter,
/// never looser). Only the attempt counter falls back: the other fleet stores (a TOTP
/// replay guard, say) still fail closed.
///
/// ```
/// use mcpsec_core::{AttemptCounter, FallbackAttemptCounter, MemoryAttemptCounter};
/// use std::num::NonZeroU64;
/// use std::time::{Duration, SystemTime};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), mcpsec_core::Error> {
/// // In production the primary is the fleet's shared counter (Redis).
/// let fleet = NonZeroU64::new(4).unwrap_or(NonZeroU64::MIN);
/// let counter = FallbackAttemptCounter::new(MemoryAttemptCounter::default(), fleet);
/// let state = counter.record_failure("src:ip:203.0.113.7", Duration::from_secs(900), SystemTime::now()).await?;
/// assert_eq!(state.count, 1); // the primary answered: counted once, not scaled
/// assert!(!counter.is_degraded());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FallbackAttemptCounter<P> {
    primary: P,
    local: MemoryAttemptCounter,
    fleet_size: NonZeroU64,
    degraded: AtomicBool,
    degraded_calls: AtomicU64,
}

impl<P: AttemptCounter> FallbackAttemptCounter<P> {
    /// `primary`, with a local fallback of [`MemoryAttemptCounter::default`] for a fleet of
    /// `fleet_size` instances.
    pub fn new(primary: P, fleet_size: NonZeroU64) -> Self {
        Self::with_local(primary, MemoryAttemptCounter::default(), fleet_size)
    }

    /// `primary` with `local` as the fallback (to choose its bound on subjects).
    pub fn with_local(primary: P, local: MemoryAttemptCounter, fleet_size: NonZeroU64) -> Self {
        Self {
            primary,
            local,
            fleet_size,
            degraded: AtomicBool::new(false),
            degraded_calls: AtomicU64::new(0),
        }
    }

    /// The primary counter.
    pub fn primary(&self) -> &P {
        &self.primary
    }

    /// The fleet size local counts are multiplied by.
    pub fn fleet_size(&self) -> NonZeroU64 {
        self.fleet_size
    }

    /// Whether the last call to the primary failed with a retryable error (the counter is
    /// counting locally).
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// How many calls were answered by the local counter since this one was built.
    pub fn degraded_calls(&self) -> u64 {
        self.degraded_calls.load(Ordering::Relaxed)
    }

    fn scaled(&self, state: AttemptState) -> AttemptState {
        AttemptState {
            count: state.count.saturating_mul(self.fleet_size.get()),
            ..state
        }
    }

    /// Whether `error` is an outage the fallback covers; notes the degraded state if so.
    fn falls_back(&self, error: &Error) -> bool {
        let Error::Store(store) = error else {
            return false;
        };
        if !store.kind().is_transient() {
            return false;
        }
        self.degraded_calls.fetch_add(1, Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "mcpsec::fallback",
                error = %store,
                fleet_size = self.fleet_size.get(),
                "shared attempt counter unreachable; counting locally, each failure as the fleet size"
            );
        }
        true
    }

    fn recovered(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                target: "mcpsec::fallback",
                "shared attempt counter answers again; counting there"
            );
        }
    }

    /// The local (scaled) state of `subject`, when it has failures counted in an outage.
    async fn local_state(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Option<AttemptState> {
        // The memory counter never fails.
        self.local
            .state(subject, window, now)
            .await
            .ok()
            .flatten()
            .map(|s| self.scaled(s))
    }
}

/// The state with the higher count (the shared one on a tie).
fn higher(shared: AttemptState, local: Option<AttemptState>) -> AttemptState {
    match local {
        Some(local) if local.count > shared.count => local,
        _ => shared,
    }
}

#[async_trait::async_trait]
impl<P: AttemptCounter> AttemptCounter for FallbackAttemptCounter<P> {
    fn count_step(&self) -> u64 {
        if self.is_degraded() {
            self.fleet_size.get()
        } else {
            1
        }
    }

    async fn record_failure(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<AttemptState, Error> {
        match self.primary.record_failure(subject, window, now).await {
            Ok(state) => {
                self.recovered();
                Ok(higher(state, self.local_state(subject, window, now).await))
            }
            Err(error) if self.falls_back(&error) => self
                .local
                .record_failure(subject, window, now)
                .await
                .map(|s| self.scaled(s)),
            Err(error) => Err(error),
        }
    }

    async fn release(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptState>, Error> {
        match self.primary.release(subject, window, now).await {
            Ok(state) => {
                self.recovered();
                let local = self.local_state(subject, window, now).await;
                Ok(match state {
                    Some(state) => Some(higher(state, local)),
                    None => local,
                })
            }
            Err(error) if self.falls_back(&error) => self
                .local
                .release(subject, window, now)
                .await
                .map(|s| s.map(|s| self.scaled(s))),
            Err(error) => Err(error),
        }
    }

    async fn state(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptState>, Error> {
        match self.primary.state(subject, window, now).await {
            Ok(state) => {
                self.recovered();
                let local = self.local_state(subject, window, now).await;
                Ok(match state {
                    Some(state) => Some(higher(state, local)),
                    None => local,
                })
            }
            Err(error) if self.falls_back(&error) => {
                Ok(self.local_state(subject, window, now).await)
            }
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreError;
    use std::sync::Mutex;

    /// A primary that fails with the error set in it, or counts in memory.
    #[derive(Debug, Default)]
    struct Switch {
        inner: MemoryAttemptCounter,
        failing: Mutex<Option<StoreError>>,
    }

    impl Switch {
        fn fail(&self, error: Option<StoreError>) {
            *self.failing.lock().unwrap() = error;
        }
        fn check(&self) -> Result<(), Error> {
            match self.failing.lock().unwrap().clone() {
                Some(e) => Err(Error::Store(e)),
                None => Ok(()),
            }
        }
    }

    #[async_trait::async_trait]
    impl AttemptCounter for Switch {
        async fn record_failure(
            &self,
            s: &str,
            w: Duration,
            n: SystemTime,
        ) -> Result<AttemptState, Error> {
            self.check()?;
            self.inner.record_failure(s, w, n).await
        }
        async fn release(
            &self,
            s: &str,
            w: Duration,
            n: SystemTime,
        ) -> Result<Option<AttemptState>, Error> {
            self.check()?;
            self.inner.release(s, w, n).await
        }
        async fn state(
            &self,
            s: &str,
            w: Duration,
            n: SystemTime,
        ) -> Result<Option<AttemptState>, Error> {
            self.check()?;
            self.inner.state(s, w, n).await
        }
    }

    const W: Duration = Duration::from_secs(900);

    fn at(secs: u64) -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + secs)
    }

    fn counter() -> FallbackAttemptCounter<Switch> {
        FallbackAttemptCounter::new(Switch::default(), NonZeroU64::new(3).unwrap())
    }

    #[tokio::test]
    async fn a_healthy_primary_counts_unscaled() {
        let c = counter();
        assert_eq!(c.record_failure("s", W, at(0)).await.unwrap().count, 1);
        assert_eq!(c.record_failure("s", W, at(1)).await.unwrap().count, 2);
        assert!(!c.is_degraded());
        assert_eq!(c.degraded_calls(), 0);
    }

    /// A threshold the scaled count steps over (3, 6, 9 past 5 and 7) is still crossed
    /// exactly once; an equality check (`count == 5`) would never fire.
    #[tokio::test]
    async fn a_threshold_stepped_over_while_degraded_is_crossed_once() {
        let c = counter();
        assert_eq!(c.count_step(), 1);
        assert!(c.crossed(5, 5) && !c.crossed(4, 5) && !c.crossed(6, 5));
        c.primary().fail(Some(StoreError::unavailable("down")));
        let mut crossings = Vec::new();
        for i in 0..4 {
            let count = c.record_failure("s", W, at(i)).await.unwrap().count;
            assert_eq!(c.count_step(), 3);
            if c.crossed(count, 5) {
                crossings.push(count);
            }
        }
        assert_eq!(
            crossings,
            vec![6],
            "crossed once, at the first count past it"
        );
        assert!(c.crossed(9, 7) && !c.crossed(12, 7) && !c.crossed(6, 7));
    }

    #[tokio::test]
    async fn an_outage_counts_locally_scaled_by_the_fleet_size() {
        let c = counter();
        c.primary().fail(Some(StoreError::unavailable("down")));
        assert_eq!(c.record_failure("s", W, at(0)).await.unwrap().count, 3);
        assert_eq!(c.record_failure("s", W, at(1)).await.unwrap().count, 6);
        assert_eq!(c.state("s", W, at(2)).await.unwrap().unwrap().count, 6);
        assert_eq!(c.release("s", W, at(2)).await.unwrap().unwrap().count, 3);
        assert!(c.is_degraded());
        assert_eq!(c.degraded_calls(), 4);
        c.primary().fail(Some(StoreError::timeout("slow")));
        assert_eq!(c.record_failure("s", W, at(3)).await.unwrap().count, 6);
    }

    #[tokio::test]
    async fn other_errors_still_fail() {
        let c = counter();
        for error in [StoreError::corrupt("bad"), StoreError::rejected("no")] {
            c.primary().fail(Some(error.clone()));
            assert_eq!(
                c.record_failure("s", W, at(0)).await,
                Err(Error::Store(error.clone()))
            );
            assert_eq!(c.state("s", W, at(0)).await, Err(Error::Store(error)));
        }
        assert!(!c.is_degraded());
        assert_eq!(c.local.state("s", W, at(0)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn recovery_returns_to_the_primary_and_keeps_outage_failures() {
        let c = counter();
        c.record_failure("s", W, at(0)).await.unwrap();
        c.primary().fail(Some(StoreError::unavailable("down")));
        c.record_failure("s", W, at(1)).await.unwrap();
        c.record_failure("s", W, at(2)).await.unwrap();
        c.primary().fail(None);
        // Shared: 1; local: 2 × 3 = 6, the higher one.
        assert_eq!(c.state("s", W, at(3)).await.unwrap().unwrap().count, 6);
        assert!(!c.is_degraded());
        // Counting goes to the primary again.
        assert_eq!(
            c.primary()
                .inner
                .state("s", W, at(3))
                .await
                .unwrap()
                .unwrap()
                .count,
            1
        );
        for _ in 0..6 {
            c.record_failure("s", W, at(4)).await.unwrap();
        }
        assert_eq!(c.state("s", W, at(4)).await.unwrap().unwrap().count, 7);
        // Once the outage's window ends, only the shared count is left.
        assert_eq!(c.state("s", W, at(901)).await.unwrap(), None);
    }
}
