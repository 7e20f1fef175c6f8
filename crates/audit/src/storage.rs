//! The storage seam of the chained log: where records go, not how they are made.
//!
//! [`ChainSink`](crate::ChainSink) computes the chain — sequence numbers, hashes, links,
//! pseudonyms, checkpoints and their schedule, the `sys_monitor_disabled` record after a
//! lost batch, the signed seal over an unverified tail found on open — once, for every
//! backend. A [`ChainStorage`] only keeps finished records: [`FileStorage`] (the JSON-lines
//! log), [`MemoryChainStorage`] (tests), and a SQL table (one row per record, a unique key
//! on `(instance, seq)`) with the stores.
//!
//! The sink calls a storage from its own writer thread, never from an async runtime's
//! worker, so a backend whose client is async runs each call with its runtime's
//! `Handle::block_on` there. The conformance suite every backend runs is
//! [`crate::testkit::chain_storage`] (feature `testkit`).

use crate::Error;
use crate::checkpoint::CheckpointKey;
use crate::record::{Digest, Entry, Record};
use crate::retention::{PruneOutcome, RetentionPolicy};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// Where an instance's chain stood in a storage when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredHead {
    /// The last sequence number of the instance's chain (0 for none).
    pub last_seq: u64,
    /// The hash of that record ([`Digest::GENESIS`] for none).
    pub head: Digest,
    /// The chain's records after its last signed record (checkpoint, prune or
    /// unverified-tail record), as `(from, to)`: nothing vouches for them, and the sink
    /// seals them off before appending (when it has a checkpoint key).
    pub unsigned_tail: Option<(u64, u64)>,
}

impl StoredHead {
    /// An empty chain.
    pub const EMPTY: StoredHead = StoredHead {
        last_seq: 0,
        head: Digest::GENESIS,
        unsigned_tail: None,
    };
}

/// One batch for [`ChainStorage::append_batch`]: records the sink has chained, in order,
/// and the same records as canonical JSON lines (each ending in `\n`), so a backend that
/// keeps lines does not encode them again.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// The records.
    pub records: &'a [Record],
    /// Their JSON lines, concatenated.
    pub lines: &'a [u8],
}

/// Why a batch was not stored.
#[derive(Debug)]
#[non_exhaustive]
pub enum AppendError {
    /// None of the batch is stored (a rolled-back transaction, a write cut back): the
    /// sink rewinds its chain, reports the batch as lost and goes on.
    Refused(Error),
    /// The storage may hold part of the batch (the undo failed too): nothing may be
    /// chained onto it any more, and the sink stops.
    Broken(Error),
}

/// Makes what a storage appended durable; the sink calls it from a second thread while
/// its writer goes on appending, so a thousand critical events cost one sync.
pub trait ChainSync: Send + std::fmt::Debug {
    /// Everything appended before this call is durable when it returns `Ok`. A backend
    /// whose appends are durable already (a committed SQL transaction) does nothing.
    fn sync(&mut self) -> Result<(), Error>;
}

/// Where a chained log keeps its records. Implement it for a new backend; the chain
/// itself is [`ChainSink`](crate::ChainSink)'s. A backend other than the file reports its
/// failures as [`Error::Store`] with a [`StoreError`](mcpsec_core::StoreError) kind (a
/// unique-key violation on `(instance, seq)` — a second writer — is `Conflict`).
pub trait ChainStorage: Send + std::fmt::Debug {
    /// Where the chain stood when this storage was opened. A backend that can be tampered
    /// with checks the records from the last signed one to the head (hashes, numbers,
    /// links, and the last signed record's signature with the writer's
    /// [`ChainConfig::accepted_keys`](crate::ChainConfig::accepted_keys), refusing one
    /// that names any other key) before answering, as
    /// [`LogFile::open_checked`](crate::LogFile::open_checked) does; the sink appends
    /// after this head.
    fn opened_head(&self) -> StoredHead;

