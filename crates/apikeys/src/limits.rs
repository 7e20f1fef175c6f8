//! Throttling of failing sources, alerts on hammered ids, and per-key quotas.
//!
//! The rule that keeps lockout from being turned against a key's owner: failures are
//! counted per *source* and per *key id*, but only sources are throttled. A hammered id
//! raises an alert; the holder of the right secret keeps working from anywhere.

use governor::clock::Clock as GovernorClock;
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use mcpsec_core::{KeyId, RateDecision, RateKey, RateQuota, SharedClock, StoreError};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

/// How failures are counted and punished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// The window failures are counted in (default 15 minutes).
    pub window: Duration,
    /// Failures from one source before it is throttled (default 10).
    pub source_threshold: u64,
    /// The first throttle period; doubles with each further failure (default 1 s).
    pub base_backoff: Duration,
    /// The longest throttle period (default 15 minutes).
    pub max_backoff: Duration,
    /// Failures against one key id that raise an alert (default 5).
    pub key_alert_threshold: u64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(15 * 60),
            source_threshold: 10,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(15 * 60),
            key_alert_threshold: 5,
        }
    }
}

impl LockoutPolicy {
    /// How long a source with `failures` in the window stays throttled after its last
    /// failure: nothing below the threshold, then base × 2^(failures − threshold), capped.
    pub fn backoff(&self, failures: u64) -> Duration {
        if failures < self.source_threshold {
            return Duration::ZERO;
        }
        let doublings = u32::try_from(failures - self.source_threshold)
            .unwrap_or(u32::MAX)
            .min(30);
        self.base_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

/// Rate-limit state after a successful use, for `RateLimit` / `RateLimit-Policy` headers
/// (one type for every limiter, defined in mcpsec-core).
pub use mcpsec_core::RateLimitInfo;

/// governor's clock on top of ours, so quotas follow the same (testable) time.
#[derive(Debug, Clone)]
pub(crate) struct QuotaClock(pub(crate) SharedClock);

impl GovernorClock for QuotaClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        self.0
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }
}

type Limiter =
    RateLimiter<KeyId, DefaultKeyedStateStore<KeyId>, QuotaClock, StateInformationMiddleware>;

/// A per-key quota on successful uses (GCRA, from `governor`).
#[derive(Debug)]
pub(crate) struct KeyQuota {
    limiter: Limiter,
    clock: QuotaClock,
}

impl KeyQuota {
    pub(crate) fn new(per_minute: NonZeroU32, clock: SharedClock) -> Self {
        let clock = QuotaClock(clock);
        let limiter = RateLimiter::dashmap_with_clock(Quota::per_minute(per_minute), clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        Self { limiter, clock }
    }

    /// One use of `id`: the headers' numbers, or how long to wait.
    pub(crate) fn check(&self, id: &KeyId) -> Result<RateLimitInfo, Duration> {
        match self.limiter.check_key(id) {
            Ok(snapshot) => {
                let quota = snapshot.quota();
                Ok(RateLimitInfo {
                    limit: quota.burst_size().get(),
                    remaining: snapshot.remaining_burst_capacity(),
                    period: quota.replenish_interval(),
                })
            }
            Err(not_until) => Err(not_until.wait_time_from(self.clock.now())),
        }
    }
}

/// How many checks pass between sweeps of keys back at rest in [`GovernorRateLimiter`].
const SWEEP_EVERY: u64 = 1024;

type KeyedLimiter =
    RateLimiter<RateKey, DefaultKeyedStateStore<RateKey>, QuotaClock, StateInformationMiddleware>;

/// [`mcpsec_core::RateLimiter`] in one process, on `governor`'s keyed GCRA (a sharded
/// concurrent map; a check is one compare-and-swap on its key).
///
/// Follows the semantics documented in `mcpsec_core`'s `RateLimiter` to the nanosecond
/// (periods are whole microseconds, so to the microsecond), and passes its conformance
/// suite. Memory is bounded by the keys used within the last `burst × period`: every
/// 1024 checks, keys whose state is back at rest (indistinguishable from a fresh key) are
/// dropped with governor's `retain_recent`.
#[derive(Debug)]
pub struct GovernorRateLimiter {
    quota: RateQuota,
    limiter: KeyedLimiter,
    clock: QuotaClock,
    checks: AtomicU64,
}

impl GovernorRateLimiter {
    /// A limiter giving every key `quota`, on `clock`'s time.
    pub fn new(quota: RateQuota, clock: SharedClock) -> Self {
        let clock = QuotaClock(clock);
        let burst = NonZeroU32::new(quota.burst()).unwrap_or(NonZeroU32::MIN);
        // `RateQuota` guarantees a period of at least 1 µs, so `with_period` is `Some`.
        let governed = Quota::with_period(quota.period())
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let limiter = RateLimiter::dashmap_with_clock(governed, clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        Self {
            quota,
            limiter,
            clock,
            checks: AtomicU64::new(0),
        }
    }

    /// Keys currently held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

#[async_trait::async_trait]
impl mcpsec_core::RateLimiter for GovernorRateLimiter {
    fn quota(&self) -> RateQuota {
        self.quota
    }

    async fn check(&self, key: &RateKey) -> Result<RateDecision, StoreError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        Ok(match self.limiter.check_key(key) {
            Ok(snapshot) => RateDecision::Allowed(RateLimitInfo {
                limit: self.quota.burst(),
                remaining: snapshot.remaining_burst_capacity(),
                period: self.quota.period(),
            }),
            Err(not_until) => RateDecision::Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = LockoutPolicy::default();
        assert_eq!(p.backoff(9), Duration::ZERO);
        assert_eq!(p.backoff(10), Duration::from_secs(1));
        assert_eq!(p.backoff(13), Duration::from_secs(8));
        assert_eq!(p.backoff(1_000), Duration::from_secs(15 * 60));
    }
}
