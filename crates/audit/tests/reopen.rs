//! Reopening a log after a crash: what the sink adopts, cuts or seals off before it
//! appends (issue 12 items 24 and 27).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use mcpsec_audit::{
    Chain, ChainConfig, CheckpointKey, CheckpointPolicy, CheckpointSink, Digest, Entry, Error,
    FileSink, FileSinkConfig, MemoryCheckpointSink, Reason, Record, UnverifiedRun, VerifyOptions,
    verify_file,
};
use mcpsec_core::{
    Actor, Clock, EventKind, EventSink, ManualClock, Outcome, SecurityEvent, ServiceId, UserId,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("mcpsec-audit-reopen-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn instance() -> ServiceId {
    ServiceId::new("api-1").unwrap()
}

fn signed_chain(key: &Arc<CheckpointKey>) -> ChainConfig {
    ChainConfig::new(instance()).with_checkpoints(
        key.clone(),
        CheckpointPolicy {
            every_records: 1000,
            every: Duration::from_secs(3600),
        },
    )
}

fn event(clock: &ManualClock, user: &str) -> SecurityEvent {
    SecurityEvent::new(EventKind::AuthzAdmin, Outcome::Success, clock.now())
        .with_user(UserId::new(user).unwrap())
}

fn lines(path: &std::path::Path) -> Vec<Record> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| Record::parse(l.as_bytes()).unwrap())
        .collect()
}

fn write(path: &std::path::Path, records: &[Record]) {
    let text: String = records
        .iter()
        .map(|r| r.to_json().unwrap() + "\n")
        .collect();
    std::fs::write(path, text).unwrap();
}

/// What a crash leaves: three events, a checkpoint (seq 4, mirrored), then two events
/// (seq 5 and 6) that no checkpoint covers yet.
fn crashed_log(
    key: &Arc<CheckpointKey>,
    clock: &ManualClock,
    mirror: &MemoryCheckpointSink,
) -> Vec<Record> {
    let mut chain = Chain::resume(signed_chain(key), 0, Digest::GENESIS);
    let mut records = Vec::new();
    for i in 0..3 {
        records.push(
            chain
                .append(event(clock, &format!("u{i}")), clock.now())
                .unwrap(),
        );
    }
    let cp = chain.checkpoint(clock.now()).unwrap().unwrap();
    mirror.publish(&cp).unwrap();
    records.push(cp);
    for i in 3..5 {
        records.push(
            chain
                .append(event(clock, &format!("u{i}")), clock.now())
                .unwrap(),
        );
    }
    records
}

/// Item 24: whoever can write the file rewrites the records after the last checkpoint
/// (here: who acted) and recomputes their hashes and links. Reopening must not adopt
/// them: the next record is a signed statement that seqs 5..=6 could not be vouched
/// for, and verification names them, instead of the next checkpoint signing them as
/// good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_unsigned_tail_is_sealed_off_not_signed() {
    let dir = Scratch::new("rewritten-tail");
    let path = dir.path("audit.jsonl");
    let key = Arc::new(CheckpointKey::generate().unwrap());
    let clock = ManualClock::at_unix(1_767_225_600);
    let mirror = MemoryCheckpointSink::new();
    let mut records = crashed_log(&key, &clock, &mirror);
    let mut prev = records[3].hash;
    for record in &mut records[4..] {
        if let Entry::Event { event, .. } = &mut record.entry {
            event.actor = Actor::User {
                user: UserId::new("mallory").unwrap(),
            };
        }
        record.prev = prev;
        record.hash = record.compute_hash();
        prev = record.hash;
    }
    write(&path, &records);
    // The forged chain is self-consistent: only a signature could tell.
    verify_file(&path, &VerifyOptions::unauthenticated()).unwrap();

    clock.advance(Duration::from_secs(5));
    let config = FileSinkConfig::new(signed_chain(&key), Arc::new(clock.clone()))
        .mirror(Arc::new(mirror.clone()));
    let sink = FileSink::open(&path, config).unwrap();
    sink.record(event(&clock, "after")).await.unwrap();
    sink.close().unwrap();

    let all = lines(&path);
    assert!(
        all[6].event().is_none(),
        "the rewritten tail was adopted: record 7 is an ordinary event chained onto it, \
         and the closing checkpoint signs seqs 5..=6 as good"
    );
    let Entry::Unverified(seal) = &all[6].entry else {
        panic!("{:?}", all[6].entry)
    };
    assert_eq!((seal.from, seal.to, all[6].seq), (5, 6, 7));
    assert!(key.public_key().verifies(&all[6]));
    assert_eq!(sink.unverified_tail(), Some((5, 6)));
    // The seal went to the mirror too; verification names the run it could not vouch for.
    assert_eq!(mirror.checkpoints().len(), 3);
    let options = VerifyOptions {
        keys: vec![*key.public_key()],
        mirrored: mirror.checkpoints(),
        ..VerifyOptions::default()
    };
    let report = verify_file(&path, &options).unwrap();
    assert_eq!(
        report.unverified,
        vec![UnverifiedRun {
            instance: instance(),
            from: 5,
            to: 6,
            line: 7
        }]
    );
    // The seal pins the tail as it was found: an edit after the reopen is caught.
    let mut edited = lines(&path);
    if let Entry::Event { event, .. } = &mut edited[4].entry {
        event.outcome = Outcome::Failure;
    }
    edited[4].hash = edited[4].compute_hash();
    edited[5].prev = edited[4].hash;
    edited[5].hash = edited[5].compute_hash();
    write(&path, &edited);
    assert!(matches!(
        verify_file(&path, &options),
        Err(Error::Tampered(_))
    ));
}

