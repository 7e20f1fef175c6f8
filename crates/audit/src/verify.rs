//! Verification: walk the log, recompute every hash and link, check signatures, and
//! report the first bad record with its line number and why.
//!
//! What each reason means (line numbers from 1):
//!
//! - `modified`: a record's contents do not match its hash, or its hash was recomputed
//!   and the next record no longer links to it (reported at the edited record), or it
//!   differs from a mirrored checkpoint.
//! - `deleted`: a sequence number is skipped (and no signed prune record covers the gap).
//! - `inserted`: a sequence number appears twice or lies inside a pruned run, or a prune
//!   record appears after the chain started.
//! - `reordered`: a record arrives early and the one it skipped follows right after.
//! - `torn tail`: the last line is incomplete, or the lines from some point to the end
//!   are not records (garbage ending in a newline: a torn page), after a crash during a
//!   write; opening the log with a [`FileSink`](crate::FileSink) cuts it off.
//! - `truncated`: the log ends before a checkpoint mirrored elsewhere (needs the mirror).
//! - `bad signature`: a checkpoint or prune record does not verify with the given keys.
//! - `unsigned`: keys were given but no checkpoint or prune record signed with them
//!   covers any record of this chain (reported at the chain's first line): the whole
//!   chain is only as trustworthy as the file, so it is refused.
//! - `unsigned tail`: keys were given and records follow a chain's last signature
//!   (reported at the first of them), and [`VerifyOptions::allow_unsigned_tail`] was not
//!   set: anyone able to write the file can cut it after the last checkpoint and append
//!   other records.
//! - `malformed`: a line that is not a record.
//!
//! Verification says no unless told otherwise. Without a checkpoint key it proves only
//! that the file is self-consistent — anyone able to write the file can rebuild a
//! consistent chain — so it fails with [`Error::Unauthenticated`] unless the caller opts
//! in with [`VerifyOptions::unauthenticated`], and even then the [`Report`] says
//! `authenticated: false`. See SECURITY.md.

use crate::Error;
use crate::checkpoint::CheckpointPublicKey;
use crate::record::{Digest, Entry, MAX_LINE, PrunedRun, Record};
use mcpsec_core::ServiceId;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Read};
use std::path::Path;

/// The most distinct instances one verification tracks.
pub const MAX_INSTANCES: usize = 10_000;

/// Why a record is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Contents changed.
    Modified,
    /// Records are missing.
    Deleted,
    /// A record was added.
    Inserted,
    /// Records are out of order.
    Reordered,
    /// The last line is incomplete.
    TornTail,
    /// The log ends before a mirrored checkpoint.
    Truncated,
    /// A checkpoint or prune signature does not verify.
    BadSignature,
    /// Not a record.
    Malformed,
    /// Keys were given, but nothing of the chain is covered by a signature.
    Unsigned,
    /// Keys were given, and records follow the chain's last signature (not allowed
    /// unless [`VerifyOptions::allow_unsigned_tail`] is set).
    UnsignedTail,
}

impl Reason {
    /// The reason as the CLI prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Modified => "modified",
            Reason::Deleted => "deleted",
            Reason::Inserted => "inserted",
            Reason::Reordered => "reordered",
            Reason::TornTail => "torn tail",
            Reason::Truncated => "truncated",
            Reason::BadSignature => "bad signature",
            Reason::Malformed => "malformed",
            Reason::Unsigned => "unsigned",
            Reason::UnsignedTail => "unsigned tail",
        }
    }
}

/// The first bad record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {}: {detail}", reason.as_str())]
pub struct Finding {
    /// 1-based line number (one past the last line for `truncated`).
    pub line: u64,
    /// Why.
    pub reason: Reason,
    /// A fixed explanation (never file contents).
    pub detail: &'static str,
}

/// Records a writer found after its chain's last signed record when it reopened the log,
/// and sealed off with a signed unverified-tail record ([`crate::record::Unverified`]):
/// nothing vouches for them (a crash left them unsigned, and whoever could write the file
/// could have rewritten them), though nothing could change them after the reopen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedRun {
    /// The chain.
    pub instance: ServiceId,
    /// First record of the run.
    pub from: u64,
    /// Last record of the run.
    pub to: u64,
    /// Line of the unverified-tail record.
    pub line: u64,
}

