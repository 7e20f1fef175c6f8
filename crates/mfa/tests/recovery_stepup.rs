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
use mcpsec_core::{EventKind, Label, ManualClock, MemorySink, OrgId, SecretBytes, TokenId, UserId};
use mcpsec_mfa::{
    CODES_PER_SET, ChallengeKey, CodeHash, EmailAddress, EmailCodePolicy, EmailCodes, Error,
    Factor, MemoryEmailCodeStore, MemoryOutbox, MemoryRecoveryStore, MemoryReplayGuard,
    RecoveryCodeStore, RecoveryCodes, Requirement, StepUpPolicy, StoreError, TotpConfig,
    TotpSecret, TotpVerifier,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod support;

mcpsec_mfa::totp_replay_guard_suite!(
    memory_replay_guard,
    |_: mcpsec_core::testkit::Namespace| async {
        Arc::new(MemoryReplayGuard::new()) as Arc<dyn mcpsec_mfa::TotpReplayGuard>
    }
);

mcpsec_mfa::recovery_store_suite!(
    memory_recovery_store,
    |_: mcpsec_core::testkit::Namespace| async {
        Arc::new(MemoryRecoveryStore::new()) as Arc<dyn RecoveryCodeStore>
    }
);

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
    let set = codes.regenerate(&support::own(&ada)).await.unwrap();
    assert_eq!(set.len(), CODES_PER_SET);
    for code in &set {
        let text = code.expose_secret();
        assert_eq!(text.len(), 23, "xxxxx-xxxxx-xxxxx-xxxxx");
        assert_eq!(text.matches('-').count(), 3);
    }
    assert_eq!(
        codes
            .redeem(&ada, set[0].expose_secret())
            .await
            .unwrap()
            .remaining,
        9
    );
    assert_eq!(
        codes.redeem(&ada, set[0].expose_secret()).await,
        Err(Error::InvalidRecoveryCode)
    );
    // Normalisation: lower case, no dashes, spaces.
    let relaxed = set[1].expose_secret().to_lowercase().replace('-', " ");
    assert_eq!(codes.redeem(&ada, &relaxed).await.unwrap().remaining, 8);
    assert_eq!(
        codes
            .redeem(&UserId::new("bob").unwrap(), set[2].expose_secret())
            .await,
        Err(Error::InvalidRecoveryCode)
    );
    let fresh = codes.regenerate(&support::own(&ada)).await.unwrap();
    assert_eq!(
        codes.redeem(&ada, set[3].expose_secret()).await,
        Err(Error::InvalidRecoveryCode),
        "old set gone"
    );
    assert_eq!(codes.remaining(&ada).await.unwrap(), 10);
    assert_eq!(
        codes
            .redeem(&ada, fresh[0].expose_secret())
            .await
            .unwrap()
            .remaining,
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

/// A recovery store that records what it is given and whose `consume_once` holds its
/// first `n` callers until all `n` are inside it.
#[derive(Debug)]
struct SuspendingRecoveryStore {
    inner: MemoryRecoveryStore,
    gate: Arc<support::Gate>,
    written: Mutex<Vec<(UserId, Vec<CodeHash>)>>,
}

impl SuspendingRecoveryStore {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryRecoveryStore::new(),
            gate: support::Gate::new(n),
            written: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait::async_trait]
impl RecoveryCodeStore for SuspendingRecoveryStore {
    async fn replace_set(
        &self,
        tenant: &mcpsec_access::Principal,
        hashes: Vec<CodeHash>,
    ) -> Result<(), StoreError> {
        self.written
            .lock()
            .unwrap()
            .push((tenant.subject().clone(), hashes.clone()));
        self.inner.replace_set(tenant, hashes).await
    }

    async fn consume_once(&self, user: &UserId, hash: &CodeHash) -> Result<bool, StoreError> {
        let result = self.inner.consume_once(user, hash).await;
        self.gate.pass().await;
        result
    }

    async fn remaining(&self, user: &UserId) -> Result<usize, StoreError> {
        self.inner.remaining(user).await
    }
}

fn codes_in(store: Arc<dyn RecoveryCodeStore>) -> RecoveryCodes {
    RecoveryCodes::new(
        store,
        SecretBytes::from_slice(&[3; 32]),
        Arc::new(MemorySink::new()),
        Arc::new(ManualClock::at_unix(0)),
    )
    .unwrap()
}

/// Both redemptions are inside the store's `consume_once` at once, on a multi-thread
/// runtime: the store's atomicity is what is tested, not the scheduler's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_code_used_twice_concurrently_succeeds_once() {
    let codes = codes_in(SuspendingRecoveryStore::new(2));
    let ada = UserId::new("ada").unwrap();
    let set = codes.regenerate(&support::own(&ada)).await.unwrap();
    let code = Arc::new(set[0].expose_secret().to_owned());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let (codes, code) = (codes.clone(), Arc::clone(&code));
        tasks.spawn(async move { codes.redeem(&UserId::new("ada").unwrap(), &code).await });
    }
    let mut wins = 0;
    while let Some(result) = tasks.join_next().await {
        wins += usize::from(result.unwrap().is_ok());
    }
    assert_eq!(wins, 1);
}

