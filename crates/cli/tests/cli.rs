//! The `mcpsec` binary's contract: outputs, JSON fields and exit codes that operators'
//! scripts rely on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::process::{Command, Output};

fn mcpsec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcpsec"))
        .args(args)
        .output()
        .expect("the mcpsec binary runs")
}

fn first_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn check(role: &str, scopes: &str, action: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "access", "check", "--role", role, "--scopes", scopes, "--action", action,
    ];
    args.extend_from_slice(extra);
    mcpsec(&args)
}

#[test]
fn allow_exits_0_and_says_allow_first() {
    let out = check("developer", "mcp:write", "mcp.configure", &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(first_line(&out), "allow");
}

#[test]
fn deny_exits_1_and_names_the_rule() {
    let cases = [
        (
            "viewer",
            "mcp:write",
            "mcp.configure",
            &[][..],
            "deny: role: viewer may not mcp.configure",
        ),
        (
            "developer",
            "mcp:read",
            "mcp.configure",
            &[],
            "deny: scope: the credential does not grant mcp:write",
        ),
        (
            "developer",
            "mcp:read",
            "mcp.use",
            &["--owner", "other-org"],
            "deny: org: the resource belongs to another organization",
        ),
        (
            "developer",
            "user:token",
            "user.manage_tokens",
            &["--owner", "other-user"],
            "deny: ownership: the resource belongs to another user",
        ),
    ];
    for (role, scopes, action, extra, expected) in cases {
        let out = check(role, scopes, action, extra);
        assert_eq!(out.status.code(), Some(1), "{role} {scopes} {action}");
        assert_eq!(first_line(&out), expected);
    }
}

#[test]
fn owner_defaults_to_the_actions_natural_owner() {
    // Personal action: self by default, so allowed; same-org means not the owner.
    assert_eq!(
        check("viewer", "user:read", "usage.view_own", &[])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        check(
            "viewer",
            "user:read",
            "usage.view_own",
            &["--owner", "same-org"]
        )
        .status
        .code(),
        Some(1)
    );
    // Org action: same-org by default; another user's resource in the org is fine too.
    assert_eq!(
        check("viewer", "mcp:read", "mcp.use", &["--owner", "other-user"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        check("viewer", "mcp:read", "mcp.use", &["--owner", "self"])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn json_answer_is_one_object() {
    let out = check("org_admin", "org:admin", "org.manage_members", &["--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["effective_scopes"], "org:read org:write org:admin");
    let denied = check("viewer", "", "org.manage_members", &["--json"]);
    assert_eq!(denied.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&denied.stdout).unwrap();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rule"], "role");
}

#[test]
fn unknown_role_scope_or_action_is_a_usage_error() {
    for (role, scopes, action, needle) in [
        ("root", "mcp:read", "mcp.use", "unknown role"),
        ("viewer", "mcp:everything", "mcp.use", "unknown scope"),
        (
            "viewer",
            "mcp:read  org:read",
            "mcp.use",
            "invalid scope syntax",
        ),
        ("viewer", "mcp:read", "mcp.destroy", "unknown action"),
    ] {
        let out = check(role, scopes, action, &[]);
        assert_eq!(out.status.code(), Some(2), "{role} {scopes} {action}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
        assert!(out.stdout.is_empty());
    }
    assert_eq!(
        mcpsec(&["access", "check", "--role", "viewer"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(mcpsec(&["no-such-command"]).status.code(), Some(2));
}

#[test]
fn help_is_everywhere_and_exits_0() {
    for args in [
        &["--help"][..],
        &["access", "--help"],
        &["access", "check", "--help"],
        #[cfg(feature = "bench")]
        &["bench", "--help"],
    ] {
        let out = mcpsec(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
}

#[test]
fn matrix_agrees_with_check() {
    let out = mcpsec(&["access", "matrix"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('|').map(str::trim).collect();
    assert_eq!(
        header[1..7],
        [
            "action",
            "scope",
            "resource",
            "org_admin",
            "developer",
            "viewer"
        ]
    );
    let rows: Vec<_> = lines.skip(1).collect();
    assert_eq!(rows.len(), 10);
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let action = cells[1].trim_matches('`');
        let scope = cells[2].trim_matches('`');
        for (i, role) in ["org_admin", "developer", "viewer"].into_iter().enumerate() {
            let code = check(role, scope, action, &[]).status.code();
            let expected = if cells[4 + i] == "yes" { 0 } else { 1 };
            assert_eq!(code, Some(expected), "{role} {action}");
        }
    }
}

#[cfg(feature = "bench")]
#[test]
fn bench_json_has_exactly_the_contract_fields() {
    let out = mcpsec(&[
        "bench",
        "--json",
        "--filter",
        "access.authorize",
        "--millis",
        "20",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let row = rows[0].as_object().unwrap();
    let mut keys: Vec<_> = row.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "baseline",
            "baseline_ns_per_op",
            "name",
            "ns_per_op",
            "ratio"
        ]
    );
    assert_eq!(row["name"], "access.authorize");
    let ratio = row["ratio"].as_f64().unwrap();
    let expected = row["ns_per_op"].as_f64().unwrap() / row["baseline_ns_per_op"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 1e-9);
    assert_eq!(
        mcpsec(&["bench", "--filter", "nothing-matches"])
            .status
            .code(),
        Some(2)
    );
}

/// Without the `bench` feature there is no `bench` command (a usage error, not a crash).
#[cfg(not(feature = "bench"))]
#[test]
fn bench_is_a_usage_error_without_the_feature() {
    assert_eq!(mcpsec(&["bench", "--json"]).status.code(), Some(2));
    assert_eq!(mcpsec(&["audit", "bench-commit"]).status.code(), Some(2));
}

/// The raw primitives the benchmark rows compare against are dependencies of
/// `mcpsec-bench` only: the tool built without its `bench` feature does not depend on them
/// directly (the libraries that need them still do, through their own manifests).
#[test]
fn raw_primitives_are_not_direct_dependencies_of_the_tool() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "mcpsec-cli",
            "--no-default-features",
            "-e",
            "normal",
            "--depth",
            "1",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let direct: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(direct.contains(&"mcpsec-core"), "{text}");
    for raw in [
        "aes-gcm",
        "argon2",
        "totp-rs",
        "jsonwebtoken",
        "mcpsec-bench",
    ] {
        assert!(
            !direct.contains(&raw),
            "{raw} is a direct dependency:\n{text}"
        );
    }
}
