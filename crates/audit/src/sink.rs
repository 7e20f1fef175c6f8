//! The `tracing` sink (feature `tracing`).

#[cfg(feature = "tracing")]
use crate::Error;
#[cfg(feature = "tracing")]
use mcpsec_core::{EventSink, SecurityEvent};
#[cfg(feature = "tracing")]
use std::sync::Arc;

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
impl TracingSink {
    fn emit(&self, mut event: SecurityEvent) -> Result<(), Error> {
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
}

#[cfg(feature = "tracing")]
#[async_trait::async_trait]
impl EventSink for TracingSink {
    async fn record(&self, event: SecurityEvent) -> Result<(), mcpsec_core::Error> {
        self.emit(event).map_err(Into::into)
    }
}

#[cfg(test)]
#[cfg(feature = "tracing")]
mod tests {
    use super::*;
    use mcpsec_core::{EventKind, Outcome};
    use std::sync::Mutex;
    use std::time::UNIX_EPOCH;

    #[cfg(feature = "tracing")]
    #[tokio::test]
    async fn tracing_sink_accepts_events_without_a_subscriber() {
        let event = SecurityEvent::new(EventKind::AuthnTokenReuse, Outcome::Failure, UNIX_EPOCH);
        EventSink::record(&TracingSink::new(), event.clone())
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
            rt.block_on(EventSink::record(&sink, event.clone()))
                .unwrap();
        });
        let out = capture.0.lock().unwrap().clone();
        assert!(!out.contains("198.51.100.77"), "{out}");
        assert!(out.contains(p.pseudonym(source).as_str()), "{out}");
        // Without one, the address is emitted as given (the documented default).
        let capture = Capture::default();
        tracing::subscriber::with_default(capture.clone(), || {
            rt.block_on(EventSink::record(&TracingSink::new(), event))
                .unwrap();
        });
        assert!(capture.0.lock().unwrap().contains("198.51.100.77"));
    }
}