/// Issue 12 item 18: someone who can write the store copies ada's hashes into mallory's
/// set; ada's codes must not then work for mallory.
#[tokio::test]
async fn recovery_hashes_cannot_be_copied_between_users() {
    let store = SuspendingRecoveryStore::new(0);
    let codes = codes_in(store.clone());
    let ada = UserId::new("ada").unwrap();
    let mallory = UserId::new("mallory").unwrap();
    let set = codes.regenerate(&support::own(&ada)).await.unwrap();
    let ada_hashes = store.written.lock().unwrap()[0].1.clone();
    store
        .inner
        .replace_set(&support::as_user(&mallory), ada_hashes)
        .await
        .unwrap();
    assert!(
        codes
            .redeem(&mallory, set[0].expose_secret())
            .await
            .is_err(),
        "ada's recovery code worked for mallory after her hashes were copied"
    );
    // The key version is bound too: a set made under version 1 does not redeem under
    // version 2, even with the same key bytes.
    let v2 = codes_in(store.clone()).with_key_version(2);
    assert_eq!(
        v2.redeem(&ada, set[1].expose_secret()).await.map(|_| ()),
        Err(Error::InvalidRecoveryCode)
    );
    assert!(codes.redeem(&ada, set[1].expose_secret()).await.is_ok());
}

