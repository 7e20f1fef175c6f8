//! Every key expires: the suites' cases run under one parent prefix of this test, then a
//! `SCAN` of it (and of every test prefix, which other tests are writing meanwhile) finds
//! no key without a TTL. Also: each kind of key gets the lifetime its policy names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use mcpsec_core::testkit::{Namespace, attempt_counter as counter_cases};
use mcpsec_core::{AttemptCounter, UserId};
use mcpsec_fieldcrypt::testkit::usage_ledger as ledger_cases;
use mcpsec_fieldcrypt::{Category, UsageLedger};
use mcpsec_mfa::testkit::replay_guard as guard_cases;
use mcpsec_mfa::{EnrollmentId, TotpReplayGuard};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_key_is_left_without_a_ttl() {
    let Some(url) = common::redis_url() else {
        return;
    };
    let parent = common::prefix(&Namespace::new("redis", "expiry", "no_key_without_ttl"));
    let case = |n: &str| {
        let url = url.clone();
        let prefix = format!("{parent}:{n}");
        async move { common::connect(&url, &prefix).await }
    };

    // Every case of the three suites, each on a fresh sub-prefix.
    let c = |s: mcpsec_store_redis::RedisStores| {
        Arc::new(s.attempt_counter()) as Arc<dyn AttemptCounter>
    };
    counter_cases::failures_count_within_a_window(c(case("c1").await)).await;
    counter_cases::release_gives_back_one_and_never_goes_negative(c(case("c2").await)).await;
    counter_cases::late_release_leaves_the_next_window_alone(c(case("c3").await)).await;
    counter_cases::thirty_two_concurrent_failures_are_counted_exactly(c(case("c4").await)).await;
    counter_cases::thirty_two_concurrent_releases_end_at_zero(c(case("c5").await)).await;
    let g =
        |s: mcpsec_store_redis::RedisStores| Arc::new(s.replay_guard()) as Arc<dyn TotpReplayGuard>;
    guard_cases::steps_are_accepted_once_and_only_when_newer(g(case("g1").await)).await;
    guard_cases::totp_code_used_32_times_concurrently_succeeds_once(g(case("g2").await)).await;
    let l = |s: mcpsec_store_redis::RedisStores| Arc::new(s.usage_ledger()) as Arc<dyn UsageLedger>;
    ledger_cases::reserve_grants_up_to_the_limit(l(case("l1").await)).await;
    ledger_cases::categories_are_counted_apart(l(case("l2").await)).await;
    ledger_cases::concurrent_reservations_never_pass_the_limit(l(case("l3").await)).await;
    ledger_cases::release_never_reopens_more_than_was_given_back(l(case("l4").await)).await;

    let scanner = case("scan").await;
    let ours = common::keys_with_ttl(&scanner, &format!("{parent}:*")).await;
    assert!(ours.len() >= 8, "the suites left keys to check: {ours:?}");
    let forever: Vec<_> = ours.iter().filter(|(_, ttl)| *ttl == -1).collect();
    assert!(forever.is_empty(), "keys without a TTL: {forever:?}");

    // Every test's keys, including those of tests running now: each key is written with
    // its TTL by one script, so none is ever seen without one. (-2: gone meanwhile.)
    let all = common::keys_with_ttl(&scanner, &format!("{}:*", common::ROOT)).await;
    let forever: Vec<_> = all.iter().filter(|(_, ttl)| *ttl == -1).collect();
    assert!(forever.is_empty(), "test keys without a TTL: {forever:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_key_lives_as_long_as_its_policy_says() {
    let stores =
        skip_without_redis!(common::stores(&Namespace::new("redis", "expiry", "lifetimes")).await);
    let now = SystemTime::now();
    let window = Duration::from_secs(300);
    stores
        .attempt_counter()
        .record_failure("s", window, now)
        .await
        .unwrap();
    stores
        .replay_guard()
        .record_step_if_newer(&UserId::new("erin").unwrap(), &EnrollmentId([1; 16]), 5)
        .await
        .unwrap();
    stores
        .usage_ledger()
        .reserve(&Category::new("pii").unwrap(), 1, 10, 100)
        .await
        .unwrap();
    let keys = common::keys_with_ttl(&stores, &format!("{}:*", stores.prefix())).await;
    assert_eq!(keys.len(), 3, "{keys:?}");
    let ttl = common::TEST_TTL;
    for (key, pttl) in keys {
        let expected = if key.ends_with(":attempts") {
            window + ttl.attempt_grace
        } else if key.ends_with(":totp-step") {
            ttl.replay
        } else {
            assert!(key.ends_with(":nonces"), "{key}");
            ttl.ledger
        };
        let expected = i64::try_from(expected.as_millis()).unwrap();
        assert!(
            pttl <= expected && pttl > expected - 10_000,
            "{key}: PTTL {pttl} ms, expected about {expected}"
        );
    }
}
