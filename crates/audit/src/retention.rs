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
//! Pruning rewrites the file (a new file, synced, then renamed over the old one) under the
//! log's exclusive writer lock, so it refuses ([`Error::InUse`]) a log a
//! [`FileSink`](crate::FileSink) has open: run it after closing the sink, or on a rotated
//! file. Checkpoint records are kept.

use crate::Error;
use crate::checkpoint::CheckpointKey;
use crate::log::{open_locked, sync_parent};
use crate::record::{Entry, MAX_RUNS_PER_PRUNE, PrunedRun, Record};
use crate::verify::{VerifyOptions, verify_bytes};
use mcpsec_core::{Clock, EventKind, ServiceId};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
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
/// done), reads the file once, verifies exactly those bytes with `key`'s public half (so
/// a prune never launders a tampered log), and rewrites it atomically: a temporary file
/// with the original's permissions, synced, renamed over the original (removed again on
/// any error).
pub fn prune_file(
    path: &Path,
    policy: &RetentionPolicy,
    key: &CheckpointKey,
    clock: &dyn Clock,
) -> Result<PruneOutcome, Error> {
    let (mut file, _) = open_locked(path, false)?;
    let metadata = file
        .metadata()
        .map_err(Error::io("reading the audit log"))?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(Error::io("reading the audit log"))?;
    let options = VerifyOptions {
        keys: vec![*key.public_key()],
        mirrored: Vec::new(),
    };
    // Verification bounds every line by the cap and rejects a torn tail, so each line
    // below parses.
    verify_bytes(&bytes, &options)?;
    let mut records = Vec::new();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        records.push(Record::parse(line)?);
    }
    drop(bytes);
    let (kept, outcome) = prune_records(records, policy, key, clock.now())?;
    let tmp = path.with_extension("prune-tmp");
    let written = write_pruned(&tmp, &kept, &metadata.permissions())
        .and_then(|()| std::fs::rename(&tmp, path).map_err(Error::io("replacing the audit log")));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_parent(path)?;
    // The lock on the old file is released here; writers opening the new file lock it.
    drop(file);
    Ok(outcome)
}

/// Writes `records` to a fresh `tmp` with `permissions`, synced.
fn write_pruned(
    tmp: &Path,
    records: &[Record],
    permissions: &std::fs::Permissions,
) -> Result<(), Error> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(permissions.mode() & 0o7777);
    }
    let file = options
        .open(tmp)
        .map_err(Error::io("creating the pruned log"))?;
    // A stale temporary file keeps its old mode: set it again.
    file.set_permissions(permissions.clone())
        .map_err(Error::io("creating the pruned log"))?;
    let mut out = std::io::BufWriter::new(file);
    for record in records {
        out.write_all(record.to_json()?.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .map_err(Error::io("writing the pruned log"))?;
    }
    let file = out
        .into_inner()
        .map_err(|e| Error::io("writing the pruned log")(e.into_error()))?;
    file.sync_all().map_err(Error::io("syncing the pruned log"))
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
