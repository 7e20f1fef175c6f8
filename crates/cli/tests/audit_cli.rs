//! The `mcpsec audit` contract: the documented event line appends, verify's output and
//! exit codes, strict input with all-or-nothing batches, tail, export, keygen.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::{Scratch, code, run, stderr, stdout};
use serde_json::Value;

/// The one-line example of docs/audit-events.md, exactly as documented.
fn documented_event() -> String {
    let doc = include_str!("../../../docs/audit-events.md");
    let after = doc.split("<!-- audit-event-example -->").nth(1).unwrap();
    let line = after.lines().find(|l| l.starts_with('{')).unwrap();
    assert!(!line.contains('\n'));
    line.to_owned()
}

#[test]
fn documented_event_appends_and_verifies() {
    let dir = Scratch::new("audit", "documented");
    let log = dir.path("audit.jsonl");
    let line = documented_event();
    let out = run(
        &["audit", "append", "--log", &log],
        Some(&format!("{line}\n")),
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("appended 1 records, head "));
    let out = run(&["audit", "verify", &log, "--allow-unsigned"], None);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("ok: 1 records, head "), "{text}");
    let head = text.split(' ').nth(4).unwrap().trim_end_matches(';');
    assert_eq!(head.len(), 64);
    // The record holds the event exactly as given.
    let record: Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let given: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["event"]["kind"], given["kind"]);
    assert_eq!(record["event"]["actor"], given["actor"]);
    assert_eq!(record["event"]["resource"], given["resource"]);
    assert_eq!(record["hash"], head);
}

#[test]
fn bad_line_refuses_the_whole_batch_naming_the_line() {
    let dir = Scratch::new("audit", "refused");
    let log = dir.path("audit.jsonl");
    let good = documented_event();
    let unknown_field = good.replacen('{', "{\"comment\":\"free text\",", 1);
    let unknown_kind = good.replace("authz_admin", "authz_made_up");
    for (bad, needle) in [
        (unknown_field, "unknown field"),
        (unknown_kind, "not a known name"),
    ] {
        let input = format!("{good}\n{good}\n{bad}\n");
        let out = run(&["audit", "append", "--log", &log], Some(&input));
        assert_eq!(code(&out), Some(2));
        let err = stderr(&out);
        assert!(err.contains("line 3") && err.contains(needle), "{err}");
        assert!(err.contains("nothing was appended"));
        assert!(!std::path::Path::new(&log).exists() || std::fs::read(&log).unwrap().is_empty());
    }
}