    /// Appends `batch` after the last stored record: all of it or none of it. Not durable
    /// until a [`ChainSync`] from [`ChainStorage::syncer`] syncs (or at once, for a
    /// backend whose writes are durable).
    fn append_batch(&mut self, batch: Batch<'_>) -> Result<(), AppendError>;

    /// A handle that makes appends durable from another thread.
    fn syncer(&self) -> Result<Box<dyn ChainSync>, Error>;

    /// A position that grows with every append (the file's length in bytes), reported by
    /// [`ChainSink::durable_len`](crate::ChainSink::durable_len) once synced.
    fn position(&self) -> u64;

    /// Applies `policy` to the stored records (as [`prune_file`](crate::prune_file) does), after syncing
    /// what was appended; returns the syncer to use from now on. Backends that cannot
    /// prune refuse with [`Error::Config`], which is the default.
    fn prune(
        &mut self,
        policy: &RetentionPolicy,
        key: &CheckpointKey,
        now: SystemTime,
    ) -> Result<(Box<dyn ChainSync>, PruneOutcome), Error> {
        let _ = (policy, key, now);
        Err(Error::Config("this chain storage cannot prune"))
    }
}

/// Keeps one instance's chain in memory; clones share it, so a test can reopen the same
/// storage or read what a sink stored. Its head is taken from the records as they are
/// (memory cannot be edited behind the sink's back, so nothing is re-verified). [`MemoryChainStorage::refuse_appends`] makes appends fail
/// (storing nothing), as a full disk would.
#[derive(Debug, Clone, Default)]
pub struct MemoryChainStorage {
    inner: Arc<Mutex<Memory>>,
}

#[derive(Debug, Default)]
struct Memory {
    records: Vec<Record>,
    refuse: bool,
}

impl MemoryChainStorage {
    /// An empty storage.
    pub fn new() -> MemoryChainStorage {
        MemoryChainStorage::default()
    }

    /// Every stored record, in order.
    pub fn records(&self) -> Vec<Record> {
        self.lock().records.clone()
    }

    /// The records as JSON lines: what the file backend would hold.
    pub fn to_jsonl(&self) -> Result<String, Error> {
        let mut out = String::new();
        for record in &self.lock().records {
            out.push_str(&record.to_json()?);
            out.push('\n');
        }
        Ok(out)
    }

    /// While `refuse` is true, appends fail and store nothing.
    pub fn refuse_appends(&self, refuse: bool) {
        self.lock().refuse = refuse;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // A panic while holding the lock cannot leave a Vec half-pushed; keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ChainStorage for MemoryChainStorage {
    fn opened_head(&self) -> StoredHead {
        let records = &self.lock().records;
        let Some(last) = records.last() else {
            return StoredHead::EMPTY;
        };
        let signed = records.iter().rposition(|r| {
            matches!(
                r.entry,
                Entry::Checkpoint(_) | Entry::Prune(_) | Entry::Unverified(_)
            )
        });
        let first_unsigned = match signed.and_then(|i| records.get(i + 1)) {
            Some(record) => Some(record.seq),
            None if signed.is_none() => records.first().map(|r| r.seq),
            None => None,
        };
        StoredHead {
            last_seq: last.seq,
            head: last.hash,
            unsigned_tail: first_unsigned.map(|from| (from, last.seq)),
        }
    }

    fn append_batch(&mut self, batch: Batch<'_>) -> Result<(), AppendError> {
        let mut memory = self.lock();
        if memory.refuse {
            return Err(AppendError::Refused(Error::io("writing the audit log")(
                std::io::Error::new(std::io::ErrorKind::StorageFull, "memory storage refused"),
            )));
        }
        memory.records.extend_from_slice(batch.records);
        Ok(())
    }

    fn syncer(&self) -> Result<Box<dyn ChainSync>, Error> {
        Ok(Box::new(NoSync))
    }

    fn position(&self) -> u64 {
        self.lock().records.len() as u64
    }
}

/// Appends are durable when they return.
#[derive(Debug)]
struct NoSync;

impl ChainSync for NoSync {
    fn sync(&mut self) -> Result<(), Error> {
        Ok(())
    }
}
