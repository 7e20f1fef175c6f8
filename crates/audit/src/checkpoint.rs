//! Signed checkpoints: an Ed25519 signature over (instance, head sequence, head hash,
//! time), written into the log every N records or T seconds and mirrored elsewhere.
//!
//! A hash chain alone proves only that the file is self-consistent: whoever can write the
//! file can rewrite the whole chain. A checkpoint signed with a key the writer of the log
//! file does not hold for anything else — and a copy shipped to a second place — pins the
//! chain up to that point: later edits break the signature, and a log cut short of a
//! mirrored checkpoint is detected as truncated.
//!
//! Signed message, with the notation of [`crate::record`]:
//!
//! ```text
//! checkpoint: lp("mcpsec-audit-checkpoint-v1") ‖ lp(instance) ‖ head_seq:u64 ‖ head:32 ‖ time
//! prune:      lp("mcpsec-audit-prune-v1") ‖ lp(instance) ‖ time ‖ runs:u32 ‖ (from ‖ to ‖ hash)*
//! unverified: lp("mcpsec-audit-unverified-v1") ‖ lp(instance) ‖ head_seq:u64 ‖ head:32 ‖ time
//!             ‖ from:u64 ‖ to:u64
//! ```
//!
//! `head_seq` and `head` are the sequence number and hash of the record just before the
//! checkpoint (or unverified-tail) record (its `seq - 1` and `prev`).

use crate::Error;
use crate::record::{
    Checkpoint, Digest, Entry, KeyFingerprint, Prune, PrunedRun, Record, SignatureBytes,
    Unverified, encode_runs, lp, put_time,
};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use mcpsec_core::{SecretBytes, SecretString, ServiceId};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use zeroize::Zeroizing;

/// The private checkpoint key. `Debug` shows only its fingerprint.
pub struct CheckpointKey {
    pair: Ed25519KeyPair,
    public: CheckpointPublicKey,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("fingerprint", &self.public.fingerprint.to_string())
            .finish_non_exhaustive()
    }
}

impl CheckpointKey {
    /// A fresh key from a 32-byte seed drawn from the OS CSPRNG.
    pub fn generate() -> Result<CheckpointKey, Error> {
        let seed = SecretBytes::random(32)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(seed.expose_secret())
            .map_err(|_| Error::Key("Ed25519 key generation failed"))?;
        Ok(Self::from_pair(pair))
    }

