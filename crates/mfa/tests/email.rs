//! Email codes: delivery, expiry, attempt cap, latest only, cooldown, purpose and flow
//! binding, and the store conformance suite.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use mcpsec_core::{EventKind, Label, ManualClock, MemorySink, SecretBytes, TokenId, UserId};
use mcpsec_mfa::{
    ChallengeKey, EmailAddress, EmailCodePolicy, EmailCodes, Error, MemoryEmailCodeStore,
    MemoryOutbox,
};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_conformance_suite() {
    mcpsec_mfa::testkit::email_code_store_conformance(|| Arc::new(MemoryEmailCodeStore::new()))
        .await;
}

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
    f.codes
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
    f.codes
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
    f.codes
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
