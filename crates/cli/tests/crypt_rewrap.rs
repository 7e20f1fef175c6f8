//! `mcpsec crypt rewrap` on SQLite and PostgreSQL: rows sealed by the library under
//! version 1, the category rotated, then the command re-encrypts every row under version
//! 2 with the context the rows were sealed with (they still open, with the same
//! plaintext); it resumes after a stop; a second pass rewrites nothing; a bad identifier
//! is refused with exit 2 and nothing changes; rows that do not open are left alone and
//! exit 1; piped output carries no progress-bar bytes.
//!
//! The PostgreSQL test runs in a schema of its own in the database named by
//! `MCPSEC_TEST_DATABASE_URL`, and skips with a notice without it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::{PgSchema, Scratch, code, rt, run, stderr, stdout};
use mcpsec_core::{NullSink, SealContext, SystemClock};
use mcpsec_fieldcrypt::{FieldCrypt, LocalKeyset, LocalMasterKey, format};
use sqlx::{Connection, Executor};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

const MASTER: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const ROWS: i64 = 25;

fn ok(out: &Output) -> String {
    assert_eq!(code(out), Some(0), "stderr: {}", stderr(out));
    stdout(out)
}

/// Neither stream of a piped run holds a carriage return or an escape (a bar's bytes).
fn no_bar(out: &Output) {
    for stream in [&out.stdout, &out.stderr] {
        assert!(!stream.contains(&b'\r'), "carriage return in piped output");
        assert!(!stream.contains(&0x1b), "escape sequence in piped output");
    }
}

/// A keyset (pii, version 1) and its master key file, in separate directories.
struct Keys {
    keyset: String,
    master: String,
}

impl Keys {
    fn new(dir: &Scratch) -> Keys {
        std::fs::create_dir_all(dir.0.join("keys")).unwrap();
        std::fs::create_dir_all(dir.0.join("secret")).unwrap();
        let master = dir.path("secret/master.key");
        std::fs::write(&master, MASTER).unwrap();
        let keyset = dir.path("keys/keyset.json");
        ok(&run(
            &[
                "crypt",
                "keygen",
                "--out",
                &keyset,
                "--category",
                "pii",
                "--master-key-file",
                &master,
            ],
            None,
        ));
        Keys { keyset, master }
    }

    fn rotate(&self) {
        let out = ok(&run(
            &[
                "crypt",
                "rotate",
                "--keyset",
                &self.keyset,
                "--category",
                "pii",
                "--master-key-file",
                &self.master,
            ],
            None,
        ));
        assert!(out.contains("version 2 is primary"), "{out}");
    }

    /// The library's FieldCrypt on the keyset, as an application holds it.
    async fn crypt(&self) -> FieldCrypt {
        let set = Arc::new(
            LocalKeyset::open(
                PathBuf::from(&self.keyset),
                Arc::new(LocalMasterKey::from_file(Path::new(&self.master)).unwrap()),
                Arc::new(SystemClock),
            )
            .await
            .unwrap(),
        );
        set.field_crypt(FieldCrypt::builder(NullSink))
            .await
            .unwrap()
    }
}

/// The context the command builds: table, column, row id and (here) the tenant.
fn context(table: &str, id: i64, tenant: Option<&str>) -> SealContext {
    let context = SealContext::new("pii", table, "email", id.to_string()).unwrap();
    match tenant {
        Some(t) => context.with_tenant(t).unwrap(),
        None => context,
    }
}

fn email(id: i64) -> String {
    format!("user{id}@example.com")
}

fn org(id: i64) -> String {
    format!("org{}", id % 3)
}

fn rewrap_args<'a>(
    url: &'a str,
    keys: &'a Keys,
    table: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "crypt",
        "rewrap",
        "--database-url",
        url,
        "--keyset",
        &keys.keyset,
        "--master-key-file",
        &keys.master,
        "--category",
        "pii",
        "--table",
        table,
        "--column",
        "email",
        "--id-column",
        "id",
    ];
    args.extend_from_slice(extra);
    args
}

fn sqlite_setup(dir: &Scratch) -> (String, Keys) {
    let url = dir.path("app.db");
    ok(&run(&["db", "migrate", "--database-url", &url], None));
    (url, Keys::new(dir))
}