/// Item 24: with nothing rewritten, a crash's tail is still sealed off (nothing can
/// vouch for it), and a clean close leaves nothing to seal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_tail_is_sealed_and_a_clean_close_leaves_none() {
    let dir = Scratch::new("crash-tail");
    let path = dir.path("audit.jsonl");
    let key = Arc::new(CheckpointKey::generate().unwrap());
    let clock = ManualClock::at_unix(1_767_225_600);
    let mirror = MemoryCheckpointSink::new();
    write(&path, &crashed_log(&key, &clock, &mirror));
    let open = || {
        FileSink::open(
            &path,
            FileSinkConfig::new(signed_chain(&key), Arc::new(clock.clone()))
                .mirror(Arc::new(mirror.clone())),
        )
        .unwrap()
    };
    let sink = open();
    assert_eq!(sink.unverified_tail(), Some((5, 6)));
    sink.record(event(&clock, "after")).await.unwrap();
    sink.close().unwrap();
    drop(sink);
    let sink = open();
    assert_eq!(sink.unverified_tail(), None);
    sink.close().unwrap();
    // Without a checkpoint key nothing is signed, so nothing is sealed either.
    let plain = dir.path("plain.jsonl");
    write(
        &plain,
        &crashed_log(&key, &clock, &MemoryCheckpointSink::new()),
    );
    let sink = FileSink::open(
        &plain,
        FileSinkConfig::new(ChainConfig::new(instance()), Arc::new(clock.clone())),
    )
    .unwrap();
    assert_eq!(sink.unverified_tail(), None);
    sink.close().unwrap();
}

/// Item 24: the log is held to the mirror. Cut before the mirrored checkpoint, or with
/// that checkpoint replaced by a forged record, it is refused instead of being extended.
#[tokio::test(flavor = "current_thread")]
async fn reopening_holds_the_log_to_its_mirrored_checkpoint() {
    let dir = Scratch::new("mirror-held");
    let key = Arc::new(CheckpointKey::generate().unwrap());
    let clock = ManualClock::at_unix(1_767_225_600);
    let mirror = MemoryCheckpointSink::new();
    let records = crashed_log(&key, &clock, &mirror);
    let open = |path: &std::path::Path| {
        FileSink::open(
            path,
            FileSinkConfig::new(signed_chain(&key), Arc::new(clock.clone()))
                .mirror(Arc::new(mirror.clone())),
        )
    };
    let cut = dir.path("cut.jsonl");
    write(&cut, &records[..3]);
    match open(&cut) {
        Err(Error::Tampered(finding)) => {
            assert_eq!((finding.line, finding.reason), (4, Reason::Truncated));
        }
        other => panic!("a log cut before its mirrored checkpoint was opened: {other:?}"),
    }
    // The checkpoint and the tail replaced by events chained on the first three records.
    let forged = dir.path("forged.jsonl");
    let mut chain = Chain::resume(ChainConfig::new(instance()), 3, records[2].hash);
    let mut rewritten = records[..3].to_vec();
    for i in 0..3 {
        rewritten.push(
            chain
                .append(event(&clock, &format!("m{i}")), clock.now())
                .unwrap(),
        );
    }
    write(&forged, &rewritten);
    match open(&forged) {
        Err(Error::Tampered(finding)) => {
            assert_eq!((finding.line, finding.reason), (4, Reason::Modified));
        }
        other => panic!("a log without its mirrored checkpoint was opened: {other:?}"),
    }
}

