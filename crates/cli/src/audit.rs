//! `mcpsec audit append|verify|tail|export|keygen` (`bench-commit` is in `mcpsec-bench`).

use crate::tokens::CliError;
use mcpsec_audit::record::{Digest, MAX_LINE};
use mcpsec_audit::{
    ChainConfig, CheckpointKey, CheckpointPolicy, CheckpointPublicKey, Entry, Error, FileStorage,
    Pseudonymizer, Reason, Record, VerifyOptions, append_once, last_lines, record_lines, to_ecs,
    to_ocsf, verify_file,
};
use mcpsec_core::{Actor, Clock, SecretBytes, SecurityEvent, ServiceId, SystemClock};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

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
        Error::Unauthenticated => CliError::Invalid(e.to_string()),
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
    if input.limit() == 0 {
        // The total cap was reached: what follows was never read. Refuse, never cut.
        return Err(usage(format!(
            "input larger than {MAX_EVENTS} lines of {MAX_EVENT_LINE} bytes; nothing was appended"
        )));
    }
    Ok(events)
}

/// Appends `events` to the log at `log` as instance `instance`'s chain, with one write
/// and one sync; on failure the file is cut back, so the batch is all or nothing. With a
/// key, a signed checkpoint closes the batch. Returns the new head.
///
/// Refuses (exit 1) when the chain's records after its last checkpoint do not verify —
/// the new checkpoint would otherwise sign them — and (exit 2) when another writer holds
/// the log's lock.
pub fn append(
    log: &Path,
    instance: &str,
    events: Vec<SecurityEvent>,
    key: Option<&Path>,
) -> Result<(usize, Digest), CliError> {
    append_with(log, instance, events, key, None)
}

/// [`append`], replacing each event's source address by its keyed pseudonym when
/// `pseudonym_key` (a file of at least 64 hex digits: `openssl rand -hex 32`) is given.
pub fn append_with(
    log: &Path,
    instance: &str,
    events: Vec<SecurityEvent>,
    key: Option<&Path>,
    pseudonym_key: Option<&Path>,
) -> Result<(usize, Digest), CliError> {
    append_rotated(log, instance, events, key, pseudonym_key, &[])
}

/// [`append_with`] during a checkpoint-key rotation: the log's last checkpoint may be
/// signed with one of `previous` (public key files of earlier keys) instead of `key`.
/// With a key, a checkpoint signed with any other key refuses the append (exit 1).
pub fn append_rotated(
    log: &Path,
    instance: &str,
    events: Vec<SecurityEvent>,
    key: Option<&Path>,
    pseudonym_key: Option<&Path>,
    previous: &[PathBuf],
) -> Result<(usize, Digest), CliError> {
    let instance = ServiceId::new(instance).map_err(|e| usage(format!("--instance: {e}")))?;
    let mut config = ChainConfig::new(instance.clone());
    if let Some(path) = pseudonym_key {
        config = config.with_pseudonymizer(Arc::new(read_pseudonymizer(path)?));
    }
    if let Some(path) = key {
        let key = CheckpointKey::from_file(path).map_err(audit_error)?;
        config = config.with_checkpoints(Arc::new(key), CheckpointPolicy::default());
        for path in previous {
            let public = CheckpointPublicKey::from_file(path).map_err(audit_error)?;
            config = config.with_previous_key(public);
        }
    } else if !previous.is_empty() {
        return Err(usage(
            "--previous-checkpoint-key needs --checkpoint-key (the new private key)",
        ));
    }
    // Takes the writer's lock (another writer: exit 2, nothing touched) and checks the
    // chain from its last checkpoint to the head (tampered, or signed with another key:
    // exit 1, nothing appended).
    let accepted = config.accepted_keys();
    let mut storage = FileStorage::open(log, &instance, &accepted, None).map_err(|e| match e {
        Error::Tampered(finding) => CliError::Invalid(format!(
            "{finding}; refusing to append to a chain that does not verify"
        )),
        other => audit_error(other),
    })?;
    if storage.torn_bytes() > 0 {
        eprintln!(
            "note: cut a torn last line of {} bytes",
            storage.torn_bytes()
        );
    }
    // Records after the last checkpoint are not vouched for: the library seals them off
    // rather than let this batch's checkpoint sign them. One batch, all or nothing.
    let appended =
        append_once(&mut storage, config, events, SystemClock.now()).map_err(audit_error)?;
    if let Some((from, to)) = appended.sealed {
        eprintln!(
            "note: records {from}..={to} were not covered by a checkpoint; sealed off as unverified"
        );
    }
    Ok((appended.events, appended.head))
}

/// Most bytes a pseudonymisation key file may hold.
const MAX_PSEUDONYM_KEY_FILE: u64 = 4096;

