//! Conformance suites for [`TotpReplayGuard`], [`RecoveryCodeStore`], email-code and
//! (with feature `passkeys`) passkey store backends (feature `testkit`). Call them from a
//! multi-threaded tokio test with a factory of fresh stores.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: failing loudly is its job"
)]

use crate::{EnrollmentId, RecoveryCodeStore, TotpReplayGuard};
use mcpsec_core::UserId;
use std::sync::Arc;

/// Checks a [`TotpReplayGuard`], including `totp_code_used_32_times_concurrently_succeeds_once`.
pub async fn replay_guard_conformance<F>(make: F)
where
    F: Fn() -> Arc<dyn TotpReplayGuard>,
{
    let guard = make();
    let alice = UserId::new("alice").unwrap();
    let bob = UserId::new("bob").unwrap();
    let (one, two) = (EnrollmentId([1; 16]), EnrollmentId([2; 16]));
    assert!(guard.record_step_if_newer(&alice, &one, 100).await.unwrap());
    assert!(
        !guard.record_step_if_newer(&alice, &one, 100).await.unwrap(),
        "the same step twice"
    );
    assert!(
        !guard.record_step_if_newer(&alice, &one, 99).await.unwrap(),
        "an older step"
    );
    assert!(guard.record_step_if_newer(&alice, &one, 101).await.unwrap());
    assert!(
        guard.record_step_if_newer(&bob, &one, 100).await.unwrap(),
        "users are separate"
    );
    assert!(
        guard.record_step_if_newer(&alice, &two, 101).await.unwrap(),
        "a new enrollment's first code is not a replay of the old one's"
    );
    assert!(
        !guard.record_step_if_newer(&alice, &two, 101).await.unwrap(),
        "each enrollment refuses its own replays"
    );

    let shared = make();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let g = Arc::clone(&shared);
        tasks.spawn(async move {
            g.record_step_if_newer(&UserId::new("carol").unwrap(), &EnrollmentId([3; 16]), 7)
                .await
                .unwrap()
        });
    }
    let mut wins = 0;
    while let Some(won) = tasks.join_next().await {
        wins += usize::from(won.expect("task"));
    }
    assert_eq!(
        wins, 1,
        "exactly one of 32 concurrent uses of a code succeeds"
    );
}

/// Checks a [`RecoveryCodeStore`], including
/// `recovery_code_used_twice_concurrently_succeeds_once` (with 32 uses).
pub async fn recovery_store_conformance<F>(make: F)
where
    F: Fn() -> Arc<dyn RecoveryCodeStore>,
{
    let store = make();
    let alice = UserId::new("alice").unwrap();
    assert_eq!(store.remaining(&alice).await.unwrap(), 0);
    store
        .replace_set(&alice, vec![[1; 32], [2; 32], [3; 32]])
        .await
        .unwrap();
    assert_eq!(store.remaining(&alice).await.unwrap(), 3);
    assert!(store.consume_once(&alice, &[2; 32]).await.unwrap());
    assert!(
        !store.consume_once(&alice, &[2; 32]).await.unwrap(),
        "single use"
    );
    assert!(
        !store
            .consume_once(&UserId::new("bob").unwrap(), &[1; 32])
            .await
            .unwrap(),
        "another user's code"
    );
    store.replace_set(&alice, vec![[9; 32]]).await.unwrap();
    assert!(
        !store.consume_once(&alice, &[1; 32]).await.unwrap(),
        "regeneration invalidates the old set"
    );
    assert_eq!(store.remaining(&alice).await.unwrap(), 1);

    let shared = make();
    let carol = UserId::new("carol").unwrap();
    shared.replace_set(&carol, vec![[5; 32]]).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let s = Arc::clone(&shared);
        tasks.spawn(async move {
            s.consume_once(&UserId::new("carol").unwrap(), &[5; 32])
                .await
                .unwrap()
        });
    }
    let mut wins = 0;
    while let Some(won) = tasks.join_next().await {
        wins += usize::from(won.expect("task"));
    }
    assert_eq!(
        wins, 1,
        "exactly one of 32 concurrent uses of a recovery code succeeds"
    );
}

