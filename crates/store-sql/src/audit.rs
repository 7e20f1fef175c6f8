//! [`ChainStorage`] on SQL (table `audit_records`): one hash chain per writing instance.
//!
//! [`ChainSink`](mcpsec_audit::ChainSink) computes the chain (numbers, hashes, links,
//! checkpoints); this storage keeps its records, one row per record keyed by
//! `(instance, seq)`. Every instance of a fleet writes its own chain into the shared
//! table: appends of different instances touch different keys and never wait for each
//! other (on PostgreSQL; SQLite has one writer at a time anyway), and each chain verifies
//! on its own ([`SqlChainStorage::export_jsonl`] then [`mcpsec_audit::verify_bytes`]).

use crate::error::store_error;
use mcpsec_audit::record::Entry;
use mcpsec_audit::{
    AppendError, Batch, ChainStorage, ChainSync, CheckpointPublicKey, Digest, Error, Finding,
    Reason, Record, StoredHead,
};
use mcpsec_core::{ServiceId, StoreError};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::runtime::{Handle, RuntimeFlavor};

/// [`ChainStorage`] on SQLite or PostgreSQL for one instance's chain (table
/// `audit_records`, rows keyed by `(instance, seq)`).
///
/// - **Open** ([`SqlChainStorage::open`], async) reads the chain from its last signed
///   record (checkpoint or unverified-tail seal) to its head and checks it as
///   [`LogFile::open_checked`](mcpsec_audit::LogFile::open_checked) checks a file:
///   hashes, numbers, links, and the signed record's signature with the writer's keys.
///   A chain without any signed record is checked from its first record.
/// - **Append** is one write transaction per batch (all of it or none of it); a second
///   writer of the same instance's chain hits the primary key and its batch is refused
///   whole ([`Conflict`](mcpsec_core::StoreErrorKind::Conflict)). A committed transaction
///   is durable, so [`ChainStorage::syncer`] does nothing.
/// - The sink calls it synchronously from its writer thread; each call runs on the tokio
///   runtime it was opened on (`Handle::block_on`, inside `block_in_place` when called
///   from one of that runtime's workers). It needs a **multi-thread** runtime: opened on
///   a current-thread one, it refuses with [`Error::Config`].
/// - No retention yet: [`ChainStorage::prune`] keeps its default refusal.
pub struct SqlChainStorage<DB: sqlx::Database> {
    pool: sqlx::Pool<DB>,
    instance: ServiceId,
    runtime: Handle,
    opened: StoredHead,
    last_seq: u64,
    faults: Option<Arc<AtomicBool>>,
}

impl<DB: sqlx::Database> std::fmt::Debug for SqlChainStorage<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlChainStorage")
            .field("backend", &DB::NAME)
            .field("instance", &self.instance)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

impl<DB: sqlx::Database> SqlChainStorage<DB> {
    /// The instance whose chain this storage writes.
    pub fn instance(&self) -> &ServiceId {
        &self.instance
    }

    /// Test hook: while `faults` is on, an append stores half its batch and then fails,
    /// so the rollback is what keeps the chain whole.
    #[doc(hidden)]
    pub fn with_append_faults(mut self, faults: Option<Arc<AtomicBool>>) -> Self {
        self.faults = faults;
        self
    }
}

/// The chain from its last signed record (by the `signed` flag) to its head, in one
/// statement (one snapshot). A flag that lies only makes the read start elsewhere: the
/// check below goes by the records themselves and fails closed.
const TAIL: &str = "
    SELECT seq, line FROM audit_records
    WHERE instance = $1
      AND seq >= COALESCE(
          (SELECT MAX(seq) FROM audit_records WHERE instance = $1 AND signed), 1)
    ORDER BY seq";

/// Rows per `INSERT` (4 parameters each: far below SQLite's and PostgreSQL's limits).
const INSERT_CHUNK: usize = 256;

fn store(what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |e| Error::Store(store_error(what, e))
}

/// A finding about the stored record numbered `seq` (its `line` is that number: in a
/// chain that was never pruned, the record's position in the chain).
fn tampered(seq: u64, reason: Reason, detail: &'static str) -> Error {
    Error::Tampered(Finding {
        line: seq,
        reason,
        detail,
    })
}

fn signed_by(record: &Record) -> Option<mcpsec_audit::record::KeyFingerprint> {
    match &record.entry {
        Entry::Checkpoint(cp) => Some(cp.key),
        Entry::Unverified(seal) => Some(seal.key),
        _ => None,
    }
}

