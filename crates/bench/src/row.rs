//! A benchmark row, the list of rows, and the timing loop `mcpsec bench` runs them with.
//!
//! Each row times an mcpsec operation and, in the same run, the raw primitive or
//! hand-rolled baseline it is built on, so the ratio between them holds whatever the
//! machine. A capability adds its rows to [`rows`].

use serde::Serialize;
use std::time::{Duration, Instant};

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
    let mut all = vec![crate::access::authorize_row()?];
    all.extend(crate::tokens::rows().map_err(setup)?);
    all.push(crate::tokens::refresh_row().map_err(setup)?);
    let key_setup = |_| mcpsec_core::Error::InvalidArgument("API key benchmark setup");
    all.extend(crate::apikeys::rows().map_err(key_setup)?);
    let mfa_setup = |_| mcpsec_core::Error::InvalidArgument("MFA benchmark setup");
    all.push(crate::mfa::totp_row().map_err(mfa_setup)?);
    let audit_setup = |_| mcpsec_core::Error::InvalidArgument("audit benchmark setup");
    all.extend(crate::audit::rows().map_err(audit_setup)?);
    let crypt_setup = |_| mcpsec_core::Error::InvalidArgument("fieldcrypt benchmark setup");
    all.extend(crate::fieldcrypt::rows().map_err(crypt_setup)?);
    // The store rows open databases: only those the filter wants are built.
    all.extend(crate::store::rows(filter)?);
    all.extend(crate::store_redis::rows(filter)?);
    all.extend(crate::http::rows(filter)?);
    Ok(all
        .into_iter()
        .filter(|row| filter.is_none_or(|f| row.name.contains(f)))
        .collect())
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
