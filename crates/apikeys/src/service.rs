//! [`ApiKeys`]: the one type a service holds, built with safe defaults.

use crate::cache::VerifiedKeyCache;
use crate::format::Env;
use crate::limits::{KeyQuota, LockoutPolicy};
use crate::{ApiKeyStore, Error, KeyHasher, SlowHashPool};
use mcpsec_access::Memberships;
use mcpsec_core::{
    AttemptCounter, EventSink, FlushOnInvalidation, Invalidation, MemoryAttemptCounter,
    SharedClock, SystemClock,
};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Default quota of successful uses per key per minute.
pub const DEFAULT_QUOTA_PER_MINUTE: u32 = 600;
/// Default interval between `last_used_at` writes for one key.
pub const DEFAULT_LAST_USED_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default prefix length that groups IPv6 sources: a /64 is what one host or home is
/// usually given, so counting per address would hand an attacker 2^64 fresh sources.
pub const DEFAULT_IPV6_SOURCE_PREFIX: u8 = 64;
/// Default number of slow hashes a throttled source may spend per key id per lockout
/// window, so the holder of the right key still verifies from a throttled (shared) address.
pub const DEFAULT_THROTTLED_SLOW_HASH_ALLOWANCE: u64 = 3;

/// API keys for a service: creation, listing, rotation, revocation and verification.
#[derive(Debug)]
pub struct ApiKeys {
    pub(crate) store: Arc<dyn ApiKeyStore>,
    pub(crate) memberships: Arc<dyn Memberships>,
    pub(crate) hasher: Arc<KeyHasher>,
    pub(crate) counter: Arc<dyn AttemptCounter>,
    pub(crate) events: Arc<dyn EventSink>,
    pub(crate) clock: SharedClock,
    pub(crate) lockout: LockoutPolicy,
    pub(crate) quota: KeyQuota,
    pub(crate) cache: VerifiedKeyCache,
    /// Whether `mcp_sk_test_` keys verify (off unless the builder allowed them).
    pub(crate) test_keys: bool,
    pub(crate) last_used_interval: Duration,
    pub(crate) pool: Arc<SlowHashPool>,
    pub(crate) ipv6_prefix: u8,
    pub(crate) throttled_allowance: u64,
}

/// Fleet announcements: a revoked or disabled key's verified-cache entries go at once, so
/// the next use re-reads the shared store (which already refuses it) instead of a cached
/// verdict; [`Invalidation::Everything`] empties the cache. Other kinds do not concern API
/// keys.
impl FlushOnInvalidation for ApiKeys {
    fn flush(&self, what: &Invalidation) {
        match what {
            Invalidation::ApiKeyRevoked(id) | Invalidation::ApiKeyDisabled(id) => {
                self.cache.forget(id);
            }
            Invalidation::Everything => self.cache.clear(),
            _ => {}
        }
    }
}

/// Builds [`ApiKeys`]. The event sink is an argument of [`ApiKeys::builder`], never a
/// default. Defaults: memory attempt counter, system clock, [`LockoutPolicy::default`], 600
/// uses per key per minute, live keys only (`mcp_sk_test_` keys are refused unless
/// [`allow_test_keys`](ApiKeysBuilder::allow_test_keys) is called), slow-hash cache of 60 s
/// and 10,000 keys, a [`SlowHashPool::default`] of its own, IPv6 sources grouped by /64,
/// and a throttled source allowed 3 slow hashes per key id per window.
#[derive(Debug)]
pub struct ApiKeysBuilder {
    store: Arc<dyn ApiKeyStore>,
    memberships: Arc<dyn Memberships>,
    hasher: KeyHasher,
    counter: Arc<dyn AttemptCounter>,
    events: Arc<dyn EventSink>,
    clock: SharedClock,
    lockout: LockoutPolicy,
    quota_per_minute: u32,
    cache_ttl: Duration,
    cache_capacity: usize,
    test_keys: bool,
    last_used_interval: Duration,
    pool: Option<Arc<SlowHashPool>>,
    ipv6_prefix: u8,
    throttled_allowance: u64,
}

