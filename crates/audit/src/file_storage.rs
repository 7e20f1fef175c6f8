//! The JSON-lines log file as a [`ChainStorage`].

use crate::Error;
use crate::checkpoint::{CheckpointKey, CheckpointPublicKey};
use crate::log::LogFile;
use crate::record::Record;
use crate::retention::{PruneOutcome, RetentionPolicy};
use crate::storage::{AppendError, Batch, ChainStorage, ChainSync, StoredHead};
use mcpsec_core::ServiceId;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

/// The log file: one writer (an exclusive lock), torn tails cut and the chain since its
/// last signed record checked on open ([`LogFile::open_mirrored`]); a batch is one
/// `write`, cut back to the previous end if it fails; `fdatasync` on a second handle.
#[derive(Debug)]
pub struct FileStorage {
    log: LogFile,
    head: StoredHead,
    torn_bytes: u64,
    faults: Option<Arc<WriteFaults>>,
}

impl FileStorage {
    /// Opens (or creates, mode 0600) the log at `path` for `instance`'s chain, checking
    /// its last checkpoint's signature with `keys` (the writer's public key, and during a
    /// rotation the previous one: a checkpoint signed with any other key is refused) and
    /// holding it to `mirrored`, the mirror's last record (see [`LogFile::open_mirrored`]).
    pub fn open(
        path: &Path,
        instance: &ServiceId,
        keys: &[CheckpointPublicKey],
        mirrored: Option<&Record>,
    ) -> Result<FileStorage, Error> {
        let opened = LogFile::open_mirrored(path, instance, keys, mirrored)?;
        Ok(FileStorage {
            log: opened.log,
            head: StoredHead {
                last_seq: opened.last_seq,
                head: opened.head,
                unsigned_tail: opened.unsigned_tail,
            },
            torn_bytes: opened.torn_bytes,
            faults: None,
        })
    }

    /// Bytes of a torn tail cut off when the log was opened.
    pub fn torn_bytes(&self) -> u64 {
        self.torn_bytes
    }

    /// Test hook: writes fail while `faults` is switched on.
    #[doc(hidden)]
    pub fn with_write_faults(mut self, faults: Option<Arc<WriteFaults>>) -> Self {
        self.faults = faults;
        self
    }
}

impl ChainStorage for FileStorage {
    fn opened_head(&self) -> StoredHead {
        self.head
    }

    fn append_batch(&mut self, batch: Batch<'_>) -> Result<(), AppendError> {
        let start = self.log.len();
        let written = match &self.faults {
            Some(faults) => faults.write(&mut self.log, batch.lines),
            None => self.log.write(batch.lines),
        };
        let Err(error) = written else {
            return Ok(());
        };
        // Undo a partial write so the file ends on a line boundary; if even that fails,
        // the file's end is unknown and nothing more may be chained onto it.
        match self.log.truncate(start) {
            Ok(()) => Err(AppendError::Refused(error)),
            Err(_) => Err(AppendError::Broken(error)),
        }
    }

    fn syncer(&self) -> Result<Box<dyn ChainSync>, Error> {
        Ok(Box::new(FileSync(self.log.sync_handle()?)))
    }

    fn position(&self) -> u64 {
        self.log.len()
    }

    fn prune(
        &mut self,
        policy: &RetentionPolicy,
        key: &CheckpointKey,
        now: SystemTime,
    ) -> Result<(Box<dyn ChainSync>, PruneOutcome), Error> {
        let (handle, outcome) = self.log.prune(policy, key, now)?;
        Ok((Box::new(FileSync(handle)), outcome))
    }
}

/// `fdatasync` on a second handle: covers every write made through the first before it.
#[derive(Debug)]
struct FileSync(std::fs::File);

impl ChainSync for FileSync {
    fn sync(&mut self) -> Result<(), Error> {
        self.0
            .sync_data()
            .map_err(Error::io("syncing the audit log"))
    }
}

/// Test hook: a switch that makes the log's writes fail as on a full disk (half the
/// batch reaches the file, then `StorageFull`), so the recovery path can be tested
/// without filling a real disk.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct WriteFaults {
    full: AtomicBool,
}

impl WriteFaults {
    /// Switches the fault on or off.
    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }

    fn write(&self, log: &mut LogFile, buf: &[u8]) -> Result<(), Error> {
        if !self.full.load(Ordering::SeqCst) {
            return log.write(buf);
        }
        let half = buf.get(..buf.len() / 2).unwrap_or_default();
        log.write(half)?;
        Err(Error::io("writing the audit log")(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "injected: no space left on device",
        )))
    }
}
