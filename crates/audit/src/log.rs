//! The log file itself: opening with torn-tail recovery, finding the head, appending.
//!
//! Used by the [`FileSink`](crate::FileSink) writer thread and by `mcpsec audit append`.
//! One writer per file, enforced with an exclusive lock: the file names one instance's
//! chain.

use crate::Error;
use crate::checkpoint::CheckpointPublicKey;
use crate::record::{Digest, Entry, KeyFingerprint, MAX_LINE, PrunedRun, Record};
use crate::verify::{Finding, Reason, record_lines};
use mcpsec_core::ServiceId;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// An open log, positioned at its end.
#[derive(Debug)]
pub struct LogFile {
    file: File,
    path: PathBuf,
    len: u64,
}

/// What [`LogFile::open`] found.
#[derive(Debug)]
pub struct Opened {
    /// The log, ready to append.
    pub log: LogFile,
    /// The last sequence number of the instance's chain (0 for none).
    pub last_seq: u64,
    /// The hash of that record ([`Digest::GENESIS`] for none).
    pub head: Digest,
    /// Bytes of a torn tail that were cut off (0 when the file ended cleanly): an
    /// incomplete last line, and complete lines after the last record that are not records
    /// (a torn page: garbage ending in a newline).
    pub torn_bytes: u64,
    /// The chain's records after its last signed record (checkpoint or unverified-tail
    /// record), as `(from, to)`: nothing vouches for them. `None` when the head is signed
    /// or the chain is empty.
    pub unsigned_tail: Option<(u64, u64)>,
}

impl LogFile {
    /// Opens or creates the log at `path`, takes the writer's lock, cuts off a torn last
    /// line (a write a crash interrupted: it was never acknowledged as durable, since
    /// acknowledgement waits for the newline to be synced), finds the head of `instance`'s
    /// chain and checks the chain from its last checkpoint to the head (see
    /// [`LogFile::open_checked`]; this form checks hashes and links, not signatures).
    pub fn open(path: &Path, instance: &ServiceId) -> Result<Opened, Error> {
        LogFile::open_checked(path, instance, &[])
    }

    /// [`LogFile::open`], checking the signature of the chain's last checkpoint (or
    /// unverified-tail record) and of its prune records with `keys`: the writer's key,
    /// and during a rotation the previous public key. When `keys` is not empty, a signed
    /// record naming a key outside `keys`, or whose signature does not verify, is
    /// [`Reason::BadSignature`]: a log signed by someone else is refused, never adopted
    /// with the check skipped. Empty `keys` checks no signature (a writer without
    /// checkpoints).
    ///
    /// The lock is an exclusive advisory lock (`flock`) held as long as the `LogFile`
    /// lives: a second writer — another [`FileSink`](crate::FileSink), `mcpsec audit
    /// append`, [`prune_file`](crate::prune_file) — gets [`Error::InUse`] instead of
    /// cutting the first one's half-written batch as a "torn tail". Readers take no lock.
    ///
    /// Before anything is appended, the instance's records from its last checkpoint (or
    /// prune record, or the start of its chain) to the head are checked: hashes, sequence
    /// numbers, links. A tampered record there is [`Error::Tampered`] — appending would
    /// otherwise chain onto it and the next checkpoint would sign it.
    pub fn open_checked(
        path: &Path,
        instance: &ServiceId,
        keys: &[CheckpointPublicKey],
    ) -> Result<Opened, Error> {
        LogFile::open_mirrored(path, instance, keys, None)
    }

