//! The log file itself: opening with torn-tail recovery, finding the head, appending.
//!
//! Used by the [`FileSink`](crate::FileSink) writer thread and by `mcpsec audit append`.
//! One writer per file: the file names one instance's chain.

use crate::Error;
use crate::record::{Digest, Entry, MAX_LINE, Record};
use mcpsec_core::ServiceId;
use std::fs::{File, OpenOptions};
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
    /// Bytes of a torn last line that were cut off (0 when the file ended cleanly).
    pub torn_bytes: u64,
}

impl LogFile {
    /// Opens or creates the log at `path`, cuts off a torn last line (a write a crash
    /// interrupted: it was never acknowledged as durable, since acknowledgement waits for
    /// the newline to be synced), and finds the head of `instance`'s chain.
    pub fn open(path: &Path, instance: &ServiceId) -> Result<Opened, Error> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(Error::io("opening the audit log"))?;
        if !existed {
            sync_parent(path)?;
        }
        let mut len = file
            .metadata()
            .map_err(Error::io("reading the audit log"))?
            .len();
        let clean_end = last_newline_end(&mut file, len)?;
        let torn_bytes = len - clean_end;
        if torn_bytes > 0 {
            file.set_len(clean_end)
                .and_then(|()| file.sync_data())
                .map_err(Error::io("cutting the torn tail of the audit log"))?;
            len = clean_end;
        }
        let (last_seq, head) = find_head(&mut file, len, instance)?;
        Ok(Opened {
            log: LogFile {
                file,
                path: path.to_owned(),
                len,
            },
            last_seq,
            head,
            torn_bytes,
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

/// The last record of `instance`: the last line when it belongs to the instance (the
/// usual case, one instance per file), else a full scan.
fn find_head(file: &mut File, len: u64, instance: &ServiceId) -> Result<(u64, Digest), Error> {
    if len == 0 {
        return Ok((0, Digest::GENESIS));
    }
    let start = len.saturating_sub(MAX_LINE as u64 + 2);
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(start))
        .and_then(|_| file.take(len - start).read_to_end(&mut tail))
        .map_err(Error::io("reading the audit log"))?;
    let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
    let last = body
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(body, |i| body.get(i + 1..).unwrap_or_default());
    let record = Record::parse(last)?;
    if &record.instance == instance && !matches!(record.entry, Entry::Prune(_)) {
        return Ok((record.seq, record.hash));
    }
    let mut head = (0, Digest::GENESIS);
    file.seek(SeekFrom::Start(0))
        .map_err(Error::io("reading the audit log"))?;
    let reader = std::io::BufReader::new(file.take(len));
    for line in std::io::BufRead::split(reader, b'\n') {
        let line = line.map_err(Error::io("reading the audit log"))?;
        let record = Record::parse(&line)?;
        if &record.instance == instance {
            match &record.entry {
                // A log pruned down to nothing continues from the last pruned record.
                Entry::Prune(p) => {
                    if let Some(run) = p.runs.last().filter(|run| run.to > head.0) {
                        head = (run.to, run.hash);
                    }
                }
                _ => head = (record.seq, record.hash),
            }
        }
    }
    Ok(head)
}