/// Item 27: a crash tore a page of the last batch, leaving garbage that ends in a newline.
/// Verification calls it a torn tail, and opening cuts it like one instead of refusing
/// to open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_page_before_the_last_line_is_a_torn_tail() {
    let dir = Scratch::new("torn-page");
    let path = dir.path("audit.jsonl");
    let clock = ManualClock::at_unix(1_767_225_600);
    let config = || FileSinkConfig::new(ChainConfig::new(instance()), Arc::new(clock.clone()));
    let sink = FileSink::open(&path, config()).unwrap();
    for i in 0..3 {
        sink.record(event(&clock, &format!("u{i}"))).await.unwrap();
    }
    sink.close().unwrap();
    drop(sink);
    let mut bytes = std::fs::read(&path).unwrap();
    let garbage = b"\0\0\0\0\0\0\0\0\0\0\0\0\"seq\":5,\"time\":\"2026-01-01T00:00:00.0Z\"}\n";
    // A torn run of zeros longer than the line cap (256 KiB), then what was left of a line.
    bytes.extend_from_slice(&[0u8; 300 * 1024]);
    bytes.extend_from_slice(garbage);
    bytes.extend_from_slice(b"\0\0\0\n");
    let torn = (300 * 1024 + garbage.len() + 4) as u64;
    std::fs::write(&path, &bytes).unwrap();
    match verify_file(&path, &VerifyOptions::unauthenticated()) {
        Err(Error::Tampered(finding)) => {
            assert_eq!(
                (finding.line, finding.reason),
                (4, Reason::TornTail),
                "{finding}"
            );
        }
        other => panic!("{other:?}"),
    }
    let sink = FileSink::open(&path, config()).unwrap();
    assert_eq!(sink.torn_bytes(), torn);
    sink.record(event(&clock, "after")).await.unwrap();
    sink.close().unwrap();
    assert_eq!(
        verify_file(&path, &VerifyOptions::unauthenticated())
            .unwrap()
            .records,
        4
    );
    // Garbage in the middle, with records after it, is still not a record.
    let mut bytes = std::fs::read(&path).unwrap();
    let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    let mut middle = lines[..2].concat();
    middle.extend_from_slice(b"\0\0\0\n");
    middle.extend_from_slice(&lines[2..].concat());
    bytes = middle;
    std::fs::write(&path, &bytes).unwrap();
    match verify_file(&path, &VerifyOptions::unauthenticated()) {
        Err(Error::Tampered(finding)) => {
            assert_eq!((finding.line, finding.reason), (3, Reason::Malformed));
        }
        other => panic!("{other:?}"),
    }
    assert!(FileSink::open(&path, config()).is_err());
}

