//! Retention: remove records older than their event class's retention period, leaving a
//! log that still verifies.
//!
//! Removing records from the middle of a chain breaks the links, so each maximal run of
//! removed records `from..=to` is replaced by a statement "records `from..=to` were
//! pruned, and the next record continues from `hash`" (the hash of record `to`). The
//! statements go into prune records at the start of the new file, signed with the
//! checkpoint key so that a forger cannot use one to hide a deletion. A later prune
//! merges the earlier statements with the new removals.
//!
//! Pruning rewrites the file (a new file, locked from the start, synced, then renamed over
//! the old one) under the log's exclusive writer lock. It streams: the log is read three
//! times (verify, plan the runs, copy what is kept), and memory holds only the pruned
//! runs, never the file. A live [`FileSink`](crate::FileSink) prunes its own log with
//! [`FileSink::prune`](crate::FileSink::prune) between two batches; [`prune_file`]
//! refuses ([`Error::InUse`]) a log another writer holds. Checkpoint records are kept.

use crate::Error;
use crate::checkpoint::CheckpointKey;
use crate::log::{open_locked, sync_parent};
use crate::record::{Entry, MAX_RUNS_PER_PRUNE, PrunedRun, Record};
use crate::verify::{VerifyOptions, record_lines, verify_reader};
use mcpsec_core::{Clock, EventKind, ServiceId};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A class of events with one retention period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EventClass {
    /// `authn_*`: logins, tokens, second factors.
    Authentication,
    /// `authz_*`, `privilege_*`, `malicious_*`: decisions and permission changes.
    Authorization,
    /// `session_*`.
    Session,
    /// `sensitive_*`: access to secrets and sensitive data.
    Sensitive,
    /// `sys_*`, `excess_*`, `input_*`: the service itself.
    System,
    /// `user_*`: account lifecycle.
    User,
    /// `mcp_*`: MCP tools and configuration.
    Mcp,
}

impl EventClass {
    /// The class of `kind`, by its name's prefix.
    pub fn of(kind: EventKind) -> EventClass {
        let name = kind.as_str();
        let prefixed = |p: &str| name.starts_with(p);
        if prefixed("authn_") {
            EventClass::Authentication
        } else if prefixed("authz_") || prefixed("privilege_") || prefixed("malicious_") {
            EventClass::Authorization
        } else if prefixed("session_") {
            EventClass::Session
        } else if prefixed("sensitive_") {
            EventClass::Sensitive
        } else if prefixed("user_") {
            EventClass::User
        } else if prefixed("mcp_") {
            EventClass::Mcp
        } else {
            EventClass::System
        }
    }
}

/// How long each class is kept. Classes without an entry are kept forever.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    keep: BTreeMap<EventClass, Duration>,
}

impl RetentionPolicy {
    /// Keep everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep `class` for `period` after the record was written.
    pub fn keep(mut self, class: EventClass, period: Duration) -> Self {
        self.keep.insert(class, period);
        self
    }

    /// Whether `record` has outlived its class at `now`.
    pub fn expired(&self, record: &Record, now: SystemTime) -> bool {
        let Some(event) = record.event() else {
            return false;
        };
        let Some(period) = self.keep.get(&EventClass::of(event.kind)) else {
            return false;
        };
        now.duration_since(record.time)
            .is_ok_and(|age| age > *period)
    }
}

/// What a prune did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneOutcome {
    /// Records removed.
    pub removed: u64,
    /// Records kept (prune records excluded).
    pub kept: u64,
}

/// Prunes the log at `path`: takes the log's exclusive writer lock (a live
/// [`FileSink`](crate::FileSink) or `audit append` holding it: [`Error::InUse`], nothing
/// done; a live sink prunes with [`FileSink::prune`](crate::FileSink::prune)), verifies
/// the file with `key`'s public half (so a prune never launders a tampered log), and
/// rewrites it atomically: a temporary file with the original's permissions, synced,
/// renamed over the original (removed again on any error). Streams the file.
pub fn prune_file(
    path: &Path,
    policy: &RetentionPolicy,
    key: &CheckpointKey,
    clock: &dyn Clock,
) -> Result<PruneOutcome, Error> {
    let (mut file, _) = open_locked(path, false)?;
    let len = file
        .metadata()
        .map_err(Error::io("reading the audit log"))?
        .len();
    let pruned = prune_locked(&mut file, len, path, policy, key, clock.now())?;
    // The lock on the old file is released here; writers opening the new file lock it
    // (this one holds that lock until it is dropped below).
    drop(file);
    sync_parent(path)?;
    Ok(pruned.outcome)
}

