//! Rate limiting by GCRA, with one contract every backend (in-process, Redis) implements
//! the same way.
//!
//! # Semantics (every backend must agree to the microsecond)
//!
//! A [`RateQuota`] is a *burst* `b ≥ 1` and a *period* `T > 0`, the time it takes to earn
//! back one request. Time is read from the limiter's [`SharedClock`] as whole microseconds
//! since the Unix epoch (`now`; a time before the epoch reads as 0). The *burst tolerance*
//! is `τ = T × (b − 1)`.
//!
//! Each [`RateKey`] has one stored number, its *theoretical arrival time* `TAT` (µs); a key
//! never seen has none. A check at `now`:
//!
//! 1. `tat = stored TAT`, or `now` when there is none;
//! 2. if `tat − τ > now`, the request is **limited**, nothing is stored, and
//!    `retry_after = tat − τ − now`;
//! 3. otherwise it is **allowed**, `TAT := max(tat, now) + T` is stored, and
//!    `remaining = ⌊(now + τ + T − TAT) / T⌋` (so a fresh key reports `b − 1`).
//!
//! So a key at rest holds up to `b` requests, earns one back every `T`, and a full budget
//! is back `b × T` after the last use. A clock that goes backwards only makes `tat − now`
//! larger: it never grants extra. The check-and-store is atomic per key (a lock, a
//! single Lua script): of N concurrent checks on a fresh key, exactly `min(N, b)` are
//! allowed, on one instance or across a fleet sharing one backend.
//!
//! The conformance suite `mcpsec_core::testkit::rate_limiter` (feature `testkit`) checks
//! all of this for a backend.

use crate::{Error, KeyId, MAX_ID_LEN, SharedClock, StoreError, TokenId};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

/// The longest `burst × period` a quota may span (ten years): keeps every backend's
/// microsecond arithmetic exact (Lua numbers are doubles, exact below 2^53 µs).
const MAX_SPAN: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A budget: up to [`burst`](Self::burst) requests at once, one more earned back every
/// [`period`](Self::period). Periods are kept in whole microseconds (truncated), the unit
/// every backend stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateQuota {
    burst: NonZeroU32,
    period: Duration,
}

impl RateQuota {
    /// `burst` requests at once, one earned back every `period`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `burst` is zero, `period` is under a microsecond, or
    /// `burst × period` is longer than ten years.
    pub fn new(burst: u32, period: Duration) -> Result<Self, Error> {
        let burst = NonZeroU32::new(burst).ok_or(Error::InvalidArgument("a zero rate burst"))?;
        let period = Duration::from_micros(u64::try_from(period.as_micros()).unwrap_or(u64::MAX));
        if period.is_zero() {
            return Err(Error::InvalidArgument("a rate period under 1 µs"));
        }
        match period.checked_mul(burst.get()) {
            Some(span) if span <= MAX_SPAN => Ok(Self { burst, period }),
            _ => Err(Error::InvalidArgument("a rate quota longer than ten years")),
        }
    }

    /// `n` requests per second, all of them available at once (burst `n`).
    ///
    /// # Errors
    /// As [`new`](Self::new): `n` must be non-zero and at most a million.
    pub fn per_second(n: u32) -> Result<Self, Error> {
        Self::per(n, Duration::from_secs(1))
    }

    /// `n` requests per minute, all of them available at once (burst `n`).
    ///
    /// # Errors
    /// As [`per_second`](Self::per_second).
    pub fn per_minute(n: u32) -> Result<Self, Error> {
        Self::per(n, Duration::from_secs(60))
    }

    /// `n` requests per hour, all of them available at once (burst `n`).
    ///
    /// # Errors
    /// As [`per_second`](Self::per_second).
    pub fn per_hour(n: u32) -> Result<Self, Error> {
        Self::per(n, Duration::from_secs(3600))
    }

    fn per(n: u32, span: Duration) -> Result<Self, Error> {
        let divisor = NonZeroU32::new(n).ok_or(Error::InvalidArgument("a zero rate"))?;
        Self::new(n, span / divisor.get())
    }

