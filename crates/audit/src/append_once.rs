//! One batch, all or nothing, for writers that are not services (`mcpsec audit append`).

use crate::Error;
use crate::chain::{Chain, ChainConfig};
use crate::record::{Digest, Record};
use crate::storage::{AppendError, Batch, ChainStorage};
use mcpsec_core::SecurityEvent;
use std::time::SystemTime;

/// What [`append_once`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedOnce {
    /// Events appended.
    pub events: usize,
    /// The chain's head after the batch.
    pub head: Digest,
    /// The unsigned tail `(from, to)` found on open and sealed off as unverified before
    /// the events (only with a checkpoint key).
    pub sealed: Option<(u64, u64)>,
}

/// Chains `events` after `storage`'s head at `now` and stores them as one batch, durable
/// when this returns: first a seal over an unsigned tail found on open, then the events,
/// then a checkpoint (both only when `config` has a checkpoint key) — the same chain a
/// [`ChainSink`](crate::ChainSink) writes, without its threads. All or nothing: on error
/// the storage holds what it held before (a backend that cannot undo a partial write
/// says so with [`AppendError::Broken`], reported as its error).
pub fn append_once(
    storage: &mut dyn ChainStorage,
    config: ChainConfig,
    events: Vec<SecurityEvent>,
    now: SystemTime,
) -> Result<AppendedOnce, Error> {
    let opened = storage.opened_head();
    let mut chain = Chain::resume(config, opened.last_seq, opened.head);
    let mut lines = Vec::with_capacity(events.len() * 400);
    let mut records = Vec::with_capacity(events.len() + 2);
    let mut sealed = None;
    if let Some((from, to)) = opened.unsigned_tail
        && let Some(seal) = chain.seal_unverified(from, now)?
    {
        push_record(&mut lines, &mut records, seal)?;
        sealed = Some((from, to));
    }
    let count = events.len();
    for event in events {
        let record = chain.append(event, now)?;
        push_record(&mut lines, &mut records, record)?;
    }
    if let Some(cp) = chain.checkpoint(now)? {
        push_record(&mut lines, &mut records, cp)?;
    }
    if !records.is_empty() {
        storage
            .append_batch(Batch {
                records: &records,
                lines: &lines,
            })
            .map_err(|e| match e {
                AppendError::Refused(e) | AppendError::Broken(e) => e,
            })?;
        storage.syncer()?.sync()?;
    }
    Ok(AppendedOnce {
        events: count,
        head: chain.head(),
        sealed,
    })
}

/// Adds `record` to a batch: its canonical JSON line to `lines`, itself to `records`.
pub(crate) fn push_record(
    lines: &mut Vec<u8>,
    records: &mut Vec<Record>,
    record: Record,
) -> Result<(), Error> {
    record.write_json(lines)?;
    lines.push(b'\n');
    records.push(record);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Entry;
    use crate::{CheckpointKey, CheckpointPolicy, MemoryChainStorage};
    use mcpsec_core::{EventKind, Outcome, ServiceId};
    use std::sync::Arc;
    use std::time::UNIX_EPOCH;

    fn config() -> ChainConfig {
        ChainConfig::new(ServiceId::new("cli").unwrap()).with_checkpoints(
            Arc::new(CheckpointKey::generate().unwrap()),
            CheckpointPolicy::default(),
        )
    }

    fn events(n: usize) -> Vec<SecurityEvent> {
        (0..n)
            .map(|_| SecurityEvent::new(EventKind::AuthzAdmin, Outcome::Success, UNIX_EPOCH))
            .collect()
    }

    #[test]
    fn a_refused_batch_leaves_the_storage_as_it_was() {
        let memory = MemoryChainStorage::new();
        let mut storage = memory.clone();
        append_once(&mut storage, config(), events(2), UNIX_EPOCH).unwrap();
        let before = memory.records();
        memory.refuse_appends(true);
        assert!(append_once(&mut storage, config(), events(3), UNIX_EPOCH).is_err());
        assert_eq!(memory.records(), before);
    }

    #[test]
    fn seals_an_unsigned_tail_then_appends_and_checkpoints() {
        let memory = MemoryChainStorage::new();
        let mut storage = memory.clone();
        let unsigned = ChainConfig::new(ServiceId::new("cli").unwrap());
        append_once(&mut storage, unsigned, events(2), UNIX_EPOCH).unwrap();
        let appended = append_once(&mut storage, config(), events(1), UNIX_EPOCH).unwrap();
        assert_eq!(appended.sealed, Some((1, 2)));
        let records = memory.records();
        let kinds: Vec<&str> = records
            .iter()
            .map(|r| match &r.entry {
                Entry::Event { .. } => "event",
                Entry::Unverified(_) => "sealed",
                Entry::Checkpoint(_) => "checkpoint",
                Entry::Prune(_) => "prune",
            })
            .collect();
        assert_eq!(kinds, ["event", "event", "sealed", "event", "checkpoint"]);
        assert_eq!(records.last().map(|r| r.hash), Some(appended.head));
    }
}
