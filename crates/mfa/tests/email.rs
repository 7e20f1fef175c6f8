//! Email codes: delivery, expiry, attempt cap, latest only, cooldown, purpose and flow
//! binding, and the store conformance suite.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use mcpsec_core::{EventKind, Label, ManualClock, MemorySink, SecretBytes, TokenId, UserId};
use mcpsec_mfa::{
    AttemptOutcome, ChallengeKey, ChallengeRecord, Cooldown, EmailAddress, EmailCodePolicy,
    EmailCodeStore, EmailCodes, Error, MemoryEmailCodeStore, MemoryOutbox, StoreError,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

mod support;

mcpsec_mfa::email_code_store_suite!(memory_store, |_: mcpsec_core::testkit::Namespace| async {
    Arc::new(MemoryEmailCodeStore::new()) as Arc<dyn EmailCodeStore>
});

struct Fixture {
    codes: EmailCodes,
    outbox: Arc<MemoryOutbox>,
    clock: ManualClock,
    events: MemorySink,
    to: EmailAddress,
}

fn fixture() -> Fixture {
    let clock = ManualClock::at_unix(1_767_225_600);
    let outbox = Arc::new(MemoryOutbox::new());
    let events = MemorySink::new();
    let codes = EmailCodes::new(
        Arc::new(MemoryEmailCodeStore::new()),
        outbox.clone(),
        SecretBytes::from_slice(&[4; 32]),
        Arc::new(events.clone()),
        Arc::new(clock.clone()),
        EmailCodePolicy::default(),
    )
    .unwrap();
    Fixture {
        codes,
        outbox,
        clock,
        events,
        to: EmailAddress::new("ada@example.com").unwrap(),
    }
}

fn key(purpose: &str, flow: &str) -> ChallengeKey {
    ChallengeKey {
        user: UserId::new("ada").unwrap(),
        purpose: Label::new(purpose).unwrap(),
        flow: TokenId::new(flow).unwrap(),
    }
}

#[tokio::test]
async fn a_sent_code_verifies_once() {
    let f = fixture();
    f.codes.send(&key("login", "f1"), &f.to).await.unwrap();
    let code = f.outbox.last_code_to(&f.to).unwrap();
    assert_eq!(code.expose_secret().len(), 6);
    assert!(code.expose_secret().bytes().all(|b| b.is_ascii_digit()));
    let _email = f
        .codes
        .verify(&key("login", "f1"), code.expose_secret())
        .await
        .unwrap();
    assert_eq!(
        f.codes
            .verify(&key("login", "f1"), code.expose_secret())
            .await,
        Err(Error::WrongCode)
    );
    let json = serde_json::to_string(&f.events.events()).unwrap();
    assert!(!json.contains(code.expose_secret()) && !json.contains("ada@example.com"));
    assert_eq!(format!("{:?}", f.to), "EmailAddress(***@example.com)");
}

#[tokio::test]
async fn codes_expire_after_ten_minutes() {
    let f = fixture();
    f.codes.send(&key("login", "f1"), &f.to).await.unwrap();
    let code = f.outbox.last_code_to(&f.to).unwrap();
    f.clock.advance(Duration::from_secs(600));
    assert_eq!(
        f.codes
            .verify(&key("login", "f1"), code.expose_secret())
            .await,
        Err(Error::CodeExpired)
    );
}

#[tokio::test]
async fn five_wrong_attempts_end_the_challenge() {
    let f = fixture();
    f.codes.send(&key("login", "f1"), &f.to).await.unwrap();
    let code = f.outbox.last_code_to(&f.to).unwrap();
    let wrong = if code.expose_secret() == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..5 {
        assert_eq!(
            f.codes.verify(&key("login", "f1"), wrong).await,
            Err(Error::WrongCode)
        );
    }
    assert!(matches!(
        f.codes
            .verify(&key("login", "f1"), code.expose_secret())
            .await,
        Err(Error::TooManyAttempts { .. })
    ));
    assert!(
        f.events
            .events()
            .iter()
            .all(|e| e.kind == EventKind::AuthnMfaFail)
    );
}

#[tokio::test]
async fn only_the_latest_code_works_and_resend_has_a_cooldown() {
    let f = fixture();
    f.codes.send(&key("login", "f1"), &f.to).await.unwrap();
    let first = f.outbox.last_code_to(&f.to).unwrap();
    assert_eq!(
        f.codes.send(&key("login", "f1"), &f.to).await,
        Err(Error::Cooldown {
            retry_after: Duration::from_secs(60)
        })
    );
    assert!(
        matches!(
            f.codes.send(&key("login", "f2"), &f.to).await,
            Err(Error::Cooldown { .. })
        ),
        "per user and purpose, not per flow"
    );
    f.clock.advance(Duration::from_secs(60));
    f.codes.send(&key("login", "f1"), &f.to).await.unwrap();
    let second = f.outbox.last_code_to(&f.to).unwrap();
    assert_eq!(f.outbox.len(), 2);
    if first.expose_secret() != second.expose_secret() {
        assert_eq!(
            f.codes
                .verify(&key("login", "f1"), first.expose_secret())
                .await,
            Err(Error::WrongCode)
        );
    }
    let _email = f
        .codes
        .verify(&key("login", "f1"), second.expose_secret())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_code_is_bound_to_its_purpose_and_flow() {
    let f = fixture();
    f.codes.send(&key("login", "f1"), &f.to).await.unwrap();
    let code = f.outbox.last_code_to(&f.to).unwrap();
    assert_eq!(
        f.codes
            .verify(&key("change_email", "f1"), code.expose_secret())
            .await,
        Err(Error::WrongCode)
    );
    assert_eq!(
        f.codes
            .verify(&key("login", "f2"), code.expose_secret())
            .await,
        Err(Error::WrongCode)
    );
    let _email = f
        .codes
        .verify(&key("login", "f1"), code.expose_secret())
        .await
        .unwrap();
}

#[test]
fn policy_and_addresses_are_validated() {
    let make = |policy| {
        EmailCodes::new(
            Arc::new(MemoryEmailCodeStore::new()),
            Arc::new(MemoryOutbox::new()),
            SecretBytes::from_slice(&[4; 32]),
            Arc::new(MemorySink::new()),
            Arc::new(ManualClock::at_unix(0)),
            policy,
        )
    };
    assert!(
        make(EmailCodePolicy {
            digits: 4,
            ..EmailCodePolicy::default()
        })
        .is_err()
    );
    assert!(
        make(EmailCodePolicy {
            ttl: Duration::from_secs(3600),
            ..EmailCodePolicy::default()
        })
        .is_err()
    );
    for bad in ["", "no-at", "a@@b", "a b@c", "@x", "x@"] {
        assert!(EmailAddress::new(bad).is_err(), "{bad}");
    }
}

/// Issue 12 item 16: each resend used to bring five fresh guesses, so an attacker who
/// can trigger sends guessed without end. Wrong codes are now counted per user across
/// every challenge.
#[tokio::test]
async fn email_failures_are_budgeted_per_user_across_challenges() {
    let f = fixture();
    let mut wrong_checked = 0;
    let mut refused = 0;
    for round in 0..12 {
        let key = key("login", &format!("f{round}"));
        f.codes.send(&key, &f.to).await.unwrap();
        let code = f.outbox.last_code_to(&f.to).unwrap();
        let wrong = if code.expose_secret() == "000000" {
            "111111"
        } else {
            "000000"
        };
        for _ in 0..5 {
            match f.codes.verify(&key, wrong).await.map(|_| ()) {
                Err(Error::WrongCode) => wrong_checked += 1,
                Err(Error::TooManyAttempts { .. }) => refused += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        f.clock.advance(Duration::from_secs(61));
    }
    assert!(
        wrong_checked <= 20,
        "{wrong_checked} wrong email codes checked for one user within 12 minutes"
    );
    assert_eq!(wrong_checked + refused, 60);
}

/// An email-code store whose first three calls all wait until three requests are inside
/// it: three sends racing through the cooldown check.
#[derive(Debug)]
struct SuspendingEmailStore {
    inner: MemoryEmailCodeStore,
    gate: Arc<support::Gate>,
}

#[async_trait::async_trait]
impl EmailCodeStore for SuspendingEmailStore {
    async fn put(&self, key: &ChallengeKey, record: ChallengeRecord) -> Result<(), StoreError> {
        let result = self.inner.put(key, record).await;
        self.gate.pass().await;
        result
    }

    async fn try_start_cooldown(
        &self,
        user: &UserId,
        purpose: &Label,
        now: SystemTime,
        until: SystemTime,
    ) -> Result<Cooldown, StoreError> {
        let result = self
            .inner
            .try_start_cooldown(user, purpose, now, until)
            .await;
        self.gate.pass().await;
        result
    }

    async fn attempt(
        &self,
        key: &ChallengeKey,
        candidate: &[u8; 32],
        now: SystemTime,
        max_attempts: u32,
    ) -> Result<AttemptOutcome, StoreError> {
        let result = self.inner.attempt(key, candidate, now, max_attempts).await;
        self.gate.pass().await;
        result
    }
}

/// Issue 12 item 16: three concurrent sends inside the cooldown send one email.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_inside_the_cooldown_send_one_email() {
    let clock = ManualClock::at_unix(1_767_225_600);
    let outbox = Arc::new(MemoryOutbox::new());
    let store = Arc::new(SuspendingEmailStore {
        inner: MemoryEmailCodeStore::new(),
        gate: support::Gate::new(3),
    });
    let codes = EmailCodes::new(
        store,
        outbox.clone(),
        SecretBytes::from_slice(&[4; 32]),
        Arc::new(MemorySink::new()),
        Arc::new(clock.clone()),
        EmailCodePolicy::default(),
    )
    .unwrap();
    let to = EmailAddress::new("ada@example.com").unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for flow in ["f1", "f2", "f3"] {
        let (codes, to) = (codes.clone(), to.clone());
        tasks.spawn(async move { codes.send(&key("login", flow), &to).await });
    }
    let mut cooldowns = 0;
    while let Some(result) = tasks.join_next().await {
        if let Err(Error::Cooldown { .. }) = result.unwrap() {
            cooldowns += 1;
        }
    }
    assert_eq!(outbox.len(), 1, "emails sent by three concurrent sends");
    assert_eq!(cooldowns, 2);
}

/// Issue 12 item 16: the per-user budget is counted before each code is checked, so 30
/// concurrent wrong codes spread over six live challenges (five each, within every
/// challenge's own cap) check at most the user's 20, even when all 30 are inside a
/// shared counter at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn email_failure_budget_holds_under_a_concurrent_burst() {
    const GUESSES: usize = 30;
    let f = fixture();
    let counter = support::SuspendingCounter::new(GUESSES);
    let codes = f.codes.clone().with_attempt_counter(counter);
    let mut wrongs = Vec::new();
    for round in 0..6 {
        let key = key("login", &format!("f{round}"));
        codes.send(&key, &f.to).await.unwrap();
        let code = f.outbox.last_code_to(&f.to).unwrap();
        let wrong = if code.expose_secret() == "000000" {
            "111111"
        } else {
            "000000"
        };
        wrongs.push((key, wrong));
        f.clock.advance(Duration::from_secs(61));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (key, wrong) in &wrongs {
        for _ in 0..5 {
            let (codes, key, wrong) = (codes.clone(), key.clone(), *wrong);
            tasks.spawn(async move { codes.verify(&key, wrong).await.map(|_| ()) });
        }
    }
    let (mut checked, mut refused) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Err(Error::WrongCode) => checked += 1,
            Err(Error::TooManyAttempts { .. }) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        checked <= 20,
        "{checked} of {GUESSES} wrong email codes checked"
    );
    assert_eq!(checked + refused, GUESSES);
}
