//! [`RedisStores`]: one connection manager and one key prefix, shared by every store.

use crate::error::store_error;
use crate::keys::Keys;
use crate::{RedisAttemptCounter, RedisReplayGuard, RedisUsageLedger};
use mcpsec_core::StoreError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// How long a command may wait for its reply before it fails with
/// [`Timeout`](mcpsec_core::StoreErrorKind::Timeout).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one attempt to (re)connect may take.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a TOTP step stays remembered after it was accepted (see [`TtlPolicy`]).
pub const DEFAULT_REPLAY_TTL: Duration = Duration::from_secs(60 * 60);
/// How long a nonce count lives after its last reservation (see [`TtlPolicy`]).
pub const DEFAULT_LEDGER_TTL: Duration = Duration::from_secs(400 * 24 * 60 * 60);
/// How long an attempt window's key outlives the window's end.
pub const DEFAULT_ATTEMPT_GRACE: Duration = Duration::from_secs(60);

/// How long each kind of key lives. Every key this crate writes expires; these choose when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    /// Added to the end of an attempt window (which the caller passes on every call): the
    /// key goes this long after the window it holds has ended, when it reads as nothing
    /// anyway. Covers clocks of instances that disagree a little.
    pub attempt_grace: Duration,
    /// How long the last accepted TOTP step of an enrollment is kept. Must be longer than
    /// the time a code stays valid, `(2·skew + 1) · step` (150 s with the defaults): once
    /// the key is gone any step is accepted again, which is safe only because the TOTP
    /// check itself refuses codes of steps that long past.
    pub replay: Duration,
    /// How long a key version's nonce count is kept after its last reservation or
    /// release. A count that expires restarts at zero, so this must be longer than any
    /// key version stays in use without encrypting (rotate keys well within it).
    pub ledger: Duration,
}

impl Default for TtlPolicy {
    fn default() -> Self {
        Self {
            attempt_grace: DEFAULT_ATTEMPT_GRACE,
            replay: DEFAULT_REPLAY_TTL,
            ledger: DEFAULT_LEDGER_TTL,
        }
    }
}

/// A Redis connection (a multiplexed [`ConnectionManager`], which reconnects by itself) and
/// the key prefix of one deployment; hands out the stores.
///
/// Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RedisStores {
    connection: ConnectionManager,
    /// The client the connection came from, when this crate opened it: the invalidation
    /// subscriber needs a connection of its own.
    client: Option<redis::Client>,
    keys: Keys,
    ttl: TtlPolicy,
}