/// What a successful verification saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Whether the chains were authenticated: checkpoint keys were given, and every chain
    /// is covered by a signature with one of them. `false` means the report proves only
    /// that the file is self-consistent (possible only with
    /// [`VerifyOptions::unauthenticated`]): say so wherever the result is shown.
    pub authenticated: bool,
    /// Lines (records of every kind).
    pub records: u64,
    /// Hash of the last record in the file.
    pub head: Option<Digest>,
    /// Per instance: last sequence number, and the last sequence number covered by a
    /// verified checkpoint (0 when none or no key was given).
    pub chains: BTreeMap<ServiceId, ChainSummary>,
    /// Checkpoint, prune and unverified-tail signatures verified.
    pub signatures_verified: u64,
    /// Runs of records sealed off as unverified when a writer reopened the log, in file
    /// order: report them (`mcpsec audit verify` names them on its ok line).
    pub unverified: Vec<UnverifiedRun>,
}

/// One instance's chain in a [`Report`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChainSummary {
    /// Last sequence number.
    pub last_seq: u64,
    /// Hash of the chain's last record (what its next record will name as `prev`).
    pub head: Digest,
    /// Last sequence number a verified checkpoint (or signed prune record) covers:
    /// records after it are only as trustworthy as the file — anyone able to write the
    /// file can cut it after the last checkpoint and append other records. Callers must
    /// report them (see [`ChainSummary::unsigned`]).
    pub signed_through: u64,
}

impl ChainSummary {
    /// Records after the last signature (0 when every record is covered).
    pub fn unsigned(&self) -> u64 {
        self.last_seq.saturating_sub(self.signed_through)
    }
}

/// What verification checks beyond the hash chain, and what it lets pass.
///
/// The default refuses what it cannot vouch for: with no key, verification fails with
/// [`Error::Unauthenticated`] (after checking the chain, so tampering is still reported as
/// such); with keys, records after a chain's last signature are [`Reason::UnsignedTail`].
/// Each permissive choice is a named opt-in:
///
/// ```
/// use mcpsec_audit::{CheckpointKey, VerifyOptions};
/// # fn main() -> Result<(), mcpsec_audit::Error> {
/// let key = CheckpointKey::generate()?;
/// // An archived log, closed on a checkpoint: everything must be signed.
/// let strict = VerifyOptions::with_keys(vec![*key.public_key()]);
/// // A live log: its last records are not checkpointed yet (the report counts them).
/// let live = VerifyOptions::with_keys(vec![*key.public_key()]).allow_unsigned_tail();
/// // No key at hand: self-consistency only, and the report says `authenticated: false`.
/// let unkeyed = VerifyOptions::unauthenticated();
/// # let _ = (strict, live, unkeyed); Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Checkpoint keys (several during a rotation). When given, every checkpoint and
    /// prune record must verify with one of them, and every chain must have at least one
    /// such record covering it (else [`Reason::Unsigned`]). Empty: the chain cannot be
    /// authenticated, and verification fails with [`Error::Unauthenticated`] unless
    /// [`VerifyOptions::allow_unauthenticated`] is set.
    pub keys: Vec<CheckpointPublicKey>,
    /// Checkpoint records kept elsewhere; the log must contain each one (else
    /// `truncated` or `modified`).
    pub mirrored: Vec<Record>,
    /// Accept a chain verified without any key (hashes and links only): the
    /// [`Report`] then says `authenticated: false`. Off by default.
    pub allow_unauthenticated: bool,
    /// Accept records after a chain's last signature — a live log always has some — and
    /// count them in [`ChainSummary::signed_through`] instead of failing with
    /// [`Reason::UnsignedTail`]. Callers that set it must report them. Off by default.
    pub allow_unsigned_tail: bool,
}

impl VerifyOptions {
    /// Verification with these checkpoint public keys (several during a rotation):
    /// every chain must be signed through its last record.
    pub fn with_keys(keys: Vec<CheckpointPublicKey>) -> VerifyOptions {
        VerifyOptions {
            keys,
            ..VerifyOptions::default()
        }
    }

    /// Verification without a key, chosen by name: hashes, links and sequence numbers
    /// only, which anyone able to write the file can forge. The report says
    /// `authenticated: false`.
    pub fn unauthenticated() -> VerifyOptions {
        VerifyOptions {
            allow_unauthenticated: true,
            ..VerifyOptions::default()
        }
    }

    /// Accept records after a chain's last signature (see
    /// [`VerifyOptions::allow_unsigned_tail`]).
    pub fn allow_unsigned_tail(mut self) -> VerifyOptions {
        self.allow_unsigned_tail = true;
        self
    }