    fn from_pair(pair: Ed25519KeyPair) -> CheckpointKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(pair.public_key().as_ref());
        CheckpointKey {
            pair,
            public: CheckpointPublicKey::from_bytes(bytes),
        }
    }

    /// Reads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) Ed25519 key.
    pub fn from_pem(pem: &str) -> Result<CheckpointKey, Error> {
        // The workspace's one PEM codec: the body and the DER are zeroized when dropped.
        let der = mcpsec_core::pem::decode_pkcs8_pem(pem)
            .map_err(|_| Error::Key("not a PKCS#8 PEM private key"))?;
        let pair = Ed25519KeyPair::from_pkcs8(der.expose_secret())
            .map_err(|_| Error::Key("not an Ed25519 PKCS#8 key"))?;
        Ok(Self::from_pair(pair))
    }

    /// Reads a key file written by [`CheckpointKey::to_pem`] (at most 4 KiB).
    pub fn from_file(path: &Path) -> Result<CheckpointKey, Error> {
        let text = Zeroizing::new(read_small(path, "reading the checkpoint key")?);
        Self::from_pem(&text)
    }

    /// The key as PKCS#8 v1 PEM, for writing to a file with mode 0600.
    pub fn to_pem(&self) -> Result<SecretString, Error> {
        let doc = self
            .pair
            .to_pkcs8v1()
            .map_err(|_| Error::Key("Ed25519 encoding failed"))?;
        Ok(mcpsec_core::pem::encode_pkcs8_pem(doc.as_ref()))
    }

    /// Writes the key pair: the private key as PKCS#8 PEM to `private` and the public
    /// key as 64 hex digits to `public`, each atomically with mode 0600 on Unix (core's
    /// [`write_secret_file`](mcpsec_core::secret_file::write_secret_file)). Never
    /// overwrites: an existing file is an [`Error::Io`] of kind `AlreadyExists` and is
    /// left untouched; if the public key cannot be written, the private key just written
    /// is removed again. Copy the public key to wherever verifiers run.
    pub fn write_files(&self, private: &Path, public: &Path) -> Result<(), Error> {
        use mcpsec_core::secret_file::{Existing, write_secret_file};
        if public.exists() {
            return Err(Error::io("writing the checkpoint public key")(
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        let pem = self.to_pem()?;
        write_secret_file(private, pem.expose_secret().as_bytes(), Existing::Refuse)
            .map_err(Error::io("writing the checkpoint key"))?;
        let hex = format!("{}\n", self.public.to_hex());
        if let Err(e) = write_secret_file(public, hex.as_bytes(), Existing::Refuse) {
            let _ = std::fs::remove_file(private);
            return Err(Error::io("writing the checkpoint public key")(e));
        }
        Ok(())
    }

    /// The public half, for verifiers.
    pub fn public_key(&self) -> &CheckpointPublicKey {
        &self.public
    }

    /// A checkpoint record continuing the chain after (`head_seq`, `head`).
    pub fn checkpoint(
        &self,
        instance: &ServiceId,
        head_seq: u64,
        head: Digest,
        time: SystemTime,
    ) -> Result<Record, Error> {
        let sig = self
            .pair
            .sign(&checkpoint_message(instance, head_seq, head, time));
        let entry = Entry::Checkpoint(Checkpoint {
            key: self.public.fingerprint,
            sig: SignatureBytes(sig.as_ref().to_vec()),
        });
        let seq = head_seq
            .checked_add(1)
            .ok_or(Error::InvalidEvent("sequence number overflow"))?;
        Record::new(seq, time, instance.clone(), entry, head)
    }

    /// A record continuing the chain after (`head_seq`, `head`) that states records
    /// `from..=head_seq` are not vouched for (see [`Unverified`]).
    pub fn unverified(
        &self,
        instance: &ServiceId,
        from: u64,
        head_seq: u64,
        head: Digest,
        time: SystemTime,
    ) -> Result<Record, Error> {
        if from == 0 || from > head_seq {
            return Err(Error::InvalidEvent("an unverified run is empty"));
        }
        let sig = self.pair.sign(&unverified_message(
            instance, head_seq, head, time, from, head_seq,
        ));
        let entry = Entry::Unverified(Unverified {
            from,
            to: head_seq,
            key: self.public.fingerprint,
            sig: SignatureBytes(sig.as_ref().to_vec()),
        });
        let seq = head_seq
            .checked_add(1)
            .ok_or(Error::InvalidEvent("sequence number overflow"))?;
        Record::new(seq, time, instance.clone(), entry, head)
    }

    /// A prune record (sequence 0) stating that `runs` of `instance` were removed.
    pub fn prune(
        &self,
        instance: &ServiceId,
        runs: Vec<PrunedRun>,
        time: SystemTime,
    ) -> Result<Record, Error> {
        let sig = self.pair.sign(&prune_message(instance, &runs, time));
        let entry = Entry::Prune(Prune {
            runs,
            key: self.public.fingerprint,
            sig: SignatureBytes(sig.as_ref().to_vec()),
        });
        Record::new(0, time, instance.clone(), entry, Digest::GENESIS)
    }
}

/// The public checkpoint key: 32 bytes, written as 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPublicKey {
    bytes: [u8; 32],
    fingerprint: KeyFingerprint,
}

impl CheckpointPublicKey {
    fn from_bytes(bytes: [u8; 32]) -> CheckpointPublicKey {
        let digest = Digest::of(&bytes);
        let mut fp = [0u8; 8];
        fp.copy_from_slice(digest.0.get(..8).unwrap_or(&[0; 8]));
        CheckpointPublicKey {
            bytes,
            fingerprint: KeyFingerprint(fp),
        }
    }

    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<CheckpointPublicKey, Error> {
        let bytes = crate::record::unhex(text.trim())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or(Error::Key("a public key is 64 lowercase hex digits"))?;
        Ok(Self::from_bytes(bytes))
    }

    /// Reads a public key file written by `mcpsec audit keygen`.
    pub fn from_file(path: &Path) -> Result<CheckpointPublicKey, Error> {
        Self::from_hex(&read_small(path, "reading the checkpoint public key")?)
    }

    /// The key as 64 hex digits.
    pub fn to_hex(&self) -> String {
        crate::record::hex(&self.bytes)
    }

    /// The fingerprint records name the key by.
    pub fn fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }

    /// Whether `record` is a checkpoint, prune or unverified-tail record validly signed by
    /// this key (an unverified-tail record must also name the records just before it).
    pub fn verifies(&self, record: &Record) -> bool {
        let (key, sig, message) = match &record.entry {
            Entry::Checkpoint(cp) => {
                let Some(head_seq) = record.seq.checked_sub(1) else {
                    return false;
                };
                (
                    cp.key,
                    &cp.sig,
                    checkpoint_message(&record.instance, head_seq, record.prev, record.time),
                )
            }
            Entry::Prune(p) => (
                p.key,
                &p.sig,
                prune_message(&record.instance, &p.runs, record.time),
            ),
            Entry::Unverified(u) => {
                let Some(head_seq) = record.seq.checked_sub(1) else {
                    return false;
                };
                if u.to != head_seq || u.from == 0 || u.from > u.to {
                    return false;
                }
                (
                    u.key,
                    &u.sig,
                    unverified_message(
                        &record.instance,
                        head_seq,
                        record.prev,
                        record.time,
                        u.from,
                        u.to,
                    ),
                )
            }
            Entry::Event { .. } => return false,
        };
        key == self.fingerprint
            && UnparsedPublicKey::new(&ED25519, &self.bytes)
                .verify(&message, &sig.0)
                .is_ok()
    }
}

