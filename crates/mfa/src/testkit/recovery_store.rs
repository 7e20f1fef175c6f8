//! The [`RecoveryCodeStore`] suite: one public async function per case, each taking a
//! fresh store; [`recovery_store_suite!`](crate::recovery_store_suite) expands them.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: failing loudly is its job"
)]

use crate::RecoveryCodeStore;
use mcpsec_core::UserId;
use std::sync::Arc;

/// Codes are single use, per user, and a new set replaces the old one whole.
pub async fn codes_are_single_use_and_replaced_whole(store: Arc<dyn RecoveryCodeStore>) {
    let alice = UserId::new("alice").unwrap();
    assert_eq!(store.remaining(&alice).await.unwrap(), 0);
    store
        .replace_set(&super::as_user(&alice), vec![[1; 32], [2; 32], [3; 32]])
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
    store
        .replace_set(&super::as_user(&alice), vec![[9; 32]])
        .await
        .unwrap();
    assert!(
        !store.consume_once(&alice, &[1; 32]).await.unwrap(),
        "regeneration invalidates the old set"
    );
    assert_eq!(store.remaining(&alice).await.unwrap(), 1);
}

/// `recovery_code_used_twice_concurrently_succeeds_once`, with 32 uses.
pub async fn recovery_code_used_32_times_concurrently_succeeds_once(
    shared: Arc<dyn RecoveryCodeStore>,
) {
    let carol = UserId::new("carol").unwrap();
    shared
        .replace_set(&super::as_user(&carol), vec![[5; 32]])
        .await
        .unwrap();
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

/// Expands this suite into named tests in a module named after the backend:
/// `recovery_store_suite!(memory, |_ns| async { … })` gives `memory::codes_are_single_use_and_replaced_whole` and so on. The
/// factory is called once per test with that test's `mcpsec_core::testkit::Namespace`; the
/// calling crate needs tokio with `macros` and `rt-multi-thread`.
#[macro_export]
macro_rules! recovery_store_suite {
    ($backend:ident, $factory:expr $(,)?) => {
        $crate::testkit::__conformance_suite!(
            suite = "recovery_store",
            cases = [$crate::testkit::recovery_store],
            backend = $backend,
            factory = $factory,
            tests = [
                codes_are_single_use_and_replaced_whole,
                recovery_code_used_32_times_concurrently_succeeds_once,
            ],
        );
    };
}
