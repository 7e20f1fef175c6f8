//! One line of the log: a chained, hashed record, and its canonical encoding.
//!
//! # Wire format
//!
//! Each record is one line of JSON ending in `\n`, with the fields in this order:
//!
//! ```text
//! {"seq":7,"time":"2026-01-01T00:00:00.000000000Z","instance":"api-1",
//!  "event":{…SecurityEvent…},"source_pseudonym":"…",      (event records)
//!  "checkpoint":{"key":"…","sig":"…"},                      (checkpoint records)
//!  "prune":{"runs":[{"from":1,"to":9,"hash":"…"}],"key":"…","sig":"…"},  (prune records)
//!  "unverified":{"from":5,"to":9,"key":"…","sig":"…"},     (unverified-tail records)
//!  "prev":"<64 hex>","hash":"<64 hex>"}
//! ```
//!
//! Exactly one of `event`, `checkpoint`, `prune`, `unverified` is present. Unknown fields are errors.
//!
//! # Canonical encoding (what `hash` covers)
//!
//! `hash = SHA-256(encoding)`, where the encoding is built from the parsed values — never
//! from the JSON text, so whitespace or key order cannot matter — as follows. `lp(x)` is a
//! 4-byte big-endian length followed by the bytes of `x`; `opt(x)` is the byte `0` for
//! none or the byte `1` followed by `x`; `time` is the seconds since the Unix epoch as 8
//! bytes big-endian followed by the nanoseconds as 4 bytes big-endian; integers are
//! big-endian.
//!
//! ```text
//! lp("mcpsec-audit-record-v1") ‖ seq:u64 ‖ time ‖ lp(instance) ‖ prev:32 bytes ‖ entry
//! entry = 0x01 ‖ event ‖ opt(lp(source_pseudonym))
//!       | 0x02 ‖ lp(key id) ‖ lp(signature)
//!       | 0x03 ‖ lp(key id) ‖ runs:u32 ‖ (from:u64 ‖ to:u64 ‖ hash:32 bytes)* ‖ lp(signature)
//!       | 0x04 ‖ from:u64 ‖ to:u64 ‖ lp(key id) ‖ lp(signature)
//! event = lp(kind) ‖ lp(outcome) ‖ lp(severity) ‖ time ‖ actor ‖ opt(lp(org))
//!       ‖ source ‖ opt(lp(resource.kind) ‖ opt(lp(resource.id))) ‖ opt(lp(action))
//!       ‖ opt(lp(reason)) ‖ opt(lp(request_id))
//! actor = 0x00 (anonymous) | 0x01 ‖ lp(user) | 0x02 ‖ lp(key) ‖ opt(lp(owner))
//!       | 0x03 ‖ lp(service) | 0xFF ‖ lp(JSON of the actor)  (variants added later)
//! source = 0x00 | 0x04 ‖ 4 bytes | 0x06 ‖ 16 bytes
//! ```
//!
//! Names are the wire names (`authn_login_fail`). Every field is length-prefixed or fixed
//! width, so the encoding is injective: two different records never share an encoding.

use crate::Error;
use mcpsec_core::{Actor, SecurityEvent, ServiceId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest line accepted when reading a log, newline excluded.
pub const MAX_LINE: usize = 256 * 1024;

/// The most pruned runs one prune record carries (a prune writes several records when
/// it removes more runs).
pub const MAX_RUNS_PER_PRUNE: usize = 1024;

/// Latest time a record may carry: 9999-12-31T23:59:59Z (RFC 3339 has four-digit years).
const MAX_UNIX_SECONDS: u64 = 253_402_300_799;

/// A SHA-256 value, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The `prev` of the first record of a chain: 32 zero bytes.
    pub const GENESIS: Digest = Digest([0; 32]);

    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Digest(out)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl std::str::FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bytes = unhex(s).ok_or(Error::InvalidRecord("a hash is 64 hex digits"))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::InvalidRecord("a hash is 64 hex digits"))?;
        Ok(Digest(arr))
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            // A nibble is below 16, so the lookup always succeeds.
            out.push(char::from(
                *DIGITS.get(usize::from(nibble)).unwrap_or(&b'0'),
            ));
        }
    }
    out
}

