//! Benchmark rows for `mcpsec bench` and the criterion benches.
//!
//! Each row times an mcpsec operation and, in the same run, the raw primitive or
//! hand-rolled baseline it is built on, so the ratio between them holds whatever the
//! machine. Later capabilities add their rows to [`rows`].

use mcpsec_access::{
    Action, AuthMethods, Authentication, CredentialKind, Principal, Resource, Role, ScopeSet,
    authorize,
};
use mcpsec_core::{OrgId, UserId};
use serde::Serialize;
use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// One operation and its baseline, each a closure that performs one operation per call.
pub struct Row {
    /// The row's name (`access.authorize`).
    pub name: &'static str,
    /// What the baseline is.
    pub baseline: &'static str,
    /// One mcpsec operation.
    pub op: Box<dyn FnMut()>,
    /// One baseline operation.
    pub base: Box<dyn FnMut()>,
}

/// A measured row, as `mcpsec bench --json` prints it (exactly these fields).
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// The row's name.
    pub name: &'static str,
    /// Nanoseconds per mcpsec operation (median of the samples).
    pub ns_per_op: f64,
    /// What the baseline is.
    pub baseline: &'static str,
    /// Nanoseconds per baseline operation (median of the samples).
    pub baseline_ns_per_op: f64,
    /// `ns_per_op / baseline_ns_per_op`.
    pub ratio: f64,
}

/// Every row whose name contains `filter` (all rows when `None`).
pub fn rows(filter: Option<&str>) -> Result<Vec<Row>, mcpsec_core::Error> {
    let setup = |_| mcpsec_core::Error::InvalidArgument("token benchmark setup");
    let mut all = vec![authorize_row()?];
    all.extend(crate::bench_tokens::rows().map_err(setup)?);
    all.push(crate::bench_tokens::refresh_row().map_err(setup)?);
    let key_setup = |_| mcpsec_core::Error::InvalidArgument("API key benchmark setup");
    all.extend(crate::bench_apikeys::rows().map_err(key_setup)?);
    let mfa_setup = |_| mcpsec_core::Error::InvalidArgument("MFA benchmark setup");
    all.push(crate::bench_mfa::totp_row().map_err(mfa_setup)?);
    let audit_setup = |_| mcpsec_core::Error::InvalidArgument("audit benchmark setup");
    all.extend(crate::bench_audit::rows().map_err(audit_setup)?);
    let crypt_setup = |_| mcpsec_core::Error::InvalidArgument("fieldcrypt benchmark setup");
    all.extend(crate::bench_fieldcrypt::rows().map_err(crypt_setup)?);
    Ok(all
        .into_iter()
        .filter(|row| filter.is_none_or(|f| row.name.contains(f)))
        .collect())
}

/// `access.authorize`: a developer configuring an MCP service of their org (the full
/// path: role, scope through the hierarchy, org, proof) against the same checks written
/// the obvious way, with the credential's scopes as a `HashSet<String>`.
fn authorize_row() -> Result<Row, mcpsec_core::Error> {
    let org = OrgId::new("acme")?;
    let principal = Principal::new(
        UserId::new("ada")?,
        org.clone(),
        Role::Developer,
        ScopeSet::parse_strict("mcp:write user:token").unwrap_or(ScopeSet::EMPTY),
        CredentialKind::AccessToken,
        Authentication {
            at: Some(UNIX_EPOCH),
            methods: AuthMethods::EMPTY,
        },
    );
    let resource = Resource::of_org(org);
    let naive = NaivePrincipal {
        user: "ada".into(),
        org: "acme".into(),
        role: "developer".into(),
        scopes: ["mcp:write", "user:token"].map(String::from).into(),
    };
    Ok(Row {
        name: "access.authorize",
        baseline: "hashset_scope_check",
        op: Box::new(move || {
            let decision = authorize(
                black_box(&principal),
                black_box(Action::McpConfigure),
                black_box(&resource),
            );
            black_box(decision.is_ok());
        }),
        base: Box::new(move || {
            black_box(naive_authorize(
                black_box(&naive),
                black_box("mcp.configure"),
                black_box("acme"),
            ));
        }),
    })
}

