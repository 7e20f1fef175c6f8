//! Retention: pruned logs still verify, with the key; forged prune records do not.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use mcpsec_audit::{
    ChainConfig, CheckpointKey, CheckpointPolicy, Entry, Error, EventClass, FileSink,
    FileSinkConfig, Reason, Record, RetentionPolicy, VerifyOptions, prune_file, verify_file,
};
use mcpsec_core::{
    Clock, EventKind, EventSink, ManualClock, Outcome, SecurityEvent, ServiceId, UserId,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86_400);

fn config(key: &Arc<CheckpointKey>, clock: &ManualClock) -> FileSinkConfig {
    FileSinkConfig::new(
        ChainConfig::new(ServiceId::new("api-1").unwrap()).with_checkpoints(
            key.clone(),
            CheckpointPolicy {
                every_records: 4,
                every: DAY * 365,
            },
        ),
        Arc::new(clock.clone()),
    )
}

async fn write(path: &Path, key: &Arc<CheckpointKey>, clock: &ManualClock, kinds: &[EventKind]) {
    let sink = FileSink::open(path, config(key, clock)).unwrap();
    for (i, kind) in kinds.iter().enumerate() {
        let e = SecurityEvent::new(*kind, Outcome::Failure, clock.now())
            .with_user(UserId::new(format!("u{i}")).unwrap());
        sink.record(e).await.unwrap();
    }
    sink.close().unwrap();
}