fn checkpoint_message(
    instance: &ServiceId,
    head_seq: u64,
    head: Digest,
    time: SystemTime,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    lp(&mut m, b"mcpsec-audit-checkpoint-v1");
    lp(&mut m, instance.as_str().as_bytes());
    m.extend_from_slice(&head_seq.to_be_bytes());
    m.extend_from_slice(&head.0);
    put_time(&mut m, time);
    m
}

fn unverified_message(
    instance: &ServiceId,
    head_seq: u64,
    head: Digest,
    time: SystemTime,
    from: u64,
    to: u64,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(144);
    lp(&mut m, b"mcpsec-audit-unverified-v1");
    lp(&mut m, instance.as_str().as_bytes());
    m.extend_from_slice(&head_seq.to_be_bytes());
    m.extend_from_slice(&head.0);
    put_time(&mut m, time);
    m.extend_from_slice(&from.to_be_bytes());
    m.extend_from_slice(&to.to_be_bytes());
    m
}

fn prune_message(instance: &ServiceId, runs: &[PrunedRun], time: SystemTime) -> Vec<u8> {
    let mut m = Vec::with_capacity(64 + runs.len() * 48);
    lp(&mut m, b"mcpsec-audit-prune-v1");
    lp(&mut m, instance.as_str().as_bytes());
    put_time(&mut m, time);
    encode_runs(&mut m, runs);
    m
}

fn read_small(path: &Path, context: &'static str) -> Result<String, Error> {
    let meta = std::fs::metadata(path).map_err(Error::io(context))?;
    if meta.len() > 4096 {
        return Err(Error::Key("key file larger than 4 KiB"));
    }
    std::fs::read_to_string(path).map_err(Error::io(context))
}

/// When to write a checkpoint: after `every_records` records or once `every` has passed
/// (by the sink's clock) since the last one, whichever comes first; and on close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Records between checkpoints.
    pub every_records: u64,
    /// Time between checkpoints (checked when records arrive).
    pub every: Duration,
}

impl Default for CheckpointPolicy {
    /// Every 10,000 records or 60 seconds.
    fn default() -> Self {
        CheckpointPolicy {
            every_records: 10_000,
            every: Duration::from_secs(60),
        }
    }
}

/// A second place checkpoints are shipped to (another file, a bucket, a log service).
///
/// Called from the log's writer thread after the checkpoint is durable in the log, so
/// implementations should be quick or hand off; a failure is counted
/// ([`crate::FileSink::mirror_failures`]) and does not stop the log.
pub trait CheckpointSink: Send + Sync + std::fmt::Debug {
    /// Stores a copy of a checkpoint record (or of an unverified-tail record, which also
    /// pins the chain).
    fn publish(&self, checkpoint: &Record) -> Result<(), Error>;

    /// The last record published for `instance`, read back when the log is reopened: a
    /// log that no longer holds it, or holds something else at its sequence number, was
    /// cut or rewritten, and [`crate::FileSink::open`] refuses it. `Ok(None)` means the
    /// mirror has none or cannot be read back (the default, for write-only mirrors); the
    /// sink then knows less but still seals off an unsigned tail.
    fn latest(&self, instance: &ServiceId) -> Result<Option<Record>, Error> {
        let _ = instance;
        Ok(None)
    }
}

/// Appends checkpoint records as JSON lines to a file (synced after each one).
#[derive(Debug)]
pub struct FileCheckpointSink {
    file: Mutex<std::fs::File>,
    path: std::path::PathBuf,
}

impl FileCheckpointSink {
    /// Opens (creating, with mode 0600 on Unix) `path` for appending.
    pub fn open(path: &Path) -> Result<FileCheckpointSink, Error> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(path)
            .map_err(Error::io("opening the checkpoint mirror"))?;
        Ok(FileCheckpointSink {
            file: Mutex::new(file),
            path: path.to_owned(),
        })
    }
}

