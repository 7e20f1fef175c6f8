//! The JSON-lines file sink: a bounded queue, one writer thread, group commit.
//!
//! Callers hand events to a bounded queue and return at once (ordinary events) or once
//! the batch holding their event is synced to disk (critical events). The writer thread
//! takes everything queued (up to `max_batch`), chains it and writes it with one `write`;
//! a second thread calls `fdatasync` for everything written so far — so a thousand
//! concurrent critical events cost one sync, not a thousand, and chaining the next batch
//! overlaps the sync of the last one. When the queue is full, callers wait for room
//! (back-pressure): nothing is dropped while the disk takes writes.
//!
//! If a write fails (a full disk, an I/O error), the half-written batch is cut off, the
//! chain is rewound to before it, its critical callers get an error, and its ordinary
//! events — already acknowledged — are counted in [`ChainSink::lost_events`] (and logged
//! at error level with the `tracing` feature); the sink keeps going, and the first batch
//! written after the failure starts with a `sys_monitor_disabled` record, so the gap is on
//! record. A failed sync (after which the kernel may have dropped the written pages), a
//! failed undo, or a panic of either thread or of the host's [`CheckpointSink`] stops the
//! sink for good: it refuses everything from then on, every caller still waiting for
//! durability gets an error, and queued ordinary events are counted as lost.
//!
//! Which events wait for the disk: those whose severity is critical **or** whose kind is
//! critical by default ([`EventKind::default_severity`](mcpsec_core::EventKind::default_severity)),
//! so an emitter cannot skip the sync by lowering an admin action's severity.

use crate::Error;
use crate::chain::{Chain, ChainConfig};
use crate::checkpoint::{CheckpointPublicKey, CheckpointSink};
use crate::file_storage::{FileStorage, WriteFaults};
use crate::record::{Record, check_time};
use crate::retention::{PruneOutcome, RetentionPolicy};
use crate::storage::{AppendError, Batch, ChainStorage, ChainSync};
use mcpsec_core::{Actor, EventKind, EventSink, Outcome, SecurityEvent, Severity, SharedClock};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// How the file sink runs.
#[derive(Debug, Clone)]
pub struct FileSinkConfig {
    /// The chain: instance, pseudonyms, checkpoints.
    pub chain: ChainConfig,
    /// Where time comes from (record times, checkpoint schedule).
    pub clock: SharedClock,
    /// Events that may wait in memory; callers wait when it is full. Default 32,768
    /// (a few MiB).
    pub queue_capacity: usize,
    /// Most events chained and written as one batch. Default 8192.
    pub max_batch: usize,
    /// A second place for checkpoints.
    pub mirror: Option<Arc<dyn CheckpointSink>>,
    /// Test hook: after this many successful syncs the writer stops as if the process had
    /// been killed between `write` and `fdatasync` of the next batch.
    #[doc(hidden)]
    pub simulate_crash_after_syncs: Option<u64>,
    /// Test hook: while switched on, the writer's writes fail as on a full disk.
    #[doc(hidden)]
    pub write_faults: Option<Arc<WriteFaults>>,
}

impl FileSinkConfig {
    /// Defaults for `chain` with `clock`.
    pub fn new(chain: ChainConfig, clock: SharedClock) -> FileSinkConfig {
        FileSinkConfig {
            chain,
            clock,
            queue_capacity: 32_768,
            max_batch: 8192,
            mirror: None,
            simulate_crash_after_syncs: None,
            write_faults: None,
        }
    }

    /// Sets the queue capacity (at least 1).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Sets the largest batch (at least 1).
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max;
        self
    }

    /// Mirrors checkpoints to `mirror`.
    pub fn mirror(mut self, mirror: Arc<dyn CheckpointSink>) -> Self {
        self.mirror = Some(mirror);
        self
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Synced {
    /// Every ticket up to this one is durable, except those in [`Shared::lost_tickets`].
    through: u64,
    /// The writer stopped; tickets after `through` will never be durable.
    failed: bool,
    /// Bumped when a batch is lost, to wake its critical callers.
    losses: u64,
}

/// Most lost-ticket ranges remembered (a waiter is woken as soon as its range is added,
/// so only waiters this far behind could miss theirs).
const LOST_RANGES: usize = 1024;

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<(u64, SecurityEvent)>,
    last_ticket: u64,
    closing: bool,
    failed: bool,
    /// A prune for the writer to run between two batches.
    prune: Option<PruneJob>,
}

