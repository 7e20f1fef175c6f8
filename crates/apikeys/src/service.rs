//! [`ApiKeys`]: the one type a service holds, built with safe defaults.

use crate::cache::VerifiedKeyCache;
use crate::format::Env;
use crate::limits::{KeyQuota, LockoutPolicy};
use crate::{ApiKeyStore, Error, KeyHasher};
use mcpsec_core::{
    AttemptCounter, EventSink, MemoryAttemptCounter, NullSink, SharedClock, SystemClock,
};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Default quota of successful uses per key per minute.
pub const DEFAULT_QUOTA_PER_MINUTE: u32 = 600;
/// Default interval between `last_used_at` writes for one key.
pub const DEFAULT_LAST_USED_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// API keys for a service: creation, listing, rotation, revocation and verification.
#[derive(Debug)]
pub struct ApiKeys {
    pub(crate) store: Arc<dyn ApiKeyStore>,
    pub(crate) hasher: KeyHasher,
    pub(crate) counter: Arc<dyn AttemptCounter>,
    pub(crate) events: Arc<dyn EventSink>,
    pub(crate) clock: SharedClock,
    pub(crate) lockout: LockoutPolicy,
    pub(crate) quota: KeyQuota,
    pub(crate) cache: VerifiedKeyCache,
    pub(crate) envs: Vec<Env>,
    pub(crate) last_used_interval: Duration,
}

/// Builds [`ApiKeys`]. Defaults: memory attempt counter, no event sink, system clock,
/// [`LockoutPolicy::default`], 600 uses per key per minute, both environments accepted,
/// slow-hash cache of 60 s and 10,000 keys.
#[derive(Debug)]
pub struct ApiKeysBuilder {
    store: Arc<dyn ApiKeyStore>,
    hasher: KeyHasher,
    counter: Arc<dyn AttemptCounter>,
    events: Arc<dyn EventSink>,
    clock: SharedClock,
    lockout: LockoutPolicy,
    quota_per_minute: u32,
    cache_ttl: Duration,
    cache_capacity: usize,
    envs: Vec<Env>,
    last_used_interval: Duration,
}

impl ApiKeys {
    /// Starts a builder for keys kept in `store` and hashed by `hasher`.
    pub fn builder(store: Arc<dyn ApiKeyStore>, hasher: KeyHasher) -> ApiKeysBuilder {
        ApiKeysBuilder {
            store,
            hasher,
            counter: Arc::new(MemoryAttemptCounter::default()),
            events: Arc::new(NullSink),
            clock: Arc::new(SystemClock),
            lockout: LockoutPolicy::default(),
            quota_per_minute: DEFAULT_QUOTA_PER_MINUTE,
            cache_ttl: Duration::from_secs(60),
            cache_capacity: 10_000,
            envs: vec![Env::Live, Env::Test],
            last_used_interval: DEFAULT_LAST_USED_INTERVAL,
        }
    }
}

impl ApiKeysBuilder {
    /// Where failures are counted (share one across the fleet: Redis).
    pub fn attempt_counter(mut self, counter: Arc<dyn AttemptCounter>) -> Self {
        self.counter = counter;
        self
    }

    /// Where security events go.
    pub fn events(mut self, events: Arc<dyn EventSink>) -> Self {
        self.events = events;
        self
    }

    /// The clock.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// How failures are throttled and alerted on.
    pub fn lockout(mut self, lockout: LockoutPolicy) -> Self {
        self.lockout = lockout;
        self
    }

    /// Successful uses allowed per key per minute.
    pub fn quota_per_minute(mut self, per_minute: u32) -> Self {
        self.quota_per_minute = per_minute;
        self
    }

    /// Only keys of these environments verify (for example `[Env::Live]` in production).
    pub fn accept_envs(mut self, envs: &[Env]) -> Self {
        self.envs = envs.to_vec();
        self
    }

    /// How long a key verified under a slow hash is remembered (0 turns the cache off).
    pub fn slow_hash_cache(mut self, ttl: Duration, capacity: usize) -> Self {
        self.cache_ttl = ttl;
        self.cache_capacity = if ttl.is_zero() { 0 } else { capacity };
        self
    }

    /// The least time between two writes of a key's `last_used_at`.
    pub fn last_used_interval(mut self, interval: Duration) -> Self {
        self.last_used_interval = interval;
        self
    }

    /// Builds; fails on an empty quota, no accepted environment, or a cache TTL over 10 minutes.
    pub fn build(self) -> Result<ApiKeys, Error> {
        let per_minute = NonZeroU32::new(self.quota_per_minute)
            .ok_or(Error::Config("the quota must be positive"))?;
        if self.envs.is_empty() {
            return Err(Error::Config("accept at least one environment"));
        }
        if self.cache_ttl > Duration::from_secs(600) {
            return Err(Error::Config(
                "the slow-hash cache TTL is at most 10 minutes",
            ));
        }
        Ok(ApiKeys {
            quota: KeyQuota::new(per_minute, Arc::clone(&self.clock)),
            cache: VerifiedKeyCache::new(self.cache_ttl, self.cache_capacity)?,
            store: self.store,
            hasher: self.hasher,
            counter: self.counter,
            events: self.events,
            clock: self.clock,
            lockout: self.lockout,
            envs: self.envs,
            last_used_interval: self.last_used_interval,
        })
    }
}
