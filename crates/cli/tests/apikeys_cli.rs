//! The `mcpsec apikey` contract: outputs, JSON fields, files written and exit codes that
//! operators' scripts rely on, and that no secret ever reaches the output.
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
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

/// The secret part of a key: characters 29..72 (after `mcp_sk_{env}_{id}_`, before the
/// checksum).
fn secret_of(key: &str) -> &str {
    &key[29..72]
}

/// `mcpsec apikey generate [EXTRA…]`: the key on stdout.
fn new_key(extra: &[&str]) -> String {
    let mut args = vec!["apikey", "generate"];
    args.extend_from_slice(extra);
    let out = run(&args, None);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    stdout(&out).trim_end().to_owned()
}

/// `mcpsec apikey new-pepper --out DIR/NAME`: the file's path.
fn new_pepper(dir: &Scratch, name: &str) -> String {
    let path = dir.path(name);
    let out = run(&["apikey", "new-pepper", "--out", &path], None);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    path
}

/// `mcpsec apikey hash --pepper-file PEPPER [EXTRA…] -` with the key on stdin.
fn hash(key: &str, pepper: &str, extra: &[&str]) -> Output {
    let mut args = vec!["apikey", "hash", "--pepper-file", pepper];
    args.extend_from_slice(extra);
    args.push("-");
    run(&args, Some(&format!("{key}\n")))
}

/// The stored-hash string for `key`.
fn hash_ok(key: &str, pepper: &str, extra: &[&str]) -> String {
    let out = hash(key, pepper, extra);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(!stdout(&out).contains(secret_of(key)));
    stdout(&out).trim_end().to_owned()
}

/// `mcpsec apikey verify --pepper-file PEPPER --hash HASH -` with the key on stdin.
fn verify(key: &str, pepper: &str, stored: &str) -> Output {
    run(
        &[
            "apikey",
            "verify",
            "--pepper-file",
            pepper,
            "--hash",
            stored,
            "-",
        ],
        Some(&format!("{key}\n")),
    )
}

fn assert_no_secret(out: &Output, key: &str) {
    let secret = secret_of(key);
    assert!(!stdout(out).contains(secret), "secret on stdout");
    assert!(!stderr(out).contains(secret), "secret on stderr");
}

/// `key` with its last character (part of the checksum) changed.
fn with_bad_checksum(key: &str) -> String {
    let last = if key.ends_with('A') { 'B' } else { 'A' };
    format!("{}{last}", &key[..key.len() - 1])
}

#[test]
fn generate_prints_one_parsable_live_key() {
    let out = run(&["apikey", "generate"], None);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1);
    let key = text.trim_end();
    assert!(key.starts_with("mcp_sk_live_"), "{key}");
    let parsed = mcpsec_apikeys::format::parse(key).unwrap();
    assert_eq!(parsed.env(), mcpsec_apikeys::Env::Live);
    assert_ne!(new_key(&[]), key, "every key is new");
}

#[test]
fn generate_json_has_exactly_key_id_env_hint() {
    let out = run(&["apikey", "generate", "--json"], None);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let value: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let object = value.as_object().unwrap();
    let mut fields: Vec<_> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["env", "hint", "id", "key"]);
    let key = object["key"].as_str().unwrap();
    let parsed = mcpsec_apikeys::format::parse(key).unwrap();
    assert_eq!(object["env"], "live");
    assert_eq!(object["id"], parsed.id().to_string());
    assert_eq!(object["hint"], parsed.hint());
    assert_eq!(object["hint"], &key[key.len() - 4..]);
}

#[test]
fn generate_test_env() {
    let key = new_key(&["--env", "test"]);
    assert!(key.starts_with("mcp_sk_test_"), "{key}");
    let parsed = mcpsec_apikeys::format::parse(&key).unwrap();
    assert_eq!(parsed.env(), mcpsec_apikeys::Env::Test);

    let out = run(&["apikey", "generate", "--env", "test", "--json"], None);
    assert_eq!(code(&out), Some(0));
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["env"], "test");

    let out = run(&["apikey", "generate", "--env", "staging"], None);
    assert_eq!(code(&out), Some(2));

    // issue 18: services refuse test keys by default; the help says how to allow them.
    let out = run(&["apikey", "generate", "--help"], None);
    assert_eq!(code(&out), Some(0));
    assert!(
        stdout(&out).contains("allow_test_keys()"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn inspect_argument_prints_public_parts_only() {
    let key = new_key(&[]);
    let parsed = mcpsec_apikeys::format::parse(&key).unwrap();
    let out = run(&["apikey", "inspect", &key], None);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "env: live\nid: {}\nhint: {}\n",
            parsed.id(),
            &key[key.len() - 4..]
        )
    );
    assert_no_secret(&out, &key);

    let out = run(&["apikey", "inspect", "--json", &key], None);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    let object = value.as_object().unwrap();
    let mut fields: Vec<_> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["env", "hint", "id"]);
    assert_eq!(object["id"], parsed.id().to_string());
    assert_no_secret(&out, &key);
}

