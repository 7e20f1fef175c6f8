//! The [`AuditSink`] trait and the in-memory and `tracing` sinks.

use crate::Error;
use crate::chain::{Chain, ChainConfig};
use crate::record::{Digest, Record, check_time};
use mcpsec_core::{EventSink, SecurityEvent, SharedClock};
use std::sync::{Arc, Mutex, PoisonError};

/// Where audit events are kept.
///
/// The contract is [`EventSink`]'s: `append` returns `Ok` once the event is accepted —
/// queued for ordinary events, durable in the sink's store for critical ones — and never
/// drops an accepted event silently. Implementations: [`crate::FileSink`] (hash-chained
/// JSON lines), [`MemoryAuditSink`], and `TracingSink` (feature `tracing`). A SQL sink
/// comes with the stores.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Accepts `event`; see the trait documentation for what `Ok` promises.
    async fn append(&self, event: SecurityEvent) -> Result<(), Error>;

    /// Waits until every accepted event is durable.
    async fn flush(&self) -> Result<(), Error>;
}

/// Chains events in memory, exactly as the file sink would. Clones share the records.
/// For tests and for feeding detection or exporters without a file.
#[derive(Debug, Clone)]
pub struct MemoryAuditSink {
    chain: Arc<Mutex<(Chain, Vec<Record>)>>,
    clock: SharedClock,
}

impl MemoryAuditSink {
    /// An empty chain for `config`.
    pub fn new(config: ChainConfig, clock: SharedClock) -> MemoryAuditSink {
        MemoryAuditSink {
            chain: Arc::new(Mutex::new((
                Chain::resume(config, 0, Digest::GENESIS),
                Vec::new(),
            ))),
            clock,
        }
    }

    /// Every record so far (checkpoints included).
    pub fn records(&self) -> Vec<Record> {
        self.lock().1.clone()
    }

    /// The records as JSON lines, each ending in `\n`: what a file sink would have written.
    pub fn to_jsonl(&self) -> Result<String, Error> {
        let mut out = String::new();
        for record in &self.lock().1 {
            out.push_str(&record.to_json()?);
            out.push('\n');
        }
        Ok(out)
    }