#[derive(Debug)]
struct PruneJob {
    policy: RetentionPolicy,
    reply: tokio::sync::oneshot::Sender<Result<PruneOutcome, Error>>,
}

#[derive(Debug)]
struct Shared {
    room: Semaphore,
    queue: Mutex<Queue>,
    wake: Condvar,
    synced: watch::Sender<Synced>,
    durable_len: AtomicU64,
    mirror_failures: AtomicU64,
    lost_events: AtomicU64,
    write_failures: AtomicU64,
    /// Ticket ranges of batches whose write failed: never durable.
    lost_tickets: Mutex<VecDeque<(u64, u64)>>,
    /// Ordinary (already acknowledged) events of the batch the writer holds.
    in_flight: AtomicU64,
    /// A thread panicked (the writer, the syncer, or the mirror on the syncer).
    panicked: AtomicBool,
    to_sync: Mutex<ToSync>,
    sync_wake: Condvar,
}

/// Written but not yet synced: the syncer takes all of it at once.
#[derive(Debug, Default)]
struct ToSync {
    /// The last ticket written, when any event was.
    through: Option<u64>,
    /// The log's length after the last write.
    len: u64,
    /// Checkpoints written, to mirror once synced.
    checkpoints: Vec<Record>,
    /// Something was written since the last take.
    pending: bool,
    /// The writer has finished: sync what is pending and stop.
    done: bool,
    /// A prune replaced the storage's file: sync with this from now on.
    file: Option<Box<dyn ChainSync>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_sync(&self) -> MutexGuard<'_, ToSync> {
        self.to_sync.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops everything: refuses new events, fails waiting critical callers, counts the
    /// acknowledged ordinary events that will now never be written, and lets the syncer
    /// finish what was written.
    fn fail(&self) {
        let mut queue = self.lock();
        queue.failed = true;
        let queued = queue
            .items
            .drain(..)
            .filter(|(_, event)| !durable_before_ack(event))
            .count() as u64;
        drop(queue);
        self.count_lost(queued);
        self.wake.notify_all();
        self.room.close();
        self.synced.send_modify(|s| s.failed = true);
        self.lock_sync().done = true;
        self.sync_wake.notify_all();
    }

    /// Counts (and logs) acknowledged events that will never be written.
    fn count_lost(&self, lost: u64) {
        if lost > 0 {
            self.lost_events.fetch_add(lost, Ordering::SeqCst);
            #[cfg(feature = "tracing")]
            tracing::error!(
                target: "mcpsec_audit",
                lost,
                "audit writer failed: acknowledged events were not written"
            );
        }
    }

    /// The writer lost the batch it held (a failed write, a panic).
    fn lose_in_flight(&self) {
        self.count_lost(self.in_flight.swap(0, Ordering::SeqCst));
    }

    /// Whether `ticket` was in a batch that was never written.
    fn is_lost(&self, ticket: u64) -> bool {
        self.lost_tickets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|&(from, to)| (from..=to).contains(&ticket))
    }

    /// A batch's write failed and was undone: its tickets will never be durable.
    fn lose_batch(&self, tickets: Option<(u64, u64)>) {
        self.lose_in_flight();
        if let Some(range) = tickets {
            let mut lost = self
                .lost_tickets
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if lost.len() >= LOST_RANGES {
                lost.pop_front();
            }
            lost.push_back(range);
        }
        self.synced
            .send_modify(|s| s.losses = s.losses.wrapping_add(1));
    }
}

/// Calls [`Shared::fail`] when a thread unwinds, so no caller waits forever on a thread
/// that is gone. The flag says whether it guards the writer (whose batch is then lost).
struct FailOnPanic(Arc<Shared>, bool);

impl Drop for FailOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.panicked.store(true, Ordering::SeqCst);
            if self.1 {
                self.0.lose_in_flight();
            }
            self.0.fail();
        }
    }
}