#[test]
fn inspect_reads_stdin() {
    let key = new_key(&["--env", "test"]);
    for args in [
        &["apikey", "inspect", "-"][..],
        &["apikey", "inspect"][..],
        &["apikey", "inspect", "--json", "-"][..],
    ] {
        let out = run(args, Some(&format!("{key}\n")));
        assert_eq!(code(&out), Some(0), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("test"), "{args:?}");
        assert!(stdout(&out).contains(&key[12..28]), "{args:?}: the id");
        assert_no_secret(&out, &key);
    }
}

#[test]
fn inspect_refuses_junk_and_bad_checksums() {
    let out = run(&["apikey", "inspect", "not-an-api-key"], None);
    assert_eq!(code(&out), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("malformed API key"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("not-an-api-key"));
    assert!(stdout(&out).is_empty());

    let key = new_key(&[]);
    let bad = with_bad_checksum(&key);
    for (args, stdin) in [
        (vec!["apikey", "inspect", bad.as_str()], None),
        (vec!["apikey", "inspect", "-"], Some(format!("{bad}\n"))),
    ] {
        let out = run(&args, stdin.as_deref());
        assert_eq!(code(&out), Some(1));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("API key checksum mismatch"),
            "{}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty());
        assert_no_secret(&out, &key);
    }

    let out = run(&["apikey", "inspect", "-"], Some(&"x".repeat(5000)));
    assert_eq!(code(&out), Some(2), "more than 4 KiB is an input error");
}

#[test]
fn hash_verify_round_trip() {
    let dir = Scratch::new("apikeys", "hash_verify_round_trip");
    let pepper = new_pepper(&dir, "pepper");
    let key = new_key(&[]);
    let stored = hash_ok(&key, &pepper, &[]);
    assert!(stored.starts_with("hmac-sha256$v1$"), "{stored}");
    assert!(!stored.contains(secret_of(&key)));

    let out = verify(&key, &pepper, &stored);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "match\n");
    assert_no_secret(&out, &key);

    // The key as an argument too.
    let out = run(
        &[
            "apikey",
            "verify",
            "--pepper-file",
            &pepper,
            "--hash",
            &stored,
            &key,
        ],
        None,
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));

    // --pepper-version is recorded, and verify uses the version the hash names.
    let stored = hash_ok(&key, &pepper, &["--pepper-version", "7"]);
    assert!(stored.starts_with("hmac-sha256$v7$"), "{stored}");
    assert_eq!(code(&verify(&key, &pepper, &stored)), Some(0));
}

#[test]
fn verify_with_another_key_does_not_match() {
    let dir = Scratch::new("apikeys", "verify_with_another_key_does_not_match");
    let pepper = new_pepper(&dir, "pepper");
    let key = new_key(&[]);
    let stored = hash_ok(&key, &pepper, &[]);
    let other = new_key(&[]);
    let out = verify(&other, &pepper, &stored);
    assert_eq!(code(&out), Some(1));
    assert_eq!(stderr(&out), "no match\n");
    assert!(stdout(&out).is_empty());
    assert_no_secret(&out, &other);

    // Junk and a bad checksum cannot match: exit 1 with the reason.
    let out = verify("junk", &pepper, &stored);
    assert_eq!(code(&out), Some(1));
    assert!(
        stderr(&out).contains("malformed API key"),
        "{}",
        stderr(&out)
    );
    let out = verify(&with_bad_checksum(&key), &pepper, &stored);
    assert_eq!(code(&out), Some(1));
    assert!(
        stderr(&out).contains("API key checksum mismatch"),
        "{}",
        stderr(&out)
    );
    assert_no_secret(&out, &key);
}

#[test]
fn verify_with_another_pepper_does_not_match() {
    let dir = Scratch::new("apikeys", "verify_with_another_pepper_does_not_match");
    let pepper = new_pepper(&dir, "pepper");
    let other = new_pepper(&dir, "other");
    let key = new_key(&[]);
    let stored = hash_ok(&key, &pepper, &[]);
    let out = verify(&key, &other, &stored);
    assert_eq!(code(&out), Some(1));
    assert_eq!(stderr(&out), "no match\n");
    assert_no_secret(&out, &key);
}