/// A pseudonymizer from a file of hex digits (at least 32 bytes of key).
fn read_pseudonymizer(path: &Path) -> Result<Pseudonymizer, CliError> {
    let bad = |why: &str| usage(format!("--pseudonym-key {}: {why}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| bad(&e.to_string()))?;
    let mut text = Zeroizing::new(Vec::new());
    file.take(MAX_PSEUDONYM_KEY_FILE + 1)
        .read_to_end(&mut text)
        .map_err(|e| bad(&e.to_string()))?;
    if text.len() as u64 > MAX_PSEUDONYM_KEY_FILE {
        return Err(bad("too large for a key file"));
    }
    let digits = text.trim_ascii();
    if digits.len() % 2 != 0 {
        return Err(bad("expected hex digits (openssl rand -hex 32)"));
    }
    let mut key = Zeroizing::new(Vec::with_capacity(digits.len() / 2));
    for pair in digits.chunks_exact(2) {
        let digit = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
        match (digit(pair.first()), digit(pair.get(1))) {
            (Some(hi), Some(lo)) => key.push(u8::try_from(hi * 16 + lo).unwrap_or(0)),
            _ => return Err(bad("expected hex digits (openssl rand -hex 32)")),
        }
    }
    Pseudonymizer::new(&SecretBytes::from_slice(&key)).map_err(|e| bad(&e.to_string()))
}

/// What `verify` lets pass; each is a flag, off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyAllow {
    /// `--allow-unsigned`: without a checkpoint key, accept a chain checked only for
    /// self-consistency (the ok line then says `; unauthenticated: no checkpoint key`).
    pub unsigned: bool,
    /// `--allow-unsigned-tail`: with keys, accept records after a chain's last
    /// checkpoint (a live log), named on the ok line.
    pub unsigned_tail: bool,
}

/// `verify` with the defaults: refuses an unauthenticated chain and an unsigned tail.
pub fn verify(
    file: &Path,
    keys: &[PathBuf],
    checkpoints: Option<&Path>,
) -> Result<String, CliError> {
    verify_allowing(file, keys, checkpoints, VerifyAllow::default())
}

/// `verify`: `ok: N records, head <hash>`, or the first bad record (exit 1).
///
/// Without a checkpoint key the chain cannot be authenticated (anyone able to write the
/// file can rebuild a consistent one): exit 1 with `chain unauthenticated: …` after the
/// chain was checked, unless `allow.unsigned`; then exit 0 and the ok line ends with
/// `; unauthenticated: no checkpoint key`. A bad record is reported as such either way.
///
/// With keys, a chain that no signature covers is refused (exit 1: anyone who can write
/// the file could have forged it), and so are records after a chain's last checkpoint
/// (`line N: unsigned tail: …`) — a log cut after its last checkpoint with other records
/// appended looks just like that — unless `allow.unsigned_tail`; then they are named on
/// the ok line: `ok: N records, head H (api-1: 3 unsigned after seq 40)`.
/// A file holding several instances' chains also lists each chain's head
/// (`; chains: api-1 <hash>, api-2 <hash>`).
pub fn verify_allowing(
    file: &Path,
    keys: &[PathBuf],
    checkpoints: Option<&Path>,
    allow: VerifyAllow,
) -> Result<String, CliError> {
    let keys = keys
        .iter()
        .map(|p| CheckpointPublicKey::from_file(p).map_err(audit_error))
        .collect::<Result<Vec<_>, _>>()?;
    let mirrored = match checkpoints {
        Some(path) => read_records(path)?,
        None => Vec::new(),
    };
    let with_keys = !keys.is_empty();
    let mut options = VerifyOptions::with_keys(keys).mirrored(mirrored);
    options.allow_unauthenticated = allow.unsigned;
    options.allow_unsigned_tail = allow.unsigned_tail;
    let report = verify_with_progress(file, &options).map_err(|e| match e {
        Error::Unauthenticated => CliError::Invalid(format!(
            "{e}; give the public key with --checkpoint-key PUBKEY, or accept an unauthenticated chain with --allow-unsigned"
        )),
        Error::Tampered(finding) if finding.reason == Reason::UnsignedTail => {
            CliError::Invalid(format!(
                "{finding}; a live log's last records may be accepted with --allow-unsigned-tail"
            ))
        }
        other => verify_error(other),
    })?;
    let head = report
        .head
        .map_or_else(|| "none".to_owned(), |h| h.to_string());
    let mut line = format!("ok: {} records, head {head}", report.records);
    if with_keys {
        let unsigned: Vec<String> = report
            .chains
            .iter()
            .filter(|(_, chain)| chain.unsigned() > 0)
            .map(|(instance, chain)| {
                format!(
                    "{instance}: {} unsigned after seq {}",
                    chain.unsigned(),
                    chain.signed_through
                )
            })
            .collect();
        if !unsigned.is_empty() {
            line.push_str(&format!(" ({})", unsigned.join(", ")));
        }
    }
    if !report.unverified.is_empty() {
        let runs: Vec<String> = report
            .unverified
            .iter()
            .map(|run| {
                format!(
                    "{} {}..={} (line {})",
                    run.instance, run.from, run.to, run.line
                )
            })
            .collect();
        line.push_str(&format!("; unverified: {}", runs.join(", ")));
    }
    if report.chains.len() > 1 {
        // Several writers' chains in one file: each one's head.
        let heads: Vec<String> = report
            .chains
            .iter()
            .map(|(instance, chain)| format!("{instance} {}", chain.head))
            .collect();
        line.push_str(&format!("; chains: {}", heads.join(", ")));
    }
    if !report.authenticated {
        line.push_str("; unauthenticated: no checkpoint key");
    }
    Ok(line)
}

/// [`verify_file`] with a progress bar over the file's bytes, on standard error when it
/// is a terminal (a large log takes a while); piped, nothing extra is written.
fn verify_with_progress(
    file: &Path,
    options: &VerifyOptions,
) -> Result<mcpsec_audit::verify::Report, Error> {
    let Ok(opened) = std::fs::File::open(file) else {
        // The library reports an unopenable log in its own words.
        return verify_file(file, options);
    };
    let total = opened.metadata().map_or(0, |m| m.len());
    let bar = crate::progress::bytes(total, "verifying");
    let reader = crate::progress::Counted::new(
        std::io::BufReader::with_capacity(256 * 1024, opened),
        bar.clone(),
    );
    let result = mcpsec_audit::verify::verify_reader(reader, options);
    bar.finish_and_clear();
    result
}

/// Verification's errors: a bad record, or mirrored checkpoints that are not intact or
/// not signed with the given keys, are exit 1; unreadable files are exit 2.
fn verify_error(e: Error) -> CliError {
    match e {
        Error::InvalidRecord(why) if why.starts_with("a mirrored") => {
            CliError::Invalid(format!("--checkpoints: {why}"))
        }
        other => audit_error(other),
    }
}

/// Most mirrored checkpoints `verify --checkpoints` reads.
pub const MAX_MIRRORED: usize = 1_000_000;

/// Every record of a (mirrored checkpoints) file, refusing a bad line by number; lines
/// are capped, and so is their count.
fn read_records(path: &Path) -> Result<Vec<Record>, CliError> {
    let mut out = Vec::new();
    for_each_record(path, |record| {
        if out.len() >= MAX_MIRRORED {
            return Err(usage(format!(
                "{}: more than {MAX_MIRRORED} records",
                path.display()
            )));
        }
        out.push(record);
        Ok(())
    })?;
    Ok(out)
}

/// Streams the records of a file (each line capped), refusing a bad line by number.
fn for_each_record(
    path: &Path,
    mut each: impl FnMut(Record) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let file = std::fs::File::open(path)
        .map_err(|e| usage(format!("cannot open {}: {e}", path.display())))?;
    let reader = std::io::BufReader::with_capacity(256 * 1024, file);
    for (number, record) in record_lines(reader) {
        let record =
            record.map_err(|e| usage(format!("{}: line {number}: {e}", path.display())))?;
        each(record)?;
    }
    Ok(())
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
        Entry::Unverified(u) => format!(
            "{head} unverified seq {}..={} key={} (not vouched for: found unsigned on reopen)",
            u.from, u.to, u.key
        ),
        _ => head,
    }
}

