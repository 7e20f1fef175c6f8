//! Detection rules fed by the real API key and MFA services (issue 12 item 25): the
//! events these services emit, not hand-built ones, must raise the alerts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use mcpsec_apikeys::{
    ApiKeys, Env, HashMode, KeyHasher, MemoryApiKeyStore, NewKey, Pepper, Source,
};
use mcpsec_core::{KeyId, ManualClock, OrgId, SecretString, UserId};
use mcpsec_detect::{Alert, Detector, DetectorConfig, MemoryAlertSink, Rule, Subject, Tier};
use mcpsec_mfa::{MemoryReplayGuard, TotpConfig, TotpSecret, TotpVerifier};
use std::net::IpAddr;
use std::sync::Arc;

fn with_checksum(body: &str) -> String {
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = crc32fast::hash(body.as_bytes());
    let mut sum = [b'0'; 6];
    for slot in sum.iter_mut().rev() {
        *slot = B62[(n % 62) as usize];
        n /= 62;
    }
    format!("{body}{}", std::str::from_utf8(&sum).unwrap())
}

/// Same id, another secret, valid checksum: what a stuffing list holds.
fn wrong_secret_for(key: &SecretString) -> String {
    let text = key.expose_secret();
    let body = &text[..text.len() - 6];
    let (head, secret) = body.split_at(body.len() - 43);
    with_checksum(&format!("{head}{}", "Z".repeat(secret.len())))
}

struct Fixture {
    clock: Arc<ManualClock>,
    alerts: MemoryAlertSink,
    detector: Arc<Detector>,
}

fn fixture() -> Fixture {
    let clock = Arc::new(ManualClock::at_unix(1_767_225_600));
    let alerts = MemoryAlertSink::new();
    let detector = Arc::new(
        Detector::new(DetectorConfig::default(), clock.clone())
            .with_alert_sink(Arc::new(alerts.clone())),
    );
    Fixture {
        clock,
        alerts,
        detector,
    }
}

fn api_keys(f: &Fixture) -> ApiKeys {
    let hasher =
        KeyHasher::new(Pepper::generate(1).unwrap(), vec![], HashMode::HmacSha256).unwrap();
    let members = mcpsec_access::MemoryMemberships::new();
    let owners = (0..12)
        .map(|i| format!("owner-{i}"))
        .chain(["bob".to_owned()]);
    for owner in owners {
        members.set(
            UserId::new(&owner).unwrap(),
            OrgId::new("acme").unwrap(),
            mcpsec_access::Role::Developer,
        );
    }
    ApiKeys::builder(
        Arc::new(MemoryApiKeyStore::new()),
        Arc::new(members),
        hasher,
        f.detector.clone(),
    )
    .clock(f.clock.clone())
    .build()
    .unwrap()
}

async fn create(keys: &ApiKeys, owner: &str) -> (SecretString, KeyId) {
    use mcpsec_access::{
        AuthMethods, Authentication, CredentialKind, Resource, Role, ScopeSet, authorize_as, perm,
    };
    let owner = UserId::new(owner).unwrap();
    let caller = mcpsec_access::danger::principal(
        owner.clone(),
        OrgId::new("acme").unwrap(),
        Role::Developer,
        ScopeSet::parse_strict("user:token mcp:read").unwrap(),
        CredentialKind::AccessToken,
        Authentication {
            at: None,
            methods: AuthMethods::EMPTY,
        },
    );
    let proof = authorize_as::<perm::UserManageTokens>(&caller, &Resource::own(&caller)).unwrap();
    let (key, record) = keys
        .create(
            &proof,
            NewKey {
                owner: owner.clone(),
                org: OrgId::new("acme").unwrap(),
                scopes: "mcp:read".into(),
                env: Env::Live,
                name: "ci".into(),
                expires_at: None,
            },
        )
        .await
        .unwrap();
    (key, record.id)
}

fn about(alerts: &[Alert], subject: &Subject) -> Vec<Alert> {
    alerts
        .iter()
        .filter(|a| &a.subject == subject)
        .cloned()
        .collect()
}

fn rules(alerts: &[Alert]) -> Vec<(Rule, Tier)> {
    alerts.iter().map(|a| (a.rule, a.tier)).collect()
}

/// Item 25: one source tries twelve leaked key ids, one guess each. No account is
/// involved (API key failures carry no owner) and no id is hammered, so before this
/// rule nothing fired; the service's own source lock went unread as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_stuffing_from_one_source_raises_an_alert() {
    let f = fixture();
    let keys = api_keys(&f);
    let mut leaked = Vec::new();
    for i in 0..12 {
        leaked.push(create(&keys, &format!("owner-{i}")).await.0);
    }
    let attacker: IpAddr = "203.0.113.9".parse().unwrap();
    for key in &leaked {
        let guess = wrong_secret_for(key);
        assert!(keys.verify(&guess, &Source::Ip(attacker)).await.is_err());
    }
    let alerts = about(&f.alerts.alerts(), &Subject::Source(attacker));
    assert!(
        !alerts.is_empty(),
        "twelve key ids stuffed from one source raised no alert: {:?}",
        f.alerts.alerts()
    );
    // The service locked the source at its tenth failure; the tenth distinct id is the
    // stuffing threshold. Each alert once (deduplicated), nothing about any owner.
    assert_eq!(
        rules(&alerts),
        [
            (Rule::LoginLock, Tier::High),
            (Rule::ApiKeyStuffing, Tier::High)
        ]
    );
    assert_eq!(alerts[1].count, 10);
    assert_eq!(f.alerts.alerts().len(), 2, "{:?}", f.alerts.alerts());
}

/// Item 25: the services' own limit events (`authn_login_fail_max`: a user's TOTP
/// budget spent, a key id's wrong-secret alert threshold reached) raise alerts about
/// that account or key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_limit_events_from_the_services_raise_alerts() {
    let f = fixture();
    let totp = TotpVerifier::new(
        Arc::new(MemoryReplayGuard::new()),
        f.detector.clone(),
        f.clock.clone(),
        TotpConfig::default(),
    );
    let ada = UserId::new("ada").unwrap();
    let secret = TotpSecret::generate().unwrap();
    let right = secret
        .code_at(
            TotpConfig::default(),
            mcpsec_core::Clock::unix_seconds(&*f.clock),
        )
        .unwrap();
    let wrong = if right.expose_secret() == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..5 {
        assert!(totp.verify(&ada, &secret, wrong).await.is_err());
    }
    let alerts = about(&f.alerts.alerts(), &Subject::Account(ada));
    assert!(
        !alerts.is_empty(),
        "a spent TOTP budget raised no alert: {:?}",
        f.alerts.alerts()
    );
    assert_eq!(rules(&alerts), [(Rule::FailureLimit, Tier::High)]);

    // An id whose secret is being guessed from several sources: the API key service's
    // alert threshold (5 wrong secrets) is a failure limit about that key id.
    let keys = api_keys(&f);
    let (key, id) = create(&keys, "bob").await;
    let guess = wrong_secret_for(&key);
    for n in 1..=5u8 {
        let source = Source::Ip(IpAddr::from([198, 51, 100, n]));
        assert!(keys.verify(&guess, &source).await.is_err());
    }
    let alerts = about(&f.alerts.alerts(), &Subject::ApiKey(id));
    assert!(
        rules(&alerts).contains(&(Rule::FailureLimit, Tier::High)),
        "{alerts:?}"
    );
}
