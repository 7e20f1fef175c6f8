//! The [`TotpReplayGuard`] suite: one public async function per case, each taking a fresh
//! guard; [`totp_replay_guard_suite!`](crate::totp_replay_guard_suite) expands them.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: failing loudly is its job"
)]

use crate::{EnrollmentId, TotpReplayGuard};
use mcpsec_core::UserId;
use std::sync::Arc;

/// A step is accepted once and only when newer; users and enrollments are separate.
pub async fn steps_are_accepted_once_and_only_when_newer(guard: Arc<dyn TotpReplayGuard>) {
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
}

/// `totp_code_used_32_times_concurrently_succeeds_once`.
pub async fn totp_code_used_32_times_concurrently_succeeds_once(shared: Arc<dyn TotpReplayGuard>) {
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

/// Expands this suite into named tests in a module named after the backend:
/// `totp_replay_guard_suite!(memory, |_ns| async { … })` gives `memory::steps_are_accepted_once_and_only_when_newer` and so on. The
/// factory is called once per test with that test's `mcpsec_core::testkit::Namespace`; the
/// calling crate needs tokio with `macros` and `rt-multi-thread`.
#[macro_export]
macro_rules! totp_replay_guard_suite {
    ($backend:ident, $factory:expr $(,)?) => {
        $crate::testkit::__conformance_suite!(
            suite = "totp_replay_guard",
            cases = [$crate::testkit::replay_guard],
            backend = $backend,
            factory = $factory,
            tests = [
                steps_are_accepted_once_and_only_when_newer,
                totp_code_used_32_times_concurrently_succeeds_once,
            ],
        );
    };
}
