//! The `mcpsec totp` and `mcpsec recovery` contract: outputs, JSON shapes and exit codes
//! that operators' scripts rely on, and that secrets never reach error messages.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::{code, run, stderr, stdout};

use serde_json::Value;
use std::collections::HashSet;

/// Base32 of ASCII "12345678901234567890": the RFC 6238 SHA-1 secret.
const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
/// The last six digits of the RFC 6238 SHA-1 vector at T = 59 (94287082).
const RFC_CODE_AT_59: &str = "287082";
const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn is_base32(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b) || b == b'=')
}

/// `^[0-9A-HJKMNP-TV-Z]{5}(-[0-9A-HJKMNP-TV-Z]{5}){3}$`, by hand.
fn is_recovery_code(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 4
        && groups
            .iter()
            .all(|g| g.len() == 5 && g.chars().all(|c| CROCKFORD.contains(c)))
}

/// `mcpsec recovery generate [EXTRA…]`: the codes on stdout, one per line.
fn recovery_lines(extra: &[&str]) -> Vec<String> {
    let mut args = vec!["recovery", "generate"];
    args.extend_from_slice(extra);
    let out = run(&args, None);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    stdout(&out).lines().map(str::to_owned).collect()
}

#[test]
fn enroll_prints_a_secret_and_an_otpauth_uri() {
    let out = run(
        &[
            "totp",
            "enroll",
            "--account",
            "ada@example.com",
            "--issuer",
            "mcpsec",
        ],
        None,
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let secret = lines[0].strip_prefix("secret: ").unwrap();
    assert!(secret.len() >= 32 && is_base32(secret), "{secret}");
    let uri = lines[1].strip_prefix("uri: ").unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains("issuer="), "{uri}");
    assert!(uri.contains(&format!("secret={}", secret.trim_end_matches('='))));

    // The secret it printed works with `totp code` and `totp verify`.
    let code_out = run(&["totp", "code", "--secret", secret, "--at", "1000"], None);
    assert_eq!(code(&code_out), Some(0), "{}", stderr(&code_out));
    let totp = stdout(&code_out).trim_end().to_owned();
    let verify = run(
        &["totp", "verify", "--secret", secret, "--at", "1000", &totp],
        None,
    );
    assert_eq!(code(&verify), Some(0), "{}", stderr(&verify));
}