/// Checks an [`EmailCodeStore`](crate::EmailCodeStore): latest-only, expiry, attempt cap,
/// 32 concurrent attempts with the right code of which exactly one is consumed, the
/// resend cooldown (per user and purpose, across flows, ends on time), and 32
/// concurrent cooldown claims of which exactly one starts it.
pub async fn email_code_store_conformance<F>(make: F)
where
    F: Fn() -> Arc<dyn crate::EmailCodeStore>,
{
    use crate::{AttemptOutcome, ChallengeKey, ChallengeRecord, Cooldown};
    use mcpsec_core::{Label, TokenId};
    use std::time::{Duration, UNIX_EPOCH};
    let t = |s: u64| UNIX_EPOCH + Duration::from_secs(1_767_225_600 + s);
    let key = |flow: &str| ChallengeKey {
        user: UserId::new("alice").unwrap(),
        purpose: Label::new("login").unwrap(),
        flow: TokenId::new(flow).unwrap(),
    };
    let record = |hash: u8, sent: u64| ChallengeRecord {
        hash: [hash; 32],
        sent_at: t(sent),
        expires_at: t(sent + 600),
        attempts: 0,
    };

    let store = make();
    assert_eq!(
        store.attempt(&key("f1"), &[1; 32], t(0), 5).await.unwrap(),
        AttemptOutcome::NotFound
    );
    store.put(&key("f1"), record(1, 0)).await.unwrap();
    store.put(&key("f1"), record(2, 10)).await.unwrap();
    assert_eq!(
        store.attempt(&key("f1"), &[1; 32], t(20), 5).await.unwrap(),
        AttemptOutcome::Wrong,
        "only the latest"
    );
    assert_eq!(
        store.attempt(&key("f1"), &[2; 32], t(20), 5).await.unwrap(),
        AttemptOutcome::Consumed
    );
    assert_eq!(
        store.attempt(&key("f1"), &[2; 32], t(21), 5).await.unwrap(),
        AttemptOutcome::NotFound,
        "single use"
    );

    store.put(&key("f2"), record(3, 0)).await.unwrap();
    assert_eq!(
        store
            .attempt(&key("f2"), &[3; 32], t(600), 5)
            .await
            .unwrap(),
        AttemptOutcome::Expired
    );
    store.put(&key("f3"), record(4, 0)).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            store.attempt(&key("f3"), &[9; 32], t(1), 2).await.unwrap(),
            AttemptOutcome::Wrong
        );
    }
    assert_eq!(
        store.attempt(&key("f3"), &[4; 32], t(1), 2).await.unwrap(),
        AttemptOutcome::TooManyAttempts
    );

    let shared = make();
    shared.put(&key("race"), record(5, 0)).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let s = Arc::clone(&shared);
        let k = key("race");
        tasks.spawn(async move { s.attempt(&k, &[5; 32], t(1), 5).await.unwrap() });
    }
    let mut consumed = 0;
    while let Some(outcome) = tasks.join_next().await {
        consumed += usize::from(outcome.expect("task") == AttemptOutcome::Consumed);
    }
    assert_eq!(
        consumed, 1,
        "exactly one of 32 concurrent right attempts consumes the code"
    );

    let (alice, bob) = (UserId::new("alice").unwrap(), UserId::new("bob").unwrap());
    let (login, change) = (
        Label::new("login").unwrap(),
        Label::new("change_email").unwrap(),
    );
    assert_eq!(
        store
            .try_start_cooldown(&alice, &login, t(0), t(60))
            .await
            .unwrap(),
        Cooldown::Started
    );
    assert_eq!(
        store
            .try_start_cooldown(&alice, &login, t(59), t(119))
            .await
            .unwrap(),
        Cooldown::Running { until: t(60) },
        "inside the cooldown"
    );
    assert_eq!(
        store
            .try_start_cooldown(&alice, &change, t(1), t(61))
            .await
            .unwrap(),
        Cooldown::Started,
        "purposes are separate"
    );
    assert_eq!(
        store
            .try_start_cooldown(&bob, &login, t(1), t(61))
            .await
            .unwrap(),
        Cooldown::Started,
        "users are separate"
    );
    assert_eq!(
        store
            .try_start_cooldown(&alice, &login, t(60), t(120))
            .await
            .unwrap(),
        Cooldown::Started,
        "a cooldown ends at its end"
    );

    let shared = make();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let s = Arc::clone(&shared);
        let (user, purpose) = (alice.clone(), login.clone());
        tasks.spawn(async move {
            s.try_start_cooldown(&user, &purpose, t(0), t(60))
                .await
                .unwrap()
        });
    }
    let mut started = 0;
    while let Some(outcome) = tasks.join_next().await {
        started += usize::from(outcome.expect("task") == Cooldown::Started);
    }
    assert_eq!(
        started, 1,
        "exactly one of 32 concurrent sends inside one cooldown starts it"
    );
}

