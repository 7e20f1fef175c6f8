//! The `mcpsec db|user|apikey create|list|revoke` contract on SQLite and PostgreSQL:
//! migrations run twice change nothing, a key the CLI prints verifies through the library
//! (SqlApiKeyStore + ApiKeys) until the CLI revokes it, listings never show a key or its
//! hash, and every refusal is one line on stderr with exit 2, never a panic. Also: long
//! commands draw no progress bar when their output is piped.
//!
//! PostgreSQL tests run in a schema of their own (named after the test and the process)
//! in the database named by `MCPSEC_TEST_DATABASE_URL`, and skip with a notice without it
//! (in CI a missing variable fails them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::{PgSchema, Scratch, code, rt, run, stderr, stdout};
use mcpsec_apikeys::{ApiKeyStore, ApiKeys, HashMode, KeyHasher, Pepper, Source, VerifiedKey};
use mcpsec_core::NullSink;
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

/// Runs the binary with `env` set and the pepper variable removed unless `env` sets it.
fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcpsec"));
    command
        .args(args)
        .env_remove("MCPSEC_APIKEY_PEPPER_FILE")
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn ok(out: &Output) -> String {
    assert_eq!(code(out), Some(0), "stderr: {}", stderr(out));
    stdout(out)
}

/// Exit 2 with one `error: …` line on stderr containing `needle`, nothing on stdout.
fn refused(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(code(out), Some(2), "stdout: {} stderr: {err}", stdout(out));
    assert!(err.contains(needle), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(stdout(out).is_empty(), "{}", stdout(out));
}

/// The key the CLI printed, checked through the library on the same database: a fresh
/// store and service each time, so nothing is cached between calls.
fn verify(url: &str, pepper: &str, key: &str) -> Result<VerifiedKey, mcpsec_apikeys::Error> {
    rt().block_on(async {
        let (store, members): (Arc<dyn ApiKeyStore>, Arc<dyn mcpsec_access::Memberships>) =
            if url.starts_with("postgres") {
                let pool = mcpsec_store_sql::postgres::connect(url, 1).await.unwrap();
                (
                    Arc::new(mcpsec_store_sql::SqlApiKeyStore::new(pool.clone())),
                    Arc::new(mcpsec_store_sql::SqlMemberships::new(pool)),
                )
            } else {
                let pool = mcpsec_store_sql::sqlite::connect(url, 1).await.unwrap();
                (
                    Arc::new(mcpsec_store_sql::SqlApiKeyStore::new(pool.clone())),
                    Arc::new(mcpsec_store_sql::SqlMemberships::new(pool)),
                )
            };
        let pepper = Pepper::from_file(std::path::Path::new(pepper), 1).unwrap();
        let hasher = KeyHasher::new(pepper, vec![], HashMode::HmacSha256).unwrap();
        let keys = ApiKeys::builder(store, members, hasher, NullSink)
            .build()
            .unwrap();
        keys.verify(key, &Source::Ip("192.0.2.1".parse().unwrap()))
            .await
    })
}

/// `db migrate` twice: the first run applies every migration, the second nothing.
fn migrate_twice(url: &str) {
    let first = ok(&run(&["db", "migrate", "--database-url", url], None));
    assert!(first.contains("applied 0001 stores"), "{first}");
    assert!(first.contains("schema up to date"), "{first}");
    let second = ok(&run(&["db", "migrate", "--database-url", url], None));
    assert!(!second.contains("applied 0"), "{second}");
    assert!(second.contains("nothing to apply"), "{second}");
}

/// The whole operator flow on one database: bootstrap a user, create a key, verify it
/// through the library, list it, revoke it, see verification refused.
fn operator_flow(url: &str, dir: &Scratch, user: &str, org: &str) {
    migrate_twice(url);
    let added = ok(&run(
        &[
            "user",
            "add",
            "--database-url",
            url,
            "--org",
            org,
            "--role",
            "developer",
            user,
        ],
        None,
    ));
    assert_eq!(added, format!("user {user}: developer in {org}\n"));

    let pepper = dir.path("pepper");
    ok(&run(&["apikey", "new-pepper", "--out", &pepper], None));
    let out = run_env(
        &[
            "apikey",
            "create",
            "--database-url",
            url,
            "--owner",
            user,
            "--org",
            org,
            "--scopes",
            "mcp:read mcp:write",
            "--name",
            "ci-runner",
            "--expires",
            "90d",
        ],
        &[("MCPSEC_APIKEY_PEPPER_FILE", &pepper)],
    );
    let key = ok(&out).trim_end().to_owned();
    assert!(key.starts_with("mcp_sk_live_"), "{key}");
    assert_eq!(ok(&out).lines().count(), 1, "the key alone on stdout");
    assert!(stderr(&out).contains("shown once"), "{}", stderr(&out));

    let verified = verify(url, &pepper, &key).expect("the printed key verifies");
    assert_eq!(verified.record().owner.as_str(), user);
    assert_eq!(verified.record().org.as_str(), org);
    assert_eq!(verified.record().scopes.to_string(), "mcp:read mcp:write");
    assert!(verified.record().expires_at.is_some());
    let id = verified.record().id.to_string();
    let stored_hash = verified.record().hash.clone();
    let hint = verified.record().hint.clone();

    // A second key from --pepper-file, as JSON.
    let out = run_env(
        &[
            "apikey",
            "create",
            "--database-url",
            url,
            "--owner",
            user,
            "--org",
            org,
            "--scopes",
            "mcp:read",
            "--pepper-file",
            &pepper,
            "--json",
        ],
        &[],
    );
    let created: Value = serde_json::from_str(&ok(&out)).unwrap();
    let second_key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(created["owner"], user);
    assert_eq!(created["expires_at"], Value::Null);
    assert!(verify(url, &pepper, &second_key).is_ok());

    // Listed by hint, never the key, its secret part or its hash.
    for json in [false, true] {
        let mut args = vec!["apikey", "list", "--database-url", url, "--owner", user];
        if json {
            args.push("--json");
        }
        let out = run(&args, None);
        let listing = ok(&out);
        for secret in [&key[..], &second_key, &key[29..72], &stored_hash] {
            assert!(!listing.contains(secret), "{listing}");
            assert!(!stderr(&out).contains(secret));
        }
        assert!(listing.contains(&hint), "{listing}");
        assert!(listing.contains(&id), "{listing}");
        if json {
            let rows: Value = serde_json::from_str(&listing).unwrap();
            let rows = rows.as_array().unwrap();
            assert_eq!(rows.len(), 2);
            assert_eq!(rows[0]["id"], id.as_str());
            assert_eq!(rows[0]["hint"], hint.as_str());
            assert_eq!(rows[0]["name"], "ci-runner");
            assert_eq!(rows[0]["status"], "active");
            assert_eq!(rows[0]["scopes"], "mcp:read mcp:write");
            assert!(rows[0]["expires_at"].is_string());
            let mut fields: Vec<_> = rows[0].as_object().unwrap().keys().cloned().collect();
            fields.sort_unstable();
            assert_eq!(
                fields,
                [
                    "created_at",
                    "env",
                    "expires_at",
                    "hint",
                    "id",
                    "last_used_at",
                    "name",
                    "org",
                    "scopes",
                    "status"
                ]
            );
        } else {
            assert!(listing.starts_with("id "), "{listing}");
            assert_eq!(listing.lines().count(), 3, "{listing}");
        }
    }

    // Revoked: verification refused; revoking again says so; the listing shows it.
    let revoked = ok(&run(
        &["apikey", "revoke", "--database-url", url, &id],
        None,
    ));
    assert!(revoked.starts_with(&format!("revoked {id}")), "{revoked}");
    assert!(matches!(
        verify(url, &pepper, &key),
        Err(mcpsec_apikeys::Error::Revoked)
    ));
    assert!(verify(url, &pepper, &second_key).is_ok(), "only that key");
    let again = ok(&run(
        &["apikey", "revoke", "--database-url", url, &id],
        None,
    ));
    assert!(again.contains("already revoked"), "{again}");
    let listing = ok(&run(
        &[
            "apikey",
            "list",
            "--database-url",
            url,
            "--owner",
            user,
            "--json",
        ],
        None,
    ));
    let rows: Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(rows[0]["status"], "revoked");
    assert_eq!(rows[1]["status"], "active");

    // Refusals on a working database.
    refused(
        &run(
            &[
                "apikey",
                "revoke",
                "--database-url",
                url,
                "NoSuchKeyId12345",
            ],
            None,
        ),
        "no API key with id NoSuchKeyId12345",
    );
    refused(
        &run(
            &[
                "apikey",
                "list",
                "--database-url",
                url,
                "--owner",
                "nobody-here",
            ],
            None,
        ),
        "unknown user nobody-here",
    );
    refused(
        &run_env(
            &[
                "apikey",
                "create",
                "--database-url",
                url,
                "--owner",
                "stranger",
                "--org",
                org,
                "--scopes",
                "mcp:read",
                "--pepper-file",
                &pepper,
            ],
            &[],
        ),
        &format!("user stranger is not a member of organization {org}"),
    );
}

#[test]
fn sqlite_migrate_twice_is_idempotent() {
    let dir = Scratch::new("db", "migrate");
    let url = dir.path("mcpsec.db");
    migrate_twice(&url);
    // Also through a sqlite: URL naming the same file.
    let again = ok(&run(
        &[
            "db",
            "migrate",
            "--database-url",
            &format!("sqlite://{url}"),
        ],
        None,
    ));
    assert!(again.contains("nothing to apply"), "{again}");
    let applied: i64 = rt().block_on(async {
        let pool = mcpsec_store_sql::sqlite::connect(&format!("sqlite://{url}"), 1)
            .await
            .unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .unwrap()
    });
    assert_eq!(
        applied,
        i64::try_from(mcpsec_store_sql::sqlite::MIGRATOR.iter().count()).unwrap()
    );
}

#[test]
fn sqlite_key_created_by_the_cli_verifies_until_revoked() {
    let dir = Scratch::new("db", "flow");
    operator_flow(&dir.path("mcpsec.db"), &dir, "ada", "acme");
}

#[test]
fn create_without_a_pepper_is_refused_and_stores_nothing() {
    let dir = Scratch::new("db", "nopepper");
    let url = dir.path("mcpsec.db");
    ok(&run(&["db", "migrate", "--database-url", &url], None));
    ok(&run(
        &[
            "user",
            "add",
            "--database-url",
            &url,
            "--org",
            "acme",
            "--role",
            "viewer",
            "ada",
        ],
        None,
    ));
    let create = |env: &[(&str, &str)]| {
        run_env(
            &[
                "apikey",
                "create",
                "--database-url",
                &url,
                "--owner",
                "ada",
                "--org",
                "acme",
                "--scopes",
                "mcp:read",
            ],
            env,
        )
    };
    refused(
        &create(&[]),
        "no pepper: give --pepper-file FILE or set MCPSEC_APIKEY_PEPPER_FILE",
    );
    refused(&create(&[("MCPSEC_APIKEY_PEPPER_FILE", "")]), "no pepper");
    let missing = dir.path("no-such-pepper");
    refused(
        &create(&[("MCPSEC_APIKEY_PEPPER_FILE", &missing)]),
        "no-such-pepper",
    );
    let listing = ok(&run(
        &[
            "apikey",
            "list",
            "--database-url",
            &url,
            "--owner",
            "ada",
            "--json",
        ],
        None,
    ));
    assert_eq!(listing.trim(), "[]");
}

#[test]
fn unknown_role_is_refused_and_adds_nobody() {
    let dir = Scratch::new("db", "role");
    let url = dir.path("mcpsec.db");
    ok(&run(&["db", "migrate", "--database-url", &url], None));
    let out = run(
        &[
            "user",
            "add",
            "--database-url",
            &url,
            "--org",
            "acme",
            "--role",
            "superuser",
            "ada",
        ],
        None,
    );
    assert_eq!(code(&out), Some(2));
    assert!(stderr(&out).contains("unknown role"), "{}", stderr(&out));
    assert!(stderr(&out).contains("org_admin, developer or viewer"));
    refused(
        &run(
            &["apikey", "list", "--database-url", &url, "--owner", "ada"],
            None,
        ),
        "unknown user ada",
    );
}

#[test]
fn bad_urls_and_unreachable_or_unmigrated_databases_are_one_line_errors() {
    let dir = Scratch::new("db", "errors");
    let list = |url: &str| {
        run(
            &["apikey", "list", "--database-url", url, "--owner", "ada"],
            None,
        )
    };
    // Nothing listens on port 1.
    let out = run(
        &[
            "db",
            "migrate",
            "--database-url",
            "postgres://postgres@127.0.0.1:1/test",
        ],
        None,
    );
    refused(&out, "cannot open the database: store unavailable");
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    refused(&list("mysql://127.0.0.1/x"), "unsupported scheme \"mysql\"");
    refused(&list("postgres://a:b@[::1/x"), "cannot open the database");
    // A missing SQLite file is not created by anything but `db migrate`.
    let missing = dir.path("missing.db");
    refused(&list(&missing), "create it with `mcpsec db migrate");
    assert!(!std::path::Path::new(&missing).exists());
    // An existing database without the schema.
    let empty = dir.path("empty.db");
    std::fs::write(&empty, b"").unwrap();
    refused(&list(&empty), "is not migrated");
    // The password in a URL is never echoed.
    let out = run(
        &[
            "db",
            "migrate",
            "--database-url",
            "postgres://u:hunter2@127.0.0.1:1/x",
        ],
        None,
    );
    refused(&out, "cannot open the database");
    assert!(!stderr(&out).contains("hunter2"));
}

#[test]
fn postgres_key_created_by_the_cli_verifies_until_revoked() {
    let Some(base) = mcpsec_core::testkit::database_url() else {
        return;
    };
    let schema = PgSchema::new(base, "flow");
    let dir = Scratch::new("db", "pgflow");
    // Unique names too, in case a migration ever puts tables outside the search path.
    let pid = std::process::id();
    operator_flow(
        &schema.url(),
        &dir,
        &format!("ada-{pid}"),
        &format!("acme-{pid}"),
    );
}

#[test]
fn postgres_refusals_are_one_line_errors() {
    let Some(base) = mcpsec_core::testkit::database_url() else {
        return;
    };
    let schema = PgSchema::new(base, "refusals");
    let url = schema.url();
    // Before `db migrate`: refused, and nothing created.
    refused(
        &run(
            &[
                "user",
                "add",
                "--database-url",
                &url,
                "--org",
                "acme",
                "--role",
                "viewer",
                "ada",
            ],
            None,
        ),
        "is not migrated",
    );
    ok(&run(&["db", "migrate", "--database-url", &url], None));
    let out = run(
        &[
            "user",
            "add",
            "--database-url",
            &url,
            "--org",
            "acme",
            "--role",
            "owner",
            "ada",
        ],
        None,
    );
    assert_eq!(code(&out), Some(2));
    assert!(stderr(&out).contains("unknown role"));
    refused(
        &run_env(
            &[
                "apikey",
                "create",
                "--database-url",
                &url,
                "--owner",
                "ada",
                "--org",
                "acme",
                "--scopes",
                "mcp:read",
            ],
            &[],
        ),
        "no pepper",
    );
}

#[test]
fn audit_verify_piped_draws_no_progress_bar() {
    let dir = Scratch::new("db", "progress");
    let log = dir.path("audit.jsonl");
    let doc = include_str!("../../../docs/audit-events.md");
    let after = doc.split("<!-- audit-event-example -->").nth(1).unwrap();
    let event = after.lines().find(|l| l.starts_with('{')).unwrap();
    let batch = format!("{event}\n").repeat(2000);
    ok(&run(&["audit", "append", "--log", &log], Some(&batch)));
    let out = run(&["audit", "verify", &log, "--allow-unsigned"], None);
    let text = ok(&out);
    assert!(text.starts_with("ok: 2000 records, head "), "{text}");
    assert_eq!(text.lines().count(), 1);
    for stream in [&out.stdout, &out.stderr] {
        assert!(!stream.contains(&b'\r'), "carriage return in piped output");
        assert!(!stream.contains(&0x1b), "escape sequence in piped output");
    }
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

/// The positive control, where util-linux `script` can give the command a terminal: the
/// same verification then does draw on stderr (and clears it), and stdout is unchanged.
#[test]
fn audit_verify_on_a_terminal_draws_a_progress_bar() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("notice: `script` is not installed; skipping the terminal case");
        return;
    }
    let dir = Scratch::new("db", "tty");
    let log = dir.path("audit.jsonl");
    let doc = include_str!("../../../docs/audit-events.md");
    let after = doc.split("<!-- audit-event-example -->").nth(1).unwrap();
    let event = after.lines().find(|l| l.starts_with('{')).unwrap();
    ok(&run(
        &["audit", "append", "--log", &log],
        Some(&format!("{event}\n").repeat(200)),
    ));
    let stdout_file = dir.path("stdout");
    let command = format!(
        "'{}' audit verify '{log}' --allow-unsigned > '{stdout_file}'",
        env!("CARGO_BIN_EXE_mcpsec")
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if code(&out) != Some(0) && !std::path::Path::new(&stdout_file).exists() {
        // `script` could not give the command a terminal (no pty in this sandbox).
        eprintln!("notice: no pseudo-terminal available; skipping the terminal case");
        return;
    }
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let terminal = out.stdout;
    assert!(
        terminal.contains(&0x1b) || terminal.contains(&b'\r'),
        "no bar drawn on the terminal: {}",
        String::from_utf8_lossy(&terminal)
    );
    let text = std::fs::read_to_string(&stdout_file).unwrap();
    assert!(text.starts_with("ok: 200 records, head "), "{text}");
    assert!(!text.contains('\x1b'));
}

/// A key whose printing fails was never seen: it is revoked at once, not left live.
#[cfg(target_os = "linux")]
#[test]
fn key_that_cannot_be_printed_is_revoked() {
    let dir = Scratch::new("db", "unprinted");
    let url = dir.path("mcpsec.db");
    ok(&run(&["db", "migrate", "--database-url", &url], None));
    ok(&run(
        &[
            "user",
            "add",
            "--database-url",
            &url,
            "--org",
            "acme",
            "--role",
            "developer",
            "ada",
        ],
        None,
    ));
    let pepper = dir.path("pepper");
    ok(&run(&["apikey", "new-pepper", "--out", &pepper], None));
    let out = Command::new(env!("CARGO_BIN_EXE_mcpsec"))
        .args([
            "apikey",
            "create",
            "--database-url",
            &url,
            "--owner",
            "ada",
            "--org",
            "acme",
            "--scopes",
            "mcp:read",
            "--pepper-file",
            &pepper,
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(2));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    let listing = ok(&run(
        &[
            "apikey",
            "list",
            "--database-url",
            &url,
            "--owner",
            "ada",
            "--json",
        ],
        None,
    ));
    let rows: Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["status"], "revoked");
}