/// Whether `event` is acknowledged only once on disk: critical severity, or a kind that
/// is critical by default (a lowered severity does not skip the sync).
pub(crate) fn durable_before_ack(event: &SecurityEvent) -> bool {
    event.is_critical() || event.kind.default_severity() == Severity::Critical
}

/// The hash-chained log over a [`ChainStorage`]: the chain is computed here, for every
/// backend; the storage only keeps the records. Implements [`EventSink`].
#[derive(Debug)]
pub struct ChainSink {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    torn_bytes: u64,
    unverified_tail: Option<(u64, u64)>,
}

/// The chained log over the JSON-lines file ([`FileSink::open`]).
pub type FileSink = ChainSink;

impl ChainSink {
    /// Opens (or creates, with mode 0600 on Unix) the log at `path`, recovers a torn
    /// tail, resumes the chain of `config.chain.instance` and starts the writer thread.
    ///
    /// With a checkpoint key, the log's last checkpoint (and its prune records) must be
    /// signed with that key or one of [`ChainConfig::previous_keys`]: a log signed with
    /// another key is refused ([`Error::Tampered`], `bad signature`), not adopted.
    pub fn open(path: &Path, config: FileSinkConfig) -> Result<ChainSink, Error> {
        check_config(&config)?;
        let accepted: Vec<CheckpointPublicKey> = config.chain.accepted_keys();
        let mut mirror_failures = 0u64;
        let mirrored = match &config.mirror {
            // A mirror that cannot be read back tells nothing: the tail is sealed anyway.
            Some(mirror) => mirror.latest(&config.chain.instance).unwrap_or_else(|_| {
                mirror_failures += 1;
                None
            }),
            None => None,
        };
        let storage =
            FileStorage::open(path, &config.chain.instance, &accepted, mirrored.as_ref())?
                .with_write_faults(config.write_faults.clone());
        let torn_bytes = storage.torn_bytes();
        ChainSink::start(Box::new(storage), config, mirror_failures, torn_bytes)
    }

    /// Starts the chained log over another backend (a SQL table, [`MemoryChainStorage`](crate::MemoryChainStorage)
    /// in tests), resuming `config.chain.instance`'s chain at the storage's head and
    /// sealing an unsigned tail there, exactly as [`ChainSink::open`] does for the file.
    /// Checking the storage against the checkpoint mirror is the backend's open's job.
    pub fn with_storage(
        storage: Box<dyn ChainStorage>,
        config: FileSinkConfig,
    ) -> Result<ChainSink, Error> {
        check_config(&config)?;
        ChainSink::start(storage, config, 0, 0)
    }

    fn start(
        mut storage: Box<dyn ChainStorage>,
        config: FileSinkConfig,
        mut mirror_failures: u64,
        torn_bytes: u64,
    ) -> Result<ChainSink, Error> {
        let opened = storage.opened_head();
        let mut chain = Chain::resume(config.chain.clone(), opened.last_seq, opened.head);
        let mut file = storage.syncer()?;
        let unverified_tail = seal_unsigned_tail(
            opened.unsigned_tail,
            &mut *storage,
            &mut *file,
            &mut chain,
            &config,
        )?;
        if let Some(seal) = &unverified_tail
            && let Some(mirror) = &config.mirror
            && mirror.publish(seal).is_err()
        {
            mirror_failures += 1;
        }
        let (synced, _) = watch::channel(Synced::default());
        let shared = Arc::new(Shared {
            room: Semaphore::new(config.queue_capacity),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            synced,
            durable_len: AtomicU64::new(storage.position()),
            mirror_failures: AtomicU64::new(mirror_failures),
            lost_events: AtomicU64::new(0),
            write_failures: AtomicU64::new(0),
            lost_tickets: Mutex::new(VecDeque::new()),
            in_flight: AtomicU64::new(0),
            panicked: AtomicBool::new(false),
            to_sync: Mutex::new(ToSync::default()),
            sync_wake: Condvar::new(),
        });
        let syncer = Syncer {
            shared: Arc::clone(&shared),
            file,
            mirror: config.mirror.clone(),
            crash_after: config.simulate_crash_after_syncs,
        };
        let sync_handle = std::thread::Builder::new()
            .name("mcpsec-audit-sync".into())
            .spawn(move || syncer.run())
            .map_err(Error::io("starting the audit sync thread"))?;
        let writer = Writer {
            shared: Arc::clone(&shared),
            storage,
            chain,
            batch_records: Vec::new(),
            config,
            syncer: Some(sync_handle),
            gap: false,
        };
        let handle = std::thread::Builder::new()
            .name("mcpsec-audit-writer".into())
            .spawn(move || writer.run())
            .map_err(Error::io("starting the audit writer thread"))?;
        Ok(ChainSink {
            shared,
            writer: Mutex::new(Some(handle)),
            torn_bytes,
            unverified_tail: opened.unsigned_tail.filter(|_| unverified_tail.is_some()),
        })
    }

