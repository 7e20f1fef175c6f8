//! The tamper matrix: every kind of edit is reported at the right line with the right
//! reason, and random edits never go unnoticed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use mcpsec_audit::{
    ChainConfig, ChainSink, CheckpointKey, CheckpointPolicy, Entry, Error, FileSinkConfig,
    MemoryChainStorage, Reason, Record, VerifyOptions, verify_bytes,
};
use mcpsec_core::{EventKind, ManualClock, Outcome, SecurityEvent, ServiceId, UserId};
use proptest::prelude::*;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

static KEY: LazyLock<Arc<CheckpointKey>> =
    LazyLock::new(|| Arc::new(CheckpointKey::generate().unwrap()));

/// `events` events, a checkpoint after every 5 records; the log's lines.
fn log(events: usize, checkpoints: bool) -> Vec<String> {
    let clock = ManualClock::at_unix(1_767_225_600);
    let mut config = ChainConfig::new(ServiceId::new("api-1").unwrap());
    if checkpoints {
        config = config.with_checkpoints(
            KEY.clone(),
            CheckpointPolicy {
                every_records: 5,
                every: Duration::from_secs(3600),
            },
        );
    }
    let storage = MemoryChainStorage::new();
    let sink = ChainSink::with_storage(
        Box::new(storage.clone()),
        FileSinkConfig::new(config, Arc::new(clock.clone())),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for i in 0..events {
        let event = SecurityEvent::new(EventKind::AuthnLoginFail, Outcome::Failure, clock.now())
            .with_user(UserId::new(format!("user-{i}")).unwrap());
        // One batch per event, so checkpoints fall where the schedule puts them.
        rt.block_on(async {
            sink.append(event).await?;
            sink.flush().await
        })
        .unwrap();
        clock.advance(Duration::from_secs(1));
    }
    storage
        .to_jsonl()
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

use mcpsec_core::Clock;

fn join(lines: &[String]) -> Vec<u8> {
    let mut out = lines.join("\n").into_bytes();
    out.push(b'\n');
    out
}

fn finding(bytes: &[u8], options: &VerifyOptions) -> (u64, Reason) {
    match verify_bytes(bytes, options) {
        Err(Error::Tampered(f)) => (f.line, f.reason),
        other => panic!("expected a finding, got {other:?}"),
    }
}

/// Strict: every chain signed through its last record.
fn with_key() -> VerifyOptions {
    VerifyOptions::with_keys(vec![*KEY.public_key()])
}

/// A live log: the last records may follow the last checkpoint.
fn live() -> VerifyOptions {
    with_key().allow_unsigned_tail()
}

#[test]
fn intact_log_verifies_with_and_without_the_key() {
    let lines = log(12, true);
    assert_eq!(lines.len(), 14, "12 events and 2 checkpoints");
    let report = verify_bytes(&join(&lines), &live()).unwrap();
    assert_eq!(report.records, 14);
    assert_eq!(report.signatures_verified, 2);
    assert!(report.authenticated);
    let head = Record::parse(lines[13].as_bytes()).unwrap().hash;
    assert_eq!(report.head, Some(head));
    let report = verify_bytes(&join(&lines), &VerifyOptions::unauthenticated()).unwrap();
    assert!(!report.authenticated, "no key: the report says so");
    // A log that ends on a checkpoint passes the strict default too.
    let report = verify_bytes(&join(&lines[..12]), &with_key()).unwrap();
    assert!(report.authenticated);
}

/// Issue 18: the default options (no key) used to return `Ok` for any self-consistent
/// file, which anyone able to write it can produce.
#[test]
fn default_options_refuse_an_unkeyed_chain_as_unauthenticated() {
    let lines = log(12, true);
    assert!(matches!(
        verify_bytes(&join(&lines), &VerifyOptions::default()),
        Err(Error::Unauthenticated)
    ));
    let plain = log(3, false);
    assert!(matches!(
        verify_bytes(&join(&plain), &VerifyOptions::default()),
        Err(Error::Unauthenticated)
    ));
    // Tampering is still reported as tampering, not as "unauthenticated".
    let mut edited = plain.clone();
    edited[1] = edited[1].replace("user-1", "user-9");
    assert_eq!(
        finding(&join(&edited), &VerifyOptions::default()),
        (2, Reason::Modified)
    );
    // The opt-in is by name, and the report carries the caveat.
    let report = verify_bytes(&join(&plain), &VerifyOptions::unauthenticated()).unwrap();
    assert!(!report.authenticated);
    assert_eq!(report.records, 3);
}

/// Issue 18: with a key, records after the last checkpoint used to pass as "ok" (only
/// counted); the default now refuses them, naming the first one.
#[test]
fn with_a_key_an_unsigned_tail_is_refused_unless_allowed() {
    let lines = log(12, true);
    // Lines 13 and 14 follow the checkpoint at line 12.
    assert_eq!(
        finding(&join(&lines), &with_key()),
        (13, Reason::UnsignedTail)
    );
    let report = verify_bytes(&join(&lines), &live()).unwrap();
    assert!(report.authenticated);
    assert_eq!(
        report.chains[&ServiceId::new("api-1").unwrap()].unsigned(),
        2
    );
}

#[test]
fn modified_field_is_reported_at_its_line() {
    let mut lines = log(8, false);
    lines[2] = lines[2].replace("user-2", "user-x");
    assert_eq!(
        finding(&join(&lines), &VerifyOptions::unauthenticated()),
        (3, Reason::Modified)
    );
}

#[test]
fn modified_record_with_recomputed_hash_is_reported_at_its_line() {
    let mut lines = log(8, false);
    let mut record = Record::parse(lines[2].as_bytes()).unwrap();
    if let Entry::Event { event, .. } = &mut record.entry {
        event.outcome = Outcome::Success;
    }
    record.hash = record.compute_hash();
    lines[2] = record.to_json().unwrap();
    assert_eq!(
        finding(&join(&lines), &VerifyOptions::unauthenticated()),
        (3, Reason::Modified)
    );
}

#[test]
fn deleted_record_is_reported() {
    let mut lines = log(8, false);
    lines.remove(3);
    assert_eq!(
        finding(&join(&lines), &VerifyOptions::unauthenticated()),
        (4, Reason::Deleted)
    );
}

#[test]
fn inserted_record_is_reported_at_the_intruder() {
    let mut lines = log(8, false);
    let before = Record::parse(lines[1].as_bytes()).unwrap();
    let original = Record::parse(lines[2].as_bytes()).unwrap();
    let mut forged = original.clone();
    if let Entry::Event { event, .. } = &mut forged.entry {
        event.kind = EventKind::AuthnLoginSuccess;
    }
    forged.prev = before.hash;
    forged.hash = forged.compute_hash();
    lines.insert(2, forged.to_json().unwrap());
    assert_eq!(
        finding(&join(&lines), &VerifyOptions::unauthenticated()),
        (3, Reason::Inserted)
    );
    // A replayed copy of an old record is an insertion too.
    let mut lines = log(8, false);
    let old = lines[1].clone();
    lines.insert(6, old);
    assert_eq!(
        finding(&join(&lines), &VerifyOptions::unauthenticated()),
        (7, Reason::Inserted)
    );
}

#[test]
fn swapped_records_are_reported_as_reordered() {
    let mut lines = log(8, false);
    lines.swap(4, 5);
    assert_eq!(
        finding(&join(&lines), &VerifyOptions::unauthenticated()),
        (5, Reason::Reordered)
    );
}

#[test]
fn truncation_without_checkpoints_goes_unnoticed() {
    // What a hash chain alone cannot do: a log cut at a line boundary is a valid log.
    let lines = log(8, false);
    let report = verify_bytes(&join(&lines[..5]), &VerifyOptions::unauthenticated()).unwrap();
    assert_eq!(report.records, 5);
}

#[test]
fn truncation_before_a_mirrored_checkpoint_is_detected() {
    let lines = log(12, true);
    let mirrored: Vec<Record> = lines
        .iter()
        .map(|l| Record::parse(l.as_bytes()).unwrap())
        .filter(|r| matches!(r.entry, Entry::Checkpoint(_)))
        .collect();
    assert_eq!(mirrored.len(), 2);
    let options = live().mirrored(mirrored);
    verify_bytes(&join(&lines), &options).unwrap();
    // Cut after the first checkpoint: the second mirrored one is missing.
    assert_eq!(
        finding(&join(&lines[..8]), &options),
        (9, Reason::Truncated)
    );
    // Cut everything.
    assert_eq!(finding(b"", &options), (1, Reason::Truncated));
}

#[test]
fn torn_tail_is_reported_as_such() {
    let lines = log(4, false);
    let mut bytes = join(&lines);
    bytes.truncate(bytes.len() - 40);
    assert_eq!(
        finding(&bytes, &VerifyOptions::unauthenticated()),
        (4, Reason::TornTail)
    );
    // A complete record missing only its newline is torn too.
    let mut bytes = join(&lines);
    bytes.pop();
    assert_eq!(
        finding(&bytes, &VerifyOptions::unauthenticated()),
        (4, Reason::TornTail)
    );
}

#[test]
fn forged_or_foreign_checkpoints_are_bad_signatures() {
    let lines = log(6, true);
    let other = CheckpointKey::generate().unwrap();
    let options = VerifyOptions {
        keys: vec![*other.public_key()],
        mirrored: Vec::new(),
        ..VerifyOptions::default()
    };
    assert_eq!(finding(&join(&lines), &options), (6, Reason::BadSignature));
    // An attacker without the key rewrites an event and re-signs with their own key.
    let mut forged_lines = lines.clone();
    let mut cp = Record::parse(lines[5].as_bytes()).unwrap();
    let head = Record::parse(lines[4].as_bytes()).unwrap();
    cp = other
        .checkpoint(&cp.instance, head.seq, head.hash, cp.time)
        .unwrap();
    forged_lines[5] = cp.to_json().unwrap();
    assert_eq!(
        finding(&join(&forged_lines), &with_key()),
        (6, Reason::BadSignature)
    );
}

#[test]
fn garbage_line_is_malformed() {
    let mut lines = log(4, false);
    lines.insert(2, "{\"not\":\"a record\"}".to_owned());
    assert_eq!(
        finding(&join(&lines), &VerifyOptions::unauthenticated()),
        (3, Reason::Malformed)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Any single-byte edit is reported, unless it did not change what the records say
    /// (e.g. `Z` → `z` in a timestamp parses to the same time).
    #[test]
    fn random_byte_edits_never_go_unnoticed(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let lines = log(6, true);
        let original = join(&lines);
        let mut edited = original.clone();
        let i = pos.index(edited.len());
        prop_assume!(edited[i] != byte);
        edited[i] = byte;
        if verify_bytes(&edited, &with_key()).is_ok() {
            let parse = |b: &[u8]| -> Vec<Record> {
                b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).map(|l| Record::parse(l).unwrap()).collect()
            };
            prop_assert_eq!(parse(&edited), parse(&original));
        }
    }
}

#[test]
fn with_the_key_a_chain_without_any_checkpoint_is_refused() {
    // Anyone able to write the file can build a consistent chain without signatures.
    let forged = log(4, false);
    assert_eq!(finding(&join(&forged), &with_key()), (1, Reason::Unsigned));
    // Without a key it is only self-consistent, which is all that is claimed then.
    verify_bytes(&join(&forged), &VerifyOptions::unauthenticated()).unwrap();
}

#[test]
fn records_after_the_last_checkpoint_are_counted_as_unsigned() {
    let lines = log(12, true);
    // Cut after the last checkpoint (line 12: records 1..=12) and append a forged event
    // chained from there: the chain verifies, but the tail is counted as unsigned.
    let mut cut: Vec<String> = lines[..12].to_vec();
    let last = Record::parse(cut[11].as_bytes()).unwrap();
    let mut forged = Record::parse(cut[10].as_bytes()).unwrap();
    forged.seq = last.seq + 1;
    forged.prev = last.hash;
    forged.hash = forged.compute_hash();
    cut.push(forged.to_json().unwrap());
    let report = verify_bytes(&join(&cut), &live()).unwrap();
    let chain = report.chains[&ServiceId::new("api-1").unwrap()];
    assert_eq!((chain.last_seq, chain.signed_through), (13, 12));
    assert_eq!(chain.unsigned(), 1);
    // By default the forged tail is refused, at its line.
    assert_eq!(
        finding(&join(&cut), &with_key()),
        (13, Reason::UnsignedTail)
    );
    // The intact log's last two events come after its last checkpoint too.
    let report = verify_bytes(&join(&lines), &live()).unwrap();
    assert_eq!(
        report.chains[&ServiceId::new("api-1").unwrap()].unsigned(),
        2
    );
}

/// A prune record whose run ends at `u64::MAX`, then a record continuing after it: once
/// overflowed `run.to + 1` (a panic in debug builds).
pub fn overflowing_log() -> Vec<u8> {
    let lines = log(2, false);
    let first = Record::parse(lines[0].as_bytes()).unwrap();
    let prune = KEY
        .prune(
            &first.instance,
            vec![mcpsec_audit::record::PrunedRun {
                from: 1,
                to: u64::MAX,
                hash: first.hash,
            }],
            first.time,
        )
        .unwrap();
    let mut next = Record::parse(lines[1].as_bytes()).unwrap();
    next.prev = first.hash;
    next.hash = next.compute_hash();
    let mut out = join(&[prune.to_json().unwrap(), next.to_json().unwrap()]);
    // And a chain whose sequence number is u64::MAX followed by another record.
    let mut top = Record::parse(lines[0].as_bytes()).unwrap();
    top.seq = u64::MAX;
    top.hash = top.compute_hash();
    let mut after = Record::parse(lines[1].as_bytes()).unwrap();
    after.seq = u64::MAX;
    after.prev = top.hash;
    after.hash = after.compute_hash();
    out.extend(join(&[top.to_json().unwrap(), after.to_json().unwrap()]));
    out
}

#[test]
fn sequence_numbers_at_u64_max_are_findings_not_panics() {
    let bytes = overflowing_log();
    let (line, _) = finding(&bytes, &VerifyOptions::unauthenticated());
    assert_eq!(line, 2);
    assert!(verify_bytes(&bytes, &with_key()).is_err());
    // The u64::MAX chain alone.
    let text = String::from_utf8(bytes).unwrap();
    let tail: Vec<String> = text.lines().skip(2).map(str::to_owned).collect();
    let (line, reason) = finding(&join(&tail), &VerifyOptions::unauthenticated());
    assert_eq!(line, 1, "{reason:?}");
    // Write it as a fuzz seed when asked (kept in fuzz/seeds/audit_record/overflow).
    if let Ok(dir) = std::env::var("MCPSEC_WRITE_SEED") {
        std::fs::write(
            std::path::Path::new(&dir).join("overflow"),
            overflowing_log(),
        )
        .unwrap();
    }
}