/// Most records `tail -n` prints.
pub const MAX_TAIL: usize = 100_000;

/// `tail`: the last `n` records, human-readable, read backwards from the end (the cost is
/// that of the lines printed, not of the file; each line capped). Returns the offset read
/// up to (for `--follow`).
pub fn tail(file: &Path, n: usize, out: &mut impl Write) -> Result<u64, CliError> {
    let (lines, end) = last_lines(file, n.min(MAX_TAIL))
        .map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
    for line in &lines {
        print_line(line, None, out)?;
    }
    Ok(end)
}

fn print_line(line: &[u8], number: Option<u64>, out: &mut impl Write) -> Result<(), CliError> {
    let text = match (Record::parse(line), number) {
        (Ok(r), _) => format_record(&r),
        (Err(e), Some(number)) => format!("line {number}: {e}"),
        (Err(e), None) => format!("(unreadable line: {e})"),
    };
    writeln!(out, "{text}").map_err(|e| usage(format!("writing: {e}")))
}

/// `tail --follow`: after [`tail`], prints complete lines as they are appended, polling
/// once a second, until interrupted.
pub fn follow(file: &Path, offset: u64, out: &mut impl Write) -> Result<(), CliError> {
    follow_for(file, offset, out, None, std::time::Duration::from_secs(1))
}