struct NaivePrincipal {
    user: String,
    org: String,
    role: String,
    scopes: HashSet<String>,
}

/// The hand-rolled check a service might write: role list, scopes (with the hierarchy
/// spelled out) looked up in a `HashSet<String>`, org by string comparison.
fn naive_authorize(p: &NaivePrincipal, action: &str, resource_org: &str) -> bool {
    let (roles, satisfied_by): (&[&str], &[&str]) = match action {
        "mcp.configure" => (&["org_admin", "developer"], &["mcp:write", "mcp:admin"]),
        "mcp.use" => (
            &["org_admin", "developer", "viewer"],
            &["mcp:read", "mcp:write", "mcp:admin"],
        ),
        _ => return false,
    };
    roles.contains(&p.role.as_str())
        && satisfied_by.iter().any(|s| p.scopes.contains(*s))
        && p.org == resource_org
        && !p.user.is_empty()
}

/// Times `row` for about `budget` in total: interleaved samples of the operation and the
/// baseline (so drift affects both), each sample a calibrated batch; medians reported.
pub fn measure(row: &mut Row, budget: Duration) -> Measurement {
    const SAMPLES: usize = 9;
    let per_sample = budget / (2 * SAMPLES as u32);
    let op_batch = calibrate(&mut row.op, per_sample);
    let base_batch = calibrate(&mut row.base, per_sample);
    let mut op_ns = Vec::with_capacity(SAMPLES);
    let mut base_ns = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        op_ns.push(time_batch(&mut row.op, op_batch));
        base_ns.push(time_batch(&mut row.base, base_batch));
    }
    let ns_per_op = median(&mut op_ns);
    let baseline_ns_per_op = median(&mut base_ns);
    Measurement {
        name: row.name,
        ns_per_op,
        baseline: row.baseline,
        baseline_ns_per_op,
        ratio: if baseline_ns_per_op > 0.0 {
            ns_per_op / baseline_ns_per_op
        } else {
            f64::NAN
        },
    }
}

/// The batch size that takes about `target`, doubling from 1.
fn calibrate(f: &mut Box<dyn FnMut()>, target: Duration) -> u64 {
    let mut n: u64 = 1;
    loop {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        let elapsed = start.elapsed();
        if elapsed >= target / 2 || n >= 1 << 40 {
            let per_op = elapsed.as_nanos().max(1) as f64 / n as f64;
            return ((target.as_nanos() as f64 / per_op) as u64).max(1);
        }
        n = n.saturating_mul(2);
    }
}

/// Nanoseconds per call over a batch of `n` calls.
fn time_batch(f: &mut Box<dyn FnMut()>, n: u64) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_agrees_with_authorize_on_the_benchmarked_case() {
        let naive = NaivePrincipal {
            user: "ada".into(),
            org: "acme".into(),
            role: "developer".into(),
            scopes: ["mcp:write".to_owned()].into(),
        };
        assert!(naive_authorize(&naive, "mcp.configure", "acme"));
        assert!(!naive_authorize(&naive, "mcp.configure", "other"));
        assert!(!naive_authorize(&naive, "org.manage_members", "acme"));
    }

    #[test]
    fn measurement_has_the_contract_fields() {
        let mut all = rows(Some("access.authorize")).unwrap_or_default();
        assert_eq!(all.len(), 1);
        let m = measure(&mut all[0], Duration::from_millis(20));
        let json = serde_json::to_value(&m).unwrap_or_default();
        let keys: Vec<_> = json
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(keys.len(), 5);
        for key in [
            "name",
            "ns_per_op",
            "baseline",
            "baseline_ns_per_op",
            "ratio",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        assert!(m.ns_per_op > 0.0 && m.baseline_ns_per_op > 0.0);
    }
}
