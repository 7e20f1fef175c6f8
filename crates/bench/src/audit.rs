//! Benchmark rows for mcpsec-audit, and the group-commit measurement of `mcpsec audit bench-commit`.

use crate::Row;
use mcpsec_audit::record::Digest;
use mcpsec_audit::{ChainConfig, Error, FileSink, FileSinkConfig};
use mcpsec_core::{
    Clock, EventKind, Outcome, SecurityEvent, ServiceId, Severity, SystemClock, UserId,
};
use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Ordinary appends per `block_on` in `audit.append_buffered`.
const BUFFERED_GROUP: u64 = 256;

/// Concurrent critical appends per group in `audit.append_durable`.
pub(crate) const DURABLE_GROUP: usize = 64;

/// Files for a bench run under the temp dir, removed on drop.
pub(crate) struct BenchDir(pub(crate) PathBuf);

impl BenchDir {
    pub(crate) fn new(name: &str) -> Result<BenchDir, Error> {
        let dir = std::env::temp_dir().join(format!("mcpsec-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
            context: "creating the bench directory",
            source: e,
        })?;
        Ok(BenchDir(dir))
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn open_sink(path: &std::path::Path) -> Result<FileSink, Error> {
    let _ = std::fs::remove_file(path);
    let chain = ChainConfig::new(ServiceId::new("bench")?);
    FileSink::open(path, FileSinkConfig::new(chain, Arc::new(SystemClock)))
}

pub(crate) fn sample_event(severity: Severity) -> Result<SecurityEvent, Error> {
    Ok(
        SecurityEvent::new(EventKind::McpToolCall, Outcome::Success, SystemClock.now())
            .with_user(UserId::new("ada")?)
            .with_source("192.0.2.7".parse().map_err(|_| Error::Config("address"))?)
            .with_severity(severity),
    )
}

/// `audit.append_buffered` (an ordinary event through the queue and the writer thread,
/// in steady state: back-pressure makes callers go at the writer's pace; 256 per
/// `block_on`) and
/// `audit.append_durable` (critical events, 64 at a time, each waiting for its group
/// commit; ns per event). Baselines: one raw SHA-256 chain step over a record-sized
/// buffer, and one raw 400-byte write + fdatasync.
pub(crate) fn rows() -> Result<Vec<Row>, Error> {
    Ok(vec![buffered_row()?, durable_row()?])
}

fn buffered_row() -> Result<Row, Error> {
    let dir = BenchDir::new("audit-buffered")?;
    let path = dir.0.join("audit.jsonl");
    let runtime = runtime()?;
    let mut sink = open_sink(&path)?;
    let event = sample_event(Severity::Info)?;
    let mut count = 0u64;
    let mut prev = Digest::GENESIS;
    let record = vec![0x5a_u8; 300];
    Ok(Row {
        name: "audit.append_buffered",
        baseline: "sha256_chain_step",
        op: Box::new(move || {
            let _keep = &dir;
            // One call in 256 appends 256 events inside one `block_on`, as a host's async
            // code would; the others do nothing, so the time per call is per event
            // without a runtime entry per event.
            if count.is_multiple_of(BUFFERED_GROUP) {
                runtime.block_on(async {
                    for _ in 0..BUFFERED_GROUP {
                        black_box(sink.append(event.clone()).await.is_ok());
                    }
                });
            }
            count += 1;
            // Keep the file small: start a fresh one every 512,000 events (the close
            // waits for the writer, so its cost is in the measurement).
            if count.is_multiple_of(512_000) {
                let _ = sink.close();
                if let Ok(fresh) = open_sink(&path) {
                    sink = fresh;
                }
            }
        }),
        base: Box::new(move || {
            let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
            ctx.update(&prev.0);
            ctx.update(black_box(&record));
            let d = ctx.finish();
            prev.0.copy_from_slice(d.as_ref());
            black_box(prev);
        }),
    })
}

fn durable_row() -> Result<Row, Error> {
    let dir = BenchDir::new("audit-durable")?;
    let path = dir.0.join("audit.jsonl");
    let raw_path = dir.0.join("raw.bin");
    let runtime = runtime()?;
    let sink = Arc::new(open_sink(&path)?);
    let event = sample_event(Severity::Critical)?;
    let mut raw = std::fs::File::create(&raw_path).map_err(|e| Error::Io {
        context: "creating the raw fsync file",
        source: e,
    })?;
    let line = vec![b'x'; 400];
    let mut calls = 0usize;
    let mut raw_writes = 0u64;
    Ok(Row {
        name: "audit.append_durable",
        baseline: "raw_write_fdatasync",
        op: Box::new(move || {
            let _keep = &dir;
            // One call in 64 runs a group of 64 concurrent critical appends; the others
            // do nothing, so the time per call is the time per durable event.
            if calls.is_multiple_of(DURABLE_GROUP) {
                runtime.block_on(async {
                    let tasks: Vec<_> = (0..DURABLE_GROUP)
                        .map(|_| {
                            let sink = Arc::clone(&sink);
                            let event = event.clone();
                            tokio::spawn(async move { sink.append(event).await.is_ok() })
                        })
                        .collect();
                    for task in tasks {
                        black_box(task.await.unwrap_or(false));
                    }
                });
            }
            calls += 1;
        }),
        base: Box::new(move || {
            raw_writes += 1;
            if raw_writes.is_multiple_of(100_000) {
                let _ = raw.set_len(0);
            }
            black_box(raw.write_all(&line).and_then(|()| raw.sync_data()).is_ok());
        }),
    })
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| Error::Io {
            context: "starting a runtime",
            source: e,
        })
}

/// What `bench-commit` measured.
#[derive(Debug, Clone, Copy)]
pub struct CommitBench {
    /// Concurrent writers of critical events.
    pub tasks: usize,
    /// Durable (critical) events per second, all tasks together.
    pub durable_per_second: f64,
    /// Median latency of one durable append, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency of one durable append, in milliseconds.
    pub p99_ms: f64,
    /// Median latency of one raw 400-byte write + `fdatasync` on the same disk.
    pub raw_p50_ms: f64,
    /// 99th percentile of the same: the floor for any durable commit.
    pub raw_p99_ms: f64,
    /// Ordinary events per second from one task, until written and synced.
    pub buffered_per_second: f64,
}

/// `mcpsec audit bench-commit`: group commit under `tasks` concurrent critical writers for `duration`
/// (events/s and p50/p99 commit latency), then one writer of ordinary events for
/// `duration` (events/s, the final flush included).
pub fn commit(tasks: usize, duration: std::time::Duration) -> Result<CommitBench, Error> {
    use std::time::Instant;
    let dir = BenchDir::new("audit-commit")?;
    let runtime = runtime()?;
    let sink = Arc::new(open_sink(&dir.0.join("durable.jsonl"))?);
    let event = sample_event(Severity::Critical)?;
    let start = Instant::now();
    let mut latencies: Vec<u64> = runtime.block_on(async {
        let handles: Vec<_> = (0..tasks.max(1))
            .map(|_| {
                let sink = Arc::clone(&sink);
                let event = event.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    while start.elapsed() < duration {
                        let t = Instant::now();
                        if sink.append(event.clone()).await.is_err() {
                            break;
                        }
                        lat.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap_or_default());
        }
        all
    });
    let elapsed = start.elapsed().as_secs_f64();
    sink.close()?;
    latencies.sort_unstable();
    let durable_per_second = latencies.len() as f64 / elapsed;
    let (p50_ms, p99_ms) = (pct(&latencies, 0.50), pct(&latencies, 0.99));

    // The floor: one 400-byte write and fdatasync at a time, on the same disk.
    let raw_path = dir.0.join("raw.bin");
    let mut raw = std::fs::File::create(&raw_path).map_err(|source| Error::Io {
        context: "creating the raw fsync file",
        source,
    })?;
    let line = [b'x'; 400];
    latencies.clear();
    let start = Instant::now();
    while start.elapsed() < duration {
        let t = Instant::now();
        raw.write_all(&line)
            .and_then(|()| raw.sync_data())
            .map_err(|source| Error::Io {
                context: "raw write + fdatasync",
                source,
            })?;
        latencies.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    latencies.sort_unstable();
    let (raw_p50_ms, raw_p99_ms) = (pct(&latencies, 0.50), pct(&latencies, 0.99));

    let sink = open_sink(&dir.0.join("buffered.jsonl"))?;
    let event = sample_event(Severity::Info)?;
    let start = Instant::now();
    let mut count = 0u64;
    runtime.block_on(async {
        while start.elapsed() < duration {
            for _ in 0..1024 {
                if sink.append(event.clone()).await.is_ok() {
                    count += 1;
                }
            }
        }
        let _ = sink.flush().await;
    });
    let buffered_per_second = count as f64 / start.elapsed().as_secs_f64();
    sink.close()?;
    Ok(CommitBench {
        tasks,
        durable_per_second,
        p50_ms,
        p99_ms,
        raw_p50_ms,
        raw_p99_ms,
        buffered_per_second,
    })
}

/// The `p` quantile of sorted nanosecond latencies, in milliseconds.
fn pct(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or(0) as f64 / 1e6
}
