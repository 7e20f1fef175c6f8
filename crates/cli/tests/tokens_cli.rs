//! The `mcpsec keys` and `mcpsec token` contract: files written, outputs, JSON fields and
//! exit codes that operators' scripts rely on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use common::{Scratch, code, run, stderr, stdout};

use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

const ISS: &str = "https://auth.example.test";
const AUD: &str = "mcp-gateway";
const SCOPE: &str = "mcp:read mcp:write";
const ALGS: [&str; 3] = ["RS256", "ES256", "EdDSA"];

/// The JWK set file of a scratch directory.
trait JwksPath {
    fn jwks(&self) -> String;
}

impl JwksPath for Scratch {
    fn jwks(&self) -> String {
        self.path("jwks.json")
    }
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// `mcpsec keys generate --alg ALG --kid KID --out DIR [EXTRA…]`.
fn keygen(dir: &Scratch, alg: &str, kid: &str, extra: &[&str]) -> Output {
    let mut args = vec!["keys", "generate", "--out", dir.0.to_str().unwrap()];
    args.extend(["--alg", alg, "--kid", kid]);
    args.extend_from_slice(extra);
    run(&args, None)
}

fn jwks_keys(dir: &Scratch) -> Vec<Value> {
    let set: Value = serde_json::from_slice(&std::fs::read(dir.jwks()).unwrap()).unwrap();
    set["keys"].as_array().expect("a keys array").clone()
}

fn kids(dir: &Scratch) -> Vec<String> {
    let keys = jwks_keys(dir);
    keys.iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// `mcpsec token issue --key KEY --kid KID` for sub "alice", with ISS and AUD.
fn issue_out(key: &str, kid: &str, extra: &[&str], stdin: Option<&str>) -> Output {
    let mut args = vec!["token", "issue", "--key", key, "--kid", kid];
    args.extend(["--iss", ISS, "--aud", AUD, "--sub", "alice"]);
    args.extend_from_slice(extra);
    run(&args, stdin)
}

/// Issues with `DIR/KID.pem`, asserts success and returns the token.
fn issue(dir: &Scratch, kid: &str, extra: &[&str]) -> String {
    let out = issue_out(&dir.path(&format!("{kid}.pem")), kid, extra, None);
    assert_eq!(code(&out), Some(0), "issue: {out:?}");
    stdout(&out).trim().to_owned()
}

/// `mcpsec token verify --jwks JWKS --iss ISS --aud AUD [EXTRA…] TOKEN`.
fn verify_as(jwks: &str, iss: &str, aud: &str, token: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "token", "verify", "--jwks", jwks, "--iss", iss, "--aud", aud,
    ];
    args.extend_from_slice(extra);
    args.push(token);
    run(&args, None)
}

/// Verifies against the directory's jwks.json with the issuer and audience issued.
fn verify(dir: &Scratch, token: &str, extra: &[&str]) -> Output {
    verify_as(&dir.jwks(), ISS, AUD, token, extra)
}

/// The CLI's "no": exit 1, nothing on stdout, one stderr line naming `reason`.
fn assert_invalid(out: &Output, reason: &str) {
    let err = stderr(out);
    assert_eq!(code(out), Some(1), "stderr: {err}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(err.lines().count(), 1, "stderr: {err:?}");
    assert!(err.contains(reason), "stderr {err:?} lacks {reason:?}");
}

#[test]
fn keys_generate_writes_a_private_0600_pem_and_a_public_jwks() {
    let dir = Scratch::new("tokens", "keys_generate_writes");
    for alg in ALGS {
        let out = keygen(&dir, alg, alg, &[]);
        assert_eq!(code(&out), Some(0), "{alg}: {out:?}");
        let pem_path = dir.path(&format!("{alg}.pem"));
        let mode = std::fs::metadata(&pem_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{alg}: mode {mode:o}");
        let pem = std::fs::read_to_string(&pem_path).unwrap();
        assert!(pem.contains("-----BEGIN PRIVATE KEY-----"), "{alg}");
    }
    assert_eq!(kids(&dir), ALGS);
    for key in jwks_keys(&dir) {
        for member in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(member).is_none(), "private {member} in {key}");
        }
    }
}

#[test]
fn keys_generate_keeps_existing_keys_and_refuses_a_duplicate_kid() {
    let dir = Scratch::new("tokens", "keys_generate_keeps");
    assert_eq!(code(&keygen(&dir, "ES256", "k1", &[])), Some(0));
    assert_eq!(code(&keygen(&dir, "EdDSA", "k2", &[])), Some(0));
    assert_eq!(kids(&dir), ["k1", "k2"]);
    let jwks_before = std::fs::read(dir.jwks()).unwrap();
    let pem_before = std::fs::read(dir.path("k1.pem")).unwrap();
    let again = keygen(&dir, "ES256", "k1", &[]);
    assert_eq!(code(&again), Some(2));
    assert!(stderr(&again).contains("k1"), "{again:?}");
    assert_eq!(std::fs::read(dir.jwks()).unwrap(), jwks_before);
    assert_eq!(std::fs::read(dir.path("k1.pem")).unwrap(), pem_before);
}

#[test]
fn keys_generate_json_names_what_was_written() {
    let dir = Scratch::new("tokens", "keys_generate_json");
    let out = keygen(&dir, "EdDSA", "k1", &["--json"]);
    assert_eq!(code(&out), Some(0));
    let v = json_of(&out);
    assert_eq!((&v["kid"], &v["alg"]), (&json!("k1"), &json!("EdDSA")));
    let private_key = Path::new(v["private_key"].as_str().unwrap());
    assert_eq!(private_key, dir.0.join("k1.pem"));
    let jwks = Path::new(v["jwks"].as_str().unwrap());
    assert_eq!(jwks, dir.0.join("jwks.json"));
}

#[test]
fn token_issue_prints_one_compact_token() {
    let dir = Scratch::new("tokens", "token_issue_prints");
    keygen(&dir, "ES256", "k1", &[]);
    let token = issue(&dir, "k1", &["--scope", "mcp:read", "--ttl", "1h"]);
    assert_eq!(token.lines().count(), 1);
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    assert!(parts.iter().all(|p| !p.is_empty()), "{token}");
}

#[test]
fn token_issue_reads_the_key_from_stdin() {
    let dir = Scratch::new("tokens", "token_issue_stdin");
    keygen(&dir, "EdDSA", "k1", &[]);
    let pem = std::fs::read_to_string(dir.path("k1.pem")).unwrap();
    let out = issue_out("-", "k1", &[], Some(&pem));
    assert_eq!(code(&out), Some(0), "{out:?}");
    let checked = verify(&dir, stdout(&out).trim(), &[]);
    assert_eq!(code(&checked), Some(0), "{checked:?}");
}

#[test]
fn token_issue_rejects_a_bad_scope_or_ttl() {
    let dir = Scratch::new("tokens", "token_issue_rejects");
    keygen(&dir, "ES256", "k1", &[]);
    let key = dir.path("k1.pem");
    for bad in [
        "--scope=mcp:everything",
        "--ttl=soon",
        "--ttl=0s",
        "--ttl=90d",
    ] {
        let out = issue_out(&key, "k1", &[bad], None);
        assert_eq!(code(&out), Some(2), "{bad}: {out:?}");
        assert!(out.stdout.is_empty(), "{bad}: {out:?}");
    }
}

#[test]
fn every_key_type_round_trips_issue_verify() {
    let dir = Scratch::new("tokens", "every_key_type");
    let flags = [
        "--org", "acme", "--role", "viewer", "--amr", "otp", "--ttl", "1h",
    ];
    for alg in ALGS {
        keygen(&dir, alg, alg, &[]);
        let token = issue(&dir, alg, &[&flags[..], &["--scope", SCOPE]].concat());
        let out = verify(&dir, &token, &[]);
        assert_eq!(code(&out), Some(0), "{alg}: {out:?}");
        let v = json_of(&out);
        let expected = [
            ("sub", json!("alice")),
            ("iss", json!(ISS)),
            ("aud", json!(AUD)),
            ("scope", json!(SCOPE)),
            ("org", json!("acme")),
            ("role", json!("viewer")),
            ("amr", json!(["otp"])),
        ];
        for (claim, value) in expected {
            assert_eq!(v[claim], value, "{alg}: {claim} in {v}");
        }
    }
}

#[test]
fn token_verify_reads_the_token_from_stdin() {
    let dir = Scratch::new("tokens", "token_verify_stdin");
    keygen(&dir, "ES256", "k1", &[]);
    let token = issue(&dir, "k1", &["--scope", "mcp:read"]);
    let jwks = dir.jwks();
    let args = [
        "token", "verify", "--jwks", &jwks, "--iss", ISS, "--aud", AUD, "-",
    ];
    let out = run(&args, Some(&format!("{token}\n")));
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert_eq!(json_of(&out)["sub"], "alice");
}

#[test]
fn token_verify_rejects_wrong_issuer_or_audience_in_one_line() {
    let dir = Scratch::new("tokens", "token_verify_wrong");
    keygen(&dir, "ES256", "k1", &[]);
    let token = issue(&dir, "k1", &[]);
    let jwks = dir.jwks();
    let wrong_iss = verify_as(&jwks, "https://evil.example.test", AUD, &token, &[]);
    assert_invalid(&wrong_iss, "wrong issuer");
    let wrong_aud = verify_as(&jwks, ISS, "other-api", &token, &[]);
    assert_invalid(&wrong_aud, "wrong audience");
}

#[test]
fn token_verify_require_scope_follows_the_hierarchy() {
    let dir = Scratch::new("tokens", "token_verify_scope");
    keygen(&dir, "EdDSA", "k1", &[]);
    let read_only = issue(&dir, "k1", &["--scope", "mcp:read"]);
    let writer = issue(&dir, "k1", &["--scope", "mcp:write"]);
    let needs_write = verify(&dir, &read_only, &["--require-scope", "mcp:write"]);
    assert_invalid(&needs_write, "scope");
    let needs_read = verify(&dir, &writer, &["--require-scope", "mcp:read"]);
    assert_eq!(code(&needs_read), Some(0), "{needs_read:?}");
}

#[test]
fn token_verify_rejects_a_tampered_token() {
    let dir = Scratch::new("tokens", "token_verify_tampered");
    keygen(&dir, "ES256", "k1", &[]);
    let token = issue(&dir, "k1", &["--scope", "mcp:read"]);
    let (header, rest) = token.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let mut bytes = payload.as_bytes().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{header}.{}.{signature}", String::from_utf8(bytes).unwrap());
    let out = verify(&dir, &tampered, &[]);
    assert_eq!(code(&out), Some(1), "{out:?}");
}

#[test]
fn token_verify_rejects_a_key_outside_the_jwks() {
    let trusted = Scratch::new("tokens", "token_verify_outside_trusted");
    let stranger = Scratch::new("tokens", "token_verify_outside_stranger");
    keygen(&trusted, "ES256", "k1", &[]);
    keygen(&stranger, "ES256", "k2", &[]);
    let unknown_kid = issue(&stranger, "k2", &[]);
    assert_eq!(code(&verify(&trusted, &unknown_kid, &[])), Some(1));
    // A trusted kid in the header, but signed by another key.
    std::fs::copy(stranger.path("k2.pem"), stranger.path("k1.pem")).unwrap();
    let forged = issue(&stranger, "k1", &[]);
    assert_eq!(code(&verify(&trusted, &forged, &[])), Some(1));
}

#[test]
fn token_verify_with_an_unusable_jwks_url_is_an_input_error() {
    let dir = Scratch::new("tokens", "token_verify_url");
    keygen(&dir, "ES256", "k1", &[]);
    let token = issue(&dir, "k1", &[]);
    for url in [
        "https://auth.example.test/.well-known/jwks.json", // unreachable here
        "http://auth.example.test/jwks.json",              // plain HTTP off loopback
    ] {
        let out = verify_as(url, ISS, AUD, &token, &[]);
        assert_eq!(code(&out), Some(2), "{url}: {out:?}");
    }
}

#[test]
fn token_verify_fetches_the_jwks_from_a_url() {
    use std::io::{Read, Write};
    let dir = Scratch::new("tokens", "token_verify_remote");
    keygen(&dir, "EdDSA", "k1", &[]);
    let token = issue(&dir, "k1", &[]);
    let body = std::fs::read_to_string(dir.path("jwks.json")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request).unwrap();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).unwrap();
    });
    let out = verify_as(&url, ISS, AUD, &token, &[]);
    assert_eq!(code(&out), Some(0), "{out:?}");
    server.join().unwrap();
}

