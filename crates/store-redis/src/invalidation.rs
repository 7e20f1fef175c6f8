//! Cache invalidation across a fleet on Redis pub/sub: [`RedisInvalidationBus`] announces,
//! [`InvalidationSubscriber`] listens and flushes this instance's caches.
//!
//! # Why pub/sub and not streams
//!
//! An announcement is only useful while the instances that cached the revoked thing are
//! running, and an instance that missed some (it was disconnected) cannot know which: it
//! must flush everything either way. So a log that keeps messages for late readers (a
//! Redis stream) buys nothing over pub/sub but a key to trim; pub/sub delivers at most once
//! with the lowest latency, and the subscriber makes up for the "at most" by flushing
//! everything whenever it (re)subscribes.
//!
//! # Fail closed
//!
//! - Every successful subscription (the first and every reconnect) flushes
//!   [`Invalidation::Everything`]: announcements made while it was not listening are lost.
//! - While it is disconnected, every failed reconnection attempt flushes everything again,
//!   so nothing stays cached for longer than the reconnect back-off without a listener.
//! - A message that does not parse (outside input gone wrong) flushes everything.
//! - A connection that stops answering is found by a keep-alive `PING` and replaced.
//!
//! The channel is `<prefix>:invalidation`, so deployments sharing one server under
//! different prefixes do not flush each other.

use crate::error::store_error;
use mcpsec_core::{FlushOnInvalidation, Invalidation, InvalidationBus, StoreError};
use redis::aio::ConnectionManager;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// How often an idle subscription is checked with `PING`.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(5);
/// How long a connect, subscribe or keep-alive `PING` may take before the connection is
/// given up and replaced.
pub const DEFAULT_SUBSCRIBER_TIMEOUT: Duration = Duration::from_secs(2);
/// The first wait before reconnecting; doubles up to [`DEFAULT_RECONNECT_MAX`].
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(50);
/// The longest wait between reconnection attempts (each of which flushes everything).
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(2);

/// The pub/sub channel of a deployment's key prefix.
pub(crate) fn channel(prefix: &str) -> String {
    format!("{prefix}:invalidation")
}

/// Announces [`Invalidation`]s to every instance subscribed under the same prefix (this
/// one included, through its own [`InvalidationSubscriber`]).
///
/// Caches given as `local` (see [`RedisStores::invalidation_bus`](crate::RedisStores::invalidation_bus))
/// are flushed directly before the message is published, so this instance forgets at once
/// even when Redis cannot be reached.
#[derive(Clone)]
pub struct RedisInvalidationBus {
    connection: ConnectionManager,
    channel: Arc<str>,
    local: Vec<Arc<dyn FlushOnInvalidation>>,
}

impl std::fmt::Debug for RedisInvalidationBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisInvalidationBus")
            .field("channel", &self.channel)
            .field("local_caches", &self.local.len())
            .finish_non_exhaustive()
    }
}

impl RedisInvalidationBus {
    pub(crate) fn new(
        connection: ConnectionManager,
        prefix: &str,
        local: Vec<Arc<dyn FlushOnInvalidation>>,
    ) -> Self {
        Self {
            connection,
            channel: Arc::from(channel(prefix)),
            local,
        }
    }
}

#[async_trait::async_trait]
impl InvalidationBus for RedisInvalidationBus {
    async fn announce(&self, what: &Invalidation) -> Result<(), StoreError> {
        for cache in &self.local {
            cache.flush(what);
        }
        let mut connection = self.connection.clone();
        let _receivers: i64 = redis::cmd("PUBLISH")
            .arg(&*self.channel)
            .arg(what.encode())
            .query_async(&mut connection)
            .await
            .map_err(|e| store_error("publish an invalidation", e))?;
        Ok(())
    }
}

/// Timing of an [`InvalidationSubscriber`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberConfig {
    /// How often an idle subscription is checked with `PING`.
    pub keepalive: Duration,
    /// How long a connect, subscribe or `PING` may take.
    pub timeout: Duration,
    /// The first wait before reconnecting.
    pub reconnect_min: Duration,
    /// The longest wait between reconnection attempts.
    pub reconnect_max: Duration,
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        Self {
            keepalive: DEFAULT_KEEPALIVE,
            timeout: DEFAULT_SUBSCRIBER_TIMEOUT,
            reconnect_min: DEFAULT_RECONNECT_MIN,
            reconnect_max: DEFAULT_RECONNECT_MAX,
        }
    }
}

/// Counters of an [`InvalidationSubscriber`], for metrics and readiness checks.
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    unreadable: AtomicU64,
    full_flushes: AtomicU64,
}

/// What an [`InvalidationSubscriber`] has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SubscriberStats {
    /// Whether it is subscribed now.
    pub subscribed: bool,
    /// How many times it has subscribed (1 after the first connection; each reconnect adds
    /// one).
    pub subscriptions: u64,
    /// Announcements received and applied.
    pub received: u64,
    /// Messages that did not parse (each flushed everything).
    pub unreadable: u64,
    /// Times it flushed everything (subscriptions, failed reconnects, unreadable messages).
    pub full_flushes: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Link {
    subscribed: bool,
    subscriptions: u64,
}

/// A background task on the current tokio runtime that listens on the deployment's
/// channel and flushes `caches` for every announcement. Dropping it stops the task.
#[derive(Debug)]
pub struct InvalidationSubscriber {
    task: tokio::task::JoinHandle<()>,
    link: watch::Receiver<Link>,
    counters: Arc<Counters>,
}