/// Lowercase hex only (one spelling per value).
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some(nibble(*hi)? << 4 | nibble(*lo)?),
            _ => None,
        })
        .collect()
}

/// A keyed pseudonym standing in for a source address (see [`crate::Pseudonymizer`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pseudonym(String);

impl Pseudonym {
    /// Length in hex digits (128 bits of HMAC-SHA256).
    pub const LEN: usize = 32;

    pub(crate) fn from_mac(mac: &[u8]) -> Pseudonym {
        Pseudonym(hex(mac.get(..Self::LEN / 2).unwrap_or(mac)))
    }

    /// The pseudonym as hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Pseudonym {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        if value.len() == Self::LEN && unhex(&value).is_some() {
            Ok(Pseudonym(value))
        } else {
            Err(Error::InvalidRecord("a pseudonym is 32 hex digits"))
        }
    }
}

impl From<Pseudonym> for String {
    fn from(p: Pseudonym) -> String {
        p.0
    }
}

/// The public id of a checkpoint key: the first 8 bytes of SHA-256 of the public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyFingerprint(pub [u8; 8]);

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl Serialize for KeyFingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyFingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = unhex(&text).and_then(|b| <[u8; 8]>::try_from(b).ok());
        bytes
            .map(KeyFingerprint)
            .ok_or_else(|| serde::de::Error::custom("a key id is 16 hex digits"))
    }
}

/// An Ed25519 signature (64 bytes), base64url without padding on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct SignatureBytes(pub Vec<u8>);

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureBytes({} bytes)", self.0.len())
    }
}

impl Serialize for SignatureBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        s.serialize_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for SignatureBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if text.len() > 128 {
            return Err(serde::de::Error::custom("signature too long"));
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.as_bytes())
            .map(SignatureBytes)
            .map_err(|_| serde::de::Error::custom("a signature is base64url"))
    }
}

/// A checkpoint: the key that signed, and its signature over (instance, head sequence,
/// head hash, time) — see [`crate::checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Which key signed.
    pub key: KeyFingerprint,
    /// The Ed25519 signature.
    pub sig: SignatureBytes,
}

/// Records `from..=to` of one chain were pruned; the record after `to` continues from
/// `hash`, the hash of record `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrunedRun {
    /// First pruned sequence number.
    pub from: u64,
    /// Last pruned sequence number.
    pub to: u64,
    /// The hash of record `to`, which the next kept record names as `prev`.
    pub hash: Digest,
}

/// A signed statement that runs of records were removed by retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prune {
    /// The removed runs, in sequence order.
    pub runs: Vec<PrunedRun>,
    /// Which key signed.
    pub key: KeyFingerprint,
    /// The Ed25519 signature over (instance, time, runs).
    pub sig: SignatureBytes,
}

/// A signed statement, written when a log is reopened, that records `from..=to` of the
/// chain came after its last checkpoint and that nothing vouches for them: a crash left
/// them unsigned, and whoever can write the file could have rewritten them (hashes and
/// links included). The record is chained right after `to` and its signature also pins
/// the chain up to it (like a checkpoint), so the tail cannot change *after* the reopen;
/// verification reports the run ([`crate::verify::Report::unverified`]) instead of
/// counting it as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unverified {
    /// First record of the unsigned tail.
    pub from: u64,
    /// Last record of the unsigned tail (the record just before this one).
    pub to: u64,
    /// Which key signed.
    pub key: KeyFingerprint,
    /// The Ed25519 signature over (instance, head sequence, head hash, time, from, to).
    pub sig: SignatureBytes,
}

