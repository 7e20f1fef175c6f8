//! Audit log records and chain verification on arbitrary input: parsing never panics,
//! whatever parses re-encodes to an equal record with the same hash, and verification of
//! any byte string returns a report or a finding — never a panic.
//!
//! Two modes, chosen by the first byte:
//! - raw (even): the input is the log.
//! - structured (odd): a valid chain is built with the crate's own writer (events, signed
//!   checkpoints, optionally a signed prune record and a signed unverified-tail record),
//!   then the rest of the input mutates
//!   one field or one byte of it, so verification gets past parsing and hashing into the
//!   chain rules (`step`) — sequence numbers up to `u64::MAX`, links, signatures.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpsec_audit::record::{Digest, PrunedRun};
use mcpsec_audit::{
    Chain, ChainConfig, CheckpointKey, CheckpointPolicy, Entry, Record, VerifyOptions, verify_bytes,
};
use mcpsec_core::{EventKind, Outcome, SecurityEvent, ServiceId, UserId};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

static KEY: LazyLock<Arc<CheckpointKey>> =
    LazyLock::new(|| Arc::new(CheckpointKey::generate().expect("a key")));

fn raw(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        if let Ok(record) = Record::parse(line) {
            let hash = record.compute_hash();
            if let Ok(text) = record.to_json() {
                let back = Record::parse(text.as_bytes()).expect("an encoded record parses");
                assert_eq!(back, record);
                assert_eq!(back.compute_hash(), hash);
            }
        }
    }
    if let Ok(report) = verify_bytes(data, &VerifyOptions::unauthenticated()) {
        let lines = data
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count() as u64;
        assert!(report.records <= lines);
    }
}

/// Reads bytes off the input as needed; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| (acc << 8) | u64::from(self.byte()))
    }
}

/// A valid chain: `events` events with a checkpoint every 3 records, optionally behind a
/// signed prune record, and optionally ending with its unsigned tail sealed off (as a
/// sink reopened after a crash writes it).
fn build(events: usize, pruned: bool, sealed: bool) -> Vec<Record> {
    let instance = ServiceId::new("api-1").expect("an id");
    let config = ChainConfig::new(instance.clone()).with_checkpoints(
        KEY.clone(),
        CheckpointPolicy {
            every_records: 3,
            every: Duration::from_secs(3600),
        },
    );
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let mut records = Vec::new();
    let mut chain = if pruned {
        let head = Digest::GENESIS;
        records.push(
            KEY.prune(
                &instance,
                vec![PrunedRun {
                    from: 1,
                    to: 4,
                    hash: head,
                }],
                time,
            )
            .expect("a prune record"),
        );
        Chain::resume(config, 4, head)
    } else {
        Chain::resume(config, 0, Digest::GENESIS)
    };
    let mut anchored = chain.last_seq();
    for i in 0..events {
        let event = SecurityEvent::new(EventKind::AuthnLoginFail, Outcome::Failure, time)
            .with_user(UserId::new(format!("user-{i}")).expect("an id"));
        records.push(chain.append(event, time).expect("appended"));
        if chain.checkpoint_due(time) {
            if let Some(cp) = chain.checkpoint(time).expect("signed") {
                anchored = cp.seq;
                records.push(cp);
            }
        }
    }
    if sealed && chain.last_seq() > anchored {
        if let Some(seal) = chain.seal_unverified(anchored + 1, time).expect("signed") {
            records.push(seal);
        }
    }
    // A final checkpoint, as closing a sink writes (none when one was just written).
    if let Some(cp) = chain.checkpoint(time).expect("signed") {
        records.push(cp);
    }
    records
}

fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(r.to_json().expect("encodes").as_bytes());
        out.push(b'\n');
    }
    out
}

fn structured(data: &[u8]) {
    let mut input = Input(data);
    let shape = input.byte();
    let events = usize::from(shape % 12) + 1;
    let mut records = build(events, shape & 0x80 != 0, shape & 0x40 != 0);
    // A built chain may end after its last checkpoint, like a live log.
    let with_key = VerifyOptions::with_keys(vec![*KEY.public_key()]).allow_unsigned_tail();
    let intact = encode(&records);
    verify_bytes(&intact, &with_key).expect("a valid chain verifies");
    let at = usize::from(input.byte()) % records.len();
    let value = input.u64();
    let rehash = input.byte() & 1 == 1;
    let bytes = match input.byte() % 8 {
        0 => {
            records.get_mut(at).expect("in range").seq = value;
            None
        }
        1 => {
            let r = records.get_mut(at).expect("in range");
            r.time = SystemTime::UNIX_EPOCH + Duration::from_secs(value % 253_402_300_000);
            None
        }
        2 => {
            let r = records.get_mut(at).expect("in range");
            r.prev.0[(value % 32) as usize] ^= 1;
            None
        }
        3 => {
            match &mut records.get_mut(at).expect("in range").entry {
                Entry::Prune(p) => {
                    if let Some(run) = p.runs.first_mut() {
                        run.from = value;
                        run.to = input.u64();
                    }
                }
                Entry::Unverified(u) => {
                    u.from = value;
                    u.to = input.u64();
                }
                _ => {}
            }
            None
        }
        4 => {
            records.remove(at);
            None
        }
        5 => {
            let other = usize::from(input.byte()) % records.len();
            records.swap(at, other);
            None
        }
        6 => {
            let r = records.get(at).expect("in range").clone();
            records.insert(usize::from(input.byte()) % records.len(), r);
            None
        }
        _ => {
            // One byte of the encoded log.
            let mut bytes = intact.clone();
            let len = bytes.len();
            let i = (value % len as u64) as usize;
            bytes[i] = input.byte();
            Some(bytes)
        }
    };
    let bytes = bytes.unwrap_or_else(|| {
        if rehash {
            // Recompute the hash, as a forger would: only links and signatures remain.
            if let Some(r) = records.get_mut(at) {
                r.hash = r.compute_hash();
            }
        }
        encode(&records)
    });
    for options in [&with_key, &VerifyOptions::unauthenticated()] {
        if let Ok(report) = verify_bytes(&bytes, options) {
            assert!(report.records <= bytes.split(|&b| b == b'\n').count() as u64);
        }
    }
    raw(&bytes);
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 512 * 1024 {
        return;
    }
    match data.split_first() {
        Some((mode, rest)) if mode & 1 == 1 => structured(rest),
        _ => raw(data),
    }
});
