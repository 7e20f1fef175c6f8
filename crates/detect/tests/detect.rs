//! Detection rules on synthetic streams, with a manual clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use mcpsec_audit::Pseudonymizer;
use mcpsec_core::{
    Actor, Clock, EventKind, EventSink, KeyId, Label, ManualClock, Outcome, ReasonCode, ResourceId,
    SecurityEvent, UserId,
};
use mcpsec_detect::{
    Alert, Detector, DetectorConfig, Error, MemoryAlertSink, Responder, Rule, Subject, Threshold,
    Tier,
};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Fixture {
    clock: ManualClock,
    detector: Detector,
    alerts: MemoryAlertSink,
    responder: Arc<Recorder>,
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Alert>>);

#[async_trait::async_trait]
impl Responder for Recorder {
    async fn respond(&self, alert: &Alert) -> Result<(), Error> {
        self.0.lock().unwrap().push(alert.clone());
        Ok(())
    }
}

fn fixture(config: DetectorConfig) -> Fixture {
    let clock = ManualClock::at_unix(1_767_225_600);
    let alerts = MemoryAlertSink::new();
    let responder = Arc::new(Recorder::default());
    let detector = Detector::new(config, Arc::new(clock.clone()))
        .with_alert_sink(Arc::new(alerts.clone()))
        .with_responder(responder.clone());
    Fixture {
        clock,
        detector,
        alerts,
        responder,
    }
}

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0xC000_0200 + n))
}

fn user(name: &str) -> UserId {
    UserId::new(name).unwrap()
}

fn login_fail(f: &Fixture, account: &str, source: IpAddr) -> SecurityEvent {
    SecurityEvent::new(EventKind::AuthnLoginFail, Outcome::Failure, f.clock.now())
        .with_user(user(account))
        .with_source(source)
        .with_reason(ReasonCode::SecretMismatch)
}

impl Fixture {
    async fn feed(&self, event: SecurityEvent) {
        self.detector.record(event).await.unwrap();
    }

    fn fired(&self, rule: Rule) -> Vec<Alert> {
        self.alerts
            .alerts()
            .into_iter()
            .filter(|a| a.rule == rule)
            .collect()
    }
}

#[tokio::test]
async fn brute_force_fires_at_the_threshold_within_the_window_only() {
    let f = fixture(DetectorConfig::default());
    for _ in 0..9 {
        f.feed(login_fail(&f, "ada", ip(1))).await;
        f.clock.advance(Duration::from_secs(40));
    }
    assert!(
        f.fired(Rule::BruteForce).is_empty(),
        "9 failures, and spread over 6 minutes"
    );
    f.feed(login_fail(&f, "ada", ip(1))).await;
    assert!(
        f.fired(Rule::BruteForce).is_empty(),
        "the first failures fell out of the 5 min window"
    );
    for _ in 0..9 {
        f.feed(login_fail(&f, "ada", ip(1))).await;
    }
    let fired = f.fired(Rule::BruteForce);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].subject, Subject::Account(user("ada")));
    assert_eq!(fired[0].tier, Tier::High);
    assert!(
        f.responder.0.lock().unwrap().is_empty(),
        "high is not critical: nobody is locked out"
    );
}

#[tokio::test]
async fn one_noisy_attacker_cannot_raise_alerts_about_an_innocent_account() {
    let f = fixture(DetectorConfig::default());
    // The attacker hammers the victim from one address, a thousand times.
    for _ in 0..1000 {
        f.feed(login_fail(&f, "victim", ip(66))).await;
    }
    // Bystanders fail once each, from their own addresses.
    f.feed(login_fail(&f, "bob", ip(2))).await;
    f.feed(login_fail(&f, "carol", ip(3))).await;
    let alerts = f.alerts.alerts();
    assert_eq!(
        alerts.len(),
        1,
        "one brute-force alert, deduplicated: {alerts:?}"
    );
    assert_eq!(alerts[0].rule, Rule::BruteForce);
    assert_eq!(alerts[0].subject, Subject::Account(user("victim")));
    assert!(
        f.responder.0.lock().unwrap().is_empty(),
        "no automatic lockout of anyone"
    );
    // The attacker's address, spoofed as many sources against one innocent account, is
    // spraying by definition; but nobody else's failures count toward it.
    assert!(f.fired(Rule::Spraying).is_empty());
    assert!(f.fired(Rule::CredentialStuffing).is_empty());
}

