//! Criterion benches for every `mcpsec bench` row: the mcpsec operation and its baseline,
//! measured in the same run. `cargo bench -p mcpsec-bench`.
#![allow(missing_docs, clippy::unwrap_used, reason = "bench harness")]

use criterion::{Criterion, criterion_group, criterion_main};

fn rows(c: &mut Criterion) {
    if let Some(notice) = mcpsec_bench::pg_skip_notice(None) {
        eprintln!("{notice}");
    }
    for mut row in mcpsec_bench::rows(None).unwrap() {
        let mut group = c.benchmark_group(row.name);
        group.bench_function("mcpsec", |b| b.iter(&mut row.op));
        group.bench_function(row.baseline, |b| b.iter(&mut row.base));
        group.finish();
    }
}

criterion_group!(benches, rows);
criterion_main!(benches);