    /// The records (`from`, `to`) of this instance's chain that the log held after its
    /// last signed record when it was opened — what a crash leaves, and what someone able
    /// to write the file could have rewritten — and that were sealed off with a signed
    /// unverified-tail record instead of being adopted. `None` when there were none (or no
    /// checkpoint key is configured: then nothing is signed). Alert on it.
    pub fn unverified_tail(&self) -> Option<(u64, u64)> {
        self.unverified_tail
    }

    /// Bytes of a torn last line cut off when the log was opened.
    pub fn torn_bytes(&self) -> u64 {
        self.torn_bytes
    }

    /// Length of the log known to be on disk.
    pub fn durable_len(&self) -> u64 {
        self.shared.durable_len.load(Ordering::SeqCst)
    }

    /// Checkpoints that could not be mirrored.
    pub fn mirror_failures(&self) -> u64 {
        self.shared.mirror_failures.load(Ordering::SeqCst)
    }

    /// Ordinary events that were acknowledged (queued) but never written because the
    /// writer failed first. Non-zero means a gap the log cannot show: alert on it.
    pub fn lost_events(&self) -> u64 {
        self.shared.lost_events.load(Ordering::SeqCst)
    }

    /// Batches whose write failed (a full disk, an I/O error).
    pub fn write_failures(&self) -> u64 {
        self.shared.write_failures.load(Ordering::SeqCst)
    }

    /// Queues `event`; returns once queued, or — for events with critical severity or of a
    /// kind critical by default — once durable.
    pub async fn append(&self, event: SecurityEvent) -> Result<(), Error> {
        check_time(event.time)?;
        let critical = durable_before_ack(&event);
        let permit = self
            .shared
            .room
            .acquire()
            .await
            .map_err(|_| Error::Unavailable("closed"))?;
        let ticket = {
            let mut queue = self.shared.lock();
            if queue.closing || queue.failed {
                return Err(Error::Unavailable(if queue.failed {
                    "the writer failed"
                } else {
                    "closed"
                }));
            }
            // The writer gives the room back once the event is written.
            permit.forget();
            queue.last_ticket += 1;
            let ticket = queue.last_ticket;
            let was_empty = queue.items.is_empty();
            queue.items.push_back((ticket, event));
            // The writer only sleeps on an empty queue: wake it only then.
            (ticket, was_empty)
        };
        let (ticket, was_empty) = ticket;
        if was_empty {
            self.shared.wake.notify_one();
        }
        if critical {
            self.wait_durable(ticket).await
        } else {
            Ok(())
        }
    }

    async fn wait_durable(&self, ticket: u64) -> Result<(), Error> {
        let shared = &self.shared;
        let mut rx = shared.synced.subscribe();
        let state = *rx
            .wait_for(|s| s.through >= ticket || s.failed || shared.is_lost(ticket))
            .await
            .map_err(|_| Error::Unavailable("the writer stopped"))?;
        // Checked first: a later batch may be durable while this one was lost.
        if shared.is_lost(ticket) {
            return Err(Error::Unavailable(
                "the log could not be written: the event was lost",
            ));
        }
        if state.through >= ticket {
            Ok(())
        } else {
            Err(Error::Unavailable(
                "the writer failed before the event was durable",
            ))
        }
    }

    /// Waits until every event queued so far is durable or was lost to a failed write
    /// (counted in [`ChainSink::lost_events`]); an error when the last of them was lost
    /// or the writer stopped.
    pub async fn flush(&self) -> Result<(), Error> {
        let ticket = self.shared.lock().last_ticket;
        self.wait_durable(ticket).await
    }