/// What a record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Entry {
    /// A security event.
    Event {
        /// The event (with `source` removed when it was pseudonymised).
        event: SecurityEvent,
        /// The keyed pseudonym of the source address, when configured.
        source_pseudonym: Option<Pseudonym>,
    },
    /// A signed checkpoint of the chain so far.
    Checkpoint(Checkpoint),
    /// A signed prune statement (only at the start of a pruned log, with `seq` 0).
    Prune(Prune),
    /// A signed statement that the records before it, back to its `from`, were found
    /// unsigned when the log was reopened and are not vouched for.
    Unverified(Unverified),
}

/// One chained record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in its instance's chain, from 1 (0 for prune records).
    pub seq: u64,
    /// When the record was chained, from the sink's clock.
    pub time: SystemTime,
    /// The writing instance: one chain per instance.
    pub instance: ServiceId,
    /// What it holds.
    pub entry: Entry,
    /// The hash of the previous record of the chain ([`Digest::GENESIS`] for the first).
    pub prev: Digest,
    /// SHA-256 of the canonical encoding of everything above.
    pub hash: Digest,
}

impl Record {
    /// Builds a record and computes its hash.
    pub fn new(
        seq: u64,
        time: SystemTime,
        instance: ServiceId,
        entry: Entry,
        prev: Digest,
    ) -> Result<Record, Error> {
        check_time(time)?;
        if let Entry::Event { event, .. } = &entry {
            check_time(event.time)?;
        }
        let mut record = Record {
            seq,
            time,
            instance,
            entry,
            prev,
            hash: Digest::GENESIS,
        };
        record.hash = record.compute_hash();
        Ok(record)
    }

    /// The event, for event records.
    pub fn event(&self) -> Option<&SecurityEvent> {
        match &self.entry {
            Entry::Event { event, .. } => Some(event),
            _ => None,
        }
    }

    /// Recomputes the hash from the contents (what verification compares with `hash`).
    pub fn compute_hash(&self) -> Digest {
        let mut buf = Vec::with_capacity(256);
        self.encode(&mut buf);
        Digest::of(&buf)
    }