/// Seals `ROWS` rows (text form, tenant = org) into a new SQLite table `customers` (store-sql has a `users` table), plus one
/// row without an email.
async fn sqlite_fill(url: &str, keys: &Keys) {
    let crypt = keys.crypt().await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{url}"))
        .await
        .unwrap();
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, org TEXT NOT NULL, email TEXT)")
        .await
        .unwrap();
    for id in 1..=ROWS {
        let sealed = crypt
            .encrypt_text(
                email(id).as_bytes(),
                &context("customers", id, Some(&org(id))),
            )
            .unwrap();
        sqlx::query("INSERT INTO customers (id, org, email) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(org(id))
            .bind(sealed)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::query("INSERT INTO customers (id, org, email) VALUES (1000, 'org0', NULL)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

async fn sqlite_rows(url: &str) -> Vec<(i64, String, Option<String>)> {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{url}"))
        .await
        .unwrap();
    let rows = sqlx::query_as("SELECT id, org, email FROM customers ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    rows
}

/// Every sealed row opens with its context, holds its plaintext and is on `version`.
async fn check_rows(keys: &Keys, rows: &[(i64, String, Option<String>)], version: u32) {
    let crypt = keys.crypt().await;
    let mut sealed = 0;
    for (id, org, value) in rows {
        let Some(value) = value else { continue };
        sealed += 1;
        let bytes = format::from_text(value).unwrap();
        assert_eq!(
            format::inspect(&bytes).unwrap().key_version,
            version,
            "row {id}"
        );
        let plain = crypt
            .decrypt(&bytes, &context("customers", *id, Some(org)))
            .await
            .unwrap();
        assert_eq!(plain.expose_secret(), email(*id).as_bytes());
    }
    assert_eq!(sealed, ROWS);
}

#[test]
fn sqlite_rewrap_resumes_finishes_and_then_rewrites_nothing() {
    let dir = Scratch::new("rewrap", "sqlite");
    let (url, keys) = sqlite_setup(&dir);
    let rt = rt();
    rt.block_on(sqlite_fill(&url, &keys));
    keys.rotate();
    let tenant = ["--tenant-column", "org", "--batch", "10"];

    // Stopped after one batch: ten rows done, the rest still on version 1.
    let mut args = rewrap_args(&url, &keys, "customers", &tenant);
    args.extend(["--max-batches", "1"]);
    let out = run(&args, None);
    no_bar(&out);
    let line = ok(&out);
    assert_eq!(
        line,
        "customers.email: 10 rewrapped, 0 already current, 0 skipped (0 changed meanwhile, 0 could \
         not be opened); 10 rows scanned, stopped; run again to continue\n"
    );
    let rows = rt.block_on(sqlite_rows(&url));
    let versions: Vec<u32> = rows
        .iter()
        .filter_map(|(_, _, v)| v.as_ref())
        .map(|v| format::inspect(v.as_bytes()).unwrap().key_version)
        .collect();
    assert_eq!(versions.iter().filter(|v| **v == 2).count(), 10);

    // The next run continues from the checkpoint and finishes.
    let out = run(&rewrap_args(&url, &keys, "customers", &tenant), None);
    no_bar(&out);
    assert_eq!(
        ok(&out),
        "customers.email: 25 rewrapped, 0 already current, 0 skipped (0 changed meanwhile, 0 could \
         not be opened); 25 rows scanned, finished, resumed\n"
    );
    rt.block_on(check_rows(&keys, &rt.block_on(sqlite_rows(&url)), 2));

    // A run after a finished one scans again and rewrites nothing.
    let before = rt.block_on(sqlite_rows(&url));
    let out = run(&rewrap_args(&url, &keys, "customers", &tenant), None);
    no_bar(&out);
    assert_eq!(
        ok(&out),
        "customers.email: 0 rewrapped, 25 already current, 0 skipped (0 changed meanwhile, 0 could \
         not be opened); 25 rows scanned, finished\n"
    );
    assert_eq!(rt.block_on(sqlite_rows(&url)), before);
}

#[test]
fn bad_identifiers_are_refused_and_nothing_changes() {
    let dir = Scratch::new("rewrap", "badname");
    let (url, keys) = sqlite_setup(&dir);
    let rt = rt();
    rt.block_on(sqlite_fill(&url, &keys));
    keys.rotate();
    let before = rt.block_on(sqlite_rows(&url));
    for (table, column, id) in [
        ("users; DROP TABLE x", "email", "id"),
        ("customers; DROP TABLE x", "email", "id"),
        ("customers", "email\"", "id"),
        ("customers", "email", "1id"),
        ("customers", "email", "id --"),
    ] {
        let mut args = rewrap_args(&url, &keys, table, &[]);
        let at = args.iter().position(|a| *a == "--column").unwrap();
        args[at + 1] = column;
        args[at + 3] = id;
        let out = run(&args, None);
        assert_eq!(
            code(&out),
            Some(2),
            "{table} {column} {id}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("not a plain identifier"),
            "{}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty());
    }
    // A plain name that is not there: refused before any row is read.
    let out = run(&rewrap_args(&url, &keys, "nosuch", &[]), None);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot read nosuch.email"),
        "{}",
        stderr(&out)
    );
    // Rows with a value but no id: refused before any row is read.
    rt.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{url}"))
            .await
            .unwrap();
        conn.execute(
            "CREATE TABLE noid (id INTEGER, email TEXT); INSERT INTO noid VALUES (NULL, 'x')",
        )
        .await
        .unwrap();
        conn.close().await.unwrap();
    });
    let out = run(&rewrap_args(&url, &keys, "noid", &[]), None);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("NULL id"), "{}", stderr(&out));
    // A category the keyset lacks.
    let mut args = rewrap_args(&url, &keys, "customers", &[]);
    let at = args.iter().position(|a| *a == "--category").unwrap();
    args[at + 1] = "totp_secrets";
    let out = run(&args, None);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert_eq!(rt.block_on(sqlite_rows(&url)), before);
}

#[test]
fn rows_that_do_not_open_are_left_alone_and_exit_1() {
    let dir = Scratch::new("rewrap", "wrongctx");
    let (url, keys) = sqlite_setup(&dir);
    let rt = rt();
    rt.block_on(sqlite_fill(&url, &keys));
    keys.rotate();
    // Without --tenant-column the contexts lack the tenant the rows were sealed with:
    // nothing opens, nothing is written.
    let before = rt.block_on(sqlite_rows(&url));
    let out = run(&rewrap_args(&url, &keys, "customers", &[]), None);
    no_bar(&out);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("customers.email: 0 rewrapped, 0 already current, 25 skipped"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("25 rows could not be opened"),
        "{}",
        stderr(&out)
    );
    assert_eq!(rt.block_on(sqlite_rows(&url)), before);
}

/// PostgreSQL, binary ciphertexts in a BYTEA column, an INTEGER id, no tenant.
#[test]
fn postgres_rewrap_binary_column() {
    let Some(base) = mcpsec_core::testkit::database_url() else {
        eprintln!("notice: MCPSEC_TEST_DATABASE_URL is not set; skipping the PostgreSQL rewrap");
        return;
    };
    let schema = PgSchema::new(base, "rewrap_binary");
    let url = schema.url();
    let dir = Scratch::new("rewrap", "pg");
    let keys = Keys::new(&dir);
    ok(&run(&["db", "migrate", "--database-url", &url], None));
    let table = format!("secrets_{}", std::process::id());
    let rt = rt();
    let read = |rt: &tokio::runtime::Runtime| -> Vec<(i32, Vec<u8>)> {
        rt.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id, email FROM {table} ORDER BY id"
            )))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            conn.close().await.unwrap();
            rows
        })
    };
    rt.block_on(async {
        let crypt = keys.crypt().await;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        conn.execute(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {table} (id INTEGER PRIMARY KEY, email BYTEA)"
        )))
        .await
        .unwrap();
        for id in 1..=ROWS {
            let sealed = crypt
                .encrypt(email(id).as_bytes(), &context(&table, id, None))
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} (id, email) VALUES ($1, $2)"
            )))
            .bind(i32::try_from(id).unwrap())
            .bind(sealed)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        conn.close().await.unwrap();
    });
    keys.rotate();
    let out = run(&rewrap_args(&url, &keys, &table, &["--batch", "7"]), None);
    no_bar(&out);
    assert!(
        ok(&out).starts_with(&format!(
            "{table}.email: 25 rewrapped, 0 already current, 0 skipped"
        )),
        "{}",
        stdout(&out)
    );
    let rows = read(&rt);
    rt.block_on(async {
        let crypt = keys.crypt().await;
        for (id, value) in &rows {
            assert_eq!(format::inspect(value).unwrap().key_version, 2);
            let plain = crypt
                .decrypt(value, &context(&table, i64::from(*id), None))
                .await
                .unwrap();
            assert_eq!(plain.expose_secret(), email(i64::from(*id)).as_bytes());
        }
    });
    assert_eq!(rows.len(), 25);
    let out = run(&rewrap_args(&url, &keys, &table, &[]), None);
    assert!(
        ok(&out).starts_with(&format!("{table}.email: 0 rewrapped, 25 already current")),
        "{}",
        stdout(&out)
    );
    assert_eq!(read(&rt), rows);
}