/// Most bytes `follow` reads per poll (complete lines only; the rest waits).
const FOLLOW_CHUNK: u64 = 4 * MAX_LINE as u64;

/// [`follow`] for at most `polls` polls (`None`: forever), `interval` apart. A line over
/// the cap is an error (exit 2) rather than a growing buffer. Unreadable lines are named
/// by their number counted from where following began.
pub fn follow_for(
    file: &Path,
    mut offset: u64,
    out: &mut impl Write,
    polls: Option<u64>,
    interval: std::time::Duration,
) -> Result<(), CliError> {
    use std::io::Seek;
    let mut number = 0u64;
    let mut poll = 0u64;
    loop {
        let mut f = std::fs::File::open(file)
            .map_err(|e| usage(format!("cannot open {}: {e}", file.display())))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < offset {
            offset = 0; // pruned or replaced: start over
        }
        let mut chunk = Vec::new();
        f.seek(std::io::SeekFrom::Start(offset))
            .and_then(|_| {
                f.take((len - offset).min(FOLLOW_CHUNK))
                    .read_to_end(&mut chunk)
            })
            .map_err(|e| usage(format!("reading: {e}")))?;
        let complete = chunk.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete == 0 && chunk.len() > MAX_LINE {
            return Err(usage(format!(
                "{}: a line longer than {MAX_LINE} bytes",
                file.display()
            )));
        }
        for line in chunk
            .get(..complete)
            .unwrap_or_default()
            .split(|&b| b == b'\n')
        {
            if !line.is_empty() {
                number += 1;
                print_line(line, Some(number), out)?;
            }
        }
        out.flush().map_err(|e| usage(format!("writing: {e}")))?;
        offset += complete as u64;
        poll += 1;
        if polls.is_some_and(|max| poll >= max) {
            return Ok(());
        }
        // More waiting (the chunk cap): read on at once.
        if complete > 0 && offset < len {
            continue;
        }
        std::thread::sleep(interval);
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
/// Streams: one record in memory at a time, each line capped.
pub fn export(file: &Path, format: Format, out: &mut impl Write) -> Result<usize, CliError> {
    let mut count = 0;
    for_each_record(file, |record| {
        let value = match format {
            Format::Ocsf => to_ocsf(&record),
            Format::Ecs => to_ecs(&record),
        };
        if let Some(value) = value {
            writeln!(out, "{value}").map_err(|e| usage(format!("writing: {e}")))?;
            count += 1;
        }
        Ok(())
    })?;
    Ok(count)
}

/// What `keygen` wrote.
#[derive(Debug)]
pub struct KeyFiles {
    /// The private key (PKCS#8 PEM, mode 0600).
    pub private_key: PathBuf,
    /// The public key (64 hex digits, mode 0600: copy it to wherever verifiers run).
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
    // Both files mode 0600, atomically, never overwritten (the library's own writer).
    key.write_files(&private_key, &public_key).map_err(|e| {
        usage(format!(
            "cannot write the key files in {}: {e}",
            dir.display()
        ))
    })?;
    Ok(KeyFiles {
        private_key,
        public_key,
        fingerprint: key.public_key().fingerprint().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_prints_appended_lines_once_and_stops_after_the_given_polls() {
        let dir = std::env::temp_dir().join(format!("mcpsec-cli-follow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("audit.jsonl");
        let event = |user: &str| {
            SecurityEvent::new(
                mcpsec_core::EventKind::AuthnLoginFail,
                mcpsec_core::Outcome::Failure,
                SystemClock.now(),
            )
            .with_user(mcpsec_core::UserId::new(user).unwrap())
        };
        append(&log, "t", vec![event("a")], None).unwrap();
        let mut out = Vec::new();
        let offset = tail(&log, 10, &mut out).unwrap();
        append(&log, "t", vec![event("b"), event("c")], None).unwrap();
        // A torn fragment after them waits for its newline.
        let mut bytes = std::fs::read(&log).unwrap();
        bytes.extend_from_slice(b"{\"seq\":");
        std::fs::write(&log, &bytes).unwrap();
        follow_for(&log, offset, &mut out, Some(2), std::time::Duration::ZERO).unwrap();
        let text = String::from_utf8(out).unwrap();
        let users: Vec<&str> = text
            .lines()
            .map(|l| l.split(" user=").nth(1).unwrap())
            .collect();
        assert_eq!(users, ["a", "b", "c"], "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
