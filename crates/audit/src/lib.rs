//! # mcpsec-audit
//!
//! A tamper-evident security audit trail that never drops an event:
//!
//! - [`ChainSink`] ([`FileSink`] over the log file): core's
//!   [`EventSink`](mcpsec_core::EventSink) as a hash-chained JSON-lines file ([`record`] documents the format and the canonical encoding). A
//!   bounded queue and one writer thread with group commit; callers wait when the queue is
//!   full; critical events (by severity or by kind) return only once their batch is on
//!   disk. One writer per file (an exclusive lock); torn tails are cut on open, the
//!   chain since its last checkpoint is checked before anything is appended, and records
//!   a crash left after the last checkpoint are sealed off as unverified (a signed
//!   record), never signed as good. The chain is computed there once; where records are
//!   kept is a [`ChainStorage`] (the file, [`MemoryChainStorage`], a SQL table), with a
//!   conformance suite in `testkit` (feature `testkit`). (Feature `tracing`) `TracingSink`
//!   emits events as `tracing` events beside it.
//! - [`CheckpointKey`]: Ed25519-signed checkpoints every N records or T seconds, mirrored
//!   to a [`CheckpointSink`]; [`verify_file`] reports the first bad record and why, and
//!   says no to what it cannot authenticate: no key, or (by default) records after the
//!   last checkpoint ([`VerifyOptions`] names the opt-ins).
//! - [`Pseudonymizer`]: keyed pseudonyms for source addresses.
//! - [`prune_file`] and [`FileSink::prune`] (on a live sink): retention by
//!   [`EventClass`], with signed prune records, streaming the file.
//! - [`AuditedSealer`]: records every seal and open of secrets.
//! - [`to_ocsf`] and [`to_ecs`]: exporters.
//!
//! ```
//! use mcpsec_audit::{ChainConfig, CheckpointKey, CheckpointPolicy, FileSink, FileSinkConfig};
//! use mcpsec_audit::{VerifyOptions, verify_file};
//! use mcpsec_core::{EventKind, EventSink, ManualClock, Outcome, SecurityEvent, ServiceId, UserId};
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("mcpsec-audit-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?; let path = dir.join("audit.jsonl"); let _ = std::fs::remove_file(&path);
//! let clock = Arc::new(ManualClock::at_unix(1_767_225_600));
//! let key = Arc::new(CheckpointKey::generate()?); // in production: CheckpointKey::from_file
//! let public = *key.public_key();
//! let chain = ChainConfig::new(ServiceId::new("api-1")?)
//!     .with_checkpoints(key, CheckpointPolicy::default());
//! let sink = FileSink::open(&path, FileSinkConfig::new(chain, clock.clone()))?;
//! let event = SecurityEvent::new(EventKind::AuthnTokenReuse, Outcome::Failure, clock.now())
//!     .with_user(UserId::new("ada")?);
//! sink.record(event).await?; // critical: on disk when this returns
//! sink.close()?; // ends the log on a signed checkpoint
//! let report = verify_file(&path, &VerifyOptions::with_keys(vec![public]))?;
//! assert!(report.authenticated);
//! assert_eq!(report.records, 2); // the event and the checkpoint
//! // Without a key, verification says no unless told otherwise.
//! assert!(verify_file(&path, &VerifyOptions::default()).is_err());
//! # use mcpsec_core::Clock; std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "tests fail loudly on purpose"
    )
)]

mod append_once;
mod chain;
pub mod checkpoint;
mod error;
pub mod export;
mod file_sink;
mod file_storage;
mod json;
mod log;
mod privacy;
pub mod record;
mod retention;
mod sealer;
mod sink;
mod storage;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod verify;

pub use append_once::{AppendedOnce, append_once};
pub use chain::{Chain, ChainConfig};
pub use checkpoint::{
    CheckpointKey, CheckpointPolicy, CheckpointPublicKey, CheckpointSink, FileCheckpointSink,
    MemoryCheckpointSink,
};
pub use error::Error;
pub use export::{to_ecs, to_ocsf};
pub use file_sink::{ChainSink, FileSink, FileSinkConfig};
pub use file_storage::FileStorage;
#[doc(hidden)]
pub use file_storage::WriteFaults;
pub use log::{LogFile, Opened, last_lines};
pub use privacy::Pseudonymizer;
pub use record::{Digest, Entry, Record};
pub use retention::{EventClass, PruneOutcome, RetentionPolicy, prune_file, prune_records};
pub use sealer::AuditedSealer;
#[cfg(feature = "tracing")]
pub use sink::TracingSink;
pub use storage::{AppendError, Batch, ChainStorage, ChainSync, MemoryChainStorage, StoredHead};
pub use verify::{
    Finding, Reason, RecordLines, Report, UnverifiedRun, VerifyOptions, record_lines, verify_bytes,
    verify_file, verify_reader,
};