    /// Appends a checkpoint now, when a key is configured.
    pub fn checkpoint(&self) -> Result<Option<Record>, Error> {
        let mut guard = self.lock();
        let (chain, records) = &mut *guard;
        let cp = chain.checkpoint(self.clock.now())?;
        if let Some(cp) = &cp {
            records.push(cp.clone());
        }
        Ok(cp)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Chain, Vec<Record>)> {
        self.chain.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl AuditSink for MemoryAuditSink {
    async fn append(&self, event: SecurityEvent) -> Result<(), Error> {
        check_time(event.time)?;
        let now = self.clock.now();
        let mut guard = self.lock();
        let (chain, records) = &mut *guard;
        let record = chain.append(event, now)?;
        records.push(record);
        if chain.checkpoint_due(now)
            && let Some(cp) = chain.checkpoint(now)?
        {
            records.push(cp);
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), Error> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl EventSink for MemoryAuditSink {
    async fn record(&self, event: SecurityEvent) -> Result<(), mcpsec_core::Error> {
        AuditSink::append(self, event).await.map_err(Into::into)
    }
}

/// Emits each event as a `tracing` event at target `mcpsec_audit` (level from severity:
/// info, warn, error), with the event's JSON in the field `event`. No chain, no
/// durability of its own: whatever subscriber the host installed decides where it goes,
/// so use it beside the file sink, not instead of it, for critical events.
///
/// With a [`Pseudonymizer`](crate::Pseudonymizer) ([`TracingSink::with_pseudonymizer`]),
/// the source address is removed from the event and its keyed pseudonym is emitted in
/// the field `source_pseudonym` instead — the same one the log records.
#[cfg(feature = "tracing")]
#[derive(Debug, Default, Clone)]
pub struct TracingSink {
    pseudonymizer: Option<Arc<crate::Pseudonymizer>>,
}

#[cfg(feature = "tracing")]
impl TracingSink {
    /// A sink emitting events as they are (addresses included).
    pub fn new() -> TracingSink {
        TracingSink::default()
    }

    /// Replace source addresses by keyed pseudonyms.
    pub fn with_pseudonymizer(mut self, pseudonymizer: Arc<crate::Pseudonymizer>) -> Self {
        self.pseudonymizer = Some(pseudonymizer);
        self
    }
}

#[cfg(feature = "tracing")]
#[async_trait::async_trait]
impl AuditSink for TracingSink {
    async fn append(&self, mut event: SecurityEvent) -> Result<(), Error> {
        use mcpsec_core::Severity;
        let pseudonym = self
            .pseudonymizer
            .as_ref()
            .and_then(|p| p.apply(&mut event));
        let source_pseudonym = pseudonym.as_ref().map_or("", |p| p.as_str());
        let json = serde_json::to_string(&event).map_err(|_| Error::InvalidEvent("encoding"))?;
        let kind = event.kind.as_str();
        match event.severity {
            Severity::Critical => {
                tracing::error!(target: "mcpsec_audit", kind, source_pseudonym, event = %json)
            }
            Severity::Warning => {
                tracing::warn!(target: "mcpsec_audit", kind, source_pseudonym, event = %json)
            }
            _ => tracing::info!(target: "mcpsec_audit", kind, source_pseudonym, event = %json),
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), Error> {
        Ok(())
    }
}

#[cfg(feature = "tracing")]
#[async_trait::async_trait]
impl EventSink for TracingSink {
    async fn record(&self, event: SecurityEvent) -> Result<(), mcpsec_core::Error> {
        AuditSink::append(self, event).await.map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpsec_core::{EventKind, ManualClock, Outcome, ServiceId, UserId};
    use std::time::UNIX_EPOCH;

    #[tokio::test]
    async fn memory_sink_chains_like_the_file_sink() {
        let clock = Arc::new(ManualClock::at_unix(1_767_225_600));
        let sink = MemoryAuditSink::new(ChainConfig::new(ServiceId::new("m").unwrap()), clock);
        let event = SecurityEvent::new(EventKind::AuthnLoginFail, Outcome::Failure, UNIX_EPOCH)
            .with_user(UserId::new("ada").unwrap());
        EventSink::record(&sink, event.clone()).await.unwrap();
        AuditSink::append(&sink, event).await.unwrap();
        let jsonl = sink.to_jsonl().unwrap();
        let report =
            crate::verify_bytes(jsonl.as_bytes(), &crate::VerifyOptions::default()).unwrap();
        assert_eq!(report.records, 2);
        assert_eq!(sink.records()[1].prev, sink.records()[0].hash);
    }

    #[cfg(feature = "tracing")]
    #[tokio::test]
    async fn tracing_sink_accepts_events_without_a_subscriber() {
        let event = SecurityEvent::new(EventKind::AuthnTokenReuse, Outcome::Failure, UNIX_EPOCH);
        AuditSink::append(&TracingSink::new(), event.clone())
            .await
            .unwrap();
        EventSink::record(&TracingSink::new(), event).await.unwrap();
    }

    /// Captures every field of every event as text.
    #[cfg(feature = "tracing")]
    #[derive(Default, Clone)]
    struct Capture(Arc<Mutex<String>>);

    #[cfg(feature = "tracing")]
    impl tracing::field::Visit for Capture {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            let mut out = self.0.lock().unwrap();
            out.push_str(&format!("{}={value:?} ", field.name()));
        }
    }

    #[cfg(feature = "tracing")]
    impl tracing::Subscriber for Capture {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            event.record(&mut self.clone());
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[cfg(feature = "tracing")]
    #[test]
    fn tracing_sink_with_a_pseudonymizer_never_emits_the_address() {
        use crate::Pseudonymizer;
        use mcpsec_core::SecretBytes;
        let p = Arc::new(Pseudonymizer::new(&SecretBytes::random(32).unwrap()).unwrap());
        let source: std::net::IpAddr = "198.51.100.77".parse().unwrap();
        let event = SecurityEvent::new(EventKind::AuthnLoginFail, Outcome::Failure, UNIX_EPOCH)
            .with_source(source);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let capture = Capture::default();
        tracing::subscriber::with_default(capture.clone(), || {
            let sink = TracingSink::new().with_pseudonymizer(p.clone());
            rt.block_on(AuditSink::append(&sink, event.clone()))
                .unwrap();
        });
        let out = capture.0.lock().unwrap().clone();
        assert!(!out.contains("198.51.100.77"), "{out}");
        assert!(out.contains(p.pseudonym(source).as_str()), "{out}");
        // Without one, the address is emitted as given (the documented default).
        let capture = Capture::default();
        tracing::subscriber::with_default(capture.clone(), || {
            rt.block_on(AuditSink::append(&TracingSink::new(), event))
                .unwrap();
        });
        assert!(capture.0.lock().unwrap().contains("198.51.100.77"));
    }
}