    /// Prunes the log while the sink runs: the writer finishes the batch it holds, syncs,
    /// and rewrites the file with `policy` as [`prune_file`](crate::prune_file) does
    /// (verified with the chain's checkpoint key, streamed, renamed over the log), then
    /// goes on appending to the pruned file; events arriving meanwhile wait in the queue.
    /// Needs the checkpoint key ([`Error::Config`] without one); [`Error::InUse`] while
    /// another prune of this sink is running. A failed prune leaves the log as it was.
    pub async fn prune(&self, policy: &RetentionPolicy) -> Result<PruneOutcome, Error> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        {
            let mut queue = self.shared.lock();
            if queue.closing || queue.failed {
                return Err(Error::Unavailable("closed"));
            }
            if queue.prune.is_some() {
                return Err(Error::InUse);
            }
            queue.prune = Some(PruneJob {
                policy: policy.clone(),
                reply,
            });
        }
        self.shared.wake.notify_all();
        answer
            .await
            .map_err(|_| Error::Unavailable("the writer stopped"))?
    }

    /// Writes what is queued, a final checkpoint (when configured), syncs and stops the
    /// writer. Blocks the calling thread until done (milliseconds: one batch and one
    /// sync); later appends fail. Dropping the sink closes it the same way.
    pub fn close(&self) -> Result<(), Error> {
        self.shared.lock().closing = true;
        self.shared.wake.notify_all();
        self.shared.room.close();
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            handle
                .join()
                .map_err(|_| Error::Unavailable("the writer thread panicked"))?;
        }
        if self.shared.panicked.load(Ordering::SeqCst) {
            return Err(Error::Unavailable("an audit thread panicked"));
        }
        if self.shared.lock().failed {
            return Err(Error::Unavailable("the writer failed"));
        }
        Ok(())
    }
}

impl Drop for ChainSink {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[async_trait::async_trait]
impl EventSink for ChainSink {
    async fn record(&self, event: SecurityEvent) -> Result<(), mcpsec_core::Error> {
        self.append(event).await.map_err(Into::into)
    }
}

fn check_config(config: &FileSinkConfig) -> Result<(), Error> {
    if config.queue_capacity == 0 || config.queue_capacity > Semaphore::MAX_PERMITS {
        return Err(Error::Config("queue capacity out of range"));
    }
    if config.max_batch == 0 {
        return Err(Error::Config("max batch must be at least 1"));
    }
    Ok(())
}

struct Writer {
    shared: Arc<Shared>,
    storage: Box<dyn ChainStorage>,
    chain: Chain,
    /// The batch's records, handed to the storage beside their lines.
    batch_records: Vec<Record>,
    config: FileSinkConfig,
    syncer: Option<JoinHandle<()>>,
    /// A batch was lost since the last successful write: the next one starts with a
    /// `sys_monitor_disabled` record.
    gap: bool,
}

impl Writer {
    fn run(mut self) {
        let _guard = FailOnPanic(Arc::clone(&self.shared), true);
        let mut batch = Vec::with_capacity(self.config.max_batch);
        let mut buf = Vec::with_capacity(self.config.max_batch * 480);
        // With time-based checkpoints, an idle writer wakes up now and then to write one
        // when it is due (the clock decides; this only sets how often it is asked).
        let tick = self.config.chain.checkpoints.as_ref().map(|(_, policy)| {
            policy
                .every
                .clamp(Duration::from_millis(10), Duration::from_secs(1))
        });
        loop {
            let state = {
                let mut queue = self.shared.lock();
                while queue.items.is_empty()
                    && queue.prune.is_none()
                    && !queue.closing
                    && !queue.failed
                {
                    match tick {
                        None => {
                            queue = self
                                .shared
                                .wake
                                .wait(queue)
                                .unwrap_or_else(PoisonError::into_inner);
                        }
                        Some(tick) => {
                            let (q, waited) = self
                                .shared
                                .wake
                                .wait_timeout(queue, tick)
                                .unwrap_or_else(PoisonError::into_inner);
                            queue = q;
                            if waited.timed_out() {
                                // An empty batch: write_batch adds a checkpoint if due.
                                break;
                            }
                        }
                    }
                }
                let n = queue.items.len().min(self.config.max_batch);
                batch.extend(queue.items.drain(..n));
                let ordinary = batch.iter().filter(|(_, e)| !durable_before_ack(e)).count();
                self.shared
                    .in_flight
                    .store(ordinary as u64, Ordering::SeqCst);
                (
                    queue.closing && queue.items.is_empty(),
                    queue.failed,
                    queue.prune.take(),
                )
            };
            let (closing, failed, prune) = state;
            if failed {
                break;
            }
            if !self.write_batch(&mut batch, &mut buf, closing) {
                self.shared.lose_in_flight();
                self.shared.fail();
                break;
            }
            self.shared.in_flight.store(0, Ordering::SeqCst);
            if let Some(job) = prune {
                let outcome = self.prune(&job.policy);
                // The caller may have stopped waiting: the prune stands either way.
                let _ = job.reply.send(outcome);
            }
            if closing {
                break;
            }
        }
        // Let the syncer finish what was written, then stop it.
        self.shared.lock_sync().done = true;
        self.shared.sync_wake.notify_all();
        if let Some(handle) = self.syncer.take()
            && handle.join().is_err()
        {
            self.shared.panicked.store(true, Ordering::SeqCst);
            self.shared.fail();
        }
    }

