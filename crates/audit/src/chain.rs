//! Building one instance's chain: sequence numbers, links, pseudonyms, checkpoints.

use crate::Error;
use crate::checkpoint::{CheckpointKey, CheckpointPolicy, CheckpointPublicKey};
use crate::privacy::Pseudonymizer;
use crate::record::{Digest, Entry, Record};
use mcpsec_core::{SecurityEvent, ServiceId};
use std::sync::Arc;
use std::time::SystemTime;

/// How a chain is written: which instance, pseudonyms, checkpoints.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// The writing instance (one chain per instance: a fleet needs no coordination).
    pub instance: ServiceId,
    /// Replace source addresses by keyed pseudonyms.
    pub pseudonymizer: Option<Arc<Pseudonymizer>>,
    /// Sign checkpoints with this key, on this schedule.
    pub checkpoints: Option<(Arc<CheckpointKey>, CheckpointPolicy)>,
    /// Public keys of earlier checkpoint keys whose signatures the log may still end on
    /// (during a rotation). Opening a log whose last checkpoint names any other key than
    /// these and the current one is refused.
    pub previous_keys: Vec<CheckpointPublicKey>,
}

impl ChainConfig {
    /// Plain chain for `instance`: no pseudonyms, no checkpoints.
    pub fn new(instance: ServiceId) -> ChainConfig {
        ChainConfig {
            instance,
            pseudonymizer: None,
            checkpoints: None,
            previous_keys: Vec::new(),
        }
    }

    /// Pseudonymise source addresses.
    pub fn with_pseudonymizer(mut self, p: Arc<Pseudonymizer>) -> ChainConfig {
        self.pseudonymizer = Some(p);
        self
    }

    /// Write signed checkpoints.
    pub fn with_checkpoints(mut self, key: Arc<CheckpointKey>, policy: CheckpointPolicy) -> Self {
        self.checkpoints = Some((key, policy));
        self
    }

    /// Accept a log whose checkpoints were signed with `previous` (the old key's public
    /// half) when it is opened: the step that makes a checkpoint-key rotation explicit.
    /// The new key signs everything from then on; keep this until a prune has rewritten
    /// the old key's prune records (see docs/runbooks/audit-checkpoint-key.md).
    pub fn with_previous_key(mut self, previous: CheckpointPublicKey) -> Self {
        self.previous_keys.push(previous);
        self
    }

    /// The public keys a reopened log's signatures must verify with: the current
    /// checkpoint key's, then the previous ones. Empty without checkpoints.
    pub fn accepted_keys(&self) -> Vec<CheckpointPublicKey> {
        match &self.checkpoints {
            Some((key, _)) => std::iter::once(*key.public_key())
                .chain(self.previous_keys.iter().copied())
                .collect(),
            None => Vec::new(),
        }
    }
}

/// Where a chain stood: taken before a batch, to undo its appends when the batch never
/// reached the log (the next records then reuse its numbers, leaving no gap).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChainMark {
    last_seq: u64,
    head: Digest,
    since_checkpoint: u64,
    last_checkpoint: Option<SystemTime>,
}

/// The state of one chain: the next sequence number and the head hash.
#[derive(Debug)]
pub struct Chain {
    config: ChainConfig,
    last_seq: u64,
    head: Digest,
    since_checkpoint: u64,
    last_checkpoint: Option<SystemTime>,
}

impl Chain {
    /// A chain continuing after (`last_seq`, `head`): (0, [`Digest::GENESIS`]) for a new log.
    pub fn resume(config: ChainConfig, last_seq: u64, head: Digest) -> Chain {
        Chain {
            config,
            last_seq,
            head,
            since_checkpoint: 0,
            last_checkpoint: None,
        }
    }

    pub(crate) fn mark(&self) -> ChainMark {
        ChainMark {
            last_seq: self.last_seq,
            head: self.head,
            since_checkpoint: self.since_checkpoint,
            last_checkpoint: self.last_checkpoint,
        }
    }

    pub(crate) fn rewind(&mut self, mark: ChainMark) {
        self.last_seq = mark.last_seq;
        self.head = mark.head;
        self.since_checkpoint = mark.since_checkpoint;
        self.last_checkpoint = mark.last_checkpoint;
    }

    /// The configuration.
    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    /// Sequence number of the last record (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Hash of the last record.
    pub fn head(&self) -> Digest {
        self.head
    }

    /// Chains `event` at `now`. Pseudonymises first, so the address never reaches the log.
    pub fn append(&mut self, mut event: SecurityEvent, now: SystemTime) -> Result<Record, Error> {
        let source_pseudonym = self
            .config
            .pseudonymizer
            .as_ref()
            .and_then(|p| p.apply(&mut event));
        let entry = Entry::Event {
            event,
            source_pseudonym,
        };
        self.push(entry, now)
    }

    fn push(&mut self, entry: Entry, now: SystemTime) -> Result<Record, Error> {
        let seq = self
            .last_seq
            .checked_add(1)
            .ok_or(Error::InvalidEvent("sequence number overflow"))?;
        let record = Record::new(seq, now, self.config.instance.clone(), entry, self.head)?;
        self.commit(&record);
        Ok(record)
    }

    fn commit(&mut self, record: &Record) {
        self.last_seq = record.seq;
        self.head = record.hash;
        if matches!(record.entry, Entry::Checkpoint(_) | Entry::Unverified(_)) {
            self.since_checkpoint = 0;
            self.last_checkpoint = Some(record.time);
        } else {
            self.since_checkpoint = self.since_checkpoint.saturating_add(1);
            if self.last_checkpoint.is_none() {
                self.last_checkpoint = Some(record.time);
            }
        }
    }

    /// Whether the policy calls for a checkpoint now (never without a key, never when no
    /// record was written since the last one).
    pub fn checkpoint_due(&self, now: SystemTime) -> bool {
        let Some((_, policy)) = &self.config.checkpoints else {
            return false;
        };
        if self.since_checkpoint == 0 {
            return false;
        }
        let elapsed = self
            .last_checkpoint
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
        self.since_checkpoint >= policy.every_records || elapsed >= policy.every
    }

    /// Seals off records `from..=` the head, which a reopened log holds after its last
    /// signed record ([`crate::Opened::unsigned_tail`]): a signed record stating that
    /// nothing vouches for them, chained after them so that the next checkpoint does not
    /// sign them as if they were good. `None` without a key (nothing is signed then) or
    /// when `from` is past the head.
    pub fn seal_unverified(&mut self, from: u64, now: SystemTime) -> Result<Option<Record>, Error> {
        let Some((key, _)) = &self.config.checkpoints else {
            return Ok(None);
        };
        if from == 0 || from > self.last_seq {
            return Ok(None);
        }
        let record = key.unverified(&self.config.instance, from, self.last_seq, self.head, now)?;
        self.commit(&record);
        Ok(Some(record))
    }

    /// A signed checkpoint of the chain so far, when a key is configured and a record was
    /// written since the last checkpoint.
    pub fn checkpoint(&mut self, now: SystemTime) -> Result<Option<Record>, Error> {
        let Some((key, _)) = &self.config.checkpoints else {
            return Ok(None);
        };
        if self.since_checkpoint == 0 {
            return Ok(None);
        }
        let record = key.checkpoint(&self.config.instance, self.last_seq, self.head, now)?;
        self.commit(&record);
        Ok(Some(record))
    }
}
