//! The rule engine, its alerts and the alert sinks it ships with.

use crate::Error;
use crate::bounded::BoundedMap;
use mcpsec_audit::Pseudonymizer;
use mcpsec_audit::record::Pseudonym;
use mcpsec_core::{
    Actor, EventKind, EventSink, KeyId, Outcome, ReasonCode, ResourceId, SecurityEvent,
    SharedClock, UserId,
};
use serde::Serialize;
use std::collections::VecDeque;
use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// Alert severity tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Tier {
    /// Informational.
    Low,
    /// Worth a look today.
    Medium,
    /// Worth a look now.
    High,
    /// Act now; responders are called.
    Critical,
}

/// Which rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rule {
    /// Many failures on one account.
    BruteForce,
    /// One source, many accounts.
    CredentialStuffing,
    /// Many sources, one account.
    Spraying,
    /// A known API key id with wrong secrets.
    ApiKeyHammering,
    /// One source, many API key ids: credential stuffing against API keys, whose
    /// failures name a key id and no account.
    ApiKeyStuffing,
    /// A service locked a source or an account (`authn_login_lock`).
    LoginLock,
    /// A service found an account's or key id's failure budget spent
    /// (`authn_login_fail_max`).
    FailureLimit,
    /// A refresh token used again.
    TokenReuse,
    /// Repeated rate-limit breaches.
    RateLimit,
    /// Permissions or roles changed.
    PrivilegeChange,
    /// Rule state was full and a live window had to be forgotten: detection may have
    /// missed something (a flood of invented names is the usual cause).
    DetectorSaturated,
}

/// What an alert is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Subject {
    /// A user account.
    Account(UserId),
    /// A network source.
    Source(IpAddr),
    /// A network source, by keyed pseudonym (detector with a [`Pseudonymizer`]).
    SourcePseudonym(Pseudonym),
    /// An API key, by public id.
    ApiKey(KeyId),
    /// A resource such as a refresh-token family.
    Resource(ResourceId),
    /// Nothing more specific is known.
    Unknown,
}

/// An alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// The rule.
    pub rule: Rule,
    /// How urgent.
    pub tier: Tier,
    /// What it is about.
    pub subject: Subject,
    /// When it fired (detector clock).
    #[serde(with = "time")]
    pub time: SystemTime,
    /// Events (or distinct values) in the window when it fired.
    pub count: u32,
}

mod time {
    pub(super) fn serialize<S: serde::Serializer>(
        t: &std::time::SystemTime,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }
}

/// `count` events within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    /// How many.
    pub count: u32,
    /// Within how long.
    pub window: Duration,
}

impl Threshold {
    /// `count` within `window`.
    pub const fn new(count: u32, window: Duration) -> Threshold {
        Threshold { count, window }
    }
}

/// Thresholds and limits; `Default` gives the table in the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorConfig {
    /// Failures on one account.
    pub brute_force: Threshold,
    /// Distinct accounts failing from one source.
    pub credential_stuffing: Threshold,
    /// Distinct sources failing on one account.
    pub spraying: Threshold,
    /// Wrong secrets for one API key id.
    pub api_key_hammering: Threshold,
    /// Distinct API key ids failing from one source.
    pub api_key_stuffing: Threshold,
    /// Rate-limit breaches from one source.
    pub rate_limit: Threshold,
    /// The same (rule, subject) alerts at most once per this window.
    pub dedup_window: Duration,
    /// Most keys each rule tracks; the least recently seen is evicted beyond it.
    pub max_keys: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        const MIN: u64 = 60;
        DetectorConfig {
            brute_force: Threshold::new(10, Duration::from_secs(5 * MIN)),
            credential_stuffing: Threshold::new(10, Duration::from_secs(10 * MIN)),
            spraying: Threshold::new(10, Duration::from_secs(10 * MIN)),
            api_key_hammering: Threshold::new(5, Duration::from_secs(5 * MIN)),
            api_key_stuffing: Threshold::new(10, Duration::from_secs(10 * MIN)),
            rate_limit: Threshold::new(5, Duration::from_secs(MIN)),
            dedup_window: Duration::from_secs(10 * MIN),
            max_keys: 10_000,
        }
    }
}

/// Where alerts go.
#[async_trait::async_trait]
pub trait AlertSink: Send + Sync + std::fmt::Debug {
    /// Delivers one alert.
    async fn send(&self, alert: &Alert) -> Result<(), Error>;
}

/// Acts on critical alerts (block a source, revoke a token family, page someone).
#[async_trait::async_trait]
pub trait Responder: Send + Sync + std::fmt::Debug {
    /// Called once per critical alert, after the alert sinks.
    async fn respond(&self, alert: &Alert) -> Result<(), Error>;
}