#[test]
fn argon2_hash_verifies() {
    let dir = Scratch::new("apikeys", "argon2_hash_verifies");
    let pepper = new_pepper(&dir, "pepper");
    let key = new_key(&["--env", "test"]);
    let stored = hash_ok(&key, &pepper, &["--argon2"]);
    assert!(
        stored.starts_with("argon2id$v1$m=19456,t=2,p=1$"),
        "{stored}"
    );
    let out = verify(&key, &pepper, &stored);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "match\n");
    assert_eq!(code(&verify(&new_key(&[]), &pepper, &stored)), Some(1));
}

#[test]
fn hash_refuses_short_or_bad_peppers_and_malformed_keys() {
    let dir = Scratch::new(
        "apikeys",
        "hash_refuses_short_or_bad_peppers_and_malformed_keys",
    );
    let key = new_key(&[]);

    // 16 bytes of pepper: too short.
    let short = dir.path("short");
    std::fs::write(&short, "AAECAwQFBgcICQoLDA0ODw==\n").unwrap();
    let out = hash(&key, &short, &[]);
    assert_eq!(code(&out), Some(2));
    assert!(stdout(&out).is_empty());
    assert!(stderr(&out).contains("32 bytes"), "{}", stderr(&out));
    assert_no_secret(&out, &key);

    // Not base64: refused without echoing the file.
    let bad = dir.path("bad");
    std::fs::write(&bad, "this is not base64 at all, not even close!!\n").unwrap();
    let out = hash(&key, &bad, &[]);
    assert_eq!(code(&out), Some(2));
    assert!(!stderr(&out).contains("not even close"), "{}", stderr(&out));

    // Missing and oversized pepper files.
    assert_eq!(code(&hash(&key, &dir.path("missing"), &[])), Some(2));
    let big = dir.path("big");
    std::fs::write(&big, "A".repeat(8192)).unwrap();
    assert_eq!(code(&hash(&key, &big, &[])), Some(2));

    // A malformed key: nothing to hash.
    let pepper = new_pepper(&dir, "pepper");
    let out = hash("junk", &pepper, &[]);
    assert_eq!(code(&out), Some(2));
    assert!(
        stderr(&out).contains("malformed API key"),
        "{}",
        stderr(&out)
    );
    assert_eq!(code(&hash(&with_bad_checksum(&key), &pepper, &[])), Some(2));

    // Surrounding whitespace in the pepper file is ignored.
    let spaced = dir.path("spaced");
    let text = std::fs::read_to_string(&pepper).unwrap();
    std::fs::write(&spaced, format!("\n  {}  \n\n", text.trim())).unwrap();
    assert_eq!(
        hash_ok(&key, &spaced, &[]),
        hash_ok(&key, &pepper, &[]),
        "the same pepper"
    );
}

#[test]
fn verify_refuses_garbage_hashes() {
    let dir = Scratch::new("apikeys", "verify_refuses_garbage_hashes");
    let pepper = new_pepper(&dir, "pepper");
    let key = new_key(&[]);
    for garbage in [
        "garbage",
        "",
        "hmac-sha256$1$abc",
        "hmac-sha256$v1$!!!not-base64",
        "sha1$v1$abc",
        "argon2id$v1$m=x$a$b",
    ] {
        let out = verify(&key, &pepper, garbage);
        assert_eq!(code(&out), Some(2), "{garbage:?}: {}", stderr(&out));
        assert_no_secret(&out, &key);
        // Unparsable even when the key is junk too.
        assert_eq!(
            code(&verify("junk", &pepper, garbage)),
            Some(2),
            "{garbage:?}"
        );
    }
}

#[test]
fn new_pepper_writes_a_private_file_once() {
    let dir = Scratch::new("apikeys", "new_pepper_writes_a_private_file_once");
    let path = dir.path("pepper");
    let out = run(&["apikey", "new-pepper", "--out", &path], None);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !stdout(&out).contains(text.trim()),
        "the pepper is not printed"
    );
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap();
    assert_eq!(bytes.len(), 32);

    let out = run(&["apikey", "new-pepper", "--out", &path], None);
    assert_eq!(code(&out), Some(2));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "not overwritten"
    );

    let other = new_pepper(&dir, "other");
    assert_ne!(std::fs::read_to_string(other).unwrap(), text);
}