    /// Chains and writes one batch (plus a checkpoint when due), then hands it to the
    /// syncer. The room goes back as soon as the batch left our memory.
    fn write_batch(
        &mut self,
        batch: &mut Vec<(u64, SecurityEvent)>,
        buf: &mut Vec<u8>,
        final_: bool,
    ) -> bool {
        buf.clear();
        self.batch_records.clear();
        let count = batch.len();
        let tickets = batch.first().zip(batch.last()).map(|(a, b)| (a.0, b.0));
        let mut through = None;
        let mut checkpoints = Vec::new();
        let mark = self.chain.mark();
        let now = self.config.clock.now();
        if self.gap {
            let Ok(record) = self.chain.append(self.gap_event(now), now) else {
                return false;
            };
            if write_line(buf, &record).is_err() {
                return false;
            }
            self.batch_records.push(record);
        }
        for (ticket, event) in batch.drain(..) {
            let Ok(record) = self.chain.append(event, now) else {
                return false;
            };
            if write_line(buf, &record).is_err() {
                return false;
            }
            self.batch_records.push(record);
            through = Some(ticket);
        }
        if final_ || self.chain.checkpoint_due(now) {
            match self.chain.checkpoint(now) {
                Ok(Some(cp)) => {
                    if write_line(buf, &cp).is_err() {
                        return false;
                    }
                    self.batch_records.push(cp.clone());
                    checkpoints.push(cp);
                }
                Ok(None) => {}
                Err(_) => return false,
            }
        }
        if buf.is_empty() {
            return true;
        }
        let written = self.storage.append_batch(Batch {
            records: &self.batch_records,
            lines: buf,
        });
        // The records are stored (or lost): hold no events in memory until the next batch.
        self.batch_records.clear();
        if let Err(error) = written {
            self.shared.write_failures.fetch_add(1, Ordering::SeqCst);
            // The storage could not undo a partial write: its end is unknown and nothing
            // more may be chained onto it.
            if let AppendError::Broken(_) = error {
                return false;
            }
            self.chain.rewind(mark);
            self.shared.lose_batch(tickets);
            self.shared.room.add_permits(count);
            self.gap = true;
            #[cfg(feature = "tracing")]
            tracing::error!(
                target: "mcpsec_audit",
                events = count,
                "audit log write failed: the batch was lost; the sink goes on"
            );
            // On close there is no next batch to recover with: report the failure.
            return !final_;
        }
        self.gap = false;
        self.shared.room.add_permits(count);
        let mut to_sync = self.shared.lock_sync();
        if through.is_some() {
            to_sync.through = through;
        }
        to_sync.len = self.storage.position();
        to_sync.checkpoints.extend(checkpoints);
        to_sync.pending = true;
        drop(to_sync);
        self.shared.sync_wake.notify_one();
        true
    }
}

impl Writer {
    /// Runs a prune of the log (see [`ChainSink::prune`]).
    fn prune(&mut self, policy: &RetentionPolicy) -> Result<PruneOutcome, Error> {
        let Some((key, _)) = &self.config.chain.checkpoints else {
            return Err(Error::Config("pruning needs the checkpoint key"));
        };
        let (handle, outcome) = self.storage.prune(policy, key, self.config.clock.now())?;
        self.shared
            .durable_len
            .store(self.storage.position(), Ordering::SeqCst);
        self.shared.lock_sync().file = Some(handle);
        Ok(outcome)
    }