    /// Hold the log to checkpoint records mirrored elsewhere.
    pub fn mirrored(mut self, mirrored: Vec<Record>) -> VerifyOptions {
        self.mirrored = mirrored;
        self
    }
}

#[derive(Debug, Default)]
struct ChainState {
    started: bool,
    last_seq: u64,
    head: Digest,
    head_line: u64,
    first_line: u64,
    prev_of_head: Digest,
    /// Pruned runs by first sequence number (lookups stay logarithmic however many runs
    /// a crafted file declares).
    runs: BTreeMap<u64, PrunedRun>,
    signed_through: u64,
    /// Line of the first record after the last signature (0 when the head is signed).
    unsigned_from_line: u64,
}

struct Line {
    number: u64,
    parsed: Result<Record, Error>,
    terminated: bool,
}

fn bad(line: u64, reason: Reason, detail: &'static str) -> Error {
    Error::Tampered(Finding {
        line,
        reason,
        detail,
    })
}

/// Verifies the log file at `path`.
pub fn verify_file(path: &Path, options: &VerifyOptions) -> Result<Report, Error> {
    let file = std::fs::File::open(path).map_err(Error::io("opening the audit log"))?;
    verify_reader(std::io::BufReader::with_capacity(256 * 1024, file), options)
}

/// Verifies a log held in memory.
pub fn verify_bytes(bytes: &[u8], options: &VerifyOptions) -> Result<Report, Error> {
    verify_reader(bytes, options)
}

/// Verifies a log read from `reader`. `Err(Error::Tampered(finding))` names the first bad
/// record; other errors are I/O or bad options.
pub fn verify_reader<R: BufRead>(mut reader: R, options: &VerifyOptions) -> Result<Report, Error> {
    let mirrored = mirrored_index(options)?;
    let mut chains: HashMap<ServiceId, ChainState> = HashMap::new();
    let mut report = Report::default();
    let mut number = 0u64;
    let mut next = read_line(&mut reader, &mut number)?;
    while let Some(line) = next.take() {
        next = read_line(&mut reader, &mut number)?;
        let record = match line.parsed {
            Ok(r) if line.terminated => r,
            _ if !line.terminated => {
                return Err(bad(
                    line.number,
                    Reason::TornTail,
                    "the last line is incomplete",
                ));
            }
            // Complete lines that are not records, up to the end, after at least one
            // record: a crash tore a page of the last (never acknowledged) batch.
            _ if report.records > 0
                && only_garbage_follows(next.take(), &mut reader, &mut number)? =>
            {
                return Err(bad(
                    line.number,
                    Reason::TornTail,
                    "the lines from here to the end are not records (a torn page)",
                ));
            }
            _ => return Err(bad(line.number, Reason::Malformed, "not a record")),
        };
        if record.compute_hash() != record.hash {
            return Err(bad(
                line.number,
                Reason::Modified,
                "the contents do not match the record's hash",
            ));
        }
        if !chains.contains_key(&record.instance) && chains.len() >= MAX_INSTANCES {
            return Err(bad(line.number, Reason::Malformed, "too many instances"));
        }
        let lookahead = next.as_ref().and_then(|n| n.parsed.as_ref().ok());
        let state = chains.entry(record.instance.clone()).or_default();
        step(
            state,
            &record,
            line.number,
            lookahead,
            options,
            &mirrored,
            &mut report,
        )?;
        report.records += 1;
        report.head = Some(record.hash);
    }
    // Report the chain that starts first, so the finding is the first bad line.
    let mut ordered: Vec<(&ServiceId, &ChainState)> = chains.iter().collect();
    ordered.sort_by_key(|(_, state)| state.first_line);
    for (instance, state) in ordered {
        if let Some(cps) = mirrored.get(instance)
            && let Some((&seq, _)) = state
                .last_seq
                .checked_add(1)
                .and_then(|from| cps.range(from..).next())
            && !covered(&state.runs, seq)
        {
            return Err(bad(
                number + 1,
                Reason::Truncated,
                "the log ends before a mirrored checkpoint",
            ));
        }
        if !options.keys.is_empty() && state.signed_through == 0 {
            return Err(bad(
                state.first_line,
                Reason::Unsigned,
                "no record of this chain is covered by a signature with the given keys",
            ));
        }
        report.chains.insert(
            instance.clone(),
            ChainSummary {
                last_seq: state.last_seq,
                head: state.head,
                signed_through: state.signed_through,
            },
        );
    }
    for instance in mirrored.keys() {
        if !chains.contains_key(instance) {
            return Err(bad(
                number + 1,
                Reason::Truncated,
                "a mirrored checkpoint's chain is missing from the log",
            ));
        }
    }
    if options.keys.is_empty() {
        if !options.allow_unauthenticated {
            return Err(Error::Unauthenticated);
        }
        return Ok(report);
    }
    if !options.allow_unsigned_tail
        && let Some(line) = chains
            .values()
            .filter(|state| state.last_seq > state.signed_through)
            .map(|state| state.unsigned_from_line.max(state.first_line))
            .min()
    {
        return Err(bad(
            line,
            Reason::UnsignedTail,
            "records from here on follow the chain's last checkpoint and no signature covers them",
        ));
    }
    report.authenticated = true;
    Ok(report)
}

