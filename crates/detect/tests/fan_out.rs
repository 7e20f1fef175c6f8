//! The composition a host builds: one event to the audit log and the detector through
//! core's FanOut, the log answering.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use mcpsec_audit::{ChainConfig, ChainSink, FileSinkConfig, MemoryChainStorage};
use mcpsec_core::{
    Clock, EventKind, EventSink, FanOut, ManualClock, Outcome, SecurityEvent, ServiceId, UserId,
};
use mcpsec_detect::{Alert, AlertSink, Detector, DetectorConfig, Error, MemoryAlertSink, Rule};
use std::sync::Arc;

#[derive(Debug)]
struct Unreachable;

#[async_trait::async_trait]
impl AlertSink for Unreachable {
    async fn send(&self, _alert: &Alert) -> Result<(), Error> {
        Err(Error::Unavailable("webhook down"))
    }
}

fn reuse(clock: &ManualClock) -> SecurityEvent {
    SecurityEvent::new(EventKind::AuthnTokenReuse, Outcome::Failure, clock.now())
        .with_user(UserId::new("ada").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_critical_event_is_logged_and_alerted_and_a_dead_webhook_fails_nothing() {
    let clock = Arc::new(ManualClock::at_unix(1_767_225_600));
    let storage = MemoryChainStorage::new();
    let log = Arc::new(
        ChainSink::with_storage(
            Box::new(storage.clone()),
            FileSinkConfig::new(
                ChainConfig::new(ServiceId::new("api-1").unwrap()),
                clock.clone(),
            ),
        )
        .unwrap(),
    );
    let alerts = MemoryAlertSink::new();
    let detector = Detector::new(DetectorConfig::default(), clock.clone())
        .with_alert_sink(Arc::new(Unreachable))
        .with_alert_sink(Arc::new(alerts.clone()));
    let sink = FanOut::new(log.clone()).with_observer(Arc::new(detector));
    sink.record(reuse(&clock)).await.unwrap();
    // Critical: stored when record returned, and the detector saw it.
    assert_eq!(storage.records().len(), 1);
    assert_eq!(alerts.alerts()[0].rule, Rule::TokenReuse);
    // The unreachable webhook made the detector refuse: counted, not returned.
    assert_eq!(sink.observer_failures(), 1);
    // With the log closed, the answer is the log's refusal.
    log.close().unwrap();
    assert!(sink.record(reuse(&clock)).await.is_err());
    assert_eq!(alerts.alerts().len(), 2, "detection still saw it");
}