    /// The same rate with a different burst.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_burst(self, burst: u32) -> Result<Self, Error> {
        Self::new(burst, self.period)
    }

    /// Requests allowed at once.
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// The time to earn back one request (`T`).
    pub fn period(&self) -> Duration {
        self.period
    }

    /// `τ = T × (burst − 1)`: how far ahead of `now` a key's TAT may run and still allow.
    pub fn burst_tolerance(&self) -> Duration {
        self.period.saturating_mul(self.burst.get() - 1)
    }

    /// One instance's share of a fleet quota: the burst divided by `parts` (rounded down,
    /// at least 1) and the period multiplied by `parts` (the rate divided), so `parts`
    /// instances deciding alone never admit more than the fleet quota's rate.
    pub fn divided(&self, parts: NonZeroU32) -> Self {
        Self {
            burst: NonZeroU32::new(self.burst.get() / parts.get()).unwrap_or(NonZeroU32::MIN),
            period: self
                .period
                .checked_mul(parts.get())
                .map_or(MAX_SPAN, |p| p.min(MAX_SPAN)),
        }
    }

    /// The GCRA step of the module documentation, in microseconds: the decision and,
    /// when allowed, the TAT to store.
    fn decide(&self, stored: Option<u64>, now: u64) -> (RateDecision, Option<u64>) {
        let t = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        let tau = t.saturating_mul(u64::from(self.burst.get() - 1));
        let tat = stored.unwrap_or(now);
        let earliest = tat.saturating_sub(tau);
        if earliest > now {
            let retry_after = Duration::from_micros(earliest - now);
            return (RateDecision::Limited { retry_after }, None);
        }
        let next = tat.max(now).saturating_add(t);
        let room = now
            .saturating_add(tau)
            .saturating_add(t)
            .saturating_sub(next);
        let remaining = u32::try_from(room / t).unwrap_or(u32::MAX);
        let info = RateLimitInfo {
            limit: self.burst.get(),
            remaining: remaining.min(self.burst.get() - 1),
            period: self.period,
        };
        (RateDecision::Allowed(info), Some(next))
    }
}

/// Rate-limit state after an allowed request, for `RateLimit` / `RateLimit-Policy` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitInfo {
    /// Requests allowed per period (the burst size).
    pub limit: u32,
    /// Requests left right now.
    pub remaining: u32,
    /// The replenishment period of one request.
    pub period: Duration,
}

/// What a [`RateLimiter`] decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Go ahead; the budget after this request.
    Allowed(RateLimitInfo),
    /// Over budget; nothing was counted. `retry_after` is when the next request would be
    /// allowed (for a `Retry-After` header, rounded up to whole seconds there).
    Limited {
        /// How long until a request would be allowed.
        retry_after: Duration,
    },
}

impl RateDecision {
    /// Whether the request may go ahead.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed(_))
    }
}

/// Whose budget a [`RateKey`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateKeyKind {
    /// An authenticated principal (a user or service id).
    Principal,
    /// A credential: an API key id or a token id.
    Credential,
    /// A source IP address.
    Source,
}

/// Whose budget a check spends, rendered canonically with a kind prefix so budgets of
/// different kinds never collide (a principal named `10.0.0.1` is not the source
/// `10.0.0.1`):
///
/// | constructor | canonical form |
/// |---|---|
/// | [`principal`](Self::principal) | `principal:<id>` |
/// | [`api_key`](Self::api_key) | `credential:key:<key id>` |
/// | [`token`](Self::token) | `credential:token:<token id>` |
/// | [`source`](Self::source) | `source:<ip>` (an IPv4-mapped IPv6 address as IPv4) |
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateKey {
    kind: RateKeyKind,
    canonical: String,
}

impl RateKey {
    /// The budget of a principal.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `id` is empty, longer than [`MAX_ID_LEN`] or holds a
    /// control character.
    pub fn principal(id: &str) -> Result<Self, Error> {
        if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
            return Err(Error::InvalidArgument("a rate-limit principal id"));
        }
        Ok(Self {
            kind: RateKeyKind::Principal,
            canonical: format!("principal:{id}"),
        })
    }

    /// The budget of an API key.
    pub fn api_key(id: &KeyId) -> Self {
        Self {
            kind: RateKeyKind::Credential,
            canonical: format!("credential:key:{}", id.as_str()),
        }
    }

    /// The budget of a token.
    pub fn token(id: &TokenId) -> Self {
        Self {
            kind: RateKeyKind::Credential,
            canonical: format!("credential:token:{}", id.as_str()),
        }
    }

    /// The budget of a source address.
    pub fn source(ip: IpAddr) -> Self {
        Self {
            kind: RateKeyKind::Source,
            canonical: format!("source:{}", ip.to_canonical()),
        }
    }

    /// Whose budget this is.
    pub fn kind(&self) -> RateKeyKind {
        self.kind
    }

    /// The canonical form (see the type's documentation).
    pub fn as_str(&self) -> &str {
        &self.canonical
    }
}