#[tokio::test]
async fn credential_stuffing_is_one_source_over_ten_accounts_in_ten_minutes() {
    let f = fixture(DetectorConfig::default());
    for i in 0..9 {
        f.feed(login_fail(&f, &format!("acct-{i}"), ip(9))).await;
        f.clock.advance(Duration::from_secs(60));
    }
    assert!(f.fired(Rule::CredentialStuffing).is_empty());
    // The same nine accounts again do not count twice.
    for i in 0..9 {
        f.feed(login_fail(&f, &format!("acct-{i}"), ip(9))).await;
    }
    assert!(f.fired(Rule::CredentialStuffing).is_empty());
    f.feed(login_fail(&f, "acct-9", ip(9))).await;
    let fired = f.fired(Rule::CredentialStuffing);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].subject, Subject::Source(ip(9)));
    assert!(
        f.fired(Rule::BruteForce).is_empty(),
        "no account saw ten failures"
    );
}

#[tokio::test]
async fn spraying_is_many_sources_on_one_account() {
    let f = fixture(DetectorConfig::default());
    for n in 0..10 {
        f.feed(login_fail(&f, "ada", ip(100 + n))).await;
    }
    let fired = f.fired(Rule::Spraying);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].subject, Subject::Account(user("ada")));
}

#[tokio::test]
async fn api_key_hammering_counts_wrong_secrets_for_a_known_id() {
    let f = fixture(DetectorConfig::default());
    let key = KeyId::new("k_live_1").unwrap();
    let hammer = |reason| {
        SecurityEvent::new(EventKind::AuthnLoginFail, Outcome::Failure, f.clock.now())
            .with_actor(Actor::ApiKey {
                key: key.clone(),
                owner: Some(user("ada")),
            })
            .with_reason(reason)
    };
    for _ in 0..10 {
        f.feed(hammer(ReasonCode::Malformed)).await;
    }
    assert!(
        f.fired(Rule::ApiKeyHammering).is_empty(),
        "malformed keys are not this rule"
    );
    for _ in 0..5 {
        f.feed(hammer(ReasonCode::SecretMismatch)).await;
    }
    let fired = f.fired(Rule::ApiKeyHammering);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].subject, Subject::ApiKey(key.clone()));
}

#[tokio::test]
async fn refresh_token_reuse_is_critical_at_once_and_reaches_responders() {
    let f = fixture(DetectorConfig::default());
    let reuse = SecurityEvent::new(EventKind::AuthnTokenReuse, Outcome::Failure, f.clock.now())
        .with_user(user("ada"))
        .with_resource(
            Label::new("refresh_family").unwrap(),
            Some(ResourceId::new("fam-1").unwrap()),
        );
    f.feed(reuse).await;
    let fired = f.fired(Rule::TokenReuse);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].tier, Tier::Critical);
    assert_eq!(
        fired[0].subject,
        Subject::Resource(ResourceId::new("fam-1").unwrap())
    );
    let responded = f.responder.0.lock().unwrap().clone();
    assert_eq!(responded, fired, "the responder can revoke the family");
}

#[tokio::test]
async fn rate_limit_breaches_and_privilege_changes_are_medium() {
    let f = fixture(DetectorConfig::default());
    for _ in 0..5 {
        let e = SecurityEvent::new(
            EventKind::ExcessRateLimitExceeded,
            Outcome::Failure,
            f.clock.now(),
        )
        .with_source(ip(7));
        f.feed(e).await;
    }
    let change = SecurityEvent::new(
        EventKind::PrivilegePermissionsChanged,
        Outcome::Success,
        f.clock.now(),
    )
    .with_user(user("root"));
    f.feed(change).await;
    let tiers: Vec<_> = f.alerts.alerts().iter().map(|a| (a.rule, a.tier)).collect();
    assert_eq!(
        tiers,
        [
            (Rule::RateLimit, Tier::Medium),
            (Rule::PrivilegeChange, Tier::Medium)
        ]
    );
}