/// Checks `rows` (the chain from its last signed record to its head, as read by [`TAIL`])
/// and says where the chain stands.
fn check_tail(
    instance: &ServiceId,
    keys: &[CheckpointPublicKey],
    rows: Vec<(i64, String)>,
) -> Result<StoredHead, Error> {
    let mut records: Vec<Record> = Vec::with_capacity(rows.len());
    for (seq, line) in rows {
        let seq =
            u64::try_from(seq).map_err(|_| tampered(0, Reason::Malformed, "a negative number"))?;
        let record = Record::parse(line.as_bytes())?;
        if record.seq != seq || &record.instance != instance {
            return Err(tampered(
                seq,
                Reason::Modified,
                "a record stored under another instance or number",
            ));
        }
        if record.compute_hash() != record.hash {
            return Err(tampered(
                seq,
                Reason::Modified,
                "the contents do not match the record's hash",
            ));
        }
        if matches!(record.entry, Entry::Prune(_)) {
            return Err(tampered(
                seq,
                Reason::Inserted,
                "a prune record in a storage that does not prune",
            ));
        }
        if let Some(older) = records.last() {
            if older.seq.checked_add(1) != Some(record.seq) {
                return Err(tampered(
                    seq,
                    Reason::Deleted,
                    "the sequence numbers do not follow on",
                ));
            }
            if record.prev != older.hash {
                return Err(tampered(
                    older.seq,
                    Reason::Modified,
                    "the next record does not link to this one",
                ));
            }
        }
        records.push(record);
    }
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Ok(StoredHead::EMPTY);
    };
    let anchor = records.iter().rposition(|r| signed_by(r).is_some());
    let first_unsigned = match anchor.and_then(|i| records.get(i)) {
        Some(signed) => {
            if let Some(fingerprint) = signed_by(signed)
                && !keys.is_empty()
            {
                match keys.iter().find(|k| k.fingerprint() == fingerprint) {
                    None => {
                        return Err(tampered(
                            signed.seq,
                            Reason::BadSignature,
                            "signed with a checkpoint key other than the configured one (after a rotation, configure the previous public key too)",
                        ));
                    }
                    Some(key) if !key.verifies(signed) => {
                        return Err(tampered(
                            signed.seq,
                            Reason::BadSignature,
                            "the signature does not verify",
                        ));
                    }
                    Some(_) => {}
                }
            }
            anchor.and_then(|i| records.get(i + 1)).map(|r| r.seq)
        }
        None => {
            // Nothing signed: the whole chain was read, and must start at its start.
            if first.seq != 1 || first.prev != Digest::GENESIS {
                return Err(tampered(
                    first.seq,
                    Reason::Deleted,
                    "the chain does not start at its first record",
                ));
            }
            Some(first.seq)
        }
    };
    Ok(StoredHead {
        last_seq: last.seq,
        head: last.hash,
        unsigned_tail: first_unsigned.map(|from| (from, last.seq)),
    })
}

/// Runs `future` to completion on `runtime` from synchronous code: the sink's writer
/// thread (no runtime there), or a worker of a multi-thread runtime (the sink's start
/// seals an unsigned tail from the caller's thread), through `block_in_place`.
fn block_on<F: Future>(runtime: &Handle, future: F) -> Result<F::Output, Error> {
    match Handle::try_current() {
        Err(_) => Ok(runtime.block_on(future)),
        Ok(current) if current.runtime_flavor() == RuntimeFlavor::MultiThread => {
            Ok(tokio::task::block_in_place(|| runtime.block_on(future)))
        }
        Ok(_) => Err(Error::Config(
            "the SQL chain storage was called from a current-thread runtime; it needs a multi-thread runtime",
        )),
    }
}

/// The batch as rows `(seq, signed, line)`: its lines split and matched with its records.
fn rows_of<'a>(batch: &Batch<'a>) -> Result<Vec<(i64, bool, &'a str)>, Error> {
    let lines = batch
        .lines
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty());
    let mut rows = Vec::with_capacity(batch.records.len());
    let mut records = batch.records.iter();
    for line in lines {
        let record = records
            .next()
            .ok_or(Error::InvalidRecord("a batch with more lines than records"))?;
        let line = std::str::from_utf8(line)
            .map_err(|_| Error::InvalidRecord("a line that is not UTF-8"))?;
        let seq = i64::try_from(record.seq)
            .map_err(|_| Error::InvalidRecord("a sequence number the table cannot hold"))?;
        rows.push((seq, signed_by(record).is_some(), line));
    }
    if records.next().is_some() {
        return Err(Error::InvalidRecord(
            "a batch with fewer lines than records",
        ));
    }
    Ok(rows)
}