/// Whether no line from `next` to the end parses as a record.
fn only_garbage_follows<R: BufRead>(
    mut next: Option<Line>,
    reader: &mut R,
    number: &mut u64,
) -> Result<bool, Error> {
    while let Some(line) = next {
        if line.terminated && line.parsed.is_ok() {
            return Ok(false);
        }
        next = read_line(reader, number)?;
    }
    Ok(true)
}

type Mirrored = HashMap<ServiceId, BTreeMap<u64, Digest>>;

fn mirrored_index(options: &VerifyOptions) -> Result<Mirrored, Error> {
    let mut index: Mirrored = HashMap::new();
    for cp in &options.mirrored {
        if !matches!(cp.entry, Entry::Checkpoint(_) | Entry::Unverified(_))
            || cp.compute_hash() != cp.hash
        {
            return Err(Error::InvalidRecord(
                "a mirrored record is not an intact checkpoint",
            ));
        }
        if !options.keys.is_empty() && !options.keys.iter().any(|k| k.verifies(cp)) {
            return Err(Error::InvalidRecord(
                "a mirrored checkpoint does not verify with the given keys",
            ));
        }
        index
            .entry(cp.instance.clone())
            .or_default()
            .insert(cp.seq, cp.hash);
    }
    Ok(index)
}

fn covered(runs: &BTreeMap<u64, PrunedRun>, seq: u64) -> bool {
    runs.range(..=seq)
        .next_back()
        .is_some_and(|(_, r)| seq <= r.to)
}