    /// The record that opens the first batch written after a lost one.
    fn gap_event(&self, now: std::time::SystemTime) -> SecurityEvent {
        SecurityEvent::new(EventKind::SysMonitorDisabled, Outcome::Failure, now)
            .with_actor(Actor::Service {
                service: self.config.chain.instance.clone(),
            })
            .with_severity(Severity::Critical)
    }
}

/// Syncs what the writer wrote, mirrors checkpoints, then acknowledges critical callers.
struct Syncer {
    shared: Arc<Shared>,
    file: Box<dyn ChainSync>,
    mirror: Option<Arc<dyn CheckpointSink>>,
    crash_after: Option<u64>,
}

impl Syncer {
    fn run(mut self) {
        let _guard = FailOnPanic(Arc::clone(&self.shared), false);
        let mut syncs = 0u64;
        loop {
            let work = {
                let mut to_sync = self.shared.lock_sync();
                while !to_sync.pending && !to_sync.done {
                    to_sync = self
                        .shared
                        .sync_wake
                        .wait(to_sync)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if !to_sync.pending {
                    return;
                }
                to_sync.pending = false;
                if let Some(file) = to_sync.file.take() {
                    // Everything written to the old file was synced before the prune.
                    self.file = file;
                }
                (
                    to_sync.through,
                    to_sync.len,
                    std::mem::take(&mut to_sync.checkpoints),
                )
            };
            let (through, len, checkpoints) = work;
            // Test hook: the process dies between the write and the sync.
            if self.crash_after == Some(syncs) || self.file.sync().is_err() {
                self.shared.fail();
                return;
            }
            syncs += 1;
            self.shared.durable_len.store(len, Ordering::SeqCst);
            // Mirror before acknowledging: a caller who saw its critical event acknowledged
            // knows any checkpoint covering it has also been handed to the mirror.
            if let Some(mirror) = &self.mirror {
                for cp in &checkpoints {
                    if mirror.publish(cp).is_err() {
                        self.shared.mirror_failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            if let Some(ticket) = through {
                self.shared
                    .synced
                    .send_modify(|s| s.through = s.through.max(ticket));
            }
        }
    }
}

/// Writes and syncs a signed unverified-tail record after the chain's unsigned tail, if
/// the reopened storage has one and a key is configured: the tail is then on record as
/// not vouched for, and the next checkpoint cannot pass it off as signed. Returns the
/// record.
fn seal_unsigned_tail(
    unsigned_tail: Option<(u64, u64)>,
    storage: &mut dyn ChainStorage,
    syncer: &mut dyn ChainSync,
    chain: &mut Chain,
    config: &FileSinkConfig,
) -> Result<Option<Record>, Error> {
    let Some((from, _to)) = unsigned_tail else {
        return Ok(None);
    };
    let Some(seal) = chain.seal_unverified(from, config.clock.now())? else {
        return Ok(None);
    };
    let mut buf = Vec::new();
    write_line(&mut buf, &seal)?;
    let records = [seal];
    storage
        .append_batch(Batch {
            records: &records,
            lines: &buf,
        })
        .map_err(|e| match e {
            AppendError::Refused(e) | AppendError::Broken(e) => e,
        })?;
    syncer.sync()?;
    #[cfg(feature = "tracing")]
    tracing::warn!(
        target: "mcpsec_audit",
        from,
        to = _to,
        "audit log reopened with records after its last checkpoint: sealed off as unverified"
    );
    let [seal] = records;
    Ok(Some(seal))
}

fn write_line(buf: &mut Vec<u8>, record: &Record) -> Result<(), Error> {
    record.write_json(buf)?;
    buf.push(b'\n');
    Ok(())
}
