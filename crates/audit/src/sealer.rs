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
//! | tenant       | `org` (an `OrgId`)                   | omitted                   |
//! | table, column, row | not recorded (core's `SealContext` exposes only category and tenant) | |
//! | —            | `action`: `seal.seal` / `seal.open`  |                           |
//!
//! Every event is recorded at severity `critical`: with a durable sink
//! ([`FileSink`](crate::FileSink)) the call returns — and an opened secret is released —
//! only once its record is on disk.
//!
//! Recording fails closed: if the sink refuses the event, the call fails and an opened
//! secret is not returned, so no access to key material goes unrecorded.

use mcpsec_core::{
    Actor, Error, EventKind, EventSink, Label, OrgId, Outcome, ReasonCode, SealContext, Sealer,
    SecretBytes, SecurityEvent, Severity, SharedClock,
};
use std::sync::Arc;

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
            event = event.with_resource(kind, None);
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