/// Keeps alerts in memory; clones share them. For tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryAlertSink {
    alerts: Arc<Mutex<Vec<Alert>>>,
}

impl MemoryAlertSink {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every alert so far.
    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait::async_trait]
impl AlertSink for MemoryAlertSink {
    async fn send(&self, alert: &Alert) -> Result<(), Error> {
        self.alerts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(alert.clone());
        Ok(())
    }
}

/// Writes each alert as one JSON line to a writer (standard error by default).
pub struct LogAlertSink {
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for LogAlertSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogAlertSink").finish_non_exhaustive()
    }
}

impl Default for LogAlertSink {
    fn default() -> Self {
        Self::new(Box::new(std::io::stderr()))
    }
}

impl LogAlertSink {
    /// Alerts as JSON lines to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        LogAlertSink {
            out: Mutex::new(out),
        }
    }
}

#[async_trait::async_trait]
impl AlertSink for LogAlertSink {
    async fn send(&self, alert: &Alert) -> Result<(), Error> {
        let mut line = serde_json::to_vec(alert).map_err(|_| Error::Config("alert encoding"))?;
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        out.write_all(&line)
            .and_then(|()| out.flush())
            .map_err(Error::io("writing an alert"))
    }
}

#[derive(Debug)]
struct State {
    brute: BoundedMap<UserId, VecDeque<SystemTime>>,
    stuffing: BoundedMap<IpAddr, Vec<(UserId, SystemTime)>>,
    spraying: BoundedMap<UserId, Vec<(IpAddr, SystemTime)>>,
    hammering: BoundedMap<KeyId, VecDeque<SystemTime>>,
    key_stuffing: BoundedMap<IpAddr, Vec<(KeyId, SystemTime)>>,
    rate: BoundedMap<IpAddr, VecDeque<SystemTime>>,
    dedup: BoundedMap<(Rule, Subject), Option<SystemTime>>,
}

/// The streaming rule engine.
#[derive(Debug)]
pub struct Detector {
    config: DetectorConfig,
    clock: SharedClock,
    state: Mutex<State>,
    sinks: Vec<Arc<dyn AlertSink>>,
    responders: Vec<Arc<dyn Responder>>,
    pseudonymizer: Option<Arc<Pseudonymizer>>,
}

impl Detector {
    /// A detector with `config`, reading time from `clock`, with no sinks yet.
    pub fn new(config: DetectorConfig, clock: SharedClock) -> Detector {
        let cap = config.max_keys;
        Detector {
            config,
            clock,
            state: Mutex::new(State {
                brute: BoundedMap::new(cap),
                stuffing: BoundedMap::new(cap),
                spraying: BoundedMap::new(cap),
                hammering: BoundedMap::new(cap),
                key_stuffing: BoundedMap::new(cap),
                rate: BoundedMap::new(cap),
                dedup: BoundedMap::new(cap),
            }),
            sinks: Vec::new(),
            responders: Vec::new(),
            pseudonymizer: None,
        }
    }

    /// Alerts name sources by their keyed pseudonym, never by address.
    pub fn with_pseudonymizer(mut self, pseudonymizer: Arc<Pseudonymizer>) -> Self {
        self.pseudonymizer = Some(pseudonymizer);
        self
    }

    /// The subject as alerts show it: a source's pseudonym when configured.
    fn shown(&self, subject: Subject) -> Subject {
        match (subject, &self.pseudonymizer) {
            (Subject::Source(ip), Some(p)) => Subject::SourcePseudonym(p.pseudonym(ip)),
            (other, _) => other,
        }
    }