impl Drop for InvalidationSubscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl InvalidationSubscriber {
    /// Starts listening on `client`'s server under `prefix` (the same prefix the bus was
    /// given), flushing `caches`.
    ///
    /// # Errors
    /// [`Rejected`](mcpsec_core::StoreErrorKind::Rejected) when called outside a tokio
    /// runtime. Connection problems are not errors here: the task keeps reconnecting
    /// (flushing everything on each attempt); [`subscribed`](Self::subscribed) waits for it.
    pub fn spawn(
        client: redis::Client,
        prefix: &str,
        caches: Vec<Arc<dyn FlushOnInvalidation>>,
        config: SubscriberConfig,
    ) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::rejected("the invalidation subscriber needs a tokio runtime")
        })?;
        let (tell, link) = watch::channel(Link::default());
        let counters = Arc::new(Counters::default());
        let listener = Listener {
            client,
            channel: channel(prefix),
            caches,
            config,
            tell,
            counters: Arc::clone(&counters),
        };
        let task = runtime.spawn(listener.run());
        Ok(Self {
            task,
            link,
            counters,
        })
    }

    /// Waits until the subscriber has subscribed more than `after` times in all (pass
    /// [`stats`](Self::stats)`().subscriptions` to wait for the next reconnection, 0 for
    /// the first subscription) and is subscribed.
    ///
    /// # Errors
    /// [`Unavailable`](mcpsec_core::StoreErrorKind::Unavailable) if the task has stopped.
    pub async fn subscribed_after(&self, after: u64) -> Result<(), StoreError> {
        let mut link = self.link.clone();
        link.wait_for(|l| l.subscribed && l.subscriptions > after)
            .await
            .map(|_| ())
            .map_err(|_| StoreError::unavailable("the invalidation subscriber stopped"))
    }

    /// Waits for the first subscription (see [`subscribed_after`](Self::subscribed_after)).
    ///
    /// # Errors
    /// As [`subscribed_after`](Self::subscribed_after).
    pub async fn subscribed(&self) -> Result<(), StoreError> {
        self.subscribed_after(0).await
    }

    /// What it has done so far.
    pub fn stats(&self) -> SubscriberStats {
        let link = *self.link.borrow();
        SubscriberStats {
            subscribed: link.subscribed,
            subscriptions: link.subscriptions,
            received: self.counters.received.load(Ordering::Relaxed),
            unreadable: self.counters.unreadable.load(Ordering::Relaxed),
            full_flushes: self.counters.full_flushes.load(Ordering::Relaxed),
        }
    }
}

/// The task's state.
struct Listener {
    client: redis::Client,
    channel: String,
    caches: Vec<Arc<dyn FlushOnInvalidation>>,
    config: SubscriberConfig,
    tell: watch::Sender<Link>,
    counters: Arc<Counters>,
}

impl Listener {
    async fn run(self) {
        let mut backoff = self.config.reconnect_min;
        loop {
            if self.listen().await {
                backoff = self.config.reconnect_min;
            }
            self.tell.send_modify(|l| l.subscribed = false);
            // Announcements may be published while nobody here listens.
            self.flush_everything();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.config.reconnect_max);
        }
    }

    /// One connection: subscribes, then applies messages until it fails. Returns whether
    /// it got as far as subscribing.
    async fn listen(&self) -> bool {
        let timeout = self.config.timeout;
        let pubsub = match tokio::time::timeout(timeout, self.client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(error)) => {
                tracing::warn!(target: "mcpsec::store_redis", %error, "invalidation subscriber cannot connect");
                return false;
            }
            Err(_) => {
                tracing::warn!(target: "mcpsec::store_redis", "invalidation subscriber connect timed out");
                return false;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        match tokio::time::timeout(timeout, sink.subscribe(&self.channel)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(target: "mcpsec::store_redis", %error, "invalidation subscribe failed");
                return false;
            }
            Err(_) => return false,
        }
        // Whatever was announced before this point was not heard here.
        self.flush_everything();
        self.tell.send_modify(|l| {
            l.subscribed = true;
            l.subscriptions += 1;
        });
        let mut keepalive = tokio::time::interval(self.config.keepalive);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.tick().await; // the first tick is immediate
        loop {
            tokio::select! {
                message = poll_fn(|cx| futures_core::Stream::poll_next(std::pin::Pin::new(&mut stream), cx)) => {
                    let Some(message) = message else {
                        tracing::warn!(target: "mcpsec::store_redis", "invalidation subscription closed");
                        return true;
                    };
                    self.apply(message.get_payload_bytes());
                }
                _ = keepalive.tick() => {
                    let ping = sink.ping::<redis::Value>();
                    if !matches!(tokio::time::timeout(timeout, ping).await, Ok(Ok(_))) {
                        tracing::warn!(target: "mcpsec::store_redis", "invalidation subscription stopped answering");
                        return true;
                    }
                }
            }
        }
    }

    fn apply(&self, payload: &[u8]) {
        match Invalidation::parse(payload) {
            Ok(what) => {
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                for cache in &self.caches {
                    cache.flush(&what);
                }
            }
            Err(error) => {
                // The message itself is not logged: it is outside input.
                tracing::warn!(target: "mcpsec::store_redis", %error, "unreadable invalidation; flushing everything");
                self.counters.unreadable.fetch_add(1, Ordering::Relaxed);
                self.flush_everything();
            }
        }
    }

    fn flush_everything(&self) {
        self.counters.full_flushes.fetch_add(1, Ordering::Relaxed);
        for cache in &self.caches {
            cache.flush(&Invalidation::Everything);
        }
    }
}