    /// Appends the canonical encoding (see the module documentation) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        lp(out, b"mcpsec-audit-record-v1");
        out.extend_from_slice(&self.seq.to_be_bytes());
        put_time(out, self.time);
        lp(out, self.instance.as_str().as_bytes());
        out.extend_from_slice(&self.prev.0);
        match &self.entry {
            Entry::Event {
                event,
                source_pseudonym,
            } => {
                out.push(1);
                encode_event(out, event);
                opt(out, source_pseudonym.as_ref(), |o, p| {
                    lp(o, p.as_str().as_bytes())
                });
            }
            Entry::Checkpoint(cp) => {
                out.push(2);
                lp(out, &cp.key.0);
                lp(out, &cp.sig.0);
            }
            Entry::Prune(prune) => {
                out.push(3);
                lp(out, &prune.key.0);
                encode_runs(out, &prune.runs);
                lp(out, &prune.sig.0);
            }
            Entry::Unverified(u) => {
                out.push(4);
                out.extend_from_slice(&u.from.to_be_bytes());
                out.extend_from_slice(&u.to.to_be_bytes());
                lp(out, &u.key.0);
                lp(out, &u.sig.0);
            }
        }
    }

    /// The record as one JSON line, without the trailing newline.
    pub fn to_json(&self) -> Result<String, Error> {
        let mut out = Vec::with_capacity(384);
        self.write_json(&mut out)?;
        String::from_utf8(out).map_err(|_| Error::InvalidRecord("encoding"))
    }

    /// Appends the record as JSON (no newline) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        // The RFC 3339 formatter cannot print times outside 1970..=9999.
        check_time(self.time)?;
        if let Entry::Event { event, .. } = &self.entry {
            check_time(event.time)?;
        }
        if let Entry::Event {
            event,
            source_pseudonym,
        } = &self.entry
        {
            crate::json::write_event_record(out, self, event, source_pseudonym.as_ref());
            return Ok(());
        }
        self.write_json_serde(out)
    }

    /// The reference encoder (serde); the fast path above must produce the same bytes.
    fn write_json_serde(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let (mut event, mut source_pseudonym, mut checkpoint, mut prune, mut unverified) =
            (None, None, None, None, None);
        match &self.entry {
            Entry::Event {
                event: e,
                source_pseudonym: p,
            } => {
                event = Some(e);
                source_pseudonym = p.as_ref();
            }
            Entry::Checkpoint(cp) => checkpoint = Some(cp),
            Entry::Prune(p) => prune = Some(p),
            Entry::Unverified(u) => unverified = Some(u),
        }
        let wire = WireOut {
            seq: self.seq,
            time: humantime::format_rfc3339_nanos(self.time),
            instance: &self.instance,
            event,
            source_pseudonym,
            checkpoint,
            prune,
            unverified,
            prev: self.prev,
            hash: self.hash,
        };
        serde_json::to_writer(out, &wire).map_err(|_| Error::InvalidRecord("encoding"))
    }

    /// Parses one line (without its newline). Checks the shape only: whether `hash`
    /// matches the contents is for [`crate::verify`] to say.
    pub fn parse(line: &[u8]) -> Result<Record, Error> {
        if line.len() > MAX_LINE {
            return Err(Error::InvalidRecord("line longer than the cap"));
        }
        let wire: WireIn = serde_json::from_slice(line)
            .map_err(|_| Error::InvalidRecord("not a record (bad JSON or unknown field)"))?;
        let time = humantime::parse_rfc3339(&wire.time)
            .map_err(|_| Error::InvalidRecord("time is not RFC 3339"))?;
        check_time(time).map_err(|_| Error::InvalidRecord("time out of range"))?;
        let entry = match (wire.event, wire.checkpoint, wire.prune, wire.unverified) {
            (Some(event), None, None, None) => {
                check_time(event.time).map_err(|_| Error::InvalidRecord("time out of range"))?;
                Entry::Event {
                    event,
                    source_pseudonym: wire.source_pseudonym,
                }
            }
            (None, Some(cp), None, None) if wire.source_pseudonym.is_none() => {
                Entry::Checkpoint(cp)
            }
            (None, None, None, Some(u)) if wire.source_pseudonym.is_none() => Entry::Unverified(u),
            (None, None, Some(p), None) if wire.source_pseudonym.is_none() => {
                if p.runs.len() > MAX_RUNS_PER_PRUNE {
                    return Err(Error::InvalidRecord("too many runs in a prune record"));
                }
                Entry::Prune(p)
            }
            _ => {
                return Err(Error::InvalidRecord(
                    "a record holds exactly one of event, checkpoint, prune, unverified",
                ));
            }
        };
        Ok(Record {
            seq: wire.seq,
            time,
            instance: wire.instance,
            entry,
            prev: wire.prev,
            hash: wire.hash,
        })
    }
}

#[derive(Serialize)]
struct WireOut<'a> {
    seq: u64,
    #[serde(serialize_with = "display")]
    time: humantime::Rfc3339Timestamp,
    instance: &'a ServiceId,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a SecurityEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_pseudonym: Option<&'a Pseudonym>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<&'a Checkpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prune: Option<&'a Prune>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unverified: Option<&'a Unverified>,
    prev: Digest,
    hash: Digest,
}

fn display<S: serde::Serializer>(
    value: &humantime::Rfc3339Timestamp,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireIn {
    seq: u64,
    time: String,
    instance: ServiceId,
    event: Option<SecurityEvent>,
    source_pseudonym: Option<Pseudonym>,
    checkpoint: Option<Checkpoint>,
    prune: Option<Prune>,
    unverified: Option<Unverified>,
    prev: Digest,
    hash: Digest,
}

/// Refuses times the wire format cannot carry (before 1970, after 9999).
pub(crate) fn check_time(time: SystemTime) -> Result<(), Error> {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) if d.as_secs() <= MAX_UNIX_SECONDS => Ok(()),
        _ => Err(Error::InvalidEvent("time outside 1970..=9999")),
    }
}

