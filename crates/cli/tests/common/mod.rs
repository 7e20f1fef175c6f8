//! Helpers shared by the CLI's integration tests: a scratch directory and a runner.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers"
)]

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