#[tokio::test]
async fn dedup_window_suppresses_repeats_then_lets_them_through() {
    let f = fixture(DetectorConfig::default());
    for _ in 0..30 {
        f.feed(login_fail(&f, "ada", ip(1))).await;
    }
    assert_eq!(f.fired(Rule::BruteForce).len(), 1);
    f.clock.advance(Duration::from_secs(11 * 60));
    for _ in 0..10 {
        f.feed(login_fail(&f, "ada", ip(1))).await;
    }
    assert_eq!(f.fired(Rule::BruteForce).len(), 2);
}

#[tokio::test]
async fn thresholds_are_configurable() {
    let f = fixture(DetectorConfig {
        brute_force: Threshold::new(3, Duration::from_secs(60)),
        ..DetectorConfig::default()
    });
    for _ in 0..3 {
        f.feed(login_fail(&f, "ada", ip(1))).await;
    }
    assert_eq!(f.fired(Rule::BruteForce).len(), 1);
}

#[tokio::test]
async fn state_is_bounded_under_a_flood_of_distinct_keys() {
    let f = fixture(DetectorConfig {
        max_keys: 100,
        ..DetectorConfig::default()
    });
    // 10,000 invented accounts from 10,000 addresses: state stays capped, and the flood
    // evicts (forgets) old keys rather than growing.
    for n in 0..10_000u32 {
        f.feed(login_fail(&f, &format!("x{n}"), ip(n))).await;
    }
    // Every invented window is live (the clock stands still), so some had to be
    // forgotten: that is said once per dedup window, and nothing else fires.
    let alerts = f.alerts.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].rule, Rule::DetectorSaturated);
    // A real attack after the flood is still seen.
    for _ in 0..10 {
        f.feed(login_fail(&f, "ada", ip(1))).await;
    }
    assert_eq!(f.fired(Rule::BruteForce).len(), 1);
}

#[tokio::test]
async fn a_flood_of_invented_names_mid_attack_does_not_wipe_the_victims_window() {
    let f = fixture(DetectorConfig {
        max_keys: 100,
        ..DetectorConfig::default()
    });
    for _ in 0..6 {
        f.feed(login_fail(&f, "ada", ip(1))).await;
    }
    // The attacker floods with invented accounts (one failure each) to evict ada's window.
    for n in 0..5_000u32 {
        f.feed(login_fail(&f, &format!("x{n}"), ip(1000 + n))).await;
    }
    assert_eq!(
        f.fired(Rule::DetectorSaturated).len(),
        1,
        "the flood is visible"
    );
    for _ in 0..4 {
        f.feed(login_fail(&f, "ada", ip(1))).await;
    }
    let fired = f.fired(Rule::BruteForce);
    assert_eq!(fired.len(), 1, "6 + 4 failures on ada are still counted");
    assert_eq!(fired[0].subject, Subject::Account(user("ada")));
    assert_eq!(fired[0].count, 10);
}

#[tokio::test]
async fn expired_windows_are_evicted_before_live_ones_without_a_saturation_alert() {
    let f = fixture(DetectorConfig {
        max_keys: 100,
        ..DetectorConfig::default()
    });
    for n in 0..100u32 {
        f.feed(login_fail(&f, &format!("old{n}"), ip(n))).await;
    }
    f.clock.advance(Duration::from_secs(3600));
    for n in 0..100u32 {
        f.feed(login_fail(&f, &format!("new{n}"), ip(500 + n)))
            .await;
    }
    assert!(f.alerts.alerts().is_empty(), "{:?}", f.alerts.alerts());
}

