//! [`SlowHashPool`]: where Argon2id and bcrypt run, off the async executor and bounded.
//!
//! A slow hash takes tens of milliseconds of CPU. Run on an executor thread, one junk key
//! with a valid checksum (the CRC is public) stalls every task queued behind it; run
//! without a cap, a flood of them takes every core. So slow hashes go to
//! `tokio::task::spawn_blocking`, at most `workers` at a time, with at most `queue` more
//! waiting; anything beyond is refused at once with [`Error::Busy`], never left to wait.

use crate::format::ParsedKey;
use crate::{Error, HashCheck, HashMode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a refused caller is told to wait.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A bounded pool for slow hashes. Share one per process (across [`ApiKeys`](crate::ApiKeys)
/// instances) so the bound is a bound on the process.
#[derive(Debug)]
pub struct SlowHashPool {
    /// Running or waiting: `workers + queue` permits, taken without waiting.
    admitted: Arc<Semaphore>,
    /// Running: `workers` permits.
    running: Arc<Semaphore>,
    workers: usize,
    queue: usize,
    completed: Arc<AtomicU64>,
}

impl Default for SlowHashPool {
    /// One worker per available core (at least one), and a queue of four per worker.
    fn default() -> Self {
        let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self::with_limits(workers, workers.saturating_mul(4))
    }
}

impl SlowHashPool {
    /// A pool running at most `workers` hashes at once (at least 1) with at most `queue`
    /// more waiting.
    pub fn new(workers: usize, queue: usize) -> Result<Self, Error> {
        if workers == 0 {
            return Err(Error::Config(
                "the slow-hash pool needs at least one worker",
            ));
        }
        if workers.saturating_add(queue) > Semaphore::MAX_PERMITS {
            return Err(Error::Config("slow-hash pool limits too large"));
        }
        Ok(Self::with_limits(workers, queue))
    }

    fn with_limits(workers: usize, queue: usize) -> Self {
        Self {
            admitted: Arc::new(Semaphore::new(workers.saturating_add(queue))),
            running: Arc::new(Semaphore::new(workers)),
            workers,
            queue,
            completed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The most hashes running at once.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The most hashes waiting for a worker.
    pub fn queue(&self) -> usize {
        self.queue
    }

    /// How many calls are running or waiting right now.
    pub fn in_flight(&self) -> usize {
        self.workers
            .saturating_add(self.queue)
            .saturating_sub(self.admitted.available_permits())
    }

    /// How many jobs have run to completion since the pool was made (a metric: the slow
    /// hashes actually spent).
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Runs `work` on a blocking thread once a worker is free.
    ///
    /// Refused at once with [`Error::Busy`] when `workers` calls run and `queue` more
    /// wait. The permits travel with the work: a caller that stops waiting (a dropped
    /// request) frees its place only when its hash has finished, so the bound holds on
    /// CPU, not only on waiting callers. Needs a tokio runtime.
    pub async fn run<T, F>(&self, work: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let admitted = Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map_err(|_| Error::Busy {
                retry_after: BUSY_RETRY_AFTER,
            })?;
        let running = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| Error::Busy {
                retry_after: BUSY_RETRY_AFTER,
            })?;
        let completed = Arc::clone(&self.completed);
        tokio::task::spawn_blocking(move || {
            let out = work();
            completed.fetch_add(1, Ordering::Relaxed);
            drop(running);
            drop(admitted);
            out
        })
        .await
        .map_err(|_| Error::HashWorker)
    }
}

/// Where each hash of a service runs: HMAC inline (microseconds), everything slow on the
/// pool.
impl crate::ApiKeys {
    /// Checks `key` against `stored`, on the pool unless `stored` is an HMAC.
    pub(crate) async fn check_hash(
        &self,
        key: &Arc<ParsedKey>,
        stored: &str,
    ) -> Result<HashCheck, Error> {
        if !is_slow(stored) {
            return self.hasher.check(key, stored);
        }
        let (hasher, key, stored) = (Arc::clone(&self.hasher), Arc::clone(key), stored.to_owned());
        self.pool.run(move || hasher.check(&key, &stored)).await?
    }

    /// The stored-hash string for `key` under the current mode, on the pool in Argon2 mode.
    pub(crate) async fn new_hash(&self, key: &Arc<ParsedKey>) -> Result<String, Error> {
        if self.hasher.mode() == HashMode::HmacSha256 {
            return self.hasher.hash(key);
        }
        let (hasher, key) = (Arc::clone(&self.hasher), Arc::clone(key));
        self.pool.run(move || hasher.hash(&key)).await?
    }

    /// The comparison an unknown id gets, where a real one would run.
    pub(crate) async fn dummy_hash(&self, key: &Arc<ParsedKey>) -> Result<(), Error> {
        if !self.slow_mode() {
            self.hasher.dummy_check(key);
            return Ok(());
        }
        let (hasher, key) = (Arc::clone(&self.hasher), Arc::clone(key));
        self.pool.run(move || hasher.dummy_check(&key)).await
    }

    /// Whether new keys are stored under a slow hash (so unknown ids get a slow dummy).
    pub(crate) fn slow_mode(&self) -> bool {
        self.hasher.mode() != HashMode::HmacSha256
    }
}

/// Whether checking against `stored` takes a slow hash: anything but an HMAC (junk
/// included, which the pool refuses quickly).
pub(crate) fn is_slow(stored: &str) -> bool {
    !stored.starts_with("hmac-sha256$")
}
