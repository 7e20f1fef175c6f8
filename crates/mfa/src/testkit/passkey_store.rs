//! The [`PasskeyStore`] suite (features `testkit` and `passkeys`): one public async
//! function per case, each taking a fresh store;
//! [`passkey_store_suite!`](crate::passkey_store_suite) expands them.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: failing loudly is its job"
)]
#![allow(
    unused_variables,
    reason = "each case names the fixtures it may not all use"
)]

use crate::{
    CeremonyId, CeremonyKind, CeremonyLimits, CeremonyRecord, CeremonyStored, CredentialAdded,
    PasskeyStore, StoredPasskey,
};
use mcpsec_core::{SecretBytes, UserId};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAX: usize = 16;

fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600 + s)
}

fn ceremony(user: &UserId, expires: u64) -> CeremonyRecord {
    CeremonyRecord {
        user: user.clone(),
        kind: CeremonyKind::Authentication,
        state: SecretBytes::from_slice(b"{\"state\":1}"),
        expires_at: t(expires),
    }
}

fn passkey(id: u8, counter: u32) -> StoredPasskey {
    StoredPasskey {
        credential_id: vec![id; 16],
        counter,
        passkey: vec![id, u8::try_from(counter % 256).unwrap()],
        created_at: t(0),
    }
}

/// A ceremony is taken once, only by its user and for its kind.
pub async fn ceremony_is_taken_once_by_its_user_and_kind(store: Arc<dyn PasskeyStore>) {
    let alice = UserId::new("alice").unwrap();
    let bob = UserId::new("bob").unwrap();
    let auth = CeremonyKind::Authentication;
    let limits = CeremonyLimits::default();
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
}

/// The per-user cap drops the user's oldest ceremony, leaves other users' alone, and
/// holds under 32 concurrent starts by one user.
pub async fn ceremony_cap_per_user_drops_the_oldest(limited: Arc<dyn PasskeyStore>) {
    let alice = UserId::new("alice").unwrap();
    let bob = UserId::new("bob").unwrap();
    let auth = CeremonyKind::Authentication;
    let small = CeremonyLimits { per_user: 2 };
    let bobs = CeremonyId::generate().unwrap();
    limited
        .put_ceremony(&bobs, ceremony(&bob, 300), t(0), small)
        .await
        .unwrap();
    let ids = [
        CeremonyId::generate().unwrap(),
        CeremonyId::generate().unwrap(),
        CeremonyId::generate().unwrap(),
    ];
    for id in &ids {
        assert_eq!(
            limited
                .put_ceremony(id, ceremony(&alice, 300), t(0), small)
                .await
                .unwrap(),
            CeremonyStored::Stored
        );
    }
    let [first, second, third] = &ids;
    assert!(
        limited
            .take_ceremony(first, &alice, auth)
            .await
            .unwrap()
            .is_none(),
        "the oldest of a user's ceremonies is dropped past the per-user limit"
    );
    for id in [second, third] {
        assert!(
            limited
                .take_ceremony(id, &alice, auth)
                .await
                .unwrap()
                .is_some()
        );
    }
    assert!(
        limited
            .take_ceremony(&bobs, &bob, auth)
            .await
            .unwrap()
            .is_some(),
        "another user's ceremonies are not counted"
    );

    // 32 concurrent starts by one user: at most `per_user` stay open.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let s = Arc::clone(&limited);
        tasks.spawn(async move {
            let id = CeremonyId::generate().unwrap();
            let carol = UserId::new("carol").unwrap();
            s.put_ceremony(&id, ceremony(&carol, 300), t(0), small)
                .await
                .unwrap();
            id
        });
    }
    let mut started = Vec::new();
    while let Some(id) = tasks.join_next().await {
        started.push(id.expect("task"));
    }
    let carol = UserId::new("carol").unwrap();
    let mut open = 0;
    for id in &started {
        open += usize::from(
            limited
                .take_ceremony(id, &carol, auth)
                .await
                .unwrap()
                .is_some(),
        );
    }
    assert_eq!(open, 2, "the per-user cap holds under concurrency");
}