impl std::fmt::Display for RateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical)
    }
}

/// A GCRA rate limiter with one [`RateQuota`] for every key, reading time from the clock
/// it was built with. Every implementation follows the
/// [module semantics](crate::rate) exactly.
#[async_trait::async_trait]
pub trait RateLimiter: Send + Sync + std::fmt::Debug {
    /// The quota every key gets.
    fn quota(&self) -> RateQuota;

    /// Spends one request of `key`'s budget now, or says how long to wait.
    ///
    /// # Errors
    /// A [`StoreError`] when the backend could not decide; callers fail closed (treat it as
    /// limited) unless they chose [`FallbackRateLimiter`].
    async fn check(&self, key: &RateKey) -> Result<RateDecision, StoreError>;
}

/// `clock`'s time as microseconds since the Unix epoch (0 before it).
pub(crate) fn now_micros(clock: &SharedClock) -> u64 {
    clock
        .now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// How many checks pass between sweeps of expired keys in [`MemoryRateLimiter`].
const SWEEP_EVERY: u64 = 1024;

/// [`RateLimiter`] in one process: a map from key to TAT behind a lock.
///
/// Memory is bounded by the keys used within the last `burst × period`: every
/// 1,024 checks, keys whose TAT has passed (indistinguishable from fresh
/// ones) are dropped. For tests, single instances and as the local share of a
/// [`FallbackRateLimiter`].
#[derive(Debug)]
pub struct MemoryRateLimiter {
    quota: RateQuota,
    clock: SharedClock,
    tats: Mutex<HashMap<RateKey, u64>>,
    checks: AtomicU64,
}

impl MemoryRateLimiter {
    /// A limiter giving every key `quota`, on `clock`'s time.
    pub fn new(quota: RateQuota, clock: SharedClock) -> Self {
        Self {
            quota,
            clock,
            tats: Mutex::new(HashMap::new()),
            checks: AtomicU64::new(0),
        }
    }
}

#[async_trait::async_trait]
impl RateLimiter for MemoryRateLimiter {
    fn quota(&self) -> RateQuota {
        self.quota
    }

    async fn check(&self, key: &RateKey) -> Result<RateDecision, StoreError> {
        let now = now_micros(&self.clock);
        let mut tats = self.tats.lock().unwrap_or_else(PoisonError::into_inner);
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            tats.retain(|_, tat| *tat > now);
        }
        let (decision, next) = self.quota.decide(tats.get(key).copied(), now);
        if let Some(next) = next {
            tats.insert(key.clone(), next);
        }
        Ok(decision)
    }
}

/// Opt-in degraded mode for a shared limiter: when the primary (Redis, say) fails with a
/// retryable error ([`Unavailable`](crate::StoreErrorKind::Unavailable) or
/// [`Timeout`](crate::StoreErrorKind::Timeout)), the request is decided by a local limiter
/// holding this instance's share of the fleet quota ([`RateQuota::divided`] by the
/// configured fleet size), so `fleet_size` instances together stay within the fleet's
/// rate. Each such decision logs a `tracing` warning and counts in
/// [`fallback_decisions`](Self::fallback_decisions). Other errors pass through.
///
/// Without this wrapper a limiter fails closed, which stays the default everywhere.
#[derive(Debug)]
pub struct FallbackRateLimiter {
    primary: Arc<dyn RateLimiter>,
    local: Arc<dyn RateLimiter>,
    fallbacks: AtomicU64,
}

impl FallbackRateLimiter {
    /// Wraps `primary`; `make_local` builds the local limiter from this instance's share of
    /// the primary's quota (e.g. `|q| Arc::new(MemoryRateLimiter::new(q, clock))`).
    pub fn new(
        primary: Arc<dyn RateLimiter>,
        fleet_size: NonZeroU32,
        make_local: impl FnOnce(RateQuota) -> Arc<dyn RateLimiter>,
    ) -> Self {
        let local = make_local(primary.quota().divided(fleet_size));
        Self {
            primary,
            local,
            fallbacks: AtomicU64::new(0),
        }
    }

