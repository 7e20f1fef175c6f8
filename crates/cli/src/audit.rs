//! `mcpsec audit append|verify|tail|export|keygen|bench-commit`.

use crate::tokens::{CliError, write_private};
use mcpsec_audit::record::Digest;
use mcpsec_audit::{
    Chain, ChainConfig, CheckpointKey, CheckpointPolicy, CheckpointPublicKey, Entry, Error,
    LogFile, Record, VerifyOptions, to_ecs, to_ocsf, verify_file,
};
use mcpsec_core::{Actor, Clock, SecurityEvent, ServiceId, SystemClock};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Longest event line `append` reads.
pub const MAX_EVENT_LINE: usize = 64 * 1024;
/// Most events one `append` takes.
pub const MAX_EVENTS: usize = 100_000;

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

fn audit_error(e: Error) -> CliError {
    match e {
        Error::Tampered(finding) => CliError::Invalid(finding.to_string()),
        other => usage(other.to_string()),
    }
}

/// Reads JSON-lines events from `input`, all before writing anything: any bad line
/// (unknown field or kind, invalid id, over the cap) refuses the whole batch, naming the
/// line. Blank lines are skipped.
pub fn read_events(input: impl BufRead) -> Result<Vec<SecurityEvent>, CliError> {
    let mut events = Vec::new();
    let mut input = input.take((MAX_EVENT_LINE as u64 + 1) * (MAX_EVENTS as u64 + 1));
    let mut buf = Vec::new();
    for number in 1.. {
        buf.clear();
        let n = (&mut input)
            .take(MAX_EVENT_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| usage(format!("reading standard input: {e}")))?;
        if n == 0 {
            break;
        }
        if buf.len() > MAX_EVENT_LINE && buf.last() != Some(&b'\n') {
            return Err(usage(format!(
                "line {number}: longer than {MAX_EVENT_LINE} bytes"
            )));
        }
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        if events.len() >= MAX_EVENTS {
            return Err(usage(format!(
                "more than {MAX_EVENTS} events; split the batch"
            )));
        }
        let event: SecurityEvent = serde_json::from_slice(line).map_err(|e| {
            // serde_json appends " at line 1 column N"; the line is ours to number.
            let text = e.to_string();
            let cut = text.rfind(" at line ").unwrap_or(text.len());
            let why: String = text.get(..cut).unwrap_or(&text).chars().take(200).collect();
            usage(format!(
                "line {number}, column {}: {why}; nothing was appended",
                e.column()
            ))
        })?;
        events.push(event);
    }
    Ok(events)
}

/// Appends `events` to the log at `log` as instance `instance`'s chain, with one write
/// and one sync; on failure the file is cut back, so the batch is all or nothing. With a
/// key, a signed checkpoint closes the batch. Returns the new head.
pub fn append(
    log: &Path,
    instance: &str,
    events: Vec<SecurityEvent>,
    key: Option<&Path>,
) -> Result<(usize, Digest), CliError> {
    let instance = ServiceId::new(instance).map_err(|e| usage(format!("--instance: {e}")))?;
    let mut config = ChainConfig::new(instance.clone());
    if let Some(path) = key {
        let key = CheckpointKey::from_file(path).map_err(audit_error)?;
        config = config.with_checkpoints(Arc::new(key), CheckpointPolicy::default());
    }
    let opened = LogFile::open(log, &instance).map_err(audit_error)?;
    if opened.torn_bytes > 0 {
        eprintln!("note: cut a torn last line of {} bytes", opened.torn_bytes);
    }
    let mut file = opened.log;
    let mut chain = Chain::resume(config, opened.last_seq, opened.head);
    let now = SystemClock.now();
    let count = events.len();
    let mut buf = Vec::with_capacity(count * 400);
    for event in events {
        let record = chain.append(event, now).map_err(audit_error)?;
        record.write_json(&mut buf).map_err(audit_error)?;
        buf.push(b'\n');
    }
    if let Some(cp) = chain.checkpoint(now).map_err(audit_error)? {
        cp.write_json(&mut buf).map_err(audit_error)?;
        buf.push(b'\n');
    }
    let start = file.len();
    if let Err(e) = file.write(&buf).and_then(|()| file.sync()) {
        let _ = file.truncate(start);
        return Err(audit_error(e));
    }
    Ok((count, chain.head()))
}

