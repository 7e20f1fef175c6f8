//! Where security events go.

use crate::{Error, SecurityEvent};
use std::sync::{Arc, Mutex, PoisonError};

/// A destination for [`SecurityEvent`]s.
///
/// Contract for implementations: `record` returns `Ok` only once the sink has *accepted*
/// the event. For ordinary events accepted may mean queued in memory. For events where
/// [`SecurityEvent::is_critical`] is true it must mean durable (written and flushed to the
/// store the sink promises), so that a caller who goes on after `Ok` cannot lose the
/// record of, say, a refresh-token reuse in a crash. On `Err` the event was not recorded;
/// callers of security-critical operations decide whether to fail closed.
///
/// Used as `Arc<dyn EventSink>`; the audit crate provides the production sinks.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// Records `event`; see the trait documentation for what `Ok` promises.
    async fn record(&self, event: SecurityEvent) -> Result<(), Error>;
}

#[async_trait::async_trait]
impl<T: EventSink + ?Sized> EventSink for Arc<T> {
    async fn record(&self, event: SecurityEvent) -> Result<(), Error> {
        (**self).record(event).await
    }
}

/// Records `event` in `sink` for an emitter that goes on whatever the sink says.
///
/// Most capability code reports an event and carries on (a refused login is refused
/// whether or not its record was accepted). Such an emitter must not discard the sink's
/// error silently: this logs it through `tracing` at `error` level, naming the event's kind
/// and outcome and the sink's error, never the event's other fields. Returns whether the
/// sink accepted the event, for a caller that wants to count losses. An emitter whose
/// operation must not go on without its record (a critical event) calls
/// [`EventSink::record`] itself and fails closed on `Err`.
pub async fn emit(sink: &dyn EventSink, event: SecurityEvent) -> bool {
    let kind = event.kind;
    let outcome = event.outcome;
    match sink.record(event).await {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(
                target: "mcpsec::events",
                event_kind = kind.as_str(),
                outcome = ?outcome,
                %error,
                "security event not recorded: the event sink refused it"
            );
            false
        }
    }
}

/// Discards every event. For hosts that have not wired auditing yet, and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

#[async_trait::async_trait]
impl EventSink for NullSink {
    async fn record(&self, _event: SecurityEvent) -> Result<(), Error> {
        Ok(())
    }
}

/// Keeps events in memory, in order. For tests, which then assert on what was recorded.
/// Clones share the same buffer.
#[derive(Debug, Default, Clone)]
pub struct MemorySink {
    events: Arc<Mutex<Vec<SecurityEvent>>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every event recorded so far.
    pub fn events(&self) -> Vec<SecurityEvent> {
        self.lock().clone()
    }

    /// Removes and returns every event recorded so far.
    pub fn take(&self) -> Vec<SecurityEvent> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SecurityEvent>> {
        // A panic while holding the lock cannot leave a Vec half-pushed; keep going.
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl EventSink for MemorySink {
    async fn record(&self, event: SecurityEvent) -> Result<(), Error> {
        self.lock().push(event);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventKind, Outcome};
    use std::time::UNIX_EPOCH;

    #[tokio::test]
    async fn memory_sink_keeps_order_and_is_usable_as_dyn() {
        let memory = MemorySink::new();
        let sink: Arc<dyn EventSink> = Arc::new(memory.clone());
        for kind in [EventKind::AuthnLoginFail, EventKind::AuthnLoginSuccess] {
            sink.record(SecurityEvent::new(kind, Outcome::Success, UNIX_EPOCH))
                .await
                .unwrap();
        }
        let kinds: Vec<_> = memory.events().iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::AuthnLoginFail, EventKind::AuthnLoginSuccess]
        );
        assert_eq!(memory.take().len(), 2);
        assert!(memory.events().is_empty());
    }

    #[derive(Debug)]
    struct Refusing;

    #[async_trait::async_trait]
    impl EventSink for Refusing {
        async fn record(&self, _event: SecurityEvent) -> Result<(), Error> {
            Err(Error::SinkUnavailable("disk full"))
        }
    }

    #[tokio::test]
    async fn emit_reports_whether_the_sink_accepted() {
        let event = || {
            SecurityEvent::new(
                crate::EventKind::AuthnLoginFail,
                crate::Outcome::Failure,
                std::time::UNIX_EPOCH,
            )
        };
        let sink = MemorySink::new();
        assert!(emit(&sink, event()).await);
        assert_eq!(sink.events().len(), 1);
        assert!(!emit(&Refusing, event()).await);
    }

    #[tokio::test]
    async fn null_sink_accepts_everything() {
        let event = SecurityEvent::new(EventKind::AuthnTokenReuse, Outcome::Failure, UNIX_EPOCH);
        NullSink.record(event).await.unwrap();
    }
}