    /// Adds an alert sink.
    pub fn with_alert_sink(mut self, sink: Arc<dyn AlertSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Adds a responder for critical alerts.
    pub fn with_responder(mut self, responder: Arc<dyn Responder>) -> Self {
        self.responders.push(responder);
        self
    }

    /// Runs the rules on `event` and returns the alerts it raises (after dedup), without
    /// delivering them.
    pub fn evaluate(&self, event: &SecurityEvent) -> Vec<Alert> {
        let now = self.clock.now();
        let c = &self.config;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut raised = Vec::new();
        let mut saturated = false;
        let account = account_of(event);
        let failed_login = event.outcome == Outcome::Failure
            && matches!(
                event.kind,
                EventKind::AuthnLoginFail | EventKind::AuthnMfaFail
            );
        if failed_login {
            if let Some(user) = &account {
                let (times, dropped) = state.brute.entry(
                    user.clone(),
                    VecDeque::new,
                    times_weight(now, c.brute_force),
                );
                saturated |= dropped;
                let n = count_in_window(times, now, c.brute_force);
                if n >= c.brute_force.count {
                    raised.push((
                        Rule::BruteForce,
                        Tier::High,
                        Subject::Account(user.clone()),
                        n,
                    ));
                }
            }
            if let (Some(user), Some(ip)) = (&account, event.source) {
                let (seen, dropped) =
                    state
                        .stuffing
                        .entry(ip, Vec::new, seen_weight(now, c.credential_stuffing));
                saturated |= dropped;
                let n = distinct_in_window(seen, user.clone(), now, c.credential_stuffing);
                if n >= c.credential_stuffing.count {
                    raised.push((Rule::CredentialStuffing, Tier::High, Subject::Source(ip), n));
                }
                let (seen, dropped) =
                    state
                        .spraying
                        .entry(user.clone(), Vec::new, seen_weight(now, c.spraying));
                saturated |= dropped;
                let n = distinct_in_window(seen, ip, now, c.spraying);
                if n >= c.spraying.count {
                    raised.push((
                        Rule::Spraying,
                        Tier::High,
                        Subject::Account(user.clone()),
                        n,
                    ));
                }
            }
            if let (Actor::ApiKey { key, .. }, Some(ip)) = (&event.actor, event.source) {
                // Any failure counts (unknown id, wrong secret, throttled): a stuffing
                // list mixes ids that exist with ids that do not.
                let (seen, dropped) =
                    state
                        .key_stuffing
                        .entry(ip, Vec::new, seen_weight(now, c.api_key_stuffing));
                saturated |= dropped;
                let n = distinct_in_window(seen, key.clone(), now, c.api_key_stuffing);
                if n >= c.api_key_stuffing.count {
                    raised.push((Rule::ApiKeyStuffing, Tier::High, Subject::Source(ip), n));
                }
            }
            if let (Actor::ApiKey { key, .. }, Some(ReasonCode::SecretMismatch)) =
                (&event.actor, event.reason)
            {
                let (times, dropped) = state.hammering.entry(
                    key.clone(),
                    VecDeque::new,
                    times_weight(now, c.api_key_hammering),
                );
                saturated |= dropped;
                let n = count_in_window(times, now, c.api_key_hammering);
                if n >= c.api_key_hammering.count {
                    raised.push((
                        Rule::ApiKeyHammering,
                        Tier::High,
                        Subject::ApiKey(key.clone()),
                        n,
                    ));
                }
            }
        }
        match event.kind {
            EventKind::AuthnTokenReuse => {
                let subject = match &event.resource {
                    Some(r) if r.id.is_some() => {
                        r.id.clone().map_or(Subject::Unknown, Subject::Resource)
                    }
                    _ => account.clone().map_or(Subject::Unknown, Subject::Account),
                };
                raised.push((Rule::TokenReuse, Tier::Critical, subject, 1));
            }
            EventKind::AuthnLoginLock => {
                let subject = account
                    .clone()
                    .map(Subject::Account)
                    .or_else(|| event.source.map(Subject::Source))
                    .or_else(|| api_key_of(event).map(Subject::ApiKey))
                    .unwrap_or(Subject::Unknown);
                raised.push((Rule::LoginLock, Tier::High, subject, 1));
            }
            EventKind::AuthnLoginFailMax => {
                let subject = account
                    .clone()
                    .map(Subject::Account)
                    .or_else(|| api_key_of(event).map(Subject::ApiKey))
                    .or_else(|| event.source.map(Subject::Source))
                    .unwrap_or(Subject::Unknown);
                raised.push((Rule::FailureLimit, Tier::High, subject, 1));
            }
            EventKind::ExcessRateLimitExceeded => {
                if let Some(ip) = event.source {
                    let (times, dropped) =
                        state
                            .rate
                            .entry(ip, VecDeque::new, times_weight(now, c.rate_limit));
                    saturated |= dropped;
                    let n = count_in_window(times, now, c.rate_limit);
                    if n >= c.rate_limit.count {
                        raised.push((Rule::RateLimit, Tier::Medium, Subject::Source(ip), n));
                    }
                }
            }
            EventKind::AuthzChange | EventKind::PrivilegePermissionsChanged
                if event.outcome == Outcome::Success =>
            {
                // Keyed on what was changed, so one change cannot mute alerts about
                // another made by the same actor.
                let subject = match event.resource.as_ref().and_then(|r| r.id.clone()) {
                    Some(id) => Subject::Resource(id),
                    None => account.clone().map_or(Subject::Unknown, Subject::Account),
                };
                raised.push((Rule::PrivilegeChange, Tier::Medium, subject, 1));
            }
            _ => {}
        }
        if saturated {
            raised.push((Rule::DetectorSaturated, Tier::High, Subject::Unknown, 1));
        }
        let mut alerts = Vec::new();
        for (rule, tier, subject, count) in raised {
            // Never deduplicated: critical alerts, and alerts about nothing specific
            // (they would mute each other). Saturation is one condition: once per window.
            let dedup = tier != Tier::Critical
                && (subject != Subject::Unknown || rule == Rule::DetectorSaturated);
            let fresh = if dedup {
                let (last, _) = state.dedup.entry((rule, subject.clone()), || None, |_| 0);
                let fresh =
                    last.is_none_or(|at| now.duration_since(at).is_ok_and(|d| d >= c.dedup_window));
                if fresh {
                    *last = Some(now);
                }
                fresh
            } else {
                true
            };
            if fresh {
                alerts.push(Alert {
                    rule,
                    tier,
                    subject: self.shown(subject),
                    time: now,
                    count,
                });
            }
        }
        alerts
    }

    /// Runs the rules on `event`, delivers each alert to every sink and each critical
    /// alert to every responder. Every sink and responder is tried; the first error is
    /// returned after all were called.
    pub async fn observe(&self, event: &SecurityEvent) -> Result<Vec<Alert>, Error> {
        let alerts = self.evaluate(event);
        let mut first_error = None;
        for alert in &alerts {
            for sink in &self.sinks {
                if let Err(e) = sink.send(alert).await {
                    first_error.get_or_insert(e);
                }
            }
            if alert.tier == Tier::Critical {
                for responder in &self.responders {
                    if let Err(e) = responder.respond(alert).await {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(alerts),
        }
    }
}

#[async_trait::async_trait]
impl EventSink for Detector {
    async fn record(&self, event: SecurityEvent) -> Result<(), mcpsec_core::Error> {
        self.observe(&event)
            .await
            .map(|_| ())
            .map_err(|_| mcpsec_core::Error::SinkUnavailable("alert delivery failed"))
    }
}

/// The account an event is about: the user, or an API key's owner.
fn account_of(event: &SecurityEvent) -> Option<UserId> {
    match &event.actor {
        Actor::User { user } => Some(user.clone()),
        Actor::ApiKey { owner, .. } => owner.clone(),
        _ => None,
    }
}

/// The API key an event names.
fn api_key_of(event: &SecurityEvent) -> Option<KeyId> {
    match &event.actor {
        Actor::ApiKey { key, .. } => Some(key.clone()),
        _ => None,
    }
}

/// Eviction weight of a window of times: how many are still in it.
fn times_weight(now: SystemTime, t: Threshold) -> impl Fn(&VecDeque<SystemTime>) -> u32 {
    move |times| within(times.iter().copied(), now, t.window)
}

/// Eviction weight of a window of distinct values: how many are still in it.
fn seen_weight<V>(now: SystemTime, t: Threshold) -> impl Fn(&Vec<(V, SystemTime)>) -> u32 {
    move |seen| within(seen.iter().map(|(_, at)| *at), now, t.window)
}

/// Records `now` and returns how many of the last `count` events fall in the window.
/// Keeps at most `count` times: enough to decide, bounded whatever the event rate.
fn count_in_window(times: &mut VecDeque<SystemTime>, now: SystemTime, t: Threshold) -> u32 {
    let cap = t.count.max(1) as usize;
    if times.len() >= cap {
        times.pop_front();
    }
    times.push_back(now);
    within(times.iter().copied(), now, t.window)
}

/// Records `value` seen at `now` and returns how many distinct values were seen in the
/// window. Keeps at most `count` values, dropping the stalest.
fn distinct_in_window<V: PartialEq>(
    seen: &mut Vec<(V, SystemTime)>,
    value: V,
    now: SystemTime,
    t: Threshold,
) -> u32 {
    if let Some(slot) = seen.iter_mut().find(|(v, _)| *v == value) {
        slot.1 = now;
    } else {
        if seen.len() >= t.count.max(1) as usize
            && let Some(stalest) = seen
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(i, _)| i)
        {
            seen.swap_remove(stalest);
        }
        seen.push((value, now));
    }
    within(seen.iter().map(|(_, at)| *at), now, t.window)
}

fn within(times: impl Iterator<Item = SystemTime>, now: SystemTime, window: Duration) -> u32 {
    let n = times
        .filter(|at| now.duration_since(*at).map_or(true, |age| age <= window))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}