#[test]
fn token_inspect_decodes_without_verifying() {
    let dir = Scratch::new("tokens", "token_inspect");
    keygen(&dir, "RS256", "k1", &[]);
    let token = issue(&dir, "k1", &["--scope", "mcp:read"]);
    let from_arg = run(&["token", "inspect", &token], None);
    let from_stdin = run(&["token", "inspect", "-"], Some(&token));
    for out in [from_arg, from_stdin] {
        assert_eq!(code(&out), Some(0), "{out:?}");
        let v = json_of(&out);
        assert_eq!(v["verified"], false);
        assert!(v["warning"].as_str().unwrap().contains("UNVERIFIED"), "{v}");
        assert_eq!(v["header"]["typ"], "at+jwt");
        assert_eq!(v["header"]["kid"], "k1");
        assert_eq!(v["claims"]["sub"], "alice");
    }
}

#[test]
fn token_inspect_rejects_garbage() {
    let out = run(&["token", "inspect", "not-a-token"], None);
    assert_eq!(code(&out), Some(2));
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn rotation_set_verifies_tokens_from_both_keys() {
    let dir = Scratch::new("tokens", "rotation_set");
    keygen(&dir, "RS256", "k1", &[]);
    keygen(&dir, "ES256", "k2", &[]);
    assert_eq!(kids(&dir), ["k1", "k2"]);
    for kid in ["k1", "k2"] {
        let token = issue(&dir, kid, &["--scope", "mcp:read"]);
        let out = verify(&dir, &token, &[]);
        assert_eq!(code(&out), Some(0), "{kid}: {out:?}");
    }
}

#[test]
fn token_verify_without_a_token_is_a_usage_error() {
    let dir = Scratch::new("tokens", "token_verify_empty");
    keygen(&dir, "EdDSA", "k1", &[]);
    let jwks = dir.path("jwks.json");
    let args = [
        "token", "verify", "--jwks", &jwks, "--iss", ISS, "--aud", AUD, "-",
    ];
    let out = run(&args, Some(""));
    assert_eq!(code(&out), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token given"));
}