fn privilege_change(f: &Fixture, actor: &str, target: Option<&str>) -> SecurityEvent {
    let e = SecurityEvent::new(
        EventKind::PrivilegePermissionsChanged,
        Outcome::Success,
        f.clock.now(),
    )
    .with_user(user(actor));
    match target {
        Some(id) => e.with_resource(
            Label::new("role_binding").unwrap(),
            Some(ResourceId::new(id).unwrap()),
        ),
        None => e,
    }
}

#[tokio::test]
async fn one_alert_does_not_mute_another_about_something_else() {
    let f = fixture(DetectorConfig::default());
    // One admin changes two different bindings: two alerts, keyed on what changed.
    f.feed(privilege_change(&f, "root", Some("rb-1"))).await;
    f.feed(privilege_change(&f, "root", Some("rb-2"))).await;
    f.feed(privilege_change(&f, "root", Some("rb-1"))).await;
    let fired = f.fired(Rule::PrivilegeChange);
    let subjects: Vec<_> = fired.iter().map(|a| a.subject.clone()).collect();
    assert_eq!(
        subjects,
        [
            Subject::Resource(ResourceId::new("rb-1").unwrap()),
            Subject::Resource(ResourceId::new("rb-2").unwrap()),
        ],
        "the repeat on rb-1 is deduplicated, rb-2 is not muted by it"
    );
    // Token reuse with nothing to name it by: critical and about Unknown, never muted.
    for _ in 0..2 {
        let reuse = SecurityEvent::new(EventKind::AuthnTokenReuse, Outcome::Failure, f.clock.now());
        f.feed(reuse).await;
    }
    let reuse = f.fired(Rule::TokenReuse);
    assert_eq!(reuse.len(), 2);
    assert!(reuse.iter().all(|a| a.subject == Subject::Unknown));
    // Critical alerts about the same family are not deduplicated either.
    for _ in 0..2 {
        let reuse = SecurityEvent::new(EventKind::AuthnTokenReuse, Outcome::Failure, f.clock.now())
            .with_resource(
                Label::new("refresh_family").unwrap(),
                Some(ResourceId::new("fam-9").unwrap()),
            );
        f.feed(reuse).await;
    }
    assert_eq!(f.fired(Rule::TokenReuse).len(), 4);
}

#[tokio::test]
async fn with_a_pseudonymizer_alerts_never_carry_the_address() {
    let clock = ManualClock::at_unix(1_767_225_600);
    let alerts = MemoryAlertSink::new();
    let pseudonymizer =
        Arc::new(Pseudonymizer::new(&mcpsec_core::SecretBytes::random(32).unwrap()).unwrap());
    let detector = Detector::new(DetectorConfig::default(), Arc::new(clock.clone()))
        .with_alert_sink(Arc::new(alerts.clone()))
        .with_pseudonymizer(pseudonymizer.clone());
    let source = ip(9);
    for n in 0..10 {
        let e = SecurityEvent::new(EventKind::AuthnLoginFail, Outcome::Failure, clock.now())
            .with_user(user(&format!("acct-{n}")))
            .with_source(source);
        detector.record(e).await.unwrap();
    }
    for _ in 0..5 {
        let e = SecurityEvent::new(
            EventKind::ExcessRateLimitExceeded,
            Outcome::Failure,
            clock.now(),
        )
        .with_source(source);
        detector.record(e).await.unwrap();
    }
    let fired = alerts.alerts();
    let rules: Vec<_> = fired.iter().map(|a| a.rule).collect();
    assert_eq!(rules, [Rule::CredentialStuffing, Rule::RateLimit]);
    for alert in &fired {
        assert_eq!(
            alert.subject,
            Subject::SourcePseudonym(pseudonymizer.pseudonym(source))
        );
        let json = serde_json::to_string(alert).unwrap();
        assert!(!json.contains(&source.to_string()), "{json}");
        assert!(json.contains("source_pseudonym"), "{json}");
    }
}
