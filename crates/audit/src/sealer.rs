//! Secrets-access audit: a [`Sealer`] wrapper that records every seal and open.
//!
//! Each call records one event — `sensitive_update` for `seal`, `sensitive_read` for
//! `open` — with outcome and, for a failed open, reason `decrypt_failed`. The event never
//! holds plaintext or sealed bytes. The seal context's parts are not secret, but they are
//! free text up to 256 bytes while events hold only validated identifiers, so they map as:
//!
//! | context part | event field                         | when it is not a valid id |
//! |--------------|-------------------------------------|---------------------------|
//! | category     | `resource.kind` (a `Label`)          | `sealed_secret`           |
//! | table, column, row | `resource.id`: `table|column|row` (a `ResourceId`) | `sha256:` and 32 hex digits of SHA-256(lp(table) ‖ lp(column) ‖ lp(row)) |
//! | tenant       | `org` (an `OrgId`)                   | omitted                   |
//! | —            | `action`: `seal.seal` / `seal.open`  |                           |
//!
//! The digest form keeps the record pointing at one field when a part does not fit an
//! identifier (a space, a `|`, over 64 bytes in all): an auditor computes it from the
//! table, column and row in question. It hides nothing (context parts are not secret);
//! it only fits them into the event's identifier alphabet.
//!
//! Every event is recorded at severity `critical`: with a durable sink
//! ([`FileSink`](crate::FileSink)) the call returns — and an opened secret is released —
//! only once its record is on disk.
//!
//! Recording fails closed: if the sink refuses the event, the call fails and an opened
//! secret is not returned, so no access to key material goes unrecorded.

use mcpsec_core::{
    Actor, Error, EventKind, EventSink, Label, OrgId, Outcome, ReasonCode, ResourceId, SealContext,
    Sealer, SecretBytes, SecurityEvent, Severity, SharedClock,
};
use std::sync::Arc;

/// `resource.id` for a context: `table|column|row`, or its digest form (see the module
/// documentation). `None` only if the context's encoding cannot be read.
fn location_id(context: &SealContext) -> Option<ResourceId> {
    let parts = location(context)?;
    if parts.iter().all(|part| !part.contains('|'))
        && let Ok(id) = ResourceId::new(parts.join("|"))
    {
        return Some(id);
    }
    let mut encoded = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for part in &parts {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        encoded.extend_from_slice(&len.to_be_bytes());
        encoded.extend_from_slice(part.as_bytes());
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &encoded);
    let hex = crate::record::hex(digest.as_ref().get(..16)?);
    ResourceId::new(format!("sha256:{hex}")).ok()
}

/// The table, column and row of `context`, read from its documented canonical encoding
/// ([`SealContext::aad`]: a version tag, then category, table, column and row, each with
/// a 4-byte big-endian length), since core's `SealContext` has accessors for the
/// category and tenant only.
fn location(context: &SealContext) -> Option<[String; 3]> {
    const TAG: &[u8] = b"mcpsec-seal-context-v1";
    let aad = context.aad();
    let mut rest = aad.strip_prefix(TAG)?;
    let mut parts: [String; 4] = Default::default();
    for part in &mut parts {
        let (head, tail) = rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*head)).ok()?;
        *part = String::from_utf8(tail.get(..len)?.to_vec()).ok()?;
        rest = tail.get(len..)?;
    }
    let [_category, table, column, row] = parts;
    Some([table, column, row])
}

/// A [`Sealer`] that records each call to an [`EventSink`].
#[derive(Debug)]
pub struct AuditedSealer<S: Sealer> {
    inner: S,
    sink: Arc<dyn EventSink>,
    clock: SharedClock,
    actor: Actor,
}

impl<S: Sealer> AuditedSealer<S> {
    /// Wraps `inner`; events go to `sink`, timed by `clock`, with `actor` as who acted
    /// (the service holding the sealer, usually).
    pub fn new(inner: S, sink: Arc<dyn EventSink>, clock: SharedClock, actor: Actor) -> Self {
        AuditedSealer {
            inner,
            sink,
            clock,
            actor,
        }
    }

    fn event(&self, kind: EventKind, op: &str, ok: bool, context: &SealContext) -> SecurityEvent {
        let outcome = if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let kind_label = Label::new(context.category())
            .or_else(|_| Label::new("sealed_secret"))
            .ok();
        // Critical: this is the secrets-access audit, so the record is on disk before the
        // secret is released (a durable sink acknowledges critical events only then).
        let mut event = SecurityEvent::new(kind, outcome, self.clock.now())
            .with_actor(self.actor.clone())
            .with_severity(Severity::Critical);
        if let Some(kind) = kind_label {
            event = event.with_resource(kind, location_id(context));
        }
        if let Ok(action) = Label::new(op) {
            event = event.with_action(action);
        }
        if let Some(org) = context.tenant().and_then(|t| OrgId::new(t).ok()) {
            event = event.with_org(org);
        }
        if !ok && kind == EventKind::SensitiveRead {
            event = event.with_reason(ReasonCode::DecryptFailed);
        }
        event
    }
}

#[async_trait::async_trait]
impl<S: Sealer> Sealer for AuditedSealer<S> {
    async fn seal(&self, plaintext: &[u8], context: &SealContext) -> Result<Vec<u8>, Error> {
        let result = self.inner.seal(plaintext, context).await;
        let event = self.event(
            EventKind::SensitiveUpdate,
            "seal.seal",
            result.is_ok(),
            context,
        );
        self.sink.record(event).await?;
        result
    }

    async fn open(&self, sealed: &[u8], context: &SealContext) -> Result<SecretBytes, Error> {
        let result = self.inner.open(sealed, context).await;
        let event = self.event(
            EventKind::SensitiveRead,
            "seal.open",
            result.is_ok(),
            context,
        );
        self.sink.record(event).await?;
        result
    }
}