/// Checks a [`PasskeyStore`](crate::PasskeyStore) (features `testkit` and `passkeys`):
/// ceremonies are single use (`passkey_ceremony_finished_32_times_concurrently_succeeds_once`)
/// and only taken by their user and kind; ceremony limits (per user, oldest dropped; in
/// total, new refused; expired ones make room); credential ids are unique across users
/// (32 concurrent registrations of one id by 32 users, exactly one wins); the per-user
/// maximum holds under 32 concurrent registrations; the counter update is a
/// compare-and-set (32 concurrent updates to the same counter, exactly one wins); removal.
#[cfg(feature = "passkeys")]
pub async fn passkey_store_conformance<F>(make: F)
where
    F: Fn() -> Arc<dyn crate::PasskeyStore>,
{
    use crate::{
        CeremonyId, CeremonyKind, CeremonyLimits, CeremonyRecord, CeremonyStored, CredentialAdded,
        StoredPasskey,
    };
    use mcpsec_core::SecretBytes;
    use std::time::{Duration, UNIX_EPOCH};
    let t = |s: u64| UNIX_EPOCH + Duration::from_secs(1_767_225_600 + s);
    let alice = UserId::new("alice").unwrap();
    let bob = UserId::new("bob").unwrap();
    let auth = CeremonyKind::Authentication;
    let limits = CeremonyLimits::default();
    let ceremony = |user: &UserId, expires: u64| CeremonyRecord {
        user: user.clone(),
        kind: CeremonyKind::Authentication,
        state: SecretBytes::from_slice(b"{\"state\":1}"),
        expires_at: t(expires),
    };
    let passkey = move |id: u8, counter: u32| StoredPasskey {
        credential_id: vec![id; 16],
        counter,
        passkey: vec![id, u8::try_from(counter % 256).unwrap()],
        created_at: t(0),
    };
    const MAX: usize = 16;

    let store = make();
    let id = CeremonyId::generate().unwrap();
    assert!(
        store
            .take_ceremony(&id, &alice, auth)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .put_ceremony(&id, ceremony(&alice, 300), t(0), limits)
            .await
            .unwrap(),
        CeremonyStored::Stored
    );
    assert!(
        store
            .take_ceremony(&id, &bob, auth)
            .await
            .unwrap()
            .is_none(),
        "another user's finish does not take it"
    );
    assert!(
        store
            .take_ceremony(&id, &alice, CeremonyKind::Registration)
            .await
            .unwrap()
            .is_none(),
        "the other kind does not take it"
    );
    assert_eq!(
        store.take_ceremony(&id, &alice, auth).await.unwrap(),
        Some(ceremony(&alice, 300)),
        "the record comes back as stored, to its owner, after the wrong tries"
    );
    assert!(
        store
            .take_ceremony(&id, &alice, auth)
            .await
            .unwrap()
            .is_none(),
        "single use"
    );

    // Ceremony limits: per user the oldest goes; in total a new one is refused until
    // expired ones are pruned.
    let limited = make();
    let small = CeremonyLimits {
        per_user: 2,
        total: 3,
    };
    let ids = [
        CeremonyId::generate().unwrap(),
        CeremonyId::generate().unwrap(),
        CeremonyId::generate().unwrap(),
    ];
    let [first, second, _] = &ids;
    for id in &ids {
        assert_eq!(
            limited
                .put_ceremony(id, ceremony(&alice, 300), t(0), small)
                .await
                .unwrap(),
            CeremonyStored::Stored
        );
    }
    assert!(
        limited
            .take_ceremony(first, &alice, auth)
            .await
            .unwrap()
            .is_none(),
        "the oldest of a user's ceremonies is dropped past the per-user limit"
    );
    let carol = UserId::new("carol").unwrap();
    let dave = UserId::new("dave").unwrap();
    let (c1, d1, d2) = (
        CeremonyId::generate().unwrap(),
        CeremonyId::generate().unwrap(),
        CeremonyId::generate().unwrap(),
    );
    assert_eq!(
        limited
            .put_ceremony(&c1, ceremony(&carol, 100), t(0), small)
            .await
            .unwrap(),
        CeremonyStored::Stored
    );
    assert_eq!(
        limited
            .put_ceremony(&d1, ceremony(&dave, 300), t(0), small)
            .await
            .unwrap(),
        CeremonyStored::Full,
        "a full store refuses a new ceremony"
    );
    assert!(
        limited
            .take_ceremony(&d1, &dave, auth)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        limited
            .take_ceremony(second, &alice, auth)
            .await
            .unwrap()
            .is_some(),
        "a refused put drops nothing"
    );
    limited
        .put_ceremony(second, ceremony(&alice, 300), t(0), small)
        .await
        .unwrap();
    assert_eq!(
        limited
            .put_ceremony(&d2, ceremony(&dave, 400), t(100), small)
            .await
            .unwrap(),
        CeremonyStored::Stored,
        "an expired ceremony makes room"
    );
    assert!(
        limited
            .take_ceremony(&d2, &dave, auth)
            .await
            .unwrap()
            .is_some()
    );

    assert!(store.credentials(&alice).await.unwrap().is_empty());
    assert_eq!(
        store
            .add_credential(&alice, passkey(1, 0), MAX)
            .await
            .unwrap(),
        CredentialAdded::Added
    );
    assert_eq!(
        store
            .add_credential(&alice, passkey(2, 5), MAX)
            .await
            .unwrap(),
        CredentialAdded::Added
    );
    assert_eq!(
        store
            .add_credential(&bob, passkey(1, 0), MAX)
            .await
            .unwrap(),
        CredentialAdded::DuplicateId,
        "a credential id belongs to one user"
    );
    assert_eq!(
        store
            .add_credential(&alice, passkey(1, 0), MAX)
            .await
            .unwrap(),
        CredentialAdded::DuplicateId,
        "and is registered once"
    );
    assert_eq!(
        store
            .add_credential(&alice, passkey(3, 0), 2)
            .await
            .unwrap(),
        CredentialAdded::TooMany,
        "the per-user maximum"
    );
    assert!(store.credentials(&bob).await.unwrap().is_empty());
    assert_eq!(store.credentials(&alice).await.unwrap().len(), 2);
    assert!(
        store
            .update_credential(&alice, passkey(2, 6))
            .await
            .unwrap()
    );
    assert!(
        !store
            .update_credential(&alice, passkey(2, 6))
            .await
            .unwrap(),
        "the same counter twice"
    );
    assert!(
        !store
            .update_credential(&alice, passkey(2, 3))
            .await
            .unwrap(),
        "an older counter"
    );
    assert!(
        store
            .update_credential(&alice, passkey(1, 0))
            .await
            .unwrap(),
        "an authenticator without a counter stays at 0"
    );
    assert!(
        !store.update_credential(&bob, passkey(2, 9)).await.unwrap(),
        "another user's credential"
    );
    let stored = store.credentials(&alice).await.unwrap();
    let two = stored
        .iter()
        .find(|p| p.credential_id == vec![2; 16])
        .unwrap();
    assert_eq!((two.counter, two.passkey.clone()), (6, vec![2, 6]));
    assert!(store.remove_credential(&alice, &[1; 16]).await.unwrap());
    assert!(!store.remove_credential(&alice, &[1; 16]).await.unwrap());
    assert_eq!(store.credentials(&alice).await.unwrap().len(), 1);
    assert_eq!(
        store
            .add_credential(&bob, passkey(1, 0), MAX)
            .await
            .unwrap(),
        CredentialAdded::Added,
        "a removed credential id may be registered again"
    );

    let shared = make();
    let race = CeremonyId::generate().unwrap();
    shared
        .put_ceremony(&race, ceremony(&alice, 300), t(0), limits)
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let s = Arc::clone(&shared);
        let id = race.clone();
        tasks.spawn(async move {
            s.take_ceremony(
                &id,
                &UserId::new("alice").unwrap(),
                CeremonyKind::Authentication,
            )
            .await
            .unwrap()
            .is_some()
        });
    }
    let mut wins = 0;
    while let Some(won) = tasks.join_next().await {
        wins += usize::from(won.expect("task"));
    }
    assert_eq!(
        wins, 1,
        "exactly one of 32 concurrent finishes takes the ceremony"
    );

    // One credential id registered by 32 users at once: exactly one wins.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..32 {
        let s = Arc::clone(&shared);
        tasks.spawn(async move {
            let user = UserId::new(format!("racer{n}")).unwrap();
            s.add_credential(&user, passkey(42, 0), MAX).await.unwrap() == CredentialAdded::Added
        });
    }
    let mut wins = 0;
    while let Some(won) = tasks.join_next().await {
        wins += usize::from(won.expect("task"));
    }
    assert_eq!(
        wins, 1,
        "exactly one of 32 concurrent registrations of one credential id wins"
    );

    // 32 different credentials for one user at once, with a maximum of 4: exactly 4 win.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..32u8 {
        let s = Arc::clone(&shared);
        tasks.spawn(async move {
            s.add_credential(&UserId::new("erin").unwrap(), passkey(100 + n, 0), 4)
                .await
                .unwrap()
        });
    }
    let (mut added, mut too_many) = (0, 0);
    while let Some(outcome) = tasks.join_next().await {
        let outcome = outcome.expect("task");
        added += usize::from(outcome == CredentialAdded::Added);
        too_many += usize::from(outcome == CredentialAdded::TooMany);
    }
    assert_eq!(
        (added, too_many),
        (4, 28),
        "the per-user maximum holds under concurrency"
    );
    assert_eq!(
        shared
            .credentials(&UserId::new("erin").unwrap())
            .await
            .unwrap()
            .len(),
        4
    );

    shared
        .add_credential(&bob, passkey(7, 10), MAX)
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let s = Arc::clone(&shared);
        tasks.spawn(async move {
            s.update_credential(&UserId::new("bob").unwrap(), passkey(7, 11))
                .await
                .unwrap()
        });
    }
    let mut wins = 0;
    while let Some(won) = tasks.join_next().await {
        wins += usize::from(won.expect("task"));
    }
    assert_eq!(wins, 1, "exactly one of 32 concurrent counter updates wins");
    let bobs = shared.credentials(&bob).await.unwrap();
    assert_eq!((bobs.len(), bobs.first().unwrap().counter), (1, 11));
}