fn step(
    state: &mut ChainState,
    record: &Record,
    line: u64,
    lookahead: Option<&Record>,
    options: &VerifyOptions,
    mirrored: &Mirrored,
    report: &mut Report,
) -> Result<(), Error> {
    if state.first_line == 0 {
        state.first_line = line;
    }
    let signed = match &record.entry {
        Entry::Event { .. } => false,
        _ if options.keys.is_empty() => false,
        _ => {
            if !options.keys.iter().any(|k| k.verifies(record)) {
                return Err(bad(
                    line,
                    Reason::BadSignature,
                    "the signature does not verify with the given keys",
                ));
            }
            report.signatures_verified += 1;
            true
        }
    };
    if let Entry::Prune(prune) = &record.entry {
        if state.started {
            return Err(bad(
                line,
                Reason::Inserted,
                "a prune record after the chain started",
            ));
        }
        let mut last_to = state.runs.last_key_value().map_or(0, |(_, r)| r.to);
        for run in &prune.runs {
            if run.from == 0 || run.from > run.to || run.from <= last_to {
                return Err(bad(line, Reason::Malformed, "prune runs out of order"));
            }
            last_to = run.to;
        }
        state
            .runs
            .extend(prune.runs.iter().map(|run| (run.from, *run)));
        if signed {
            // The signature vouches for every pruned run's hash.
            state.signed_through = state.signed_through.max(last_to);
        }
        return Ok(());
    }
    state.started = true;
    if let Entry::Unverified(u) = &record.entry {
        if record.seq.checked_sub(1) != Some(u.to) || u.from == 0 || u.from > u.to {
            return Err(bad(
                line,
                Reason::Malformed,
                "an unverified-tail record must name the records just before it",
            ));
        }
        report.unverified.push(UnverifiedRun {
            instance: record.instance.clone(),
            from: u.from,
            to: u.to,
            line,
        });
    }
    let Some(expected) = state.last_seq.checked_add(1) else {
        return Err(bad(line, Reason::Malformed, "sequence number overflow"));
    };
    if covered(&state.runs, record.seq) {
        // A pruned record's number is never given out again: this one was added later.
        return Err(bad(
            line,
            Reason::Inserted,
            "the sequence number lies inside a pruned run",
        ));
    }
    if record.seq == expected {
        if record.prev != state.head {
            return Err(if state.head_line == 0 {
                bad(
                    line,
                    Reason::Modified,
                    "the first record does not start the chain",
                )
            } else {
                bad(
                    state.head_line,
                    Reason::Modified,
                    "the next record does not link to this one",
                )
            });
        }
    } else if record.seq > expected {
        match state.runs.get(&expected) {
            Some(run) if run.to.checked_add(1) == Some(record.seq) => {
                if record.prev != run.hash {
                    return Err(bad(
                        line,
                        Reason::Modified,
                        "does not continue from the pruned run's hash",
                    ));
                }
            }
            _ => {
                let swapped =
                    lookahead.is_some_and(|n| n.instance == record.instance && n.seq == expected);
                return Err(if swapped {
                    bad(
                        line,
                        Reason::Reordered,
                        "a record comes before the one it follows",
                    )
                } else {
                    bad(line, Reason::Deleted, "records before this one are missing")
                });
            }
        }
    } else {
        let intruder_was_head = record.seq == state.last_seq
            && record.hash != state.head
            && record.prev == state.prev_of_head;
        return Err(if intruder_was_head {
            bad(
                state.head_line,
                Reason::Inserted,
                "a second record with the next one's sequence number",
            )
        } else {
            bad(
                line,
                Reason::Inserted,
                "the sequence number was already used",
            )
        });
    }
    if let Some(hash) = mirrored
        .get(&record.instance)
        .and_then(|m| m.get(&record.seq))
        && *hash != record.hash
    {
        return Err(bad(
            line,
            Reason::Modified,
            "differs from the mirrored checkpoint",
        ));
    }
    state.prev_of_head = state.head;
    state.last_seq = record.seq;
    state.head = record.hash;
    state.head_line = line;
    if signed {
        state.signed_through = record.seq;
        state.unsigned_from_line = 0;
    } else if state.unsigned_from_line == 0 {
        state.unsigned_from_line = line;
    }
    Ok(())
}

/// The records of a log read one line at a time, each at most [`MAX_LINE`] bytes (a
/// longer line is an error after reading just past the cap): for tools that stream a log
/// (export, mirrored checkpoints) without holding it in memory. Yields the 1-based line
/// number and the record or why the line is not one (an incomplete last line is
/// [`Error::InvalidRecord`]).
#[derive(Debug)]
pub struct RecordLines<R> {
    reader: R,
    number: u64,
    done: bool,
}

/// Streams the records of `reader` (see [`RecordLines`]).
pub fn record_lines<R: BufRead>(reader: R) -> RecordLines<R> {
    RecordLines {
        reader,
        number: 0,
        done: false,
    }
}

impl<R: BufRead> Iterator for RecordLines<R> {
    type Item = (u64, Result<Record, Error>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match read_line(&mut self.reader, &mut self.number) {
            Ok(None) => None,
            Ok(Some(line)) => {
                let parsed = if line.terminated {
                    line.parsed
                } else {
                    self.done = true;
                    Err(Error::InvalidRecord("the last line is incomplete"))
                };
                if parsed.is_err() {
                    // After a bad line (maybe one over the cap) the position is unreliable.
                    self.done = true;
                }
                Some((line.number, parsed))
            }
            Err(e) => {
                self.done = true;
                Some((self.number + 1, Err(e)))
            }
        }
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes; `None` at the end.
fn read_line<R: BufRead>(reader: &mut R, number: &mut u64) -> Result<Option<Line>, Error> {
    let mut buf = Vec::new();
    let limit = MAX_LINE as u64 + 1;
    let n = reader
        .by_ref()
        .take(limit)
        .read_until(b'\n', &mut buf)
        .map_err(Error::io("reading the audit log"))?;
    if n == 0 {
        return Ok(None);
    }
    *number += 1;
    let terminated = buf.last() == Some(&b'\n');
    if terminated {
        buf.pop();
    } else if n as u64 == limit {
        return Ok(Some(Line {
            number: *number,
            parsed: Err(Error::InvalidRecord("line longer than the cap")),
            terminated: true,
        }));
    }
    Ok(Some(Line {
        number: *number,
        parsed: Record::parse(&buf),
        terminated,
    }))
}