/// How an append transaction failed.
enum Failure {
    /// Before `COMMIT`: rolled back, nothing stored.
    RolledBack(Error),
    /// At `COMMIT`: the outcome is unknown until the table is read.
    Commit(Error),
}

/// Appends are durable once their transaction commits.
#[derive(Debug)]
struct Committed;

impl ChainSync for Committed {
    fn sync(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

macro_rules! impl_chain_storage {
    ($db:ty, $begin:expr, $for_update:literal) => {
        impl SqlChainStorage<$db> {
            /// Opens `instance`'s chain in the database behind `pool` (migrated), checking
            /// it from its last signed record to its head with `keys` (the writer's
            /// checkpoint public key, and during a rotation the previous one; a signed
            /// record naming any other key is refused as [`Reason::BadSignature`]). Empty
            /// `keys` checks hashes, numbers and links but no signature (a writer without
            /// checkpoints). A bad record is [`Error::Tampered`], whose `line` is the
            /// record's sequence number.
            ///
            /// Call it on a multi-thread tokio runtime: later calls run there.
            pub async fn open(
                pool: sqlx::Pool<$db>,
                instance: ServiceId,
                keys: &[CheckpointPublicKey],
            ) -> Result<Self, Error> {
                Self::open_mirrored(pool, instance, keys, None).await
            }

            /// [`open`](Self::open), also holding the chain to `mirrored`, the last record
            /// the checkpoint mirror has for `instance` (used when it is that instance's
            /// and verifies with `keys`), as
            /// [`LogFile::open_mirrored`](mcpsec_audit::LogFile::open_mirrored) does: a
            /// chain that ends before it is [`Reason::Truncated`], one that holds another
            /// record at its number is [`Reason::Modified`].
            pub async fn open_mirrored(
                pool: sqlx::Pool<$db>,
                instance: ServiceId,
                keys: &[CheckpointPublicKey],
                mirrored: Option<&Record>,
            ) -> Result<Self, Error> {
                let runtime = Handle::try_current()
                    .ok()
                    .filter(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
                    .ok_or(Error::Config(
                        "the SQL chain storage must be opened on a multi-thread tokio runtime",
                    ))?;
                let rows: Vec<(i64, String)> = sqlx::query_as(TAIL)
                    .bind(instance.as_str())
                    .fetch_all(&pool)
                    .await
                    .map_err(store("read the audit chain's tail"))?;
                let opened = check_tail(&instance, keys, rows)?;
                let mirrored = mirrored
                    .filter(|m| m.instance == instance && m.compute_hash() == m.hash)
                    .filter(|m| keys.is_empty() || keys.iter().any(|k| k.verifies(m)));
                if let Some(mirrored) = mirrored {
                    if mirrored.seq > opened.last_seq {
                        return Err(tampered(
                            opened.last_seq.saturating_add(1),
                            Reason::Truncated,
                            "the chain ends before a mirrored checkpoint",
                        ));
                    }
                    let seq = i64::try_from(mirrored.seq).map_err(|_| {
                        tampered(mirrored.seq, Reason::Malformed, "a number out of range")
                    })?;
                    let line: Option<String> = sqlx::query_scalar(
                        "SELECT line FROM audit_records WHERE instance = $1 AND seq = $2",
                    )
                    .bind(instance.as_str())
                    .bind(seq)
                    .fetch_optional(&pool)
                    .await
                    .map_err(store("read the mirrored audit record"))?;
                    let stored = line.map(|l| Record::parse(l.as_bytes())).transpose()?;
                    let Some(stored) = stored else {
                        return Err(tampered(
                            mirrored.seq,
                            Reason::Deleted,
                            "the mirrored checkpoint's record is missing",
                        ));
                    };
                    if stored.hash != mirrored.hash || stored.compute_hash() != stored.hash {
                        return Err(tampered(
                            mirrored.seq,
                            Reason::Modified,
                            "differs from the mirrored checkpoint",
                        ));
                    }
                }
                Ok(Self {
                    pool,
                    instance,
                    runtime,
                    last_seq: opened.last_seq,
                    opened,
                    faults: None,
                })
            }

            /// `instance`'s whole chain as JSON lines, in order: the input of
            /// [`mcpsec_audit::verify_bytes`] and of the exporters. Each instance's chain
            /// verifies on its own.
            pub async fn export_jsonl(
                pool: &sqlx::Pool<$db>,
                instance: &ServiceId,
            ) -> Result<Vec<u8>, Error> {
                let lines: Vec<String> = sqlx::query_scalar(
                    "SELECT line FROM audit_records WHERE instance = $1 ORDER BY seq",
                )
                .bind(instance.as_str())
                .fetch_all(pool)
                .await
                .map_err(store("read an audit chain"))?;
                let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
                for line in lines {
                    out.extend_from_slice(line.as_bytes());
                    out.push(b'\n');
                }
                Ok(out)
            }

            /// One append transaction.
            async fn insert(&self, rows: &[(i64, bool, &str)], fault: bool) -> Result<(), Failure> {
                // One write transaction (PostgreSQL: READ COMMITTED; SQLite: IMMEDIATE,
                // i.e. serialized): every row or none. Rows are keyed by (instance, seq),
                // so a second writer of this chain fails on the primary key (Conflict)
                // and rolls back whole, while other instances' chains are other keys.
                let mut tx = self
                    .pool
                    .begin_with($begin)
                    .await
                    .map_err(store("begin an audit append"))
                    .map_err(Failure::RolledBack)?;
                let keep = if fault { rows.len() / 2 } else { rows.len() };
                // Multi-row INSERTs of INSERT_CHUNK rows: a group commit of thousands of
                // records costs a few round trips, not one per record.
                for chunk in rows.get(..keep).unwrap_or_default().chunks(INSERT_CHUNK) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO audit_records (instance, seq, signed, line) ",
                    );
                    insert.push_values(chunk, |mut row, &(seq, signed, line)| {
                        row.push_bind(self.instance.as_str())
                            .push_bind(seq)
                            .push_bind(signed)
                            .push_bind(line);
                    });
                    insert
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(store("append audit records"))
                        .map_err(Failure::RolledBack)?;
                }
                if fault {
                    // Dropping the transaction rolls it back.
                    drop(tx);
                    return Err(Failure::RolledBack(Error::Store(StoreError::unavailable(
                        "injected: the audit table refused the batch",
                    ))));
                }
                tx.commit()
                    .await
                    .map_err(store("commit an audit append"))
                    .map_err(Failure::Commit)
            }

            /// The stored line numbered `seq` of this chain.
            async fn stored_line(&self, seq: i64) -> Result<Option<String>, Error> {
                sqlx::query_scalar(
                    "SELECT line FROM audit_records WHERE instance = $1 AND seq = $2",
                )
                .bind(self.instance.as_str())
                .bind(seq)
                .fetch_optional(&self.pool)
                .await
                .map_err(store("read an audit record"))
            }
        }

        impl ChainStorage for SqlChainStorage<$db> {
            fn opened_head(&self) -> StoredHead {
                self.opened
            }

            fn append_batch(&mut self, batch: Batch<'_>) -> Result<(), AppendError> {
                let rows = rows_of(&batch).map_err(AppendError::Refused)?;
                let Some(&(last_seq, _, last_line)) = rows.last() else {
                    return Ok(());
                };
                let fault = self
                    .faults
                    .as_ref()
                    .is_some_and(|f| f.load(Ordering::SeqCst));
                let outcome = block_on(&self.runtime, self.insert(&rows, fault))
                    .map_err(AppendError::Refused)?;
                match outcome {
                    Ok(()) => {}
                    Err(Failure::RolledBack(e)) => return Err(AppendError::Refused(e)),
                    Err(Failure::Commit(e)) => {
                        // A COMMIT that failed may still have happened (a connection lost
                        // while it ran): the batch's last row says which. Stored: the
                        // batch is (it was one transaction); absent or another writer's:
                        // none of it is; unreadable: the chain's end is unknown.
                        match block_on(&self.runtime, self.stored_line(last_seq)) {
                            Ok(Ok(Some(line))) if line == last_line => {}
                            Ok(Ok(_)) => return Err(AppendError::Refused(e)),
                            Ok(Err(_)) | Err(_) => return Err(AppendError::Broken(e)),
                        }
                    }
                }
                self.last_seq = u64::try_from(last_seq).unwrap_or(self.last_seq);
                Ok(())
            }

            fn syncer(&self) -> Result<Box<dyn ChainSync>, Error> {
                Ok(Box::new(Committed))
            }

            /// The sequence number of the last record stored through this storage (or
            /// found on open).
            fn position(&self) -> u64 {
                self.last_seq
            }
        }
    };
}

for_each_backend!(impl_chain_storage);