impl CheckpointSink for FileCheckpointSink {
    fn publish(&self, checkpoint: &Record) -> Result<(), Error> {
        use std::io::Write;
        let mut line = checkpoint.to_json()?.into_bytes();
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(Error::io("writing the checkpoint mirror"))
    }

    /// Streams the mirror file (lines capped like the log's); a line that is not a
    /// record is an error, since a damaged mirror cannot vouch for anything.
    fn latest(&self, instance: &ServiceId) -> Result<Option<Record>, Error> {
        // Holding the lock keeps a concurrent publish from being read half-written.
        let _guard = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let file =
            std::fs::File::open(&self.path).map_err(Error::io("reading the checkpoint mirror"))?;
        let mut last = None;
        for (_, record) in crate::verify::record_lines(std::io::BufReader::new(file)) {
            let record = record?;
            if &record.instance == instance {
                last = Some(record);
            }
        }
        Ok(last)
    }
}

/// Keeps checkpoint records in memory; clones share them. For tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpointSink {
    records: Arc<Mutex<Vec<Record>>>,
}

impl MemoryCheckpointSink {
    /// An empty mirror.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every checkpoint published so far.
    pub fn checkpoints(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl CheckpointSink for MemoryCheckpointSink {
    fn publish(&self, checkpoint: &Record) -> Result<(), Error> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(checkpoint.clone());
        Ok(())
    }

    fn latest(&self, instance: &ServiceId) -> Result<Option<Record>, Error> {
        Ok(self
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .find(|r| &r.instance == instance)
            .cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn checkpoint_signature_binds_every_field() {
        let key = CheckpointKey::generate().unwrap();
        let public = *key.public_key();
        let instance = ServiceId::new("api-1").unwrap();
        let time = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let cp = key
            .checkpoint(&instance, 41, Digest::of(b"h"), time)
            .unwrap();
        assert_eq!(cp.seq, 42);
        assert!(public.verifies(&cp));
        let mut moved = cp.clone();
        moved.seq = 43;
        assert!(!public.verifies(&moved));
        let mut other_head = cp.clone();
        other_head.prev = Digest::of(b"x");
        assert!(!public.verifies(&other_head));
        let mut later = cp.clone();
        later.time += Duration::from_secs(1);
        assert!(!public.verifies(&later));
        let other = CheckpointKey::generate().unwrap();
        assert!(!other.public_key().verifies(&cp));
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let mut suffix = [0u8; 8];
        mcpsec_core::fill_random(&mut suffix).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "mcpsec-audit-{name}-{}",
            crate::record::hex(&suffix)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn write_files_creates_0600_key_files_that_read_back_and_never_overwrites() {
        let dir = scratch("keyfiles");
        let (private, public) = (dir.join("checkpoint.key"), dir.join("checkpoint.pub"));
        let key = CheckpointKey::generate().unwrap();
        key.write_files(&private, &public).unwrap();
        #[cfg(unix)]
        for path in [&private, &public] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        assert_eq!(
            CheckpointKey::from_file(&private).unwrap().public_key(),
            key.public_key()
        );
        assert_eq!(
            CheckpointPublicKey::from_file(&public).unwrap(),
            *key.public_key()
        );
        let before = std::fs::read(&private).unwrap();
        let other = CheckpointKey::generate().unwrap();
        let err = other.write_files(&private, &public).unwrap_err();
        assert!(
            matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
            "{err:?}"
        );
        assert_eq!(
            std::fs::read(&private).unwrap(),
            before,
            "never overwritten"
        );
        // A public key in the way: the private key is not written either.
        let lone = dir.join("lone.key");
        assert!(other.write_files(&lone, &public).is_err());
        assert!(!lone.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn file_checkpoint_sink_creates_its_mirror_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("mirror-mode");
        let path = dir.join("checkpoints.jsonl");
        drop(FileCheckpointSink::open(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pem_and_hex_round_trip_and_debug_redacts() {
        let key = CheckpointKey::generate().unwrap();
        let pem = key.to_pem().unwrap();
        let back = CheckpointKey::from_pem(pem.expose_secret()).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        let hex = key.public_key().to_hex();
        assert_eq!(
            CheckpointPublicKey::from_hex(&hex).unwrap(),
            *key.public_key()
        );
        let debug = format!("{key:?}");
        assert!(debug.contains("fingerprint") && !debug.contains(&hex));
        assert!(
            CheckpointKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .is_err()
        );
    }
}