    /// The local limiter's quota (this instance's share).
    pub fn local_quota(&self) -> RateQuota {
        self.local.quota()
    }

    /// How many checks the local limiter decided because the primary failed.
    pub fn fallback_decisions(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl RateLimiter for FallbackRateLimiter {
    fn quota(&self) -> RateQuota {
        self.primary.quota()
    }

    async fn check(&self, key: &RateKey) -> Result<RateDecision, StoreError> {
        match self.primary.check(key).await {
            Err(error) if error.kind().is_transient() => {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    error = %error,
                    kind = ?key.kind(),
                    "rate limiter backend failed; deciding on this instance's share of the quota"
                );
                self.local.check(key).await
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, StoreErrorKind};

    #[test]
    fn quotas_are_validated() {
        assert!(RateQuota::new(0, Duration::from_secs(1)).is_err());
        assert!(RateQuota::new(1, Duration::from_nanos(999)).is_err());
        assert!(RateQuota::per_second(0).is_err());
        assert!(RateQuota::new(2, MAX_SPAN).is_err());
        let q = RateQuota::per_second(3).unwrap();
        assert_eq!((q.burst(), q.period()), (3, Duration::from_micros(333_333)));
        assert_eq!(q.burst_tolerance(), Duration::from_micros(666_666));
        let q = RateQuota::per_minute(60).unwrap().with_burst(10).unwrap();
        assert_eq!((q.burst(), q.period()), (10, Duration::from_secs(1)));
    }

    #[test]
    fn division_rounds_down_to_at_least_one() {
        let q = RateQuota::per_minute(10).unwrap();
        let share = q.divided(NonZeroU32::new(4).unwrap());
        assert_eq!(
            (share.burst(), share.period()),
            (2, Duration::from_secs(24))
        );
        let share = q.divided(NonZeroU32::new(50).unwrap());
        assert_eq!(share.burst(), 1);
    }

    #[test]
    fn keys_are_canonical_and_kinds_never_collide() {
        let ip: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(RateKey::source(ip).as_str(), "source:10.0.0.1");
        let p = RateKey::principal("10.0.0.1").unwrap();
        assert_eq!(p.as_str(), "principal:10.0.0.1");
        assert_ne!(p, RateKey::source(ip));
        assert_eq!(
            RateKey::api_key(&KeyId::new("k1").unwrap()).as_str(),
            "credential:key:k1"
        );
        assert_ne!(
            RateKey::api_key(&KeyId::new("k1").unwrap()),
            RateKey::token(&TokenId::new("k1").unwrap())
        );
        assert!(RateKey::principal("").is_err());
        assert!(RateKey::principal("a\nb").is_err());
    }

    #[derive(Debug)]
    struct Down(RateQuota);

    #[async_trait::async_trait]
    impl RateLimiter for Down {
        fn quota(&self) -> RateQuota {
            self.0
        }
        async fn check(&self, _: &RateKey) -> Result<RateDecision, StoreError> {
            Err(StoreError::new(StoreErrorKind::Unavailable, "down"))
        }
    }

    #[tokio::test]
    async fn fallback_decides_locally_on_the_share_and_counts() {
        let clock: SharedClock = Arc::new(ManualClock::at_unix(1_767_225_600));
        let fleet = RateQuota::per_minute(10).unwrap();
        let limiter =
            FallbackRateLimiter::new(Arc::new(Down(fleet)), NonZeroU32::new(3).unwrap(), |q| {
                Arc::new(MemoryRateLimiter::new(q, clock))
            });
        assert_eq!(limiter.local_quota().burst(), 3);
        let key = RateKey::principal("u").unwrap();
        let mut allowed = 0;
        for _ in 0..10 {
            if limiter.check(&key).await.unwrap().is_allowed() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 3, "the local share, not the fleet quota");
        assert_eq!(limiter.fallback_decisions(), 10);
        assert_eq!(limiter.quota(), fleet);
    }

    #[tokio::test]
    async fn without_the_wrapper_an_outage_is_an_error() {
        let down = Down(RateQuota::per_second(1).unwrap());
        let err = down
            .check(&RateKey::principal("u").unwrap())
            .await
            .unwrap_err();
        assert!(err.kind().is_transient());
    }
}
