//! Where a keyset document lives: a local file ([`FileKeysetStore`]), a database row or a
//! KMS-backed blob (a [`KeysetStore`] the host implements), or memory for tests.
//!
//! The store holds the signed document and its generation; it never sees a key that is
//! not wrapped, and it does not check the MAC (the [`LocalKeyset`](crate::LocalKeyset)
//! reading it does). Its one guarantee is the compare-and-swap in
//! [`KeysetStore::replace`], which is what keeps a rotation by one instance from being
//! overwritten by another's stale copy. In SQL it is one statement:
//! `UPDATE keyset SET document = :doc, generation = :next WHERE id = :id AND generation =
//! :expected` (or an `INSERT` for the first write), checking that one row changed.

use super::file::{read_watermark, write_bytes_private, write_watermark};
use crate::Error;
use mcpsec_core::StoreError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// A keyset document with its generation (raised by every write).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKeyset {
    /// The document's generation; the store compares it in [`KeysetStore::replace`].
    pub generation: u64,
    /// The signed keyset document (JSON; keys wrapped by the key provider).
    pub document: Vec<u8>,
}

impl fmt::Debug for StoredKeyset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKeyset")
            .field("generation", &self.generation)
            .field("document_len", &self.document.len())
            .finish_non_exhaustive()
    }
}

/// Storage for one keyset document.
#[async_trait::async_trait]
pub trait KeysetStore: Send + Sync + fmt::Debug {
    /// The stored document, or `None` when none was ever written. Returns one write's
    /// document whole, never a mix of two.
    async fn load(&self) -> Result<Option<StoredKeyset>, StoreError>;

    /// The newest generation this store ever wrote, kept apart from the document so that
    /// putting an older document back (a restored backup) is noticed: a reader refuses a
    /// document older than this ([`Error::Rollback`]). 0 when the store does not keep one
    /// (a database row cannot be restored alone; the default).
    async fn watermark(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Writes `next` if the stored document is still at generation `expected`
    /// (`None`: only if no document is stored). Otherwise writes nothing and returns a
    /// [`Conflict`](mcpsec_core::StoreErrorKind::Conflict): the caller reloads and retries.
    /// Atomic with respect to every other `replace`, in this process or another.
    async fn replace(&self, expected: Option<u64>, next: StoredKeyset) -> Result<(), StoreError>;
}

/// A [`KeysetStore`] in memory.
#[derive(Debug, Default)]
pub struct MemoryKeysetStore {
    stored: Mutex<Option<StoredKeyset>>,
}

impl MemoryKeysetStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl KeysetStore for MemoryKeysetStore {
    async fn load(&self) -> Result<Option<StoredKeyset>, StoreError> {
        Ok(self
            .stored
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone())
    }

    async fn replace(&self, expected: Option<u64>, next: StoredKeyset) -> Result<(), StoreError> {
        let mut stored = self.stored.lock().unwrap_or_else(PoisonError::into_inner);
        if stored.as_ref().map(|s| s.generation) != expected {
            return Err(StoreError::conflict("the keyset changed since it was read"));
        }
        *stored = Some(next);
        Ok(())
    }
}

/// The keyset as a local file (mode 0600, written atomically), with a generation
/// watermark beside it (`<keyset>.generation`) and an exclusive lock (`<keyset>.lock`)
/// that makes [`KeysetStore::replace`] a compare-and-swap between processes. The file
/// I/O is synchronous and short; it runs on the calling task (key management and the
/// background nonce refills, never the encryption path).
#[derive(Debug, Clone)]
pub struct FileKeysetStore {
    path: PathBuf,
}

impl FileKeysetStore {
    /// The keyset file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The keyset file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Option<StoredKeyset>, Error> {
        use std::io::Read;
        let file = match std::fs::File::open(&self.path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            other => other?,
        };
        let mut document = Vec::new();
        // One byte over the cap, so the reader can tell a too-large file.
        file.take(super::MAX_KEYSET_FILE + 1)
            .read_to_end(&mut document)?;
        #[derive(serde::Deserialize)]
        struct Generation {
            #[serde(default)]
            generation: u64,
        }
        let generation = serde_json::from_slice::<Generation>(&document)
            .map(|g| g.generation)
            .unwrap_or(0); // an unreadable file is refused by the reader, with its reason
        Ok(Some(StoredKeyset {
            generation,
            document,
        }))
    }

    fn replace_locked(&self, expected: Option<u64>, next: &StoredKeyset) -> Result<bool, Error> {
        let mut lock_name = self.path.as_os_str().to_owned();
        lock_name.push(".lock");
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let lock = options.open(PathBuf::from(lock_name))?;
        lock.lock()?;
        let current = self.read()?.map(|stored| stored.generation);
        if current != expected {
            return Ok(false);
        }
        write_bytes_private(&self.path, &next.document, expected.is_none())?;
        // After the file: a crash in between leaves the watermark behind (harmless),
        // never ahead of the file (which would refuse every open).
        write_watermark(&self.path, next.generation)?;
        drop(lock); // closing the file releases the lock
        Ok(true)
    }
}

fn unavailable(what: &'static str) -> impl FnOnce(Error) -> StoreError {
    move |error| match error {
        Error::Store(inner) => inner,
        other => StoreError::unavailable(what).with_source(other),
    }
}

#[async_trait::async_trait]
impl KeysetStore for FileKeysetStore {
    async fn load(&self) -> Result<Option<StoredKeyset>, StoreError> {
        self.read()
            .map_err(unavailable("the keyset file cannot be read"))
    }

    async fn watermark(&self) -> Result<u64, StoreError> {
        read_watermark(&self.path).map_err(|error| match error {
            Error::Io(io) => StoreError::unavailable("the keyset watermark").with_source(io),
            other => StoreError::corrupt("the keyset watermark").with_source(other),
        })
    }

    async fn replace(&self, expected: Option<u64>, next: StoredKeyset) -> Result<(), StoreError> {
        if self
            .replace_locked(expected, &next)
            .map_err(unavailable("the keyset file cannot be written"))?
        {
            Ok(())
        } else {
            Err(StoreError::conflict(
                "the keyset file changed since it was read",
            ))
        }
    }
}