#[test]
fn enroll_json_has_secret_and_uri() {
    let out = run(
        &[
            "totp",
            "enroll",
            "--account",
            "ada",
            "--issuer",
            "mcpsec",
            "--json",
        ],
        None,
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let value: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let object = value.as_object().unwrap();
    let mut fields: Vec<_> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["secret", "uri"]);
    let secret = object["secret"].as_str().unwrap();
    assert!(secret.len() >= 32 && is_base32(secret));
    assert!(
        object["uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
}

#[test]
fn enroll_qr_prints_secret_uri_and_a_terminal_qr_code() {
    let out = run(
        &[
            "totp",
            "enroll",
            "--account",
            "ada",
            "--issuer",
            "mcpsec",
            "--qr",
        ],
        None,
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("secret: "));
    assert!(lines[1].starts_with("uri: otpauth://totp/"));
    let qr = &lines[2..];
    // A version 4+ code (33+ modules) plus an 8-module quiet zone, two rows per line.
    assert!(qr.len() >= 21, "{} QR lines", qr.len());
    let width = qr[0].chars().count();
    for line in qr {
        assert!(line.starts_with("\x1b[30;107m") && line.ends_with("\x1b[0m"));
        assert_eq!(line.chars().count(), width, "square rendering");
    }
    assert!(qr.iter().any(|l| l.contains('█')));
}

#[test]
fn enroll_qr_conflicts_with_json() {
    let out = run(
        &[
            "totp",
            "enroll",
            "--account",
            "ada",
            "--issuer",
            "mcpsec",
            "--qr",
            "--json",
        ],
        None,
    );
    assert_eq!(code(&out), Some(2));
    assert!(stdout(&out).is_empty());
}

#[test]
fn enroll_qr_png_writes_a_private_png_and_never_overwrites() {
    let scratch = common::Scratch::new("mfa", "qr_png");
    let path = scratch.path("enroll.png");
    let out = run(
        &[
            "totp",
            "enroll",
            "--account",
            "ada",
            "--issuer",
            "mcpsec",
            "--qr-png",
            &path,
        ],
        None,
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("uri: otpauth://totp/"));
    let png = std::fs::read(&path).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    let side = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(side, u32::from_be_bytes(png[20..24].try_into().unwrap()));
    assert_eq!(side % 8, 0, "8 pixels per module");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A second run refuses the existing file and prints no secret.
    let again = run(
        &[
            "totp",
            "enroll",
            "--account",
            "ada",
            "--issuer",
            "mcpsec",
            "--qr-png",
            &path,
        ],
        None,
    );
    assert_eq!(code(&again), Some(2));
    assert!(stdout(&again).is_empty(), "no secret when the PNG fails");
    assert!(stderr(&again).contains("must not exist"));
    assert_eq!(std::fs::read(&path).unwrap(), png, "file unchanged");
}

#[test]
fn enroll_refuses_a_colon_in_the_label() {
    let out = run(
        &["totp", "enroll", "--account", "a:b", "--issuer", "mcpsec"],
        None,
    );
    assert_eq!(code(&out), Some(2));
    assert!(stdout(&out).is_empty());
}

#[test]
fn code_matches_the_rfc_6238_vector() {
    let out = run(
        &["totp", "code", "--secret", RFC_SECRET, "--at", "59"],
        None,
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{RFC_CODE_AT_59}\n"));
}

#[test]
fn code_reads_the_secret_from_stdin() {
    let out = run(
        &["totp", "code", "--secret", "-", "--at", "59"],
        Some(&format!("{RFC_SECRET}\n")),
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim_end(), RFC_CODE_AT_59);
}

#[test]
fn code_without_at_is_six_digits() {
    let out = run(&["totp", "code", "--secret", RFC_SECRET], None);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let totp = text.trim_end();
    assert!(
        totp.len() == 6 && totp.bytes().all(|b| b.is_ascii_digit()),
        "{text}"
    );
}

#[test]
fn code_with_a_bad_secret_exits_2_without_echoing_it() {
    let bad = "NOT-BASE32-1!";
    let out = run(&["totp", "code", "--secret", bad, "--at", "59"], None);
    assert_eq!(code(&out), Some(2));
    assert!(stdout(&out).is_empty());
    assert!(!stderr(&out).contains(bad), "{}", stderr(&out));
    // Valid base32 but too short (5 bytes).
    let out = run(&["totp", "code", "--secret", "GEZDGNBV"], None);
    assert_eq!(code(&out), Some(2));
    assert!(!stderr(&out).contains("GEZDGNBV"));
}

#[test]
fn verify_accepts_the_code_at_its_time() {
    let out = run(
        &[
            "totp",
            "verify",
            "--secret",
            RFC_SECRET,
            "--at",
            "59",
            RFC_CODE_AT_59,
        ],
        None,
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "valid\n");
}

#[test]
fn verify_accepts_one_step_of_skew() {
    let out = run(
        &[
            "totp",
            "verify",
            "--secret",
            RFC_SECRET,
            "--at",
            "89",
            RFC_CODE_AT_59,
        ],
        None,
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
}

#[test]
fn verify_refuses_the_code_three_steps_later() {
    let out = run(
        &[
            "totp",
            "verify",
            "--secret",
            RFC_SECRET,
            "--at",
            "149",
            RFC_CODE_AT_59,
        ],
        None,
    );
    assert_eq!(code(&out), Some(1));
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains(RFC_CODE_AT_59) && !err.contains(RFC_SECRET));
}

#[test]
fn verify_a_malformed_code_exits_1() {
    for bad in ["12a456", "12345", "1234567", "abcdef"] {
        let out = run(
            &["totp", "verify", "--secret", RFC_SECRET, "--at", "59", bad],
            None,
        );
        assert_eq!(code(&out), Some(1), "{bad}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!err.contains(bad), "{err}");
    }
}

#[test]
fn verify_with_a_bad_secret_exits_2() {
    let out = run(
        &[
            "totp",
            "verify",
            "--secret",
            "not base32!",
            "--at",
            "59",
            RFC_CODE_AT_59,
        ],
        None,
    );
    assert_eq!(code(&out), Some(2));
    assert!(!stderr(&out).contains("not base32!"));
}

#[test]
fn verify_reads_the_secret_from_stdin() {
    let out = run(
        &[
            "totp",
            "verify",
            "--secret",
            "-",
            "--at",
            "59",
            RFC_CODE_AT_59,
        ],
        Some(RFC_SECRET),
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
}

#[test]
fn at_out_of_range_exits_2() {
    for at in ["-1", "abc", "18446744073709551615"] {
        let out = run(&["totp", "code", "--secret", RFC_SECRET, "--at", at], None);
        assert_eq!(code(&out), Some(2), "{at}");
    }
}

#[test]
fn secret_on_stdin_is_capped() {
    let big = "A".repeat(64 * 1024);
    let out = run(&["totp", "code", "--secret", "-"], Some(&big));
    assert_eq!(code(&out), Some(2));
}

#[test]
fn recovery_generate_prints_ten_distinct_codes() {
    let codes = recovery_lines(&[]);
    assert_eq!(codes.len(), 10, "{codes:?}");
    for c in &codes {
        assert!(is_recovery_code(c), "{c}");
    }
    let distinct: HashSet<&String> = codes.iter().collect();
    assert_eq!(distinct.len(), 10);
    // A second run gives a different set.
    let again = recovery_lines(&[]);
    assert!(again.iter().all(|c| !distinct.contains(c)));
}

#[test]
fn recovery_generate_count_3() {
    let codes = recovery_lines(&["--count", "3"]);
    assert_eq!(codes.len(), 3);
    assert!(codes.iter().all(|c| is_recovery_code(c)));
}

#[test]
fn recovery_generate_json_is_an_array_of_strings() {
    let out = run(&["recovery", "generate", "--count", "4", "--json"], None);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let value: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let codes = value.as_array().unwrap();
    assert_eq!(codes.len(), 4);
    assert!(codes.iter().all(|c| is_recovery_code(c.as_str().unwrap())));
}

#[test]
fn recovery_generate_count_out_of_range_exits_2() {
    for count in ["0", "11", "-1", "ten"] {
        let out = run(&["recovery", "generate", "--count", count], None);
        assert_eq!(code(&out), Some(2), "{count}");
        assert!(stdout(&out).is_empty());
    }
}

#[cfg(target_os = "linux")]
#[test]
fn enroll_removes_the_qr_png_when_the_secret_cannot_be_printed() {
    use std::process::{Command, Stdio};
    let scratch = common::Scratch::new("mfa", "qr_png_unprinted");
    let path = scratch.path("enroll.png");
    // /dev/full fails every write with ENOSPC: the secret never reaches the operator.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mcpsec"))
        .args([
            "totp",
            "enroll",
            "--account",
            "ada",
            "--issuer",
            "mcpsec",
            "--qr-png",
            &path,
        ])
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot write"), "{}", stderr(&out));
    assert!(
        !std::path::Path::new(&path).exists(),
        "no orphan PNG of a secret nobody saw"
    );
}
