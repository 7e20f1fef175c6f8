//! [`RateLimiter`] on Redis: GCRA in one Lua script, one string (the TAT) per key.

use crate::RedisStores;
use crate::error::{corrupt, store_error};
use crate::units::{duration_micros, micros};
use mcpsec_core::{
    RateDecision, RateKey, RateLimitInfo, RateLimiter, RateQuota, SharedClock, StoreError,
};
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;

/// One GCRA step (the semantics of `mcpsec_core`'s `RateLimiter`, in microseconds).
/// Limited: nothing is written. Allowed: the new TAT is stored with a TTL of the time
/// until it passes plus one second (after that the key is indistinguishable from a fresh
/// one, so it may go).
///
/// KEYS[1]: the key's TAT (µs, decimal text). ARGV: now, period `T`, tolerance `τ` (µs).
/// Returns `{1, remaining}` when allowed, `{0, retry_after_µs}` when limited. Every number
/// is an integer below 2^53 (times to the year 2255, quotas to ten years), so the double
/// arithmetic is exact and the one division is floored after it.
static CHECK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now, t, tau = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then
  tat = tonumber(stored)
  if tat == nil then return redis.error_reply('ERR corrupt rate limiter state') end
end
local earliest = tat - tau
if earliest > now then
  return {0, earliest - now}
end
local nxt = math.max(tat, now) + t
local remaining = math.floor((now + tau + t - nxt) / t)
local ttl = math.ceil((nxt - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', string.format('%.0f', ttl))
return {1, remaining}
",
    )
});

/// [`RateLimiter`] on Redis: one string per key under `{prefix}:{<tag>}:rate`, the tag
/// hashing the quota and the [`RateKey`]'s canonical form (limiters with different quotas
/// on one prefix keep separate budgets; no principal or address appears in a key name).
///
/// Every check is one Lua script (`EVALSHA`, falling back to `EVAL`), which Redis runs
/// without interleaving: of N concurrent checks on a fresh key from any number of
/// instances, exactly `min(N, burst)` are allowed. Time comes from the clock given at
/// construction, so a fleet needs synchronised clocks (NTP); a clock running behind only
/// makes its instance stricter. Every key expires one second after its TAT passes.
///
/// Fails closed: a Redis error is a [`StoreError`] (wrap it in
/// [`FallbackRateLimiter`](mcpsec_core::FallbackRateLimiter) to decide locally instead).
#[derive(Debug, Clone)]
pub struct RedisRateLimiter {
    stores: RedisStores,
    quota: RateQuota,
    clock: SharedClock,
    scope: String,
}

impl RedisRateLimiter {
    /// A limiter giving every key `quota`, on `stores`' connection and prefix and
    /// `clock`'s time.
    pub fn new(stores: RedisStores, quota: RateQuota, clock: SharedClock) -> Self {
        let scope = format!("{}/{}", quota.burst(), quota.period().as_micros());
        Self {
            stores,
            quota,
            clock,
            scope,
        }
    }

    fn key(&self, key: &RateKey) -> String {
        self.stores
            .keys()
            .key("rate", &[self.scope.as_bytes(), key.as_str().as_bytes()])
    }
}

#[async_trait::async_trait]
impl RateLimiter for RedisRateLimiter {
    fn quota(&self) -> RateQuota {
        self.quota
    }

    async fn check(&self, key: &RateKey) -> Result<RateDecision, StoreError> {
        let (allowed, value): (u8, u64) = CHECK
            .key(self.key(key))
            .arg(micros(self.clock.now())?)
            .arg(duration_micros(self.quota.period()))
            .arg(duration_micros(self.quota.burst_tolerance()))
            .invoke_async(&mut self.stores.connection())
            .await
            .map_err(|e| store_error("check a rate limit", e))?;
        match allowed {
            1 => Ok(RateDecision::Allowed(RateLimitInfo {
                limit: self.quota.burst(),
                remaining: u32::try_from(value)
                    .unwrap_or(u32::MAX)
                    .min(self.quota.burst().saturating_sub(1)),
                period: self.quota.period(),
            })),
            0 => Ok(RateDecision::Limited {
                retry_after: Duration::from_micros(value),
            }),
            _ => Err(corrupt("a rate limiter reply of the wrong shape")),
        }
    }
}