    /// [`LogFile::open_checked`], also holding the log to the last record its mirror has
    /// for `instance` (`mirrored`, when it is that instance's and verifies with `keys`):
    /// a log that ends before it is [`Reason::Truncated`], one that holds a different
    /// record at its sequence number is [`Reason::Modified`].
    pub fn open_mirrored(
        path: &Path,
        instance: &ServiceId,
        keys: &[CheckpointPublicKey],
        mirrored: Option<&Record>,
    ) -> Result<Opened, Error> {
        let mirrored = mirrored
            .filter(|m| &m.instance == instance && m.compute_hash() == m.hash)
            .filter(|m| keys.is_empty() || keys.iter().any(|k| k.verifies(m)))
            .map(|m| (m.seq, m.hash));
        let (mut file, existed) = open_locked(path, true)?;
        if !existed {
            sync_parent(path)?;
        }
        let mut len = file
            .metadata()
            .map_err(Error::io("reading the audit log"))?
            .len();
        let clean_end = last_newline_end(&mut file, len)?;
        let clean_end = last_record_end(&mut file, clean_end)?;
        let torn_bytes = len - clean_end;
        if torn_bytes > 0 {
            file.set_len(clean_end)
                .and_then(|()| file.sync_data())
                .map_err(Error::io("cutting the torn tail of the audit log"))?;
            len = clean_end;
        }
        let found = check_head(&mut file, len, instance, keys, mirrored)?;
        Ok(Opened {
            log: LogFile {
                file,
                path: path.to_owned(),
                len,
            },
            last_seq: found.last_seq,
            head: found.head,
            torn_bytes,
            unsigned_tail: found.unsigned_tail,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Current length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `bytes` (whole lines) at the end. Not durable until [`LogFile::sync`].
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.file
            .write_all(bytes)
            .map_err(Error::io("writing the audit log"))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Makes everything written so far durable (`fdatasync`).
    pub fn sync(&mut self) -> Result<(), Error> {
        self.file
            .sync_data()
            .map_err(Error::io("syncing the audit log"))
    }

    /// A second handle on the file, for syncing from another thread (`fdatasync` on it
    /// covers every write made through this one before the call).
    pub fn sync_handle(&self) -> Result<File, Error> {
        self.file
            .try_clone()
            .map_err(Error::io("opening the audit log for syncing"))
    }

    /// Prunes the log in place (see [`crate::retention`]): everything written is synced
    /// first, then the pruned copy replaces the file and this handle moves to it, keeping
    /// the writer's lock throughout. Returns the new file's sync handle and what was
    /// pruned.
    pub(crate) fn prune(
        &mut self,
        policy: &crate::RetentionPolicy,
        key: &crate::CheckpointKey,
        now: std::time::SystemTime,
    ) -> Result<(File, crate::PruneOutcome), Error> {
        self.sync()?;
        let pruned =
            crate::retention::prune_locked(&mut self.file, self.len, &self.path, policy, key, now)?;
        // From here the path names the new file: switch to it whatever happens next.
        let handle = pruned.file.try_clone();
        self.file = pruned.file;
        self.len = pruned.len;
        sync_parent(&self.path)?;
        let handle = handle.map_err(Error::io("opening the audit log for syncing"))?;
        Ok((handle, pruned.outcome))
    }

    /// Cuts the log back to `len` bytes and syncs (undoing a batch that failed half-way).
    pub fn truncate(&mut self, len: u64) -> Result<(), Error> {
        self.file
            .set_len(len)
            .and_then(|()| self.file.sync_data())
            .map_err(Error::io("truncating the audit log"))?;
        self.len = len;
        Ok(())
    }
}

/// Syncs the directory holding `path`, so a newly created or renamed file survives a crash.
pub(crate) fn sync_parent(path: &Path) -> Result<(), Error> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing the audit log's directory"))
}

/// The offset just after the last `\n` (0 when there is none).
fn last_newline_end(file: &mut File, len: u64) -> Result<u64, Error> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let n = (end - start) as usize;
        let chunk = buf.get_mut(..n).ok_or(Error::InvalidRecord("read"))?;
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(chunk))
            .map_err(Error::io("reading the audit log"))?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The offset just after the last line of `file[..end]` that parses as a record, when
/// the lines after it do not: a crash tore a page of the last batch, leaving garbage
/// that ends in a newline (the batch was never acknowledged: acknowledgement waits for
/// its sync). A file in which no line is a record is left alone (the head check then
/// refuses it): that is not a torn page.
fn last_record_end(file: &mut File, end: u64) -> Result<u64, Error> {
    // Line by line from the end; a torn page of zeros can be longer than the line cap,
    // so lines are delimited here rather than with `Backward` (which refuses those).
    let mut line_end = end;
    while let Some(body_end) = line_end.checked_sub(1) {
        let start = last_newline_end(file, body_end)?;
        let len = body_end - start;
        if len <= MAX_LINE as u64 {
            let mut line = vec![0u8; usize::try_from(len).unwrap_or(0)];
            file.seek(SeekFrom::Start(start))
                .and_then(|_| file.read_exact(&mut line))
                .map_err(Error::io("reading the audit log"))?;
            if Record::parse(&line).is_ok() {
                return Ok(line_end);
            }
        }
        line_end = start;
    }
    Ok(end)
}

/// The last `n` complete lines of the log at `path` (oldest first, each at most
/// [`MAX_LINE`] bytes), and the offset just after the last complete line. Reads backwards
/// from the end, so the cost is that of the lines returned, not of the file; takes no
/// lock. A torn last line is not returned.
pub fn last_lines(path: &Path, n: usize) -> Result<(Vec<Vec<u8>>, u64), Error> {
    let mut file = File::open(path).map_err(Error::io("opening the audit log"))?;
    let len = file
        .metadata()
        .map_err(Error::io("reading the audit log"))?
        .len();
    let end = last_newline_end(&mut file, len)?;
    let mut lines = Vec::new();
    let mut back = Backward::new(&mut file, end);
    while lines.len() < n {
        match back.next_line()? {
            Some((_, line)) => lines.push(line),
            None => break,
        }
    }
    lines.reverse();
    Ok((lines, end))
}

/// Opens `path` (creating it when `create`, with mode 0600 on Unix) and takes the
/// exclusive writer's lock without
/// waiting. Returns the file and whether it existed. Retries when the file was replaced
/// (a prune's rename) between the open and the lock, so the lock is always on the file
/// that `path` names.
pub(crate) fn open_locked(path: &Path, create: bool) -> Result<(File, bool), Error> {
    for _ in 0..8 {
        let existed = path.exists();
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(create);
        // Security events name users, keys and addresses: a new log is readable by its
        // owner only (an existing file keeps the mode its operator gave it).
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(path)
            .map_err(Error::io("opening the audit log"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Error::InUse),
            Err(TryLockError::Error(e)) => return Err(Error::io("locking the audit log")(e)),
        }
        if same_file(&file, path)? {
            return Ok((file, existed));
        }
    }
    Err(Error::InUse)
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> Result<bool, Error> {
    use std::os::unix::fs::MetadataExt;
    let held = file
        .metadata()
        .map_err(Error::io("reading the audit log"))?;
    Ok(match std::fs::metadata(path) {
        Ok(named) => held.dev() == named.dev() && held.ino() == named.ino(),
        Err(_) => false,
    })
}

#[cfg(not(unix))]
fn same_file(_file: &File, _path: &Path) -> Result<bool, Error> {
    Ok(true)
}

/// Complete lines of a file read backwards from a line boundary, each at most
/// [`MAX_LINE`] bytes (a longer one is an error: nothing is buffered beyond the cap).
pub(crate) struct Backward<'a> {
    file: &'a mut File,
    /// File offset of `data[0]`.
    pos: u64,
    /// Unconsumed bytes `pos..limit`, the last one a newline.
    data: Vec<u8>,
}

impl<'a> Backward<'a> {
    /// Lines of `file[..end]`; `end` must follow a newline (or be 0).
    pub(crate) fn new(file: &'a mut File, end: u64) -> Backward<'a> {
        Backward {
            file,
            pos: end,
            data: Vec::new(),
        }
    }

    /// The previous line (without its newline) and its offset; `None` at the start.
    pub(crate) fn next_line(&mut self) -> Result<Option<(u64, Vec<u8>)>, Error> {
        loop {
            let Some((_, body)) = self.data.split_last() else {
                if self.pos == 0 {
                    return Ok(None);
                }
                self.read_before()?;
                continue;
            };
            if let Some(i) = body.iter().rposition(|&b| b == b'\n') {
                if body.len() - i - 1 > MAX_LINE {
                    return Err(Error::InvalidRecord("line longer than the cap"));
                }
                let line = body.get(i + 1..).unwrap_or_default().to_vec();
                self.data.truncate(i + 1);
                return Ok(Some((self.pos + i as u64 + 1, line)));
            }
            if body.len() > MAX_LINE {
                return Err(Error::InvalidRecord("line longer than the cap"));
            }
            if self.pos == 0 {
                let line = body.to_vec();
                self.data.clear();
                return Ok(Some((0, line)));
            }
            self.read_before()?;
        }
    }

    fn read_before(&mut self) -> Result<(), Error> {
        const CHUNK: u64 = 64 * 1024;
        let start = self.pos.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; usize::try_from(self.pos - start).unwrap_or(0)];
        self.file
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.file.read_exact(&mut chunk))
            .map_err(Error::io("reading the audit log"))?;
        chunk.extend_from_slice(&self.data);
        self.data = chunk;
        self.pos = start;
        Ok(())
    }
}

