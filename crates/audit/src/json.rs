//! A fast writer for event records' JSON.
//!
//! The writer thread spends most of its time turning records into JSON; serde_json plus
//! humantime cost about 0.75 µs per record, over half of the budget for a million events
//! a second. Every string an event holds is a validated identifier or a fixed name, so
//! the output is plain concatenation; a string that would need escaping (impossible
//! under core's identifier rules today) falls back to serde_json. The output is the same
//! bytes serde produces, which a test checks.

use crate::record::{Digest, Pseudonym, Record};
use mcpsec_core::{Actor, SecurityEvent};
use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `record`, whose entry is `event` with `source_pseudonym`, as one JSON object.
pub(crate) fn write_event_record(
    out: &mut Vec<u8>,
    record: &Record,
    event: &SecurityEvent,
    source_pseudonym: Option<&Pseudonym>,
) {
    out.extend_from_slice(b"{\"seq\":");
    digits(out, record.seq, 1);
    out.extend_from_slice(b",\"time\":");
    time_str(out, record.time);
    out.extend_from_slice(b",\"instance\":");
    string(out, record.instance.as_str());
    out.extend_from_slice(b",\"event\":");
    write_event(out, event);
    if let Some(p) = source_pseudonym {
        out.extend_from_slice(b",\"source_pseudonym\":");
        string(out, p.as_str());
    }
    out.extend_from_slice(b",\"prev\":");
    digest(out, record.prev);
    out.extend_from_slice(b",\"hash\":");
    digest(out, record.hash);
    out.push(b'}');
}

fn write_event(out: &mut Vec<u8>, e: &SecurityEvent) {
    out.extend_from_slice(b"{\"kind\":");
    string(out, e.kind.as_str());
    out.extend_from_slice(b",\"outcome\":");
    string(out, e.outcome.as_str());
    out.extend_from_slice(b",\"severity\":");
    string(out, e.severity.as_str());
    out.extend_from_slice(b",\"time\":");
    time_str(out, e.time);
    out.extend_from_slice(b",\"actor\":");
    match &e.actor {
        Actor::User { user } => {
            out.extend_from_slice(b"{\"type\":\"user\",\"user\":");
            string(out, user.as_str());
            out.push(b'}');
        }
        Actor::ApiKey { key, owner } => {
            out.extend_from_slice(b"{\"type\":\"api_key\",\"key\":");
            string(out, key.as_str());
            out.extend_from_slice(b",\"owner\":");
            opt(out, owner.as_ref().map(|o| o.as_str()));
            out.push(b'}');
        }
        Actor::Service { service } => {
            out.extend_from_slice(b"{\"type\":\"service\",\"service\":");
            string(out, service.as_str());
            out.push(b'}');
        }
        Actor::Anonymous => out.extend_from_slice(b"{\"type\":\"anonymous\"}"),
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
    out.extend_from_slice(b",\"org\":");
    opt(out, e.org.as_ref().map(|o| o.as_str()));
    out.extend_from_slice(b",\"source\":");
    match e.source {
        Some(ip) => {
            out.push(b'"');
            match ip {
                IpAddr::V4(a) => {
                    for (i, octet) in a.octets().into_iter().enumerate() {
                        if i > 0 {
                            out.push(b'.');
                        }
                        digits(out, u64::from(octet), 1);
                    }
                }
                IpAddr::V6(a) => {
                    let _ = write!(out, "{a}");
                }
            }
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"resource\":");
    match &e.resource {
        Some(r) => {
            out.extend_from_slice(b"{\"kind\":");
            string(out, r.kind.as_str());
            out.extend_from_slice(b",\"id\":");
            opt(out, r.id.as_ref().map(|i| i.as_str()));
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"action\":");
    opt(out, e.action.as_ref().map(|a| a.as_str()));
    out.extend_from_slice(b",\"reason\":");
    opt(out, e.reason.map(|r| r.as_str()));
    out.extend_from_slice(b",\"request_id\":");
    opt(out, e.request_id.as_ref().map(|r| r.as_str()));
    out.push(b'}');
}

fn opt(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => string(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

fn digest(out: &mut Vec<u8>, d: Digest) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [b'"'; 66];
    for (pair, b) in text
        .get_mut(1..65)
        .unwrap_or_default()
        .chunks_exact_mut(2)
        .zip(d.0)
    {
        if let [hi, lo] = pair {
            *hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            *lo = HEX.get(usize::from(b & 0x0f)).copied().unwrap_or(b'0');
        }
    }
    out.extend_from_slice(&text);
}

/// `"YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ"`, as humantime's `format_rfc3339_nanos` writes it.
/// Callers have checked the time is within 1970..=9999.
fn time_str(out: &mut Vec<u8>, time: SystemTime) {
    let d = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    // "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ" with quotes: 32 bytes, filled in place.
    let mut t = *b"\"0000-00-00T00:00:00.000000000Z\"";
    fill(t.get_mut(1..5), y);
    fill(t.get_mut(6..8), m);
    fill(t.get_mut(9..11), day);
    fill(t.get_mut(12..14), rem / 3600);
    fill(t.get_mut(15..17), rem % 3600 / 60);
    fill(t.get_mut(18..20), rem % 60);
    fill(t.get_mut(21..30), u64::from(d.subsec_nanos()));
    out.extend_from_slice(&t);
}

/// Writes `n`'s last `field.len()` decimal digits into `field`, right-aligned.
fn fill(field: Option<&mut [u8]>, mut n: u64) {
    for slot in field.unwrap_or_default().iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// `n` in decimal, zero-padded to at least `width` digits.
fn digits(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    while n > 0 || buf.len() - i < width {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if i == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(i..).unwrap_or_default());
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`), for non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn digits_pad_and_grow() {
        let mut out = Vec::new();
        digits(&mut out, 0, 1);
        digits(&mut out, 7, 3);
        digits(&mut out, u64::MAX, 1);
        assert_eq!(out, b"000718446744073709551615");
    }

    proptest! {
        #[test]
        fn time_matches_humantime(secs in 0u64..=253_402_300_799, nanos in 0u32..1_000_000_000) {
            let t = UNIX_EPOCH + Duration::new(secs, nanos);
            let mut out = Vec::new();
            time_str(&mut out, t);
            prop_assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("\"{}\"", humantime::format_rfc3339_nanos(t))
            );
        }
    }
}