fn options(key: &CheckpointKey) -> VerifyOptions {
    VerifyOptions {
        keys: vec![*key.public_key()],
        mirrored: Vec::new(),
        ..VerifyOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_by_class_keeps_the_chain_verifiable() {
    let dir = std::env::temp_dir().join(format!("mcpsec-audit-{}-prune", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let key = Arc::new(CheckpointKey::generate().unwrap());
    let clock = ManualClock::at_unix(1_767_225_600);
    use EventKind::{AuthnLoginFail as Login, AuthzAdmin as Admin};
    // Old: logins interleaved with admin actions.
    write(
        &path,
        &key,
        &clock,
        &[Login, Login, Admin, Login, Admin, Login, Login],
    )
    .await;
    clock.advance(DAY * 40);
    write(&path, &key, &clock, &[Login, Admin]).await;
    let before = verify_file(&path, &options(&key)).unwrap();

    let policy = RetentionPolicy::new().keep(EventClass::Authentication, DAY * 30);
    let outcome = prune_file(&path, &policy, &key, &clock).unwrap();
    assert_eq!(outcome.removed, 5, "the five old logins");
    let after = verify_file(&path, &options(&key)).unwrap();
    assert_eq!(after.head, before.head, "the head is untouched");
    let records: Vec<Record> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| Record::parse(l.as_bytes()).unwrap())
        .collect();
    assert!(matches!(records[0].entry, Entry::Prune(_)));
    assert!(
        records
            .iter()
            .filter_map(Record::event)
            .all(|e| e.kind != Login || e.time >= clock.now() - DAY)
    );

    // The log goes on after a prune, and a second prune merges the statements.
    write(&path, &key, &clock, &[Login]).await;
    clock.advance(DAY * 40);
    prune_file(&path, &policy, &key, &clock).unwrap();
    verify_file(&path, &options(&key)).unwrap();
    // A stricter policy removes records between the runs already pruned: the runs merge
    // in sequence order.
    let stricter = policy.clone().keep(EventClass::Authorization, DAY * 30);
    let outcome = prune_file(&path, &stricter, &key, &clock).unwrap();
    assert_eq!(
        outcome.removed, 3,
        "the three admin actions, all now older than 30 days"
    );
    verify_file(&path, &options(&key)).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let prunes: Vec<Record> = text
        .lines()
        .map(|l| Record::parse(l.as_bytes()).unwrap())
        .filter(|r| matches!(r.entry, Entry::Prune(_)))
        .collect();
    assert_eq!(prunes.len(), 1);
    // The log continues after a prune that removed its head.
    write(&path, &key, &clock, &[Login]).await;
    verify_file(&path, &options(&key)).unwrap();

    // A forged prune statement (another key, or edited runs) does not verify with the key.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut prune = Record::parse(lines[0].as_bytes()).unwrap();
    if let Entry::Prune(p) = &mut prune.entry {
        p.runs.pop();
    }
    prune.hash = prune.compute_hash();
    lines[0] = prune.to_json().unwrap();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let Error::Tampered(finding) = verify_file(&path, &options(&key)).unwrap_err() else {
        panic!()
    };
    assert_eq!((finding.line, finding.reason), (1, Reason::BadSignature));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_refuses_a_tampered_log() {
    let dir = std::env::temp_dir().join(format!("mcpsec-audit-{}-prune-bad", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let key = Arc::new(CheckpointKey::generate().unwrap());
    let clock = ManualClock::at_unix(1_767_225_600);
    write(&path, &key, &clock, &[EventKind::AuthnLoginFail; 3]).await;
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replacen("u1", "u9", 1);
    std::fs::write(&path, text).unwrap();
    clock.advance(DAY * 40);
    let policy = RetentionPolicy::new().keep(EventClass::Authentication, DAY);
    assert!(matches!(
        prune_file(&path, &policy, &key, &clock),
        Err(Error::Tampered(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keeps_the_logs_permissions_and_leaves_no_temporary_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("mcpsec-audit-{}-prune-mode", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let key = Arc::new(CheckpointKey::generate().unwrap());
    let clock = ManualClock::at_unix(1_767_225_600);
    write(&path, &key, &clock, &[EventKind::AuthnLoginFail; 3]).await;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    // A stale temporary file from an earlier crash, with a looser mode.
    let tmp = path.with_extension("prune-tmp");
    std::fs::write(&tmp, b"stale").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666)).unwrap();
    clock.advance(DAY * 40);
    let policy = RetentionPolicy::new().keep(EventClass::Authentication, DAY * 30);
    let outcome = prune_file(&path, &policy, &key, &clock).unwrap();
    assert_eq!(outcome.removed, 3);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    assert!(!tmp.exists());
    verify_file(&path, &options(&key)).unwrap();
    // A failing prune (here: a tampered log) changes nothing and leaves nothing behind.
    let text = std::fs::read_to_string(&path).unwrap();
    let tampered = text.replacen("\"seq\":", "\"seq\":9", 1);
    std::fs::write(&path, &tampered).unwrap();
    assert!(prune_file(&path, &policy, &key, &clock).is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), tampered);
    assert!(!tmp.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "current_thread")]
async fn reopening_a_pruned_chain_accepts_covered_gaps_and_refuses_others() {
    use mcpsec_audit::{ChainSink, FileSinkConfig, LogFile, MemoryChainStorage, prune_records};
    let dir = std::env::temp_dir().join(format!("mcpsec-audit-{}-prune-gaps", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let key = Arc::new(CheckpointKey::generate().unwrap());
    let clock = ManualClock::at_unix(1_767_225_600);
    // No checkpoint after the gaps (as after a crash): reopening must check them against
    // the prune record at the start of the file.
    let instance = ServiceId::new("api-1").unwrap();
    let storage = MemoryChainStorage::new();
    let sink = ChainSink::with_storage(
        Box::new(storage.clone()),
        FileSinkConfig::new(ChainConfig::new(instance.clone()), Arc::new(clock.clone())),
    )
    .unwrap();
    use EventKind::{AuthnLoginFail as Login, AuthzAdmin as Admin};
    for (i, kind) in [Login, Admin, Login, Admin, Login, Admin]
        .iter()
        .enumerate()
    {
        let e = SecurityEvent::new(*kind, Outcome::Failure, clock.now())
            .with_user(UserId::new(format!("u{i}")).unwrap());
        sink.append(e).await.unwrap();
    }
    // Chained (and timed) before the clock moves on.
    sink.flush().await.unwrap();
    clock.advance(DAY * 40);
    let policy = RetentionPolicy::new().keep(EventClass::Authentication, DAY * 30);
    let (kept, outcome) = prune_records(storage.records(), &policy, &key, clock.now()).unwrap();
    assert_eq!(outcome.removed, 3);
    let text: String = kept.iter().map(|r| r.to_json().unwrap() + "\n").collect();
    std::fs::write(&path, &text).unwrap();
    let opened =
        LogFile::open_checked(&path, &instance, std::slice::from_ref(key.public_key())).unwrap();
    let last = kept.last().unwrap();
    assert_eq!((opened.last_seq, opened.head), (last.seq, last.hash));
    drop(opened);
    // Deleting a kept record leaves a gap no prune record covers.
    let lines: Vec<&str> = text.lines().collect();
    let without: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(&path, without).unwrap();
    match LogFile::open_checked(&path, &instance, std::slice::from_ref(key.public_key())) {
        Err(Error::Tampered(finding)) => assert_eq!(finding.reason, Reason::Deleted),
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Item 26: a prune that removes a chain's last records (here seqs 3 and 4, which a crash
/// left after the last checkpoint) must not let the next writer number its records 3, 4,
/// … again; and verification refuses a record whose sequence number lies inside a pruned
/// run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_the_end_of_a_chain_never_reuses_its_sequence_numbers() {
    use mcpsec_audit::{Chain, Digest};
    let dir = std::env::temp_dir().join(format!("mcpsec-audit-{}-prune-end", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let key = Arc::new(CheckpointKey::generate().unwrap());
    let clock = ManualClock::at_unix(1_767_225_600);
    let event = |user: &str, kind| {
        SecurityEvent::new(kind, Outcome::Failure, clock.now())
            .with_user(UserId::new(user).unwrap())
    };
    use EventKind::{AuthnLoginFail as Login, AuthzAdmin as Admin};
    let signed = config(&key, &clock).chain;
    let mut chain = Chain::resume(signed.clone(), 0, Digest::GENESIS);
    let mut crashed = vec![chain.append(event("a", Admin), clock.now()).unwrap()];
    crashed.push(chain.checkpoint(clock.now()).unwrap().unwrap());
    for user in ["b", "c"] {
        crashed.push(chain.append(event(user, Login), clock.now()).unwrap());
    }
    let text: String = crashed
        .iter()
        .map(|r| r.to_json().unwrap() + "\n")
        .collect();
    std::fs::write(&path, text).unwrap();
    clock.advance(DAY * 40);
    let policy = RetentionPolicy::new().keep(EventClass::Authentication, DAY * 30);
    assert_eq!(prune_file(&path, &policy, &key, &clock).unwrap().removed, 2);
    let sink = FileSink::open(&path, config(&key, &clock)).unwrap();
    sink.record(event("d", Admin)).await.unwrap();
    sink.close().unwrap();
    drop(sink);
    let records: Vec<Record> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| Record::parse(l.as_bytes()).unwrap())
        .collect();
    let new = records.iter().rev().find_map(Record::event).unwrap();
    let new_seq = records.iter().find(|r| r.event() == Some(new)).unwrap().seq;
    assert_eq!(
        new_seq, 5,
        "the record after a pruned end reused a pruned sequence number"
    );
    verify_file(&path, &options(&key)).unwrap();

    // A forger's record numbered inside the pruned run, linked to the kept checkpoint.
    let mut forger = Chain::resume(signed, 2, records[2].hash);
    let forged = forger.append(event("x", Admin), clock.now()).unwrap();
    assert_eq!(forged.seq, 3);
    let text: String = records[..3]
        .iter()
        .chain(std::iter::once(&forged))
        .map(|r| r.to_json().unwrap() + "\n")
        .collect();
    std::fs::write(&path, text).unwrap();
    match verify_file(&path, &options(&key)) {
        Err(Error::Tampered(finding)) => {
            assert_eq!(
                (finding.line, finding.reason),
                (4, Reason::Inserted),
                "{finding}"
            );
        }
        other => panic!("a record inside a pruned run verified: {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Item 26: a live sink prunes its own log without being closed (before, `prune_file`
/// refused a log a sink held: `InUse`), keeps appending to the pruned file in one chain,
/// and the standalone prune still refuses the log while the sink holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_sink_prunes_its_own_log_without_closing() {
    let dir = std::env::temp_dir().join(format!("mcpsec-audit-{}-prune-live", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let key = Arc::new(CheckpointKey::generate().unwrap());
    let clock = ManualClock::at_unix(1_767_225_600);
    use EventKind::{AuthnLoginFail as Login, AuthzAdmin as Admin};
    let sink = FileSink::open(&path, config(&key, &clock)).unwrap();
    let record = |user: &str, kind| {
        SecurityEvent::new(kind, Outcome::Failure, clock.now())
            .with_user(UserId::new(user).unwrap())
    };
    for (i, kind) in [Login, Admin, Login, Login, Admin, Login]
        .into_iter()
        .enumerate()
    {
        sink.record(record(&format!("old-{i}"), kind))
            .await
            .unwrap();
    }
    sink.flush().await.unwrap();
    // Readers take no lock: where the chain stands before the prune.
    let before = verify_file(&path, &options(&key).allow_unsigned_tail()).unwrap();
    let last_before = before.chains.values().next().unwrap().last_seq;
    clock.advance(DAY * 40);
    let policy = RetentionPolicy::new().keep(EventClass::Authentication, DAY * 30);
    assert!(matches!(
        prune_file(&path, &policy, &key, &clock),
        Err(Error::InUse)
    ));
    let outcome = sink.prune(&policy).await.unwrap();
    assert_eq!(outcome.removed, 4, "the four old logins");
    for i in 0..3 {
        sink.record(record(&format!("new-{i}"), Admin))
            .await
            .unwrap();
    }
    sink.close().unwrap();
    drop(sink);
    verify_file(&path, &options(&key)).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("old-0") && !text.contains("old-5"));
    assert!(text.contains("old-1") && text.contains("new-2"));
    // The chain's numbers go on from where the sink was.
    let first_new = text
        .lines()
        .map(|l| Record::parse(l.as_bytes()).unwrap())
        .find(|r| {
            r.event().is_some_and(|e| {
                matches!(&e.actor, mcpsec_core::Actor::User { user } if user.as_str() == "new-0")
            })
        })
        .unwrap();
    assert_eq!(first_new.seq, last_before + 1);
    // Without a checkpoint key a sink cannot sign prune records.
    let plain = FileSink::open(
        &dir.join("plain.jsonl"),
        FileSinkConfig::new(
            ChainConfig::new(ServiceId::new("api-1").unwrap()),
            Arc::new(clock.clone()),
        ),
    )
    .unwrap();
    assert!(matches!(plain.prune(&policy).await, Err(Error::Config(_))));
    plain.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