/// What [`check_head`] found.
struct Head {
    last_seq: u64,
    head: Digest,
    unsigned_tail: Option<(u64, u64)>,
}

/// Finds the head of `instance`'s chain reading backwards, and checks its records from
/// the head back to the last checkpoint (or unverified-tail record, or the chain's
/// start): each record's hash, and that each one is the record the newer one names
/// (sequence number one less, hash equal to its `prev`) — or, across a gap, that a prune
/// record at the start of the file covers exactly that gap. Holds the chain to the
/// mirror's last record (`mirrored`: sequence number and hash). Streams: memory does not
/// grow with the chain (only with the prune records, which a prune writes at the start of
/// the file).
fn check_head(
    file: &mut File,
    len: u64,
    instance: &ServiceId,
    keys: &[CheckpointPublicKey],
    mirrored: Option<(u64, Digest)>,
) -> Result<Head, Error> {
    let runs = leading_runs(file, len, instance, keys)?;
    let covers = |from: u64, to: u64, hash: Digest| {
        runs.get(&from)
            .is_some_and(|run| run.to == to && run.hash == hash)
    };
    let pruned = |seq: u64| {
        runs.range(..=seq)
            .next_back()
            .is_some_and(|(_, run)| seq <= run.to)
    };
    let mut lines = Backward::new(file, len);
    let mut head: Option<(u64, Digest)> = None;
    // The oldest record walked that no signature covers.
    let mut oldest_unsigned: Option<u64> = None;
    // What the next older record of the chain must be: (seq, hash, offset of the newer
    // record that names it).
    let mut expect: Option<(u64, Digest, u64)> = None;
    let outcome = loop {
        let line = lines.next_line()?;
        let record = match &line {
            Some((_, bytes)) => Some(Record::parse(bytes)?),
            None => None,
        };
        let offset = line.as_ref().map_or(0, |(offset, _)| *offset);
        // The start of the chain: the file's start, or the prune records before it.
        let at_start = match &record {
            None => true,
            Some(r) => &r.instance == instance && matches!(r.entry, Entry::Prune(_)),
        };
        if at_start {
            break match expect {
                Some((seq, hash, newer))
                    if !((seq == 0 && hash == Digest::GENESIS) || covers(1, seq, hash)) =>
                {
                    Err((
                        newer,
                        Reason::Deleted,
                        "the chain does not start at its first record",
                    ))
                }
                _ => Ok(()),
            };
        }
        let Some(record) = record.filter(|r| &r.instance == instance) else {
            continue;
        };
        if record.compute_hash() != record.hash {
            break Err((
                offset,
                Reason::Modified,
                "the contents do not match the record's hash",
            ));
        }
        let anchor = match &record.entry {
            Entry::Checkpoint(cp) => Some(cp.key),
            Entry::Unverified(u) => Some(u.key),
            _ => None,
        };
        if let Some(fingerprint) = anchor
            && let Some(detail) = signature_fault(keys, fingerprint, &record)
        {
            break Err((offset, Reason::BadSignature, detail));
        }
        if let Some((want_seq, want_hash, newer)) = expect {
            if record.seq == want_seq {
                if record.hash != want_hash {
                    break Err((
                        offset,
                        Reason::Modified,
                        "the next record does not link to this one",
                    ));
                }
            } else {
                let pruned = record.seq < want_seq
                    && record
                        .seq
                        .checked_add(1)
                        .is_some_and(|from| covers(from, want_seq, want_hash));
                if !pruned {
                    let reason = if record.seq < want_seq {
                        Reason::Deleted
                    } else {
                        Reason::Inserted
                    };
                    break Err((newer, reason, "the sequence numbers do not follow on"));
                }
            }
        }
        if let Some((seq, hash)) = mirrored
            && record.seq == seq
            && record.hash != hash
        {
            break Err((
                offset,
                Reason::Modified,
                "differs from the mirrored checkpoint",
            ));
        }
        head.get_or_insert((record.seq, record.hash));
        if anchor.is_some() {
            // The last signed record: its hash (and signature) anchor what came before.
            break Ok(());
        }
        oldest_unsigned = Some(record.seq);
        let Some(before) = record.seq.checked_sub(1) else {
            break Err((offset, Reason::Malformed, "sequence number zero"));
        };
        expect = Some((before, record.prev, offset));
    };
    if let Err((offset, reason, detail)) = outcome {
        return Err(Error::Tampered(Finding {
            line: line_of(file, offset)?,
            reason,
            detail,
        }));
    }
    // A chain whose last records were pruned (or all of them) continues after its last
    // pruned record, never from a number a pruned record had.
    let pruned_end = runs.last_key_value().map(|(_, run)| (run.to, run.hash));
    let (last_seq, head_hash) = match (head, pruned_end) {
        (Some(kept), Some(pruned)) if pruned.0 > kept.0 => pruned,
        (Some(kept), _) => kept,
        (None, pruned) => pruned.unwrap_or((0, Digest::GENESIS)),
    };
    // The prune record's signature covers the last pruned record's hash, which links
    // back through every kept record before it.
    let vouched_by_prune = head.is_none() || last_seq != head.map_or(0, |(seq, _)| seq);
    if let Some((seq, _)) = mirrored
        && seq > last_seq
        && !pruned(seq)
    {
        return Err(Error::Tampered(Finding {
            line: line_of(file, len)?,
            reason: Reason::Truncated,
            detail: "the log ends before a mirrored checkpoint",
        }));
    }
    Ok(Head {
        last_seq,
        head: head_hash,
        unsigned_tail: oldest_unsigned
            .filter(|_| !vouched_by_prune)
            .map(|from| (from, last_seq)),
    })
}