#[test]
fn tampering_exits_1_naming_line_and_reason() {
    let dir = Scratch::new("audit", "tamper");
    let log = dir.path("audit.jsonl");
    let line = documented_event();
    let three = format!("{line}\n{line}\n{line}\n");
    assert_eq!(
        code(&run(&["audit", "append", "--log", &log], Some(&three))),
        Some(0)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let edited = lines[1].replace("\"user\":\"ada\"", "\"user\":\"eve\"");
    lines[1] = &edited;
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let out = run(&["audit", "verify", &log], None);
    assert_eq!(code(&out), Some(1));
    assert!(
        stderr(&out).contains("line 2: modified"),
        "{}",
        stderr(&out)
    );
    // Deleting a record instead.
    let original: Vec<&str> = text.lines().collect();
    std::fs::write(&log, format!("{}\n{}\n", original[0], original[2])).unwrap();
    let out = run(&["audit", "verify", &log], None);
    assert_eq!(code(&out), Some(1));
    assert!(stderr(&out).contains("line 2: deleted"), "{}", stderr(&out));
}

#[test]
fn keygen_checkpoints_and_truncation_with_the_mirror() {
    let dir = Scratch::new("audit", "keys");
    let keys = dir.path("keys");
    let out = run(&["audit", "keygen", "--out", &keys], None);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let private = format!("{keys}/checkpoint.key");
    let public = format!("{keys}/checkpoint.pub");
    #[cfg(unix)]
    for file in [&private, &public] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    assert_eq!(
        code(&run(&["audit", "keygen", "--out", &keys], None)),
        Some(2),
        "never overwrites"
    );
    let log = dir.path("audit.jsonl");
    let line = documented_event();
    for _ in 0..2 {
        let out = run(
            &[
                "audit",
                "append",
                "--log",
                &log,
                "--checkpoint-key",
                &private,
            ],
            Some(&line),
        );
        assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    }
    let out = run(
        &["audit", "verify", &log, "--checkpoint-key", &public],
        None,
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("ok: 4 records"));
    // Ship checkpoints elsewhere, then cut the log: truncation is detected.
    let text = std::fs::read_to_string(&log).unwrap();
    let mirror = dir.path("mirror.jsonl");
    let cps: String = text
        .lines()
        .filter(|l| l.contains("\"checkpoint\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&mirror, cps).unwrap();
    let first_two: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, first_two).unwrap();
    let out = run(
        &[
            "audit",
            "verify",
            &log,
            "--checkpoint-key",
            &public,
            "--checkpoints",
            &mirror,
        ],
        None,
    );
    assert_eq!(code(&out), Some(1));
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
    // Another key: bad signature.
    let other = dir.path("other");
    run(&["audit", "keygen", "--out", &other], None);
    let out = run(
        &[
            "audit",
            "verify",
            &log,
            "--checkpoint-key",
            &format!("{other}/checkpoint.pub"),
        ],
        None,
    );
    assert_eq!(code(&out), Some(1));
    assert!(
        stderr(&out).contains("line 2: bad signature"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn tail_and_export() {
    let dir = Scratch::new("audit", "tail");
    let log = dir.path("audit.jsonl");
    let line = documented_event();
    let login = r#"{"kind":"authn_login_fail","outcome":"failure","severity":"warning","time":"2026-01-01T09:31:00Z","actor":{"type":"user","user":"bob"},"reason":"secret_mismatch"}"#;
    let out = run(
        &["audit", "append", "--log", &log],
        Some(&format!("{line}\n{login}\n")),
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let out = run(&["audit", "tail", &log, "-n", "1"], None);
    assert_eq!(code(&out), Some(0));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1);
    assert!(
        text.contains("#2 ")
            && text.contains("authn_login_fail failure user=bob reason=secret_mismatch"),
        "{text}"
    );
    let out = run(&["audit", "export", &log, "--format", "ocsf"], None);
    assert_eq!(code(&out), Some(0));
    let rows: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[0]["class_uid"], 6003);
    assert_eq!(rows[1]["class_uid"], 3002);
    let out = run(&["audit", "export", &log, "--format", "ecs"], None);
    let rows: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[1]["event"]["category"][0], "authentication");
    assert_eq!(rows[1]["user"]["id"], "bob");
    assert_eq!(
        code(&run(&["audit", "export", &log, "--format", "csv"], None)),
        Some(2)
    );
}

/// Keys and a log of two signed batches; returns (private, public, log).
fn signed_log(dir: &Scratch) -> (String, String, String) {
    let keys = dir.path("keys");
    assert_eq!(
        code(&run(&["audit", "keygen", "--out", &keys], None)),
        Some(0)
    );
    let private = format!("{keys}/checkpoint.key");
    let public = format!("{keys}/checkpoint.pub");
    let log = dir.path("audit.jsonl");
    let line = documented_event();
    for _ in 0..2 {
        let out = run(
            &[
                "audit",
                "append",
                "--log",
                &log,
                "--checkpoint-key",
                &private,
            ],
            Some(&format!("{line}\n{line}\n")),
        );
        assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    }
    (private, public, log)
}

#[test]
fn with_the_key_a_chain_without_checkpoints_fails_and_an_unsigned_tail_is_named() {
    let dir = Scratch::new("audit", "unsigned");
    let (_, public, log) = signed_log(&dir);
    let out = run(
        &["audit", "verify", &log, "--checkpoint-key", &public],
        None,
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(!stdout(&out).contains("unsigned"), "{}", stdout(&out));
    // A forger rebuilds the whole chain without checkpoints: self-consistent, unsigned.
    let forged = dir.path("forged.jsonl");
    let line = documented_event();
    let out = run(
        &["audit", "append", "--log", &forged],
        Some(&format!("{line}\n{line}\n")),
    );
    assert_eq!(code(&out), Some(0));
    assert_eq!(
        code(&run(
            &["audit", "verify", &forged, "--allow-unsigned"],
            None
        )),
        Some(0)
    );
    let out = run(
        &["audit", "verify", &forged, "--checkpoint-key", &public],
        None,
    );
    assert_eq!(code(&out), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("line 1: unsigned"),
        "{}",
        stderr(&out)
    );
    // Cut after the last checkpoint and append other events (without the key): refused
    // by default (issue 18); accepted as a live log's tail only when asked, and then the
    // ok line names it.
    let out = run(
        &["audit", "append", "--log", &log, "--instance", "mcpsec-cli"],
        Some(&format!("{line}\n{line}\n{line}\n")),
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let out = run(
        &["audit", "verify", &log, "--checkpoint-key", &public],
        None,
    );
    assert_eq!(code(&out), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("line 7: unsigned tail"),
        "{}",
        stderr(&out)
    );
    let out = run(
        &[
            "audit",
            "verify",
            &log,
            "--checkpoint-key",
            &public,
            "--allow-unsigned-tail",
        ],
        None,
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("ok: 9 records, head "), "{text}");
    assert!(
        first.ends_with("(mcpsec-cli: 3 unsigned after seq 6)"),
        "{text}"
    );
}

#[test]
fn append_refuses_a_log_in_use_or_a_tampered_chain() {
    let dir = Scratch::new("audit", "append-refusals");
    let (private, _, log) = signed_log(&dir);
    let line = documented_event();
    // Another writer holds the lock.
    let held = std::fs::OpenOptions::new().read(true).open(&log).unwrap();
    held.lock().unwrap();
    let before = std::fs::read(&log).unwrap();
    let out = run(&["audit", "append", "--log", &log], Some(&line));
    assert_eq!(code(&out), Some(2));
    assert!(
        stderr(&out).contains("log in use by another writer"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&log).unwrap(), before);
    held.unlock().unwrap();
    drop(held);
    // The last checkpoint edited: the next append would chain onto it and sign over it.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let last = lines.len() - 1;
    assert!(lines[last].contains("\"checkpoint\""));
    lines[last] = lines[last].replacen("\"seq\":6", "\"seq\":7", 1);
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let out = run(
        &[
            "audit",
            "append",
            "--log",
            &log,
            "--checkpoint-key",
            &private,
        ],
        Some(&line),
    );
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("line 6: modified") && stderr(&out).contains("refusing"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn append_with_a_pseudonym_key_never_writes_the_address() {
    let dir = Scratch::new("audit", "pseudonym");
    let log = dir.path("audit.jsonl");
    let key = dir.path("pseudonym.key");
    std::fs::write(&key, format!("{}\n", "5a".repeat(32))).unwrap();
    let line = documented_event();
    assert!(line.contains("192.0.2.10"));
    let out = run(
        &["audit", "append", "--log", &log, "--pseudonym-key", &key],
        Some(&format!("{line}\n")),
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("192.0.2.10"), "{text}");
    assert!(text.contains("\"source_pseudonym\""), "{text}");
    assert_eq!(
        code(&run(&["audit", "verify", &log, "--allow-unsigned"], None)),
        Some(0)
    );
    // A short or non-hex key is a usage error, and nothing is appended.
    std::fs::write(&key, "5a5a\n").unwrap();
    let out = run(
        &["audit", "append", "--log", &log, "--pseudonym-key", &key],
        Some(&format!("{line}\n")),
    );
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), text);
}

#[test]
fn tail_and_export_cap_lines_and_tail_reads_from_the_end() {
    let dir = Scratch::new("audit", "caps");
    let log = dir.path("audit.jsonl");
    let line = documented_event();
    let out = run(
        &["audit", "append", "--log", &log],
        Some(&format!("{line}\n{line}\n{line}\n")),
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    // A torn last line is not printed by tail.
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(b"{\"seq\":4,");
    std::fs::write(&log, &bytes).unwrap();
    let out = run(&["audit", "tail", &log, "-n", "2"], None);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("#2 ") && lines[1].starts_with("#3 "),
        "{text}"
    );
    // A line over the cap (256 KiB) is refused, not buffered.
    bytes.truncate(bytes.len() - 9);
    bytes.extend(std::iter::repeat_n(b'x', 300 * 1024));
    bytes.push(b'\n');
    std::fs::write(&log, &bytes).unwrap();
    let out = run(&["audit", "export", &log, "--format", "ecs"], None);
    assert_eq!(code(&out), Some(2));
    assert!(stderr(&out).contains("line 4"), "{}", stderr(&out));
    let out = run(&["audit", "tail", &log, "-n", "1"], None);
    assert_eq!(code(&out), Some(2));
    assert!(stderr(&out).contains("cap"), "{}", stderr(&out));
}

#[test]
fn verify_lists_each_chains_head_when_a_file_holds_several() {
    let dir = Scratch::new("audit", "chains");
    let log = dir.path("audit.jsonl");
    let line = documented_event();
    let mut heads = Vec::new();
    for instance in ["api-1", "api-2"] {
        let out = run(
            &["audit", "append", "--log", &log, "--instance", instance],
            Some(&format!("{line}\n")),
        );
        assert_eq!(code(&out), Some(0), "{}", stderr(&out));
        heads.push(stdout(&out).trim().rsplit(' ').next().unwrap().to_owned());
    }
    let out = run(&["audit", "verify", &log, "--allow-unsigned"], None);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("ok: 2 records, head {}", heads[1])),
        "{text}"
    );
    assert!(
        text.contains(&format!("; chains: api-1 {}, api-2 {}", heads[0], heads[1])),
        "{text}"
    );
}

/// Issue 12 item 24: records appended without the key after the last checkpoint are not
/// vouched for; the next `append --checkpoint-key` seals them off (a signed record) rather
/// than signing them with its checkpoint, and `verify` names them.
#[test]
fn append_with_the_key_seals_an_unsigned_tail_and_verify_names_it() {
    let dir = Scratch::new("audit", "unverified-tail");
    let (private, public, log) = signed_log(&dir);
    let line = documented_event();
    let out = run(
        &["audit", "append", "--log", &log, "--instance", "mcpsec-cli"],
        Some(&format!("{line}\n{line}\n{line}\n")),
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let out = run(
        &[
            "audit",
            "append",
            "--log",
            &log,
            "--checkpoint-key",
            &private,
        ],
        Some(&format!("{line}\n")),
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("7..=9"), "{}", stderr(&out));
    let out = run(
        &["audit", "verify", &log, "--checkpoint-key", &public],
        None,
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("unverified: mcpsec-cli 7..=9 (line 10)"),
        "{text}"
    );
    let out = run(&["audit", "tail", &log, "-n", "3"], None);
    assert!(
        stdout(&out).contains("unverified seq 7..=9"),
        "{}",
        stdout(&out)
    );
}

/// Issue 18: `verify` without a key used to print a plain `ok` for any self-consistent
/// file (which anyone able to write it can produce). Now exit 1 naming the reason, unless
/// `--allow-unsigned`, and then the ok line still says unauthenticated.
#[test]
fn verify_without_a_key_exits_1_unless_allow_unsigned() {
    let dir = Scratch::new("audit", "unauthenticated");
    let log = dir.path("audit.jsonl");
    let line = documented_event();
    let out = run(
        &["audit", "append", "--log", &log],
        Some(&format!("{line}\n{line}\n")),
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let out = run(&["audit", "verify", &log], None);
    assert_eq!(code(&out), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("invalid: chain unauthenticated") && err.contains("--allow-unsigned"),
        "{err}"
    );
    let out = run(&["audit", "verify", &log, "--allow-unsigned"], None);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("ok: 2 records, head "), "{text}");
    assert!(
        text.trim_end()
            .ends_with("; unauthenticated: no checkpoint key"),
        "{text}"
    );
    // With a key given, --allow-unsigned changes nothing: the chain is checked as signed.
    let keys = Scratch::new("audit", "unauthenticated-keys");
    let (_, public, _) = signed_log(&keys);
    let out = run(
        &[
            "audit",
            "verify",
            &log,
            "--checkpoint-key",
            &public,
            "--allow-unsigned",
        ],
        None,
    );
    assert_eq!(code(&out), Some(1));
    assert!(
        stderr(&out).contains("line 1: unsigned"),
        "{}",
        stderr(&out)
    );
}

/// Issue 18: `append --checkpoint-key` onto a log whose last checkpoint another key signed
/// used to skip the check and sign over it; now exit 1, nothing appended, unless the
/// previous key is named for a rotation.
#[test]
fn append_with_another_checkpoint_key_is_refused_unless_named_as_previous() {
    let dir = Scratch::new("audit", "other-key");
    let (_, old_public, log) = signed_log(&dir);
    let new = dir.path("new-keys");
    assert_eq!(
        code(&run(&["audit", "keygen", "--out", &new], None)),
        Some(0)
    );
    let new_private = format!("{new}/checkpoint.key");
    let new_public = format!("{new}/checkpoint.pub");
    let line = documented_event();
    let before = std::fs::read(&log).unwrap();
    let append = |extra: &[&str]| {
        let mut args = vec![
            "audit",
            "append",
            "--log",
            &log,
            "--checkpoint-key",
            &new_private,
        ];
        args.extend_from_slice(extra);
        run(&args, Some(&format!("{line}\n")))
    };
    let out = append(&[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("bad signature") && stderr(&out).contains("refusing"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&log).unwrap(), before, "nothing appended");
    let out = append(&["--previous-checkpoint-key", &old_public]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let out = run(
        &[
            "audit",
            "verify",
            &log,
            "--checkpoint-key",
            &old_public,
            "--checkpoint-key",
            &new_public,
        ],
        None,
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("ok: 8 records, head "),
        "{}",
        stdout(&out)
    );
}

/// Issue 18: the log file holds user ids and addresses: created 0600.
#[cfg(unix)]
#[test]
fn append_creates_the_log_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Scratch::new("audit", "log-mode");
    let log = dir.path("audit.jsonl");
    let out = run(
        &["audit", "append", "--log", &log],
        Some(&format!("{}\n", documented_event())),
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let mode = std::fs::metadata(&log).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