/// Credential ids are unique across users, the per-user maximum holds, counters only go up (or stay at 0), and a removed id may be registered again.
pub async fn credentials_are_unique_capped_and_counter_checked(store: Arc<dyn PasskeyStore>) {
    let alice = UserId::new("alice").unwrap();
    let bob = UserId::new("bob").unwrap();
    let auth = CeremonyKind::Authentication;
    assert!(store.credentials(&alice).await.unwrap().is_empty());
    assert_eq!(
        store
            .add_credential(&super::as_user(&alice), passkey(1, 0), MAX)
            .await
            .unwrap(),
        CredentialAdded::Added
    );
    assert_eq!(
        store
            .add_credential(&super::as_user(&alice), passkey(2, 5), MAX)
            .await
            .unwrap(),
        CredentialAdded::Added
    );
    assert_eq!(
        store
            .add_credential(&super::as_user(&bob), passkey(1, 0), MAX)
            .await
            .unwrap(),
        CredentialAdded::DuplicateId,
        "a credential id belongs to one user"
    );
    assert_eq!(
        store
            .add_credential(&super::as_user(&alice), passkey(1, 0), MAX)
            .await
            .unwrap(),
        CredentialAdded::DuplicateId,
        "and is registered once"
    );
    assert_eq!(
        store
            .add_credential(&super::as_user(&alice), passkey(3, 0), 2)
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
    assert!(
        store
            .remove_credential(&super::as_user(&alice), &[1; 16])
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_credential(&super::as_user(&alice), &[1; 16])
            .await
            .unwrap()
    );
    assert_eq!(store.credentials(&alice).await.unwrap().len(), 1);
    assert_eq!(
        store
            .add_credential(&super::as_user(&bob), passkey(1, 0), MAX)
            .await
            .unwrap(),
        CredentialAdded::Added,
        "a removed credential id may be registered again"
    );
}

/// Of 32 concurrent finishes exactly one takes the ceremony.
pub async fn passkey_ceremony_finished_32_times_concurrently_succeeds_once(
    shared: Arc<dyn PasskeyStore>,
) {
    let alice = UserId::new("alice").unwrap();
    let bob = UserId::new("bob").unwrap();
    let auth = CeremonyKind::Authentication;
    let limits = CeremonyLimits::default();
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
}

/// One credential id registered by 32 users at once: exactly one wins.
pub async fn one_credential_id_registered_by_32_users_at_once_wins_once(
    shared: Arc<dyn PasskeyStore>,
) {
    let alice = UserId::new("alice").unwrap();
    let bob = UserId::new("bob").unwrap();
    let auth = CeremonyKind::Authentication;
    // One credential id registered by 32 users at once: exactly one wins.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..32 {
        let s = Arc::clone(&shared);
        tasks.spawn(async move {
            let user = UserId::new(format!("racer{n}")).unwrap();
            s.add_credential(&super::as_user(&user), passkey(42, 0), MAX)
                .await
                .unwrap()
                == CredentialAdded::Added
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
}

/// 32 different credentials for one user at once, with a maximum of 4: exactly 4 win.
pub async fn per_user_maximum_holds_under_32_concurrent_registrations(
    shared: Arc<dyn PasskeyStore>,
) {
    let alice = UserId::new("alice").unwrap();
    let bob = UserId::new("bob").unwrap();
    let auth = CeremonyKind::Authentication;
    // 32 different credentials for one user at once, with a maximum of 4: exactly 4 win.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..32u8 {
        let s = Arc::clone(&shared);
        tasks.spawn(async move {
            s.add_credential(
                &super::as_user(&UserId::new("erin").unwrap()),
                passkey(100 + n, 0),
                4,
            )
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
}

/// Of 32 concurrent updates to the same counter exactly one wins.
pub async fn counter_update_is_compare_and_set_under_concurrency(shared: Arc<dyn PasskeyStore>) {
    let alice = UserId::new("alice").unwrap();
    let bob = UserId::new("bob").unwrap();
    let auth = CeremonyKind::Authentication;
    shared
        .add_credential(&super::as_user(&bob), passkey(7, 10), MAX)
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

/// Expands this suite into named tests in a module named after the backend:
/// `passkey_store_suite!(memory, |_ns| async { … })` gives `memory::ceremony_is_taken_once_by_its_user_and_kind` and so on. The
/// factory is called once per test with that test's `mcpsec_core::testkit::Namespace`; the
/// calling crate needs tokio with `macros` and `rt-multi-thread`.
#[macro_export]
macro_rules! passkey_store_suite {
    ($backend:ident, $factory:expr $(,)?) => {
        $crate::testkit::__conformance_suite!(
            suite = "passkey_store",
            cases = [$crate::testkit::passkey_store],
            backend = $backend,
            factory = $factory,
            tests = [
                ceremony_is_taken_once_by_its_user_and_kind,
                ceremony_cap_per_user_drops_the_oldest,
                credentials_are_unique_capped_and_counter_checked,
                passkey_ceremony_finished_32_times_concurrently_succeeds_once,
                one_credential_id_registered_by_32_users_at_once_wins_once,
                per_user_maximum_holds_under_32_concurrent_registrations,
                counter_update_is_compare_and_set_under_concurrency,
            ],
        );
    };
}