/// The pruned runs of `instance` from the prune records at the start of the file (a
/// prune writes them there), each record's hash and — when it names `key` — signature
/// checked.
fn leading_runs(
    file: &mut File,
    len: u64,
    instance: &ServiceId,
    keys: &[CheckpointPublicKey],
) -> Result<BTreeMap<u64, PrunedRun>, Error> {
    let mut runs = BTreeMap::new();
    file.seek(SeekFrom::Start(0))
        .map_err(Error::io("reading the audit log"))?;
    let reader = std::io::BufReader::new(file.take(len));
    for (line, record) in record_lines(reader) {
        let record = record?;
        let Entry::Prune(prune) = &record.entry else {
            break;
        };
        if &record.instance != instance {
            continue;
        }
        let tampered = |reason, detail| {
            Error::Tampered(Finding {
                line,
                reason,
                detail,
            })
        };
        if record.compute_hash() != record.hash {
            return Err(tampered(
                Reason::Modified,
                "the contents do not match the record's hash",
            ));
        }
        if let Some(detail) = signature_fault(keys, prune.key, &record) {
            return Err(tampered(Reason::BadSignature, detail));
        }
        runs.extend(prune.runs.iter().map(|run| (run.from, *run)));
    }
    Ok(runs)
}

/// Why a signed record naming `fingerprint` is refused by a writer holding `keys`, or
/// `None` when it verifies (or `keys` is empty: no key configured, nothing to check).
fn signature_fault(
    keys: &[CheckpointPublicKey],
    fingerprint: KeyFingerprint,
    record: &Record,
) -> Option<&'static str> {
    if keys.is_empty() {
        return None;
    }
    match keys.iter().find(|k| k.fingerprint() == fingerprint) {
        None => Some(
            "signed with a checkpoint key other than the configured one (after a rotation, configure the previous public key too)",
        ),
        Some(key) if !key.verifies(record) => Some("the signature does not verify"),
        Some(_) => None,
    }
}

/// The 1-based line number of the line starting at `offset`.
fn line_of(file: &mut File, offset: u64) -> Result<u64, Error> {
    file.seek(SeekFrom::Start(0))
        .map_err(Error::io("reading the audit log"))?;
    let mut reader = std::io::BufReader::new(file.take(offset));
    let mut newlines = 0u64;
    loop {
        let buf =
            std::io::BufRead::fill_buf(&mut reader).map_err(Error::io("reading the audit log"))?;
        if buf.is_empty() {
            break;
        }
        newlines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let n = buf.len();
        std::io::BufRead::consume(&mut reader, n);
    }
    Ok(newlines + 1)
}
