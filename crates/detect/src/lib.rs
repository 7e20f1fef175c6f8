//! # mcpsec-detect
//!
//! Streaming detection over mcpsec's [`SecurityEvent`](mcpsec_core::SecurityEvent)s:
//! rules, tiered and deduplicated alerts, alert sinks, responders and (feature `webhook`)
//! signed webhooks. It keeps no log: the tamper-evident trail is `mcpsec-audit`'s, and a
//! host sends each event to both with core's [`FanOut`](mcpsec_core::FanOut).
//!
//!
//! A [`Detector`] sees each event (it is an [`EventSink`](mcpsec_core::EventSink), so a host can fan events out to
//! it beside the log), updates per-key windows read from its [`Clock`](mcpsec_core::Clock), and raises
//! [`Alert`]s to every [`AlertSink`]; critical alerts also go to every [`Responder`], which
//! may act (block a source, revoke a token family). Defaults follow common SIEM rules:
//!
//! | rule | fires when | tier |
//! |------|------------|------|
//! | brute force | ≥10 failed logins or MFA checks on one account in 5 min | high |
//! | credential stuffing | one source fails on ≥10 distinct accounts in 10 min | high |
//! | spraying | one account fails from ≥10 distinct sources in 10 min | high |
//! | API key hammering | ≥5 wrong secrets for one known key id in 5 min | high |
//! | API key stuffing | one source fails with ≥10 distinct key ids in 10 min | high |
//! | login lock | any `authn_login_lock` (a service locked a source or account) | high |
//! | failure limit | any `authn_login_fail_max` (an account's or key id's failure budget spent) | high |
//! | token reuse | any refresh-token reuse | critical, at once |
//! | rate limit | ≥5 rate-limit breaches from one source in 1 min | medium |
//! | privilege change | any permission or role change | medium |
//! | detector saturated | a rule had to forget a live window (state cap reached) | high |
//!
//! Each alert names one subject — the account, source, key id or token family the rule's
//! definition is about (for a privilege change: the changed resource, else the account;
//! for a lock: the account, else the source, else the key id; for a failure limit: the
//! account, else the key id, else the source) — and the same (rule, subject) alerts at most once per dedup window. Critical alerts
//! and alerts about [`Subject::Unknown`] are never deduplicated, so one alert cannot mute
//! another about something else. Rules never attribute one subject's events to another:
//! failures on account A count toward A only, so a noisy attacker cannot raise an alert
//! about an innocent account B.
//!
//! Per-rule state is capped (`max_keys`). When full, the least recently seen keys are
//! weighed and the one with the least in its window goes — empty windows first, so a
//! flood of invented names evicts itself rather than a victim's window; when a live
//! window must go, a `detector_saturated` alert (deduplicated per window) says so.
//!
//! With a [`Pseudonymizer`](mcpsec_audit::Pseudonymizer) ([`Detector::with_pseudonymizer`]), alerts about a source
//! carry its keyed pseudonym ([`Subject::SourcePseudonym`]), never the address — the same
//! pseudonym the log records, so alerts and records still correlate. (Responders only see
//! critical alerts, none of which is about a source.)
//!
//! The one type to start with is [`Detector`]:
//!
//! ```
//! use mcpsec_core::{Clock, EventKind, EventSink, ManualClock, Outcome, SecurityEvent, UserId};
//! use mcpsec_detect::{Detector, DetectorConfig, MemoryAlertSink, Rule, Tier};
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let clock = Arc::new(ManualClock::at_unix(1_767_225_600));
//! let alerts = MemoryAlertSink::new();
//! let detector = Detector::new(DetectorConfig::default(), clock.clone())
//!     .with_alert_sink(Arc::new(alerts.clone()));
//! let reuse = SecurityEvent::new(EventKind::AuthnTokenReuse, Outcome::Failure, clock.now())
//!     .with_user(UserId::new("ada")?);
//! detector.record(reuse).await?;
//! assert_eq!(alerts.alerts()[0].rule, Rule::TokenReuse);
//! assert_eq!(alerts.alerts()[0].tier, Tier::Critical);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "tests fail loudly on purpose"
    )
)]

mod bounded;
mod detector;
mod error;
#[cfg(feature = "webhook")]
mod webhook;

pub use detector::{
    Alert, AlertSink, Detector, DetectorConfig, LogAlertSink, MemoryAlertSink, Responder, Rule,
    Subject, Threshold, Tier,
};
pub use error::Error;
#[cfg(feature = "webhook")]
pub use webhook::WebhookAlertSink;
