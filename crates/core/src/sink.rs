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

/// Sends each event to one durable sink (the audit log) and to observers (a detector,
/// metrics) that read the same stream.
///
/// The contract, so that composing sinks keeps [`EventSink`]'s promise:
///
/// - The durable sink is called first and decides the answer: `record` returns `Ok` only
///   once the durable sink has, so for a critical event `Ok` still means durable. If it
///   refuses, the fan-out returns its error (the event was not recorded) — whatever the
///   observers said.
/// - Observers are called afterwards, in order, each with its own copy, even when the
///   durable sink refused: an attacker who fills the disk must not also blind detection.
///   Because they run after the durable sink, whatever a responder does about an event
///   is recorded after the event itself.
/// - An observer's error never fails the fan-out (an unreachable alert webhook must not
///   turn every critical operation into a refusal). It is logged through `tracing` like
///   [`emit`] does, naming the event's kind and the error only, and counted in
///   [`FanOut::observer_failures`].
///
/// ```
/// use mcpsec_core::{EventKind, EventSink, FanOut, MemorySink, Outcome, SecurityEvent};
/// use std::sync::Arc;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), mcpsec_core::Error> {
/// let log = MemorySink::new(); // in production: the audit crate's FileSink
/// let detector = MemorySink::new(); // in production: mcpsec_detect::Detector
/// let sink = FanOut::new(Arc::new(log.clone())).with_observer(Arc::new(detector.clone()));
/// let event = SecurityEvent::new(EventKind::AuthnTokenReuse, Outcome::Failure, std::time::UNIX_EPOCH);
/// sink.record(event).await?;
/// assert_eq!((log.events().len(), detector.events().len()), (1, 1));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FanOut {
    durable: Arc<dyn EventSink>,
    observers: Vec<Arc<dyn EventSink>>,
    observer_failures: std::sync::atomic::AtomicU64,
}

impl FanOut {
    /// A fan-out whose answer is `durable`'s.
    pub fn new(durable: Arc<dyn EventSink>) -> FanOut {
        FanOut {
            durable,
            observers: Vec::new(),
            observer_failures: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Adds an observer; its errors are logged and counted, never returned.
    pub fn with_observer(mut self, observer: Arc<dyn EventSink>) -> FanOut {
        self.observers.push(observer);
        self
    }

    /// Events an observer refused since this fan-out was built.
    pub fn observer_failures(&self) -> u64 {
        self.observer_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl EventSink for FanOut {
    async fn record(&self, event: SecurityEvent) -> Result<(), Error> {
        let outcome = if self.observers.is_empty() {
            return self.durable.record(event).await;
        } else {
            self.durable.record(event.clone()).await
        };
        for observer in &self.observers {
            if !emit(observer.as_ref(), event.clone()).await {
                self.observer_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        outcome
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

    /// Writes which sink saw which event into one shared journal.
    #[derive(Debug)]
    struct Journal(&'static str, Arc<Mutex<Vec<&'static str>>>, bool);

    #[async_trait::async_trait]
    impl EventSink for Journal {
        async fn record(&self, _event: SecurityEvent) -> Result<(), Error> {
            self.1.lock().unwrap().push(self.0);
            if self.2 {
                Err(Error::SinkUnavailable("refused"))
            } else {
                Ok(())
            }
        }
    }

    fn critical() -> SecurityEvent {
        SecurityEvent::new(EventKind::AuthnTokenReuse, Outcome::Failure, UNIX_EPOCH)
    }

    #[tokio::test]
    async fn fan_out_answers_with_the_durable_sink_and_calls_it_first() {
        let journal = Arc::new(Mutex::new(Vec::new()));
        let fan = FanOut::new(Arc::new(Journal("log", journal.clone(), true)))
            .with_observer(Arc::new(Journal("detector", journal.clone(), false)));
        // The log refused a critical event: Err, although the detector accepted it...
        assert!(matches!(
            fan.record(critical()).await,
            Err(Error::SinkUnavailable(_))
        ));
        // ...which still saw it, after the log.
        assert_eq!(*journal.lock().unwrap(), ["log", "detector"]);
    }

    #[tokio::test]
    async fn fan_out_counts_a_failing_observer_without_failing() {
        let log = MemorySink::new();
        let journal = Arc::new(Mutex::new(Vec::new()));
        let fan = FanOut::new(Arc::new(log.clone()))
            .with_observer(Arc::new(Journal("webhook", journal.clone(), true)))
            .with_observer(Arc::new(Journal("metrics", journal.clone(), false)));
        fan.record(critical()).await.unwrap();
        assert_eq!(log.events().len(), 1);
        assert_eq!(*journal.lock().unwrap(), ["webhook", "metrics"]);
        assert_eq!(fan.observer_failures(), 1);
    }

    /// A future that stays pending until the gate opens.
    #[derive(Debug, Default)]
    struct Gate {
        state: Mutex<(bool, Option<std::task::Waker>)>,
        entered: std::sync::atomic::AtomicBool,
    }

    impl Gate {
        fn open(&self) {
            let mut state = self.state.lock().unwrap();
            state.0 = true;
            if let Some(waker) = state.1.take() {
                waker.wake();
            }
        }

        async fn pass(&self) {
            self.entered
                .store(true, std::sync::atomic::Ordering::SeqCst);
            std::future::poll_fn(|cx| {
                let mut state = self.state.lock().unwrap();
                if state.0 {
                    std::task::Poll::Ready(())
                } else {
                    state.1 = Some(cx.waker().clone());
                    std::task::Poll::Pending
                }
            })
            .await;
        }
    }

    /// A durable sink whose write (the fsync) waits for the gate.
    #[derive(Debug)]
    struct SlowDisk(Arc<Gate>, MemorySink);

    #[async_trait::async_trait]
    impl EventSink for SlowDisk {
        async fn record(&self, event: SecurityEvent) -> Result<(), Error> {
            self.0.pass().await;
            self.1.record(event).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fan_out_acknowledges_a_critical_event_only_once_the_durable_sink_has() {
        let gate = Arc::new(Gate::default());
        let disk = MemorySink::new();
        let detector = MemorySink::new();
        let fan = Arc::new(
            FanOut::new(Arc::new(SlowDisk(gate.clone(), disk.clone())))
                .with_observer(Arc::new(detector.clone())),
        );
        let task = tokio::spawn({
            let fan = fan.clone();
            async move { fan.record(critical()).await }
        });
        // Wait (without a timer) until the durable write is in progress.
        while !gate.entered.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        assert!(!task.is_finished());
        assert!(disk.events().is_empty() && detector.events().is_empty());
        gate.open();
        task.await.unwrap().unwrap();
        assert_eq!((disk.events().len(), detector.events().len()), (1, 1));
    }
}
