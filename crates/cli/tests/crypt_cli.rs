//! The `mcpsec crypt` contract: commands, flags, outputs and exit codes, and that a failed
//! decryption writes nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::Scratch;
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// A fixed test master key (base64 of 32 bytes).
const MASTER: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_MASTER: &str = "HxwdHhobGBkWFxQVEhMQEQ4PDA0KCwgJBgcEBQIDAAE=";

/// Runs the binary with `MCPSEC_MASTER_KEY` set to `master` (or unset).
fn run_with(master: Option<&str>, args: &[&str], stdin: &[u8]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcpsec"));
    command
        .args(args)
        .env_remove("MCPSEC_MASTER_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(master) = master {
        command.env("MCPSEC_MASTER_KEY", master);
    }
    let mut child = command.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let _ = pipe.write_all(stdin);
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const CONTEXT: &str = "table=users,column=email,row=42,tenant=acme";

/// `crypt encrypt` of `plaintext` into the pii category at [`CONTEXT`].
fn encrypt_pii(keyset: &str, plaintext: &[u8]) -> Output {
    let args = [
        "crypt",
        "encrypt",
        "--keyset",
        keyset,
        "--category",
        "pii",
        "--context",
        CONTEXT,
    ];
    run_with(Some(MASTER), &args, plaintext)
}

/// `crypt decrypt` of `input` at [`CONTEXT`] with `master` as the master key.
fn decrypt_with(master: &str, keyset: &str, input: &[u8]) -> Output {
    let args = ["crypt", "decrypt", "--keyset", keyset, "--context", CONTEXT];
    run_with(Some(master), &args, input)
}

#[test]
fn keygen_encrypt_decrypt_rotate_info() {
    let dir = Scratch::new("crypt", "lifecycle");
    let keyset = dir.path("keyset.json");
    let out = run_with(
        Some(MASTER),
        &[
            "crypt",
            "keygen",
            "--out",
            &keyset,
            "--category",
            "pii",
            "--category",
            "oauth_tokens",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("pii: version 1 is primary"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keyset).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwrites.
    let again = run_with(Some(MASTER), &["crypt", "keygen", "--out", &keyset], b"");
    assert_eq!(again.status.code(), Some(2));

    let enc = encrypt_pii(&keyset, b"ada@example.com");
    assert_eq!(enc.status.code(), Some(0), "{}", text(&enc.stderr));
    let ciphertext = text(&enc.stdout);
    assert!(ciphertext.starts_with("mcpsec:fc1:"), "{ciphertext}");
    assert!(!ciphertext.contains("ada"));

    let dec = decrypt_with(MASTER, &keyset, ciphertext.as_bytes());
    assert_eq!(dec.status.code(), Some(0), "{}", text(&dec.stderr));
    assert_eq!(dec.stdout, b"ada@example.com");

    let info = run_with(Some(MASTER), &["crypt", "info"], ciphertext.as_bytes());
    assert_eq!(info.status.code(), Some(0));
    let shown = text(&info.stdout);
    let (fields, key_id) = shown.split_once("key_id: ").unwrap();
    assert_eq!(
        fields,
        "format_version: 1\ncategory: pii\nkey_version: 1\nsubject_keyed: false\n"
    );
    let key_id = key_id.trim_end();
    assert_eq!(key_id.len(), 16, "{key_id}");
    assert!(key_id.bytes().all(|b| b.is_ascii_hexdigit()));
    let json = run_with(
        Some(MASTER),
        &["crypt", "info", "--json"],
        ciphertext.as_bytes(),
    );
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["key_version"], 1);
    assert_eq!(value["category"], "pii");
    assert_eq!(value["format_version"], 1);
    assert_eq!(value["key_id"], key_id);

    let rot = run_with(
        Some(MASTER),
        &["crypt", "rotate", "--keyset", &keyset, "--category", "pii"],
        b"",
    );
    assert_eq!(rot.status.code(), Some(0), "{}", text(&rot.stderr));
    assert_eq!(text(&rot.stdout), "pii: version 2 is primary\n");
    let enc2 = encrypt_pii(&keyset, b"new");
    let info2 = run_with(Some(MASTER), &["crypt", "info"], &enc2.stdout);
    assert!(text(&info2.stdout).contains("key_version: 2"));
    // The old ciphertext still decrypts after the rotation.
    let old = decrypt_with(MASTER, &keyset, ciphertext.as_bytes());
    assert_eq!(old.stdout, b"ada@example.com");
}

#[test]
fn failed_decryptions_exit_1_and_write_nothing() {
    let dir = Scratch::new("crypt", "failures");
    let keyset = dir.path("keyset.json");
    run_with(Some(MASTER), &["crypt", "keygen", "--out", &keyset], b"");
    let enc = encrypt_pii(&keyset, b"secret value");
    let ciphertext = text(&enc.stdout);
    let mut tampered = ciphertext.trim().to_owned().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let cases: Vec<(Option<&str>, &str, Vec<u8>)> = vec![
        // another row
        (
            Some(MASTER),
            "table=users,column=email,row=43,tenant=acme",
            ciphertext.clone().into_bytes(),
        ),
        // another tenant
        (
            Some(MASTER),
            "table=users,column=email,row=42,tenant=globex",
            ciphertext.clone().into_bytes(),
        ),
        // tampered
        (Some(MASTER), CONTEXT, tampered),
        // garbage
        (Some(MASTER), CONTEXT, b"mcpsec:fc1:????".to_vec()),
        (Some(MASTER), CONTEXT, b"plaintext".to_vec()),
        // wrong master key
        (Some(OTHER_MASTER), CONTEXT, ciphertext.clone().into_bytes()),
        // no master key
        (None, CONTEXT, ciphertext.clone().into_bytes()),
        // bad context
        (Some(MASTER), "table=users", ciphertext.clone().into_bytes()),
    ];
    for (master, context, input) in cases {
        let out = run_with(
            master,
            &[
                "crypt",
                "decrypt",
                "--keyset",
                &keyset,
                "--context",
                context,
            ],
            &input,
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{context}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "wrote something for {context}");
        assert!(!text(&out.stderr).is_empty(), "a reason is given");
        assert!(!text(&out.stderr).contains("secret value"));
    }
}

#[test]
fn commands_refuse_to_run_without_a_master_key() {
    let dir = Scratch::new("crypt", "nomaster");
    let keyset = dir.path("keyset.json");
    let out = run_with(None, &["crypt", "keygen", "--out", &keyset], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("MCPSEC_MASTER_KEY"));
    assert!(!std::path::Path::new(&keyset).exists());
    for bad in ["", "not base64", "c2hvcnQ="] {
        let out = run_with(Some(bad), &["crypt", "keygen", "--out", &keyset], b"");
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn master_key_file_works_but_not_beside_the_keyset() {
    let keys = Scratch::new("crypt", "masterfile-keys");
    let data = Scratch::new("crypt", "masterfile-data");
    let master = keys.path("master.key");
    std::fs::write(&master, format!("{MASTER}\n")).unwrap();
    let keyset = data.path("keyset.json");
    let out = run_with(
        None,
        &[
            "crypt",
            "keygen",
            "--out",
            &keyset,
            "--master-key-file",
            &master,
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The env key is the same key: either works.
    let enc = run_with(
        Some(MASTER),
        &[
            "crypt",
            "encrypt",
            "--keyset",
            &keyset,
            "--category",
            "totp_secrets",
            "--context",
            "table=t,column=c,row=r",
        ],
        b"x",
    );
    assert_eq!(enc.status.code(), Some(0), "{}", text(&enc.stderr));
    let dec = run_with(
        None,
        &[
            "crypt",
            "decrypt",
            "--keyset",
            &keyset,
            "--context",
            "table=t,column=c,row=r",
            "--master-key-file",
            &master,
        ],
        &enc.stdout,
    );
    assert_eq!(dec.stdout, b"x");

    let beside = data.path("master.key");
    std::fs::write(&beside, MASTER).unwrap();
    let refused = run_with(
        None,
        &[
            "crypt",
            "keygen",
            "--out",
            &data.path("other.json"),
            "--master-key-file",
            &beside,
        ],
        b"",
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("directory"));
}

#[test]
fn info_reads_headers_and_refuses_garbage() {
    let out = run_with(Some(MASTER), &["crypt", "info"], b"hello");
    assert_eq!(out.status.code(), Some(1));
    let out = run_with(Some(MASTER), &["crypt", "info"], b"mcpsec:fc1:AQ");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn every_crypt_command_refuses_to_run_without_a_master_key() {
    let dir = Scratch::new("crypt", "nomaster-all");
    let keyset = dir.path("keyset.json");
    run_with(Some(MASTER), &["crypt", "keygen", "--out", &keyset], b"");
    let new_key = dir.path("new.key");
    for args in [
        vec!["crypt", "keygen", "--out", &dir.path("other.json")],
        vec![
            "crypt",
            "encrypt",
            "--keyset",
            &keyset,
            "--category",
            "pii",
            "--context",
            CONTEXT,
        ],
        vec!["crypt", "rotate", "--keyset", &keyset, "--category", "pii"],
        vec![
            "crypt",
            "rekey",
            "--keyset",
            &keyset,
            "--new-master-key-file",
            &new_key,
        ],
        vec!["crypt", "info"],
    ] {
        let out = run_with(None, &args, b"mcpsec:fc1:AQADcGlpAAAAAQ");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(text(&out.stderr).contains("MCPSEC_MASTER_KEY"), "{args:?}");
    }
    // decrypt: exit 1 for every failure, this one included.
    let out = run_with(
        None,
        &[
            "crypt",
            "decrypt",
            "--keyset",
            &keyset,
            "--context",
            CONTEXT,
        ],
        b"x",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("MCPSEC_MASTER_KEY"));
}

#[test]
fn decrypt_argument_errors_exit_1_too() {
    for args in [
        vec!["crypt", "decrypt"],
        vec!["crypt", "decrypt", "--keyset", "k.json"],
        vec![
            "crypt",
            "decrypt",
            "--keyset",
            "k.json",
            "--context",
            CONTEXT,
            "--colour",
        ],
    ] {
        let out = run_with(Some(MASTER), &args, b"");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty());
    }
    let help = run_with(None, &["crypt", "decrypt", "--help"], b"");
    assert_eq!(help.status.code(), Some(0));
    // Other commands keep clap's exit 2 for usage errors.
    let out = run_with(Some(MASTER), &["crypt", "encrypt"], b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn encrypt_refuses_unknown_categories_and_bad_contexts() {
    let dir = Scratch::new("crypt", "encrypt-refusals");
    let keyset = dir.path("keyset.json");
    run_with(Some(MASTER), &["crypt", "keygen", "--out", &keyset], b"");
    for (category, context) in [
        ("billing", CONTEXT),
        ("PII", CONTEXT),
        ("pii", "table=users,column=email"),
        ("pii", "table=users,column=email,row=1,color=red"),
    ] {
        let out = run_with(
            Some(MASTER),
            &[
                "crypt",
                "encrypt",
                "--keyset",
                &keyset,
                "--category",
                category,
                "--context",
                context,
            ],
            b"x",
        );
        assert_eq!(out.status.code(), Some(2), "{category} {context}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn rekey_moves_the_keyset_to_a_new_master_key() {
    let keys = Scratch::new("crypt", "rekey-keys");
    let data = Scratch::new("crypt", "rekey-data");
    let keyset = data.path("keyset.json");
    let new_master = keys.path("new.key");
    std::fs::write(&new_master, OTHER_MASTER).unwrap();
    run_with(Some(MASTER), &["crypt", "keygen", "--out", &keyset], b"");
    let enc = encrypt_pii(&keyset, b"kept");
    let out = run_with(
        Some(MASTER),
        &[
            "crypt",
            "rekey",
            "--keyset",
            &keyset,
            "--new-master-key-file",
            &new_master,
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("re-wrapped under local:"));
    let old = decrypt_with(MASTER, &keyset, &enc.stdout);
    assert_eq!(
        old.status.code(),
        Some(1),
        "the old master key no longer opens it"
    );
    let new = decrypt_with(OTHER_MASTER, &keyset, &enc.stdout);
    assert_eq!(new.stdout, b"kept");
}
