//! Helpers shared by the CLI's integration tests: a scratch directory and a runner.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers"
)]

use sqlx::{Connection, Executor};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A per-test directory under the system temp dir, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh directory named for the suite, the process and the test.
    pub fn new(suite: &str, test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("mcpsec-cli-{suite}-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A path inside the directory, as text for command lines.
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary, feeding `stdin` (then closing it) when given.
pub fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcpsec"))
        .args(args)
        .stdin(stdin.map_or_else(Stdio::null, |_| Stdio::piped()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the mcpsec binary runs");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        // The binary may refuse before reading stdin; a closed pipe is not a failure.
        let _ = pipe.write_all(text.as_bytes());
    }
    child.wait_with_output().unwrap()
}

/// The exit code.
pub fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A schema of its own in the test database, dropped when the test ends.
pub struct PgSchema {
    base: String,
    schema: String,
}

impl PgSchema {
    pub fn new(base: String, test: &str) -> PgSchema {
        let schema = format!("mcpsec_cli_{test}_{}", std::process::id());
        rt().block_on(async {
            let mut conn = sqlx::PgConnection::connect(&base)
                .await
                .unwrap_or_else(|e| panic!("MCPSEC_TEST_DATABASE_URL is set but unreachable: {e}"));
            conn.execute(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\""
            )))
            .await
            .unwrap();
            conn.close().await.unwrap();
        });
        PgSchema { base, schema }
    }

    /// The test URL with the schema as the connections' search path.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}options=-c%20search_path%3D{}",
            self.base, self.schema
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let dropped = rt().block_on(async {
            let mut conn = sqlx::PgConnection::connect(&self.base).await?;
            conn.execute(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            )))
            .await?;
            conn.close().await
        });
        if dropped.is_err() {
            eprintln!("warning: could not drop test schema {}", self.schema);
        }
    }
}

/// A current-thread runtime for the tests' own database work.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
