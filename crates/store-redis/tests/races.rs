//! Two instances (two connection managers on one server, one prefix) racing 32 tasks on
//! one record: a failure counter, a TOTP step, a nonce budget.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use mcpsec_core::testkit::Namespace;
use mcpsec_core::{AttemptCounter, UserId};
use mcpsec_fieldcrypt::{Category, UsageLedger};
use mcpsec_mfa::{EnrollmentId, TotpReplayGuard};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn ns(case: &str) -> Namespace {
    Namespace::new("redis", "races", case)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_from_two_instances_are_counted_exactly() {
    let (a, b) = skip_without_redis!(common::two_instances(&ns("failures")).await);
    let counters: [Arc<dyn AttemptCounter>; 2] =
        [Arc::new(a.attempt_counter()), Arc::new(b.attempt_counter())];
    let window = Duration::from_secs(900);
    let now = SystemTime::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let counter = Arc::clone(&counters[i % 2]);
        tasks.spawn(async move {
            counter
                .record_failure("198.51.100.9", window, now)
                .await
                .unwrap()
                .count
        });
    }
    let mut seen = Vec::new();
    while let Some(count) = tasks.join_next().await {
        seen.push(count.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=32).collect::<Vec<u64>>(),
        "each saw a distinct count"
    );
    for counter in &counters {
        let state = counter.state("198.51.100.9", window, now).await.unwrap();
        assert_eq!(state.map(|s| s.count), Some(32), "both instances read 32");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_totp_step_from_two_instances_is_accepted_once() {
    let (a, b) = skip_without_redis!(common::two_instances(&ns("totp_step")).await);
    let guards: [Arc<dyn TotpReplayGuard>; 2] =
        [Arc::new(a.replay_guard()), Arc::new(b.replay_guard())];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let guard = Arc::clone(&guards[i % 2]);
        tasks.spawn(async move {
            let user = UserId::new("dave").unwrap();
            guard
                .record_step_if_newer(&user, &EnrollmentId([9; 16]), 58_907_520)
                .await
                .unwrap()
        });
    }
    let mut accepted = 0;
    while let Some(won) = tasks.join_next().await {
        accepted += usize::from(won.unwrap());
    }
    assert_eq!(
        accepted, 1,
        "exactly one of 32 uses of one code is accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_from_two_instances_never_pass_the_budget() {
    let (a, b) = skip_without_redis!(common::two_instances(&ns("nonce_budget")).await);
    let ledgers: [Arc<dyn UsageLedger>; 2] =
        [Arc::new(a.usage_ledger()), Arc::new(b.usage_ledger())];
    let category = Category::new("pii").unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let ledger = Arc::clone(&ledgers[i % 2]);
        let category = category.clone();
        tasks.spawn(async move { ledger.reserve(&category, 3, 7, 100).await.unwrap() });
    }
    let mut granted = 0;
    while let Some(done) = tasks.join_next().await {
        let (g, total) = done.unwrap();
        assert!(g <= 7 && total <= 100, "granted {g}, total {total}");
        granted += g;
    }
    assert_eq!(granted, 100, "the whole budget, granted once");
    assert_eq!(
        ledgers[1].reserve(&category, 3, 7, 100).await.unwrap(),
        (0, 100)
    );
}
