//! The [`EmailCodeStore`] suite: one public async function per case, each taking a fresh
//! store; [`email_code_store_suite!`](crate::email_code_store_suite) expands them.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: failing loudly is its job"
)]

use crate::{AttemptOutcome, ChallengeKey, ChallengeRecord, Cooldown, EmailCodeStore};
use mcpsec_core::{Label, TokenId, UserId};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600 + s)
}

fn key(flow: &str) -> ChallengeKey {
    ChallengeKey {
        user: UserId::new("alice").unwrap(),
        purpose: Label::new("login").unwrap(),
        flow: TokenId::new(flow).unwrap(),
    }
}

fn record(hash: u8, sent: u64) -> ChallengeRecord {
    ChallengeRecord {
        hash: [hash; 32],
        sent_at: t(sent),
        expires_at: t(sent + 600),
        attempts: 0,
    }
}

/// Only the latest code of a flow counts, and it is consumed once.
pub async fn only_the_latest_code_counts_and_once(store: Arc<dyn EmailCodeStore>) {
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
}

/// A code expires at its end, and the attempt cap refuses even the right code.
pub async fn expiry_and_attempt_cap_hold(store: Arc<dyn EmailCodeStore>) {
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
}

/// Of 32 concurrent attempts with the right code exactly one consumes it.
pub async fn concurrent_right_attempts_consume_once(shared: Arc<dyn EmailCodeStore>) {
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
}

/// The resend cooldown (`try_start_cooldown`, a put-if-cooldown-elapsed) runs per user
/// and purpose, across flows, and ends at its end.
pub async fn cooldown_is_per_user_and_purpose_and_ends_on_time(store: Arc<dyn EmailCodeStore>) {
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
}

/// Of 32 concurrent sends inside one cooldown exactly one starts it: the check and the
/// write are one conditional write.
pub async fn concurrent_sends_start_one_cooldown(shared: Arc<dyn EmailCodeStore>) {
    let (alice, login) = (UserId::new("alice").unwrap(), Label::new("login").unwrap());
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

/// Expands this suite into named tests in a module named after the backend:
/// `email_code_store_suite!(memory, |_ns| async { … })` gives `memory::only_the_latest_code_counts_and_once` and so on. The
/// factory is called once per test with that test's `mcpsec_core::testkit::Namespace`; the
/// calling crate needs tokio with `macros` and `rt-multi-thread`.
#[macro_export]
macro_rules! email_code_store_suite {
    ($backend:ident, $factory:expr $(,)?) => {
        $crate::testkit::__conformance_suite!(
            suite = "email_code_store",
            cases = [$crate::testkit::email_code_store],
            backend = $backend,
            factory = $factory,
            tests = [
                only_the_latest_code_counts_and_once,
                expiry_and_attempt_cap_hold,
                concurrent_right_attempts_consume_once,
                cooldown_is_per_user_and_purpose_and_ends_on_time,
                concurrent_sends_start_one_cooldown,
            ],
        );
    };
}
