//! Recovery codes, step-up decisions, and the store conformance suites.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

use mcpsec_access::{
    Action, AuthMethod, AuthMethods, Authentication, CredentialKind, Principal, Role, ScopeSet,
};
use mcpsec_core::{EventKind, ManualClock, MemorySink, OrgId, SecretBytes, UserId};
use mcpsec_mfa::{
    CODES_PER_SET, Error, MemoryRecoveryStore, MemoryReplayGuard, RecoveryCodes, StepUpPolicy,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_stores_pass_the_conformance_suites() {
    mcpsec_mfa::testkit::replay_guard_conformance(|| Arc::new(MemoryReplayGuard::new())).await;
    mcpsec_mfa::testkit::recovery_store_conformance(|| Arc::new(MemoryRecoveryStore::new())).await;
}

fn codes() -> (RecoveryCodes, MemorySink) {
    let events = MemorySink::new();
    let codes = RecoveryCodes::new(
        Arc::new(MemoryRecoveryStore::new()),
        SecretBytes::from_slice(&[3; 32]),
        Arc::new(events.clone()),
        Arc::new(ManualClock::at_unix(0)),
    )
    .unwrap();
    (codes, events)
}

#[tokio::test]
async fn recovery_codes_are_single_use_and_regeneration_replaces_the_set() {
    let (codes, events) = codes();
    let ada = UserId::new("ada").unwrap();
    let set = codes.regenerate(&ada).await.unwrap();
    assert_eq!(set.len(), CODES_PER_SET);
    for code in &set {
        let text = code.expose_secret();
        assert_eq!(text.len(), 23, "xxxxx-xxxxx-xxxxx-xxxxx");
        assert_eq!(text.matches('-').count(), 3);
    }
    assert_eq!(codes.redeem(&ada, set[0].expose_secret()).await.unwrap(), 9);
    assert_eq!(
        codes.redeem(&ada, set[0].expose_secret()).await,
        Err(Error::InvalidRecoveryCode)
    );
    // Normalisation: lower case, no dashes, spaces.
    let relaxed = set[1].expose_secret().to_lowercase().replace('-', " ");
    assert_eq!(codes.redeem(&ada, &relaxed).await.unwrap(), 8);
    assert_eq!(
        codes
            .redeem(&UserId::new("bob").unwrap(), set[2].expose_secret())
            .await,
        Err(Error::InvalidRecoveryCode)
    );
    let fresh = codes.regenerate(&ada).await.unwrap();
    assert_eq!(
        codes.redeem(&ada, set[3].expose_secret()).await,
        Err(Error::InvalidRecoveryCode),
        "old set gone"
    );
    assert_eq!(codes.remaining(&ada).await.unwrap(), 10);
    assert_eq!(
        codes.redeem(&ada, fresh[0].expose_secret()).await.unwrap(),
        9
    );
    let used = events
        .events()
        .iter()
        .filter(|e| e.kind == EventKind::AuthnMfaRecoveryUsed)
        .count();
    assert_eq!(used, 3);
    let json = serde_json::to_string(&events.events()).unwrap();
    assert!(
        set.iter()
            .chain(&fresh)
            .all(|c| !json.contains(c.expose_secret()))
    );
}

#[tokio::test]
async fn recovery_code_used_twice_concurrently_succeeds_once() {
    let (codes, _) = codes();
    let ada = UserId::new("ada").unwrap();
    let set = codes.regenerate(&ada).await.unwrap();
    let code = set[0].expose_secret().to_owned();
    let (a, b) = tokio::join!(codes.redeem(&ada, &code), codes.redeem(&ada, &code));
    assert_eq!(usize::from(a.is_ok()) + usize::from(b.is_ok()), 1);
}

fn principal(methods: &[AuthMethod], at: SystemTime) -> Principal {
    Principal::new(
        UserId::new("ada").unwrap(),
        OrgId::new("acme").unwrap(),
        Role::OrgAdmin,
        ScopeSet::ALL,
        CredentialKind::AccessToken,
        Authentication {
            at: Some(at),
            methods: AuthMethods::of(methods),
        },
    )
}

#[test]
fn step_up_for_every_action() {
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let policy = StepUpPolicy::new();
    let fresh_otp = principal(
        &[AuthMethod::Pwd, AuthMethod::Otp],
        now - Duration::from_secs(60),
    );
    let stale_otp = principal(
        &[AuthMethod::Pwd, AuthMethod::Otp],
        now - Duration::from_secs(16 * 60),
    );
    let password_only = principal(&[AuthMethod::Pwd], now);
    let email = principal(&[AuthMethod::Pwd, AuthMethod::Email], now);
    let passkey = principal(&[AuthMethod::Swk, AuthMethod::Mfa], now);
    let key_only: Vec<Principal> = [AuthMethod::Swk, AuthMethod::Hwk]
        .into_iter()
        .map(|m| principal(&[m], now))
        .collect();
    for action in Action::ALL {
        let admin = action.is_admin();
        assert!(policy.check(&fresh_otp, action, now).is_ok(), "{action}");
        assert!(policy.check(&passkey, action, now).is_ok(), "{action}");
        for p in &key_only {
            assert_eq!(
                policy.check(p, action, now).is_err(),
                admin,
                "swk/hwk alone prove possession only: {action}"
            );
        }
        assert_eq!(
            policy.check(&stale_otp, action, now).is_err(),
            admin,
            "{action}"
        );
        assert_eq!(
            policy.check(&password_only, action, now).is_err(),
            admin,
            "{action}"
        );
        assert_eq!(
            policy.check(&email, action, now).is_err(),
            admin,
            "email is weaker: {action}"
        );
    }
    let challenge = policy
        .check(&password_only, Action::OrgManageMembers, now)
        .unwrap_err();
    assert_eq!(challenge.acr_values, mcpsec_mfa::DEFAULT_ACR);
    assert_eq!(challenge.max_age, Duration::from_secs(900));
    let lenient = StepUpPolicy::new().danger_accept_email_codes_for_admin_actions();
    assert!(lenient.check(&email, Action::OrgManageMembers, now).is_ok());
    let custom = StepUpPolicy::new().require(Action::OrgManageMembers, None);
    assert!(
        custom
            .check(&password_only, Action::OrgManageMembers, now)
            .is_ok()
    );
}

#[test]
fn key_possession_alone_does_not_satisfy_step_up() {
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let policy = StepUpPolicy::new();
    let admin = Action::OrgManageMembers;
    for methods in [
        &[AuthMethod::Swk][..],
        &[AuthMethod::Hwk],
        &[AuthMethod::Pwd, AuthMethod::Hwk],
    ] {
        assert!(
            policy.check(&principal(methods, now), admin, now).is_err(),
            "{methods:?}"
        );
    }
    for methods in [
        &[AuthMethod::Hwk, AuthMethod::Mfa][..],
        &[AuthMethod::Pwd, AuthMethod::Otp],
        &[AuthMethod::Mfa],
    ] {
        assert!(
            policy.check(&principal(methods, now), admin, now).is_ok(),
            "{methods:?}"
        );
    }
}

/// Issue 12 item 5: a principal whose authentication time is unknown (a token without
/// `auth_time`, an API key) never passes a recency check, whatever its methods say.
#[test]
fn missing_auth_time_fails_step_up() {
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let policy = StepUpPolicy::new();
    let unknown = Principal::new(
        UserId::new("ada").unwrap(),
        OrgId::new("acme").unwrap(),
        Role::OrgAdmin,
        ScopeSet::ALL,
        CredentialKind::AccessToken,
        Authentication {
            at: None,
            methods: AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp, AuthMethod::Mfa]),
        },
    );
    for action in Action::ALL.into_iter().filter(|a| a.is_admin()) {
        assert!(policy.check(&unknown, action, now).is_err(), "{action}");
    }
}