pub(crate) fn lp(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every encoded field is capped well below 4 GiB (MAX_LINE), so the length fits.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn opt<T>(out: &mut Vec<u8>, value: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put(out, v);
        }
    }
}

pub(crate) fn put_time(out: &mut Vec<u8>, time: SystemTime) {
    let d = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    out.extend_from_slice(&d.as_secs().to_be_bytes());
    out.extend_from_slice(&d.subsec_nanos().to_be_bytes());
}

pub(crate) fn encode_runs(out: &mut Vec<u8>, runs: &[PrunedRun]) {
    let n = u32::try_from(runs.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    for run in runs {
        out.extend_from_slice(&run.from.to_be_bytes());
        out.extend_from_slice(&run.to.to_be_bytes());
        out.extend_from_slice(&run.hash.0);
    }
}

fn encode_event(out: &mut Vec<u8>, e: &SecurityEvent) {
    lp(out, e.kind.as_str().as_bytes());
    lp(out, e.outcome.as_str().as_bytes());
    lp(out, e.severity.as_str().as_bytes());
    put_time(out, e.time);
    match &e.actor {
        Actor::Anonymous => out.push(0),
        Actor::User { user } => {
            out.push(1);
            lp(out, user.as_str().as_bytes());
        }
        Actor::ApiKey { key, owner } => {
            out.push(2);
            lp(out, key.as_str().as_bytes());
            opt(out, owner.as_ref(), |o, u| lp(o, u.as_str().as_bytes()));
        }
        Actor::Service { service } => {
            out.push(3);
            lp(out, service.as_str().as_bytes());
        }
        other => {
            // A variant added to core later: its JSON is deterministic for a given build.
            out.push(0xFF);
            lp(out, &serde_json::to_vec(other).unwrap_or_default());
        }
    }
    opt(out, e.org.as_ref(), |o, v| lp(o, v.as_str().as_bytes()));
    match e.source {
        None => out.push(0),
        Some(IpAddr::V4(a)) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
    opt(out, e.resource.as_ref(), |o, r| {
        lp(o, r.kind.as_str().as_bytes());
        opt(o, r.id.as_ref(), |o, id| lp(o, id.as_str().as_bytes()));
    });
    opt(out, e.action.as_ref(), |o, v| lp(o, v.as_str().as_bytes()));
    opt(out, e.reason, |o, v| lp(o, v.as_str().as_bytes()));
    opt(out, e.request_id.as_ref(), |o, v| {
        lp(o, v.as_str().as_bytes())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpsec_core::{EventKind, Label, OrgId, Outcome, ResourceId, UserId};

    pub(crate) fn sample() -> SecurityEvent {
        SecurityEvent::new(
            EventKind::AuthzAdmin,
            Outcome::Success,
            UNIX_EPOCH + Duration::from_millis(1_767_225_600_123),
        )
        .with_user(UserId::new("ada").unwrap())
        .with_org(OrgId::new("acme").unwrap())
        .with_source("192.0.2.7".parse().unwrap())
        .with_resource(
            Label::new("mcp_config").unwrap(),
            Some(ResourceId::new("cfg-1").unwrap()),
        )
    }

    fn record() -> Record {
        Record::new(
            3,
            UNIX_EPOCH + Duration::from_secs(1_767_225_601),
            ServiceId::new("api-1").unwrap(),
            Entry::Event {
                event: sample(),
                source_pseudonym: None,
            },
            Digest::of(b"prev"),
        )
        .unwrap()
    }

    #[test]
    fn json_round_trip_keeps_the_hash_valid() {
        let r = record();
        let line = r.to_json().unwrap();
        assert!(line.starts_with("{\"seq\":3,\"time\":\"2026-01-01T00:00:01.000000000Z\""));
        let back = Record::parse(line.as_bytes()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.compute_hash(), back.hash);
    }

    #[test]
    fn fast_json_is_byte_for_byte_what_serde_writes() {
        use mcpsec_core::{Actor, KeyId, ReasonCode, RequestId, ServiceId as Svc};
        let base = sample();
        let variants = [
            base.clone(),
            SecurityEvent::new(EventKind::AuthnLoginFail, Outcome::Failure, UNIX_EPOCH),
            base.clone()
                .with_actor(Actor::ApiKey {
                    key: KeyId::new("k1").unwrap(),
                    owner: None,
                })
                .with_source("2001:db8::7".parse().unwrap())
                .with_reason(ReasonCode::SecretMismatch)
                .with_request_id(RequestId::new("r-1").unwrap())
                .with_action(Label::new("mcp.use").unwrap()),
            base.clone().with_actor(Actor::Service {
                service: Svc::new("cron").unwrap(),
            }),
            base.with_resource(Label::new("x").unwrap(), None),
        ];
        for (i, event) in variants.into_iter().enumerate() {
            let pseudonym = (i % 2 == 0).then(|| Pseudonym::from_mac(&[7; 32]));
            let r = Record::new(
                i as u64 + 1,
                UNIX_EPOCH + Duration::new(1_767_225_601, 5),
                ServiceId::new("api-1").unwrap(),
                Entry::Event {
                    event,
                    source_pseudonym: pseudonym,
                },
                Digest::of(b"p"),
            )
            .unwrap();
            let (mut fast, mut reference) = (Vec::new(), Vec::new());
            r.write_json(&mut fast).unwrap();
            r.write_json_serde(&mut reference).unwrap();
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(reference).unwrap()
            );
        }
    }

    #[test]
    fn every_field_of_security_event_is_covered_by_the_encoding() {
        // If core adds a field to SecurityEvent, this list (and encode_event) must grow:
        // an unhashed field could be edited without detection.
        let json = serde_json::to_value(sample()).unwrap();
        let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "action",
                "actor",
                "kind",
                "org",
                "outcome",
                "reason",
                "request_id",
                "resource",
                "severity",
                "source",
                "time"
            ]
        );
    }

    #[test]
    fn any_field_change_changes_the_hash() {
        let base = record();
        let mut other = base.clone();
        other.seq = 4;
        assert_ne!(other.compute_hash(), base.hash);
        let mut other = base.clone();
        if let Entry::Event { event, .. } = &mut other.entry {
            event.source = Some("192.0.2.8".parse().unwrap());
        }
        assert_ne!(other.compute_hash(), base.hash);
        let mut other = base.clone();
        if let Entry::Event { event, .. } = &mut other.entry {
            event.org = None;
        }
        assert_ne!(other.compute_hash(), base.hash);
    }

    #[test]
    fn parse_refuses_unknown_fields_two_entries_and_huge_lines() {
        let line = record().to_json().unwrap();
        let extra = line.replacen("{\"seq\"", "{\"note\":1,\"seq\"", 1);
        assert!(Record::parse(extra.as_bytes()).is_err());
        let two = line.replacen(
            "\"prev\"",
            "\"checkpoint\":{\"key\":\"0011223344556677\",\"sig\":\"AA\"},\"prev\"",
            1,
        );
        assert!(Record::parse(two.as_bytes()).is_err());
        assert!(Record::parse(&vec![b' '; MAX_LINE + 1]).is_err());
        assert!(Record::parse(line.replace("\"hash\":\"", "\"hash\":\"A").as_bytes()).is_err());
    }

    #[test]
    fn hex_round_trip_and_strictness() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00abff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(unhex("00ABFF"), None);
        assert_eq!(unhex("0"), None);
    }
}