fn principal(methods: &[AuthMethod], at: SystemTime) -> Principal {
    mcpsec_access::danger::principal(
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
    let passkey = principal(&[AuthMethod::Hwk, AuthMethod::User], now);
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
        &[AuthMethod::User],
        // `mfa` says "more than one factor" without saying which: not accepted alone.
        &[AuthMethod::Mfa],
        &[AuthMethod::Hwk, AuthMethod::Mfa],
    ] {
        assert!(
            policy.check(&principal(methods, now), admin, now).is_err(),
            "{methods:?}"
        );
    }
    for methods in [
        &[AuthMethod::Hwk, AuthMethod::User][..],
        &[AuthMethod::Pwd, AuthMethod::Otp],
        &[AuthMethod::Otp],
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
    let unknown = mcpsec_access::danger::principal(
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

/// Issue 12 item 17: a host that marks "pwd + email code" as `mfa` (two factors) must not
/// thereby satisfy an administrative step-up: the policy names the methods it accepts,
/// and an email code is accepted for admin actions only with the `danger_` option.
#[test]
fn email_never_satisfies_admin_step_up() {
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let policy = StepUpPolicy::new();
    for methods in [
        &[AuthMethod::Email][..],
        &[AuthMethod::Pwd, AuthMethod::Email],
        &[AuthMethod::Pwd, AuthMethod::Email, AuthMethod::Mfa],
        &[AuthMethod::Email, AuthMethod::Mfa],
    ] {
        for action in Action::ALL.into_iter().filter(|a| a.is_admin()) {
            assert!(
                policy.check(&principal(methods, now), action, now).is_err(),
                "{methods:?} satisfied step-up for {action}"
            );
        }
    }
    // A requirement a host writes for an admin action cannot let email in by itself,
    // and an empty method set accepts nobody.
    let email_requirement = Requirement {
        accepted: vec![AuthMethods::of(&[AuthMethod::Email]), AuthMethods::EMPTY],
        ..Requirement::admin()
    };
    let written = StepUpPolicy::new().require(Action::OrgManageMembers, Some(email_requirement));
    for methods in [
        &[AuthMethod::Pwd, AuthMethod::Email][..],
        &[AuthMethod::Pwd],
    ] {
        assert!(
            written
                .check(&principal(methods, now), Action::OrgManageMembers, now)
                .is_err(),
            "{methods:?}"
        );
    }
    let lenient = StepUpPolicy::new().danger_accept_email_codes_for_admin_actions();
    assert!(
        lenient
            .check(
                &principal(&[AuthMethod::Pwd, AuthMethod::Email], now),
                Action::OrgManageMembers,
                now
            )
            .is_ok()
    );
}

/// Issue 12 item 17: each verification returns the `amr` it establishes, and a session
/// built from those values (never written by hand) meets the step-up policy exactly when
/// the factor is strong enough: TOTP and recovery codes yes, email codes no.
#[tokio::test]
async fn each_factor_reports_its_amr_and_step_up_follows_it() {
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let clock = ManualClock::at_unix(1_767_225_600);
    let ada = UserId::new("ada").unwrap();
    let pwd = AuthMethods::of(&[AuthMethod::Pwd]);
    let admin = Action::OrgManageMembers;
    let policy = StepUpPolicy::new();
    let session = |methods: AuthMethods| {
        mcpsec_access::danger::principal(
            ada.clone(),
            OrgId::new("acme").unwrap(),
            Role::OrgAdmin,
            ScopeSet::ALL,
            CredentialKind::Session,
            Authentication {
                at: Some(now),
                methods,
            },
        )
    };

    let verifier = TotpVerifier::new(
        Arc::new(MemoryReplayGuard::new()),
        Arc::new(MemorySink::new()),
        Arc::new(clock.clone()),
        TotpConfig::default(),
    );
    let secret = TotpSecret::generate().unwrap();
    let code = secret
        .code_at(TotpConfig::default(), 1_767_225_600)
        .unwrap();
    let totp = verifier
        .verify(&ada, &secret, code.expose_secret())
        .await
        .unwrap();
    assert_eq!(totp.factor(), Factor::Totp);
    assert_eq!(totp.amr(), AuthMethods::of(&[AuthMethod::Otp]));
    assert!(
        policy
            .check(&session(totp.added_to(pwd)), admin, now)
            .is_ok()
    );

    let (recovery, _) = codes();
    let set = recovery.regenerate(&support::own(&ada)).await.unwrap();
    let redeemed = recovery.redeem(&ada, set[0].expose_secret()).await.unwrap();
    assert_eq!(redeemed.verified.factor(), Factor::RecoveryCode);
    assert_eq!(redeemed.verified.amr(), AuthMethods::of(&[AuthMethod::Otp]));
    assert!(
        policy
            .check(&session(redeemed.verified.added_to(pwd)), admin, now)
            .is_ok()
    );

    let outbox = Arc::new(MemoryOutbox::new());
    let email = EmailCodes::new(
        Arc::new(MemoryEmailCodeStore::new()),
        outbox.clone(),
        SecretBytes::from_slice(&[4; 32]),
        Arc::new(MemorySink::new()),
        Arc::new(clock.clone()),
        EmailCodePolicy::default(),
    )
    .unwrap();
    let key = ChallengeKey {
        user: ada.clone(),
        purpose: Label::new("login").unwrap(),
        flow: TokenId::new("f1").unwrap(),
    };
    let to = EmailAddress::new("ada@example.com").unwrap();
    email.send(&key, &to).await.unwrap();
    let sent = outbox.last_code_to(&to).unwrap();
    let by_email = email.verify(&key, sent.expose_secret()).await.unwrap();
    assert_eq!(by_email.factor(), Factor::EmailCode);
    assert_eq!(by_email.amr(), AuthMethods::of(&[AuthMethod::Email]));
    assert!(
        policy
            .check(&session(by_email.added_to(pwd)), admin, now)
            .is_err(),
        "password + email code is not enough for an admin action"
    );
    assert!(
        policy
            .check(&session(by_email.added_to(pwd)), Action::McpUse, now)
            .is_ok(),
        "no step-up needed for an ordinary action"
    );
}

/// Regeneration takes the user from the proof (before issue 13 it took a bare `UserId`, so
/// a handler could regenerate, and see, anyone's codes): ada's proof makes ada's codes,
/// which do nothing for bob.
#[tokio::test]
async fn recovery_codes_are_regenerated_for_the_proofs_subject_only() {
    let (codes, _) = codes();
    let ada = UserId::new("ada").unwrap();
    let bob = UserId::new("bob").unwrap();
    let set = codes.regenerate(&support::own(&ada)).await.unwrap();
    assert_eq!(codes.remaining(&bob).await.unwrap(), 0);
    assert!(codes.redeem(&bob, set[0].expose_secret()).await.is_err());
    assert!(codes.redeem(&ada, set[0].expose_secret()).await.is_ok());
}