/// The source's write is a compare-and-swap on the value as read: a row changed after it
/// was read is not overwritten, and the call says so.
#[test]
fn a_row_changed_after_it_was_read_is_not_overwritten() {
    use mcpsec_cli::db::{Database, DatabaseUrl};
    use mcpsec_cli::rewrap::{Identifier, SqlColumnSource, Target};
    use mcpsec_fieldcrypt::rewrap::RowSource;

    let dir = Scratch::new("rewrap", "cas");
    let (url, keys) = sqlite_setup(&dir);
    let rt = rt();
    rt.block_on(async {
        sqlite_fill(&url, &keys).await;
        let db = Database::open(&DatabaseUrl::parse(&url).unwrap(), false)
            .await
            .unwrap();
        let id = |name: &str| Identifier::parse("--x", name).unwrap();
        let target = Target {
            table: id("customers"),
            column: id("email"),
            id_column: id("id"),
            tenant_column: Some(id("org")),
        };
        let category = mcpsec_fieldcrypt::Category::new("pii").unwrap();
        let source = SqlColumnSource::new(db, target, &category).await.unwrap();
        assert_eq!(source.count().await.unwrap(), 25);
        let batch = source.next_batch(None, 2).await.unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].cursor, "1");
        assert_eq!(batch[0].context, context("customers", 1, Some(&org(1))));
        // Someone rewrites row 1 after the read.
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{url}"))
            .await
            .unwrap();
        sqlx::query("UPDATE customers SET email = 'changed' WHERE id = 1")
            .execute(&mut conn)
            .await
            .unwrap();
        assert!(!source.replace(&batch[0], b"new".to_vec()).await.unwrap());
        assert!(source.replace(&batch[1], b"new".to_vec()).await.unwrap());
        let rows = sqlite_rows(&url).await;
        assert_eq!(rows[0].2.as_deref(), Some("changed"));
        // Written in the form it was read in (text).
        assert_eq!(rows[1].2.as_deref(), Some(format::to_text(b"new").as_str()));
        // Paging by integer id follows the integer order (2 < 10), not the text order.
        let next = source.next_batch(Some("9"), 3).await.unwrap();
        let cursors: Vec<&str> = next.iter().map(|r| r.cursor.as_str()).collect();
        assert_eq!(cursors, ["10", "11", "12"]);
        conn.close().await.unwrap();
    });
}