/// `verify`: `ok: N records, head <hash>`, or the first bad record (exit 1).
pub fn verify(
    file: &Path,
    keys: &[PathBuf],
    checkpoints: Option<&Path>,
) -> Result<String, CliError> {
    let keys = keys
        .iter()
        .map(|p| CheckpointPublicKey::from_file(p).map_err(audit_error))
        .collect::<Result<Vec<_>, _>>()?;
    let mirrored = match checkpoints {
        Some(path) => read_records(path)?,
        None => Vec::new(),
    };
    let report = verify_file(file, &VerifyOptions { keys, mirrored }).map_err(audit_error)?;
    let head = report
        .head
        .map_or_else(|| "none".to_owned(), |h| h.to_string());
    Ok(format!("ok: {} records, head {head}", report.records))
}

/// Every record of a file, refusing a bad line by number.
fn read_records(path: &Path) -> Result<Vec<Record>, CliError> {
    let file = std::fs::File::open(path)
        .map_err(|e| usage(format!("cannot open {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
        let record = Record::parse(&line)
            .map_err(|e| usage(format!("{}: line {}: {e}", path.display(), i + 1)))?;
        out.push(record);
    }
    Ok(out)
}

/// One record as a human-readable line.
pub fn format_record(r: &Record) -> String {
    let time = humantime::format_rfc3339_millis(r.time);
    let head = format!("#{} {time} {}", r.seq, r.instance);
    match &r.entry {
        Entry::Event {
            event,
            source_pseudonym,
        } => {
            let mut line = format!("{head} {} {} {}", event.severity, event.kind, event.outcome);
            match &event.actor {
                Actor::User { user } => line.push_str(&format!(" user={user}")),
                Actor::ApiKey { key, owner } => {
                    line.push_str(&format!(" key={key}"));
                    if let Some(owner) = owner {
                        line.push_str(&format!(" owner={owner}"));
                    }
                }
                Actor::Service { service } => line.push_str(&format!(" service={service}")),
                _ => {}
            }
            if let Some(org) = &event.org {
                line.push_str(&format!(" org={org}"));
            }
            if let Some(ip) = event.source {
                line.push_str(&format!(" source={ip}"));
            }
            if let Some(p) = source_pseudonym {
                line.push_str(&format!(" source~{}", p.as_str()));
            }
            if let Some(r) = &event.resource {
                line.push_str(&format!(" resource={}", r.kind));
                if let Some(id) = &r.id {
                    line.push_str(&format!(":{id}"));
                }
            }
            if let Some(a) = &event.action {
                line.push_str(&format!(" action={a}"));
            }
            if let Some(reason) = event.reason {
                line.push_str(&format!(" reason={reason}"));
            }
            if let Some(id) = &event.request_id {
                line.push_str(&format!(" request={id}"));
            }
            line
        }
        Entry::Checkpoint(cp) => format!("{head} checkpoint key={} head={}", cp.key, r.prev),
        Entry::Prune(p) => format!("{head} prune key={} runs={}", p.key, p.runs.len()),
        _ => head,
    }
}

/// `tail`: the last `n` records, human-readable. Returns the offset read up to (for
/// `--follow`).
pub fn tail(file: &Path, n: usize, out: &mut impl Write) -> Result<u64, CliError> {
    let bytes =
        std::fs::read(file).map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let body = bytes.get(..complete).unwrap_or_default();
    let lines: Vec<&[u8]> = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(n);
    for (i, line) in lines.iter().enumerate().skip(start) {
        print_line(line, i + 1, out)?;
    }
    Ok(complete as u64)
}

fn print_line(line: &[u8], number: usize, out: &mut impl Write) -> Result<(), CliError> {
    let text = match Record::parse(line) {
        Ok(r) => format_record(&r),
        Err(e) => format!("line {number}: {e}"),
    };
    writeln!(out, "{text}").map_err(|e| usage(format!("writing: {e}")))
}

/// `tail --follow`: after [`tail`], prints complete lines as they are appended, polling
/// once a second, until interrupted.
pub fn follow(file: &Path, mut offset: u64, out: &mut impl Write) -> Result<(), CliError> {
    use std::io::Seek;
    let mut number = 0usize;
    loop {
        let mut f = std::fs::File::open(file)
            .map_err(|e| usage(format!("cannot open {}: {e}", file.display())))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < offset {
            offset = 0; // pruned or replaced: start over
        }
        let mut chunk = Vec::new();
        f.seek(std::io::SeekFrom::Start(offset))
            .and_then(|_| f.take(len - offset).read_to_end(&mut chunk))
            .map_err(|e| usage(format!("reading: {e}")))?;
        let complete = chunk.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in chunk
            .get(..complete)
            .unwrap_or_default()
            .split(|&b| b == b'\n')
        {
            if !line.is_empty() {
                number += 1;
                print_line(line, number, out)?;
            }
        }
        out.flush().map_err(|e| usage(format!("writing: {e}")))?;
        offset += complete as u64;
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OCSF 1.3 (Authentication 3002, API Activity 6003).
    Ocsf,
    /// Elastic Common Schema field names.
    Ecs,
}

/// `export`: one JSON object per event record (checkpoint and prune records are skipped).
pub fn export(file: &Path, format: Format, out: &mut impl Write) -> Result<usize, CliError> {
    let mut count = 0;
    for record in read_records(file)? {
        let value = match format {
            Format::Ocsf => to_ocsf(&record),
            Format::Ecs => to_ecs(&record),
        };
        if let Some(value) = value {
            writeln!(out, "{value}").map_err(|e| usage(format!("writing: {e}")))?;
            count += 1;
        }
    }
    Ok(count)
}

/// What `keygen` wrote.
#[derive(Debug)]
pub struct KeyFiles {
    /// The private key (PKCS#8 PEM, mode 0600).
    pub private_key: PathBuf,
    /// The public key (64 hex digits).
    pub public_key: PathBuf,
    /// The key's fingerprint, as records name it.
    pub fingerprint: String,
}

/// `keygen --out DIR`: DIR/checkpoint.key (mode 0600) and DIR/checkpoint.pub; never
/// overwrites.
pub fn keygen(dir: &Path) -> Result<KeyFiles, CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| usage(format!("cannot create {}: {e}", dir.display())))?;
    let key = CheckpointKey::generate().map_err(audit_error)?;
    let private_key = dir.join("checkpoint.key");
    let public_key = dir.join("checkpoint.pub");
    if public_key.exists() {
        return Err(usage(format!(
            "{} exists; never overwritten",
            public_key.display()
        )));
    }
    let pem = key.to_pem().map_err(audit_error)?;
    write_private(&private_key, pem.expose_secret().as_bytes())?;
    let public = format!("{}\n", key.public_key().to_hex());
    if let Err(e) = std::fs::write(&public_key, public) {
        let _ = std::fs::remove_file(&private_key);
        return Err(usage(format!("cannot write {}: {e}", public_key.display())));
    }
    Ok(KeyFiles {
        private_key,
        public_key,
        fingerprint: key.public_key().fingerprint().to_string(),
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

/// `bench-commit`: group commit under `tasks` concurrent critical writers for `duration`
/// (events/s and p50/p99 commit latency), then one writer of ordinary events for
/// `duration` (events/s, the final flush included).
pub fn bench_commit(tasks: usize, duration: std::time::Duration) -> Result<CommitBench, CliError> {
    use crate::bench_audit::{BenchDir, open_sink, runtime, sample_event};
    use mcpsec_core::Severity;
    use std::time::Instant;
    let dir = BenchDir::new("audit-commit").map_err(audit_error)?;
    let runtime = runtime().map_err(audit_error)?;
    let sink = Arc::new(open_sink(&dir.0.join("durable.jsonl")).map_err(audit_error)?);
    let event = sample_event(Severity::Critical).map_err(audit_error)?;
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
    sink.close().map_err(audit_error)?;
    latencies.sort_unstable();
    let durable_per_second = latencies.len() as f64 / elapsed;
    let (p50_ms, p99_ms) = (pct(&latencies, 0.50), pct(&latencies, 0.99));

    // The floor: one 400-byte write and fdatasync at a time, on the same disk.
    let raw_path = dir.0.join("raw.bin");
    let mut raw = std::fs::File::create(&raw_path)
        .map_err(|e| usage(format!("cannot create {}: {e}", raw_path.display())))?;
    let line = [b'x'; 400];
    latencies.clear();
    let start = Instant::now();
    while start.elapsed() < duration {
        let t = Instant::now();
        raw.write_all(&line)
            .and_then(|()| raw.sync_data())
            .map_err(|e| usage(format!("raw fdatasync: {e}")))?;
        latencies.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    latencies.sort_unstable();
    let (raw_p50_ms, raw_p99_ms) = (pct(&latencies, 0.50), pct(&latencies, 0.99));

    let sink = open_sink(&dir.0.join("buffered.jsonl")).map_err(audit_error)?;
    let event = sample_event(Severity::Info).map_err(audit_error)?;
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
    sink.close().map_err(audit_error)?;
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