impl std::fmt::Debug for RedisStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password; only the prefix is shown.
        f.debug_struct("RedisStores")
            .field("prefix", &self.keys.prefix())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl RedisStores {
    /// Connects to `url` (`redis://host:port/db`, with `user:password@` when needed) with
    /// the default timeouts, and namespaces every key under `prefix`.
    ///
    /// `prefix` is 1 to 128 characters of ASCII letters, digits, `_`, `-`, `.` and `:`
    /// ([`Rejected`](mcpsec_core::StoreErrorKind::Rejected) otherwise). An unreachable
    /// server is [`Unavailable`](mcpsec_core::StoreErrorKind::Unavailable).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(DEFAULT_RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(DEFAULT_CONNECTION_TIMEOUT))
            .set_number_of_retries(2);
        Self::connect_with(url, prefix, config).await
    }

    /// [`connect`](Self::connect) with the connection manager configured by the host
    /// (timeouts, reconnection back-off). Set a response timeout: without one a command
    /// to a server that stopped answering waits forever.
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        config: ConnectionManagerConfig,
    ) -> Result<Self, StoreError> {
        let keys = Keys::new(prefix)?;
        let client = redis::Client::open(url).map_err(|e| store_error("open a Redis client", e))?;
        let connection = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| store_error("connect to Redis", e))?;
        Ok(Self {
            connection,
            client: Some(client),
            keys,
            ttl: TtlPolicy::default(),
        })
    }

    /// Stores on a connection manager the host made, under `prefix`. Pass the client it
    /// came from with [`with_client`](Self::with_client) to subscribe to invalidations.
    pub fn new(connection: ConnectionManager, prefix: &str) -> Result<Self, StoreError> {
        Ok(Self {
            connection,
            client: None,
            keys: Keys::new(prefix)?,
            ttl: TtlPolicy::default(),
        })
    }

    /// The same connection with other key lifetimes.
    #[must_use]
    pub fn with_ttl(mut self, ttl: TtlPolicy) -> Self {
        self.ttl = ttl;
        self
    }

    /// The same stores, with the client the host's connection manager came from (see
    /// [`subscribe_invalidations`](Self::subscribe_invalidations)).
    #[must_use]
    pub fn with_client(mut self, client: redis::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// The key lifetimes.
    pub fn ttl(&self) -> TtlPolicy {
        self.ttl
    }

    /// The connection manager (a clone shares the connection).
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// The [`AttemptCounter`](mcpsec_core::AttemptCounter).
    pub fn attempt_counter(&self) -> RedisAttemptCounter {
        RedisAttemptCounter::new(self.clone())
    }

    /// The [`TotpReplayGuard`](mcpsec_mfa::TotpReplayGuard).
    pub fn replay_guard(&self) -> RedisReplayGuard {
        RedisReplayGuard::new(self.clone())
    }

    /// The [`UsageLedger`](mcpsec_fieldcrypt::UsageLedger).
    pub fn usage_ledger(&self) -> RedisUsageLedger {
        RedisUsageLedger::new(self.clone())
    }

    /// The [`EmailCodeStore`](mcpsec_mfa::EmailCodeStore).
    pub fn email_code_store(&self) -> crate::RedisEmailCodeStore {
        crate::RedisEmailCodeStore::new(self.clone())
    }

    /// The [`PasskeyStore`](mcpsec_mfa::PasskeyStore): ceremonies here, registered
    /// credentials in `credentials` (a durable store, such as the SQL one).
    #[cfg(feature = "passkeys")]
    pub fn passkey_store<S: mcpsec_mfa::PasskeyStore>(
        &self,
        credentials: S,
    ) -> crate::RedisPasskeyStore<S> {
        crate::RedisPasskeyStore::new(self.clone(), credentials)
    }

    /// A [`RateLimiter`](mcpsec_core::RateLimiter) giving every key `quota`, on `clock`.
    pub fn rate_limiter(
        &self,
        quota: mcpsec_core::RateQuota,
        clock: mcpsec_core::SharedClock,
    ) -> crate::RedisRateLimiter {
        crate::RedisRateLimiter::new(self.clone(), quota, clock)
    }

    /// The [`InvalidationBus`](mcpsec_core::InvalidationBus) of this deployment (its key
    /// prefix): announcements reach every instance whose subscriber uses the same prefix.
    /// `local` caches are flushed directly before each announcement is published.
    pub fn invalidation_bus(
        &self,
        local: Vec<std::sync::Arc<dyn mcpsec_core::FlushOnInvalidation>>,
    ) -> crate::RedisInvalidationBus {
        crate::RedisInvalidationBus::new(self.connection.clone(), self.prefix(), local)
    }

    /// Starts this instance's [`InvalidationSubscriber`](crate::InvalidationSubscriber),
    /// flushing `caches` for every announcement on this deployment's channel, with the
    /// default timing. Keep the subscriber for as long as the caches live: dropping it
    /// stops listening.
    ///
    /// # Errors
    /// [`Rejected`](mcpsec_core::StoreErrorKind::Rejected) outside a tokio runtime, or for
    /// stores built with [`new`](Self::new) without [`with_client`](Self::with_client).
    pub fn subscribe_invalidations(
        &self,
        caches: Vec<std::sync::Arc<dyn mcpsec_core::FlushOnInvalidation>>,
    ) -> Result<crate::InvalidationSubscriber, StoreError> {
        self.subscribe_invalidations_with(caches, crate::SubscriberConfig::default())
    }

    /// [`subscribe_invalidations`](Self::subscribe_invalidations) with other timing.
    ///
    /// # Errors
    /// As [`subscribe_invalidations`](Self::subscribe_invalidations).
    pub fn subscribe_invalidations_with(
        &self,
        caches: Vec<std::sync::Arc<dyn mcpsec_core::FlushOnInvalidation>>,
        config: crate::SubscriberConfig,
    ) -> Result<crate::InvalidationSubscriber, StoreError> {
        let client = self.client.clone().ok_or_else(|| {
            StoreError::rejected(
                "stores built from a connection manager need with_client to subscribe",
            )
        })?;
        crate::InvalidationSubscriber::spawn(client, self.prefix(), caches, config)
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }
}