/// The positive control, where util-linux `script` can give the command a terminal: the
/// bar is drawn on it, and standard output holds only the summary.
#[test]
fn rewrap_on_a_terminal_draws_a_progress_bar() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("notice: `script` is not installed; skipping the terminal case");
        return;
    }
    let dir = Scratch::new("rewrap", "tty");
    let (url, keys) = sqlite_setup(&dir);
    rt().block_on(sqlite_fill(&url, &keys));
    keys.rotate();
    let stdout_file = dir.path("stdout");
    let args = rewrap_args(
        &url,
        &keys,
        "customers",
        &["--tenant-column", "org", "--batch", "1"],
    );
    let command = format!(
        "'{}' {} > '{stdout_file}'",
        env!("CARGO_BIN_EXE_mcpsec"),
        args.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    if code(&out) != Some(0) && !Path::new(&stdout_file).exists() {
        eprintln!("notice: no pseudo-terminal available; skipping the terminal case");
        return;
    }
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(
        out.stdout.contains(&0x1b) || out.stdout.contains(&b'\r'),
        "no bar drawn on the terminal: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = std::fs::read_to_string(&stdout_file).unwrap();
    assert!(text.starts_with("customers.email: 25 rewrapped"), "{text}");
    assert!(!text.contains('\x1b') && !text.contains('\r'));
}
