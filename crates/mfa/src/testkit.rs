//! Conformance suites for [`TotpReplayGuard`] and [`RecoveryCodeStore`] backends (feature
//! `testkit`). Call them from a multi-threaded tokio test with a factory of fresh stores.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: failing loudly is its job"
)]

use crate::{RecoveryCodeStore, TotpReplayGuard};
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
    assert!(guard.record_step_if_newer(&alice, 100).await.unwrap());
    assert!(
        !guard.record_step_if_newer(&alice, 100).await.unwrap(),
        "the same step twice"
    );
    assert!(
        !guard.record_step_if_newer(&alice, 99).await.unwrap(),
        "an older step"
    );
    assert!(guard.record_step_if_newer(&alice, 101).await.unwrap());
    assert!(
        guard.record_step_if_newer(&bob, 100).await.unwrap(),
        "users are separate"
    );

    let shared = make();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let g = Arc::clone(&shared);
        tasks.spawn(async move {
            g.record_step_if_newer(&UserId::new("carol").unwrap(), 7)
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