/// What [`prune_locked`] made.
pub(crate) struct Pruned {
    /// The new log, which `path` now names, holding the writer's lock, opened for reading
    /// and appending.
    pub(crate) file: File,
    /// Its length.
    pub(crate) len: u64,
    /// What was removed.
    pub(crate) outcome: PruneOutcome,
}

/// Prunes the first `len` bytes of `file`, the log at `path` whose writer's lock the
/// caller holds, into a new file renamed over `path`. The caller syncs the directory
/// (and, once this returns, must write only to the new file).
pub(crate) fn prune_locked(
    file: &mut File,
    len: u64,
    path: &Path,
    policy: &RetentionPolicy,
    key: &CheckpointKey,
    now: SystemTime,
) -> Result<Pruned, Error> {
    let permissions = file
        .metadata()
        .map_err(Error::io("reading the audit log"))?
        .permissions();
    // A live log's last records are not checkpointed yet: they are kept as they are.
    let options = VerifyOptions::with_keys(vec![*key.public_key()]).allow_unsigned_tail();
    // Verification bounds every line by the cap and rejects a torn tail, so each line
    // read below parses.
    verify_reader(read_from_start(file, len)?, &options)?;
    let mut plan = Plan::default();
    for (_, record) in record_lines(read_from_start(file, len)?) {
        plan.add(&record?, policy, now);
    }
    let outcome = plan.outcome;
    let prune_records = plan.finish(key, now)?;
    let tmp = path.with_extension("prune-tmp");
    let written = write_pruned(&tmp, &prune_records, file, len, policy, now, &permissions)
        .and_then(|(new, new_len)| {
            std::fs::rename(&tmp, path).map_err(Error::io("replacing the audit log"))?;
            Ok((new, new_len))
        });
    match written {
        Ok((file, len)) => Ok(Pruned { file, len, outcome }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn read_from_start(file: &File, len: u64) -> Result<BufReader<std::io::Take<&File>>, Error> {
    let mut handle = file;
    handle
        .seek(SeekFrom::Start(0))
        .map_err(Error::io("reading the audit log"))?;
    Ok(BufReader::with_capacity(256 * 1024, handle.take(len)))
}

/// The runs a streaming prune will state, per instance in order of first appearance.
#[derive(Default)]
struct Plan {
    runs: HashMap<ServiceId, Vec<PrunedRun>>,
    order: Vec<ServiceId>,
    outcome: PruneOutcome,
}

impl Plan {
    /// Takes in one record (in file order: a chain's records come in sequence order, after
    /// its prune records).
    fn add(&mut self, record: &Record, policy: &RetentionPolicy, now: SystemTime) {
        if !self.runs.contains_key(&record.instance) {
            self.order.push(record.instance.clone());
        }
        let runs = self.runs.entry(record.instance.clone()).or_default();
        if let Entry::Prune(p) = &record.entry {
            runs.extend(p.runs.iter().copied());
        } else if policy.expired(record, now) {
            self.outcome.removed += 1;
            runs.push(PrunedRun {
                from: record.seq,
                to: record.seq,
                hash: record.hash,
            });
        } else {
            self.outcome.kept += 1;
        }
    }

    /// Merges adjacent runs (adjacent numbers: no kept record can lie between them) and
    /// signs them into prune records.
    fn finish(mut self, key: &CheckpointKey, now: SystemTime) -> Result<Vec<Record>, Error> {
        let mut out = Vec::new();
        for instance in self.order {
            let mut runs = self.runs.remove(&instance).unwrap_or_default();
            runs.sort_by_key(|run| run.from);
            let mut merged: Vec<PrunedRun> = Vec::with_capacity(runs.len());
            for run in runs {
                match merged.last_mut() {
                    Some(last) if last.to.checked_add(1) == Some(run.from) => {
                        last.to = run.to;
                        last.hash = run.hash;
                    }
                    _ => merged.push(run),
                }
            }
            for chunk in merged.chunks(MAX_RUNS_PER_PRUNE) {
                out.push(key.prune(&instance, chunk.to_vec(), now)?);
            }
        }
        Ok(out)
    }
}

/// Writes the new log to a fresh `tmp` with `permissions`, locked from the start (so no
/// other writer can take the file between the rename and our first append): the prune
/// records, then the records of `source[..len]` that are kept. Synced. Returns the file
/// and its length.
fn write_pruned(
    tmp: &Path,
    prune_records: &[Record],
    source: &File,
    len: u64,
    policy: &RetentionPolicy,
    now: SystemTime,
    permissions: &std::fs::Permissions,
) -> Result<(File, u64), Error> {
    match std::fs::remove_file(tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("removing a stale pruned log")(e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).append(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(permissions.mode() & 0o7777);
    }
    let file = options
        .open(tmp)
        .map_err(Error::io("creating the pruned log"))?;
    // The umask may have narrowed the mode: set it exactly.
    file.set_permissions(permissions.clone())
        .map_err(Error::io("creating the pruned log"))?;
    file.try_lock().map_err(|_| Error::InUse)?;
    let mut out = std::io::BufWriter::new(&file);
    let mut written = 0u64;
    let mut put = |out: &mut std::io::BufWriter<&File>, record: &Record| {
        let line = record.to_json()?;
        out.write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .map_err(Error::io("writing the pruned log"))?;
        written += line.len() as u64 + 1;
        Ok::<(), Error>(())
    };
    for record in prune_records {
        put(&mut out, record)?;
    }
    for (_, record) in record_lines(read_from_start(source, len)?) {
        let record = record?;
        if !matches!(record.entry, Entry::Prune(_)) && !policy.expired(&record, now) {
            put(&mut out, &record)?;
        }
    }
    out.flush().map_err(Error::io("writing the pruned log"))?;
    drop(out);
    file.sync_all()
        .map_err(Error::io("syncing the pruned log"))?;
    Ok((file, written))
}

/// Prunes records held in memory (in file order): returns the new log — prune records
/// first, then the kept records in their original order.
pub fn prune_records(
    records: Vec<Record>,
    policy: &RetentionPolicy,
    key: &CheckpointKey,
    now: SystemTime,
) -> Result<(Vec<Record>, PruneOutcome), Error> {
    // Per instance: earlier prune runs, newly removed records (as one-record runs) and
    // kept records (as barriers), merged in sequence order below.
    let mut items: HashMap<ServiceId, Vec<(u64, Option<PrunedRun>)>> = HashMap::new();
    let mut order: Vec<ServiceId> = Vec::new();
    let mut kept = Vec::new();
    let mut outcome = PruneOutcome::default();
    for record in records {
        if !items.contains_key(&record.instance) {
            order.push(record.instance.clone());
        }
        let list = items.entry(record.instance.clone()).or_default();
        if let Entry::Prune(p) = &record.entry {
            list.extend(p.runs.iter().map(|run| (run.from, Some(*run))));
        } else if policy.expired(&record, now) {
            outcome.removed += 1;
            let run = PrunedRun {
                from: record.seq,
                to: record.seq,
                hash: record.hash,
            };
            list.push((record.seq, Some(run)));
        } else {
            outcome.kept += 1;
            list.push((record.seq, None));
            kept.push(record);
        }
    }
    let mut out = Vec::new();
    for instance in order {
        let mut list = items.remove(&instance).unwrap_or_default();
        list.sort_by_key(|(seq, _)| *seq);
        let mut runs: Vec<PrunedRun> = Vec::new();
        let mut open = false;
        for (_, item) in list {
            match item {
                Some(run) => {
                    match runs.last_mut() {
                        Some(last) if open && last.to.checked_add(1) == Some(run.from) => {
                            last.to = run.to;
                            last.hash = run.hash;
                        }
                        _ => runs.push(run),
                    }
                    open = true;
                }
                // A kept record ends the current run.
                None => open = false,
            }
        }
        for chunk in runs.chunks(MAX_RUNS_PER_PRUNE) {
            out.push(key.prune(&instance, chunk.to_vec(), now)?);
        }
    }
    out.extend(kept);
    Ok((out, outcome))
}