impl ApiKeys {
    /// Starts a builder for keys kept in `store` and hashed by `hasher`, whose owners'
    /// roles are read from `memberships` at every verification (a key carries no role, and
    /// an owner who is no longer a member is refused). Every verification failure, lockout
    /// and refusal is reported to `events` (any sink, or an `Arc` of one to share it); there
    /// is no default, so a host that wants no events says so by passing
    /// [`NullSink`](mcpsec_core::NullSink) by name.
    ///
    /// A builder without a sink does not compile:
    ///
    /// ```compile_fail
    /// # use mcpsec_apikeys::{ApiKeys, HashMode, KeyHasher, MemoryApiKeyStore, Pepper};
    /// # use std::sync::Arc;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let members = Arc::new(mcpsec_access::MemoryMemberships::new());
    /// # let hasher = KeyHasher::new(Pepper::generate(1)?, vec![], HashMode::HmacSha256)?;
    /// let keys = ApiKeys::builder(Arc::new(MemoryApiKeyStore::new()), members, hasher).build()?;
    /// # Ok(()) }
    /// ```
    ///
    /// ```
    /// # use mcpsec_apikeys::{ApiKeys, HashMode, KeyHasher, MemoryApiKeyStore, Pepper};
    /// # use mcpsec_core::NullSink;
    /// # use std::sync::Arc;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let members = Arc::new(mcpsec_access::MemoryMemberships::new());
    /// # let hasher = KeyHasher::new(Pepper::generate(1)?, vec![], HashMode::HmacSha256)?;
    /// // No events, as a choice that reads as one.
    /// let keys = ApiKeys::builder(Arc::new(MemoryApiKeyStore::new()), members, hasher, NullSink)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder(
        store: Arc<dyn ApiKeyStore>,
        memberships: Arc<dyn Memberships>,
        hasher: KeyHasher,
        events: impl EventSink + 'static,
    ) -> ApiKeysBuilder {
        ApiKeysBuilder {
            store,
            memberships,
            hasher,
            counter: Arc::new(MemoryAttemptCounter::default()),
            events: Arc::new(events),
            clock: Arc::new(SystemClock),
            lockout: LockoutPolicy::default(),
            quota_per_minute: DEFAULT_QUOTA_PER_MINUTE,
            cache_ttl: Duration::from_secs(60),
            cache_capacity: 10_000,
            test_keys: false,
            last_used_interval: DEFAULT_LAST_USED_INTERVAL,
            pool: None,
            ipv6_prefix: DEFAULT_IPV6_SOURCE_PREFIX,
            throttled_allowance: DEFAULT_THROTTLED_SLOW_HASH_ALLOWANCE,
        }
    }
}

impl ApiKeysBuilder {
    /// Where failures are counted (share one across the fleet: Redis).
    pub fn attempt_counter(mut self, counter: Arc<dyn AttemptCounter>) -> Self {
        self.counter = counter;
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

    /// Also accepts `mcp_sk_test_` keys (for a development or staging service). Without
    /// it a test key is refused with [`Error::TestKeyRefused`] and an `authn_login_fail`
    /// event, so a test key that leaked into production configuration never works there.
    pub fn allow_test_keys(mut self) -> Self {
        self.test_keys = true;
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

    /// Where slow hashes (Argon2id, bcrypt) run. Share one pool across the process's
    /// [`ApiKeys`] instances so its bound is the process's.
    pub fn slow_hash_pool(mut self, pool: Arc<SlowHashPool>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// How many leading bits of an IPv6 address name one source (32 to 128; default 64).
    /// IPv4-mapped addresses always count as their IPv4 address.
    pub fn ipv6_source_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits;
        self
    }

    /// Slow hashes a throttled source may spend on one key id per lockout window (default
    /// 3; a success gives its slot back). 0 restores "a throttled source gets no slow hash",
    /// which locks the owner of an Argon2 key out while its address is throttled.
    pub fn throttled_slow_hash_allowance(mut self, per_key_id: u64) -> Self {
        self.throttled_allowance = per_key_id;
        self
    }

    /// Builds; fails on an empty quota, a cache TTL over 10 minutes, or an IPv6 source
    /// prefix outside 32 to 128.
    pub fn build(self) -> Result<ApiKeys, Error> {
        let per_minute = NonZeroU32::new(self.quota_per_minute)
            .ok_or(Error::Config("the quota must be positive"))?;
        if self.cache_ttl > Duration::from_secs(600) {
            return Err(Error::Config(
                "the slow-hash cache TTL is at most 10 minutes",
            ));
        }
        if !(32..=128).contains(&self.ipv6_prefix) {
            return Err(Error::Config("the IPv6 source prefix is 32 to 128 bits"));
        }
        Ok(ApiKeys {
            quota: KeyQuota::new(per_minute, Arc::clone(&self.clock)),
            cache: VerifiedKeyCache::new(self.cache_ttl, self.cache_capacity)?,
            store: self.store,
            memberships: self.memberships,
            hasher: Arc::new(self.hasher),
            pool: self
                .pool
                .unwrap_or_else(|| Arc::new(SlowHashPool::default())),
            ipv6_prefix: self.ipv6_prefix,
            throttled_allowance: self.throttled_allowance,
            counter: self.counter,
            events: self.events,
            clock: self.clock,
            lockout: self.lockout,
            test_keys: self.test_keys,
            last_used_interval: self.last_used_interval,
        })
    }
}

impl ApiKeys {
    /// Whether keys of `env` verify here: live keys always, test keys only when the
    /// builder allowed them.
    pub(crate) fn accepts(&self, env: Env) -> bool {
        match env {
            Env::Live => true,
            Env::Test => self.test_keys,
        }
    }
}
