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

    #[tokio::test]
    async fn null_sink_accepts_everything() {
        let event = SecurityEvent::new(EventKind::AuthnTokenReuse, Outcome::Failure, UNIX_EPOCH);
        NullSink.record(event).await.unwrap();
    }
}