/// A chain sealed by `Chain::seal_unverified` (also behind a signed prune record)
/// verifies with the key and names the run; a seal that names other records does not
/// verify.
#[test]
fn a_sealed_chain_verifies_and_a_seal_naming_other_records_does_not() {
    use mcpsec_audit::record::PrunedRun;
    use mcpsec_audit::verify_bytes;
    let key = Arc::new(CheckpointKey::generate().unwrap());
    let clock = ManualClock::at_unix(1_767_225_600);
    for pruned in [false, true] {
        let mut records = Vec::new();
        let mut chain = if pruned {
            let run = PrunedRun {
                from: 1,
                to: 4,
                hash: Digest::GENESIS,
            };
            records.push(key.prune(&instance(), vec![run], clock.now()).unwrap());
            Chain::resume(signed_chain(&key), 4, Digest::GENESIS)
        } else {
            Chain::resume(signed_chain(&key), 0, Digest::GENESIS)
        };
        let first = chain.last_seq() + 1;
        for i in 0..3 {
            records.push(
                chain
                    .append(event(&clock, &format!("u{i}")), clock.now())
                    .unwrap(),
            );
        }
        records.push(chain.seal_unverified(first, clock.now()).unwrap().unwrap());
        assert!(
            chain.checkpoint(clock.now()).unwrap().is_none(),
            "the seal signs the head"
        );
        let bytes: String = records
            .iter()
            .map(|r| r.to_json().unwrap() + "\n")
            .collect();
        let options = VerifyOptions {
            keys: vec![*key.public_key()],
            mirrored: Vec::new(),
            ..VerifyOptions::default()
        };
        let report = verify_bytes(bytes.as_bytes(), &options).unwrap();
        assert_eq!(report.unverified.len(), 1);
        assert_eq!(
            (report.unverified[0].from, report.unverified[0].to),
            (first, first + 2)
        );
        assert_eq!(report.chains[&instance()].unsigned(), 0);
        // Moving the run, even with the hash recomputed, breaks the signature.
        let last = records.last_mut().unwrap();
        if let Entry::Unverified(u) = &mut last.entry {
            u.from += 1;
        }
        last.hash = last.compute_hash();
        let bytes: String = records
            .iter()
            .map(|r| r.to_json().unwrap() + "\n")
            .collect();
        match verify_bytes(bytes.as_bytes(), &options) {
            Err(Error::Tampered(finding)) => assert_eq!(finding.reason, Reason::BadSignature),
            other => panic!("{other:?}"),
        }
    }
}

/// Issue 18: a writer reopening a log whose checkpoints another key signed used to skip
/// the signature check (the fingerprint did not match, so nothing was checked) and adopt
/// the chain; now it refuses, and a rotation names the previous key explicitly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_with_a_different_checkpoint_key_is_refused() {
    let scratch = Scratch::new("other-key");
    let path = scratch.path("audit.jsonl");
    let clock = ManualClock::at_unix(1_767_225_600);
    let old = Arc::new(CheckpointKey::generate().unwrap());
    let sink = FileSink::open(
        &path,
        FileSinkConfig::new(signed_chain(&old), Arc::new(clock.clone())),
    )
    .unwrap();
    sink.record(event(&clock, "ada")).await.unwrap();
    sink.close().unwrap();
    let written = std::fs::read(&path).unwrap();

    let new = Arc::new(CheckpointKey::generate().unwrap());
    match FileSink::open(
        &path,
        FileSinkConfig::new(signed_chain(&new), Arc::new(clock.clone())),
    ) {
        Err(Error::Tampered(finding)) => {
            assert_eq!(finding.reason, Reason::BadSignature);
            assert_eq!(finding.line, 2, "the checkpoint the old key signed");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), written, "nothing appended");

    // A rotation: the previous public key is accepted when named.
    let rotated = signed_chain(&new).with_previous_key(*old.public_key());
    let sink =
        FileSink::open(&path, FileSinkConfig::new(rotated, Arc::new(clock.clone()))).unwrap();
    sink.record(event(&clock, "bob")).await.unwrap();
    sink.close().unwrap();
    let options = VerifyOptions::with_keys(vec![*old.public_key(), *new.public_key()]);
    let report = verify_file(&path, &options).unwrap();
    assert_eq!((report.records, report.signatures_verified), (4, 2));
}

/// Issue 18: the log holds user ids, key ids and addresses; it used to be created with
/// the process umask (0644 typically).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_file_is_created_0600() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("mode");
    let path = scratch.path("audit.jsonl");
    let clock = ManualClock::at_unix(1_767_225_600);
    let key = Arc::new(CheckpointKey::generate().unwrap());
    let sink = FileSink::open(
        &path,
        FileSinkConfig::new(signed_chain(&key), Arc::new(clock.clone())),
    )
    .unwrap();
    sink.record(event(&clock, "ada")).await.unwrap();
    sink.close().unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
