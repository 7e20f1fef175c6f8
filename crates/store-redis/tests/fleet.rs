//! Two instances of a service (separate Redis connections under one prefix, each with its
//! own API-key service and TOTP verifier) against one attacker who spreads guesses over
//! both: the attacker gets exactly what one instance alone would give, throttling and its
//! back-off apply on both, and a TOTP code accepted on one is refused on the other.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
mod stack;

use mcpsec_core::testkit::Namespace;
use mcpsec_core::{AttemptCounter, MemoryAttemptCounter, SecretString, UserId};
use mcpsec_mfa::{MemoryReplayGuard, TotpConfig, TotpReplayGuard, TotpSecret};
use stack::{Instance, SOURCE_THRESHOLD, Shared, instance, source, wrong_code};
use std::sync::Arc;
use std::time::Duration;

fn ns(case: &str) -> Namespace {
    Namespace::new("redis", "fleet", case)
}

fn key_outcome(result: Result<mcpsec_apikeys::VerifiedKey, mcpsec_apikeys::Error>) -> String {
    match result {
        Ok(_) => "key ok".to_owned(),
        Err(mcpsec_apikeys::Error::Throttled { retry_after }) => {
            format!("key throttled {}s", retry_after.as_secs())
        }
        Err(error) => format!("key {error:?}"),
    }
}

fn totp_outcome(result: Result<mcpsec_mfa::Verified, mcpsec_mfa::Error>) -> String {
    match result {
        Ok(_) => "totp ok".to_owned(),
        Err(mcpsec_mfa::Error::TooManyAttempts { retry_after }) => {
            format!("totp paused {}s", retry_after.as_secs())
        }
        Err(error) => format!("totp {error:?}"),
    }
}

/// The attack, request `i` going to instance `i % n`: wrong API keys from one source and
/// wrong TOTP codes for one user, alternately, with the owner's right key and right code
/// in between, and the clock moving past a back-off once. Returns every outcome in order.
async fn attack(instances: &[&Instance], shared: &Shared, attacker: &SecretString) -> Vec<String> {
    let n = instances.len();
    let on = |i: usize| instances[i % n];
    let victim_key = stack::victim_key(on(0)).await;
    let user = UserId::new("mallory-target").unwrap();
    let secret = TotpSecret::generate().unwrap();
    let mut outcomes = Vec::new();
    let mut i = 0;
    for _ in 0..SOURCE_THRESHOLD + 2 {
        round(
            instances,
            shared,
            attacker,
            &user,
            &secret,
            i,
            &mut outcomes,
        )
        .await;
        i += 1;
    }
    // The owner behind the throttled source still gets in, on every instance (lockout
    // never applies to the holder of the secret); a paused user's right code is refused
    // unchecked.
    for k in 0..2 {
        let verified = on(k)
            .keys
            .verify(victim_key.expose_secret(), &source())
            .await;
        outcomes.push(key_outcome(verified));
        let code = secret
            .code_at(TotpConfig::default(), shared.unix())
            .unwrap();
        let verified = on(k)
            .totp
            .verify(&user, &secret, code.expose_secret())
            .await;
        outcomes.push(totp_outcome(verified));
    }
    // Past the longest back-off so far: one more guess of each is checked, and the next
    // back-off (doubled) applies everywhere.
    shared.clock.advance(Duration::from_secs(61));
    for _ in 0..2 {
        round(
            instances,
            shared,
            attacker,
            &user,
            &secret,
            i,
            &mut outcomes,
        )
        .await;
        i += 1;
    }
    outcomes
}

/// One wrong API key on instance `i`, one wrong TOTP code on instance `i + 1`.
async fn round(
    instances: &[&Instance],
    shared: &Shared,
    attacker: &SecretString,
    user: &UserId,
    secret: &TotpSecret,
    i: usize,
    outcomes: &mut Vec<String>,
) {
    let n = instances.len();
    let guess = instances[i % n]
        .keys
        .verify(attacker.expose_secret(), &source())
        .await;
    outcomes.push(key_outcome(guess));
    let code = wrong_code(secret, shared.unix());
    let guess = instances[(i + 1) % n]
        .totp
        .verify(user, secret, &code)
        .await;
    outcomes.push(totp_outcome(guess));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_spread_over_two_instances_gets_the_single_instance_budget() {
    let (a, b) = skip_without_redis!(common::two_instances(&ns("budget")).await);
    let attacker = stack::attacker_key().await;

    let fleet = Shared::new();
    let counter_a: Arc<dyn AttemptCounter> = Arc::new(a.attempt_counter());
    let counter_b: Arc<dyn AttemptCounter> = Arc::new(b.attempt_counter());
    let one = instance(&fleet, counter_a, Arc::new(a.replay_guard()));
    let two = instance(&fleet, counter_b, Arc::new(b.replay_guard()));
    let spread = attack(&[&one, &two], &fleet, &attacker).await;

    let alone = Shared::new();
    let single = instance(
        &alone,
        Arc::new(MemoryAttemptCounter::default()),
        Arc::new(MemoryReplayGuard::default()),
    );
    let expected = attack(&[&single], &alone, &attacker).await;
    assert_eq!(spread, expected, "two instances on Redis = one instance");

    // What that is, spelled out: T wrong keys are checked, then the source is throttled
    // with a back-off that doubles with every counted failure, whichever instance counted
    // it; 3 wrong codes, then the user is paused (30 s, doubling).
    let keys: Vec<&String> = spread.iter().step_by(2).take(6).collect();
    let codes: Vec<&String> = spread.iter().skip(1).step_by(2).take(6).collect();
    assert_eq!(
        keys,
        [
            "key Unknown",
            "key Unknown",
            "key Unknown",
            "key Unknown",
            "key throttled 1s",
            "key throttled 2s"
        ]
    );
    assert_eq!(
        codes,
        [
            "totp WrongCode",
            "totp WrongCode",
            "totp WrongCode",
            "totp paused 30s",
            "totp paused 30s",
            "totp paused 30s"
        ]
    );
    // The owner's key verifies on both; the paused user's right code is refused on both.
    assert_eq!(
        spread[12..16],
        ["key ok", "totp paused 30s", "key ok", "totp paused 30s"]
    );
    // After the clock moved past the back-off: one guess each is checked (and counted, on
    // the fleet's count), then the doubled back-off applies on the other instance.
    assert_eq!(
        spread[16..],
        [
            "key Unknown",
            "totp WrongCode",
            "key throttled 8s",
            "totp paused 60s"
        ]
    );

    // Counters kept per instance would have let the attacker in twice as often: the test
    // would see it.
    let apart = Shared::new();
    let one = instance(
        &apart,
        Arc::new(MemoryAttemptCounter::default()),
        Arc::new(MemoryReplayGuard::default()),
    );
    let two = instance(
        &apart,
        Arc::new(MemoryAttemptCounter::default()),
        Arc::new(MemoryReplayGuard::default()),
    );
    let per_instance = attack(&[&one, &two], &apart, &attacker).await;
    let checked = |outcomes: &[String]| {
        outcomes
            .iter()
            .filter(|o| *o == "key Unknown" || *o == "totp WrongCode")
            .count()
    };
    assert!(checked(&per_instance) > checked(&spread));

    assert_every_key_expires(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_totp_code_accepted_on_one_instance_is_refused_on_the_other() {
    let (a, b) = skip_without_redis!(common::two_instances(&ns("replay")).await);
    let shared = Shared::new();
    let guards: [Arc<dyn TotpReplayGuard>; 2] =
        [Arc::new(a.replay_guard()), Arc::new(b.replay_guard())];
    let one = instance(&shared, Arc::new(a.attempt_counter()), guards[0].clone());
    let two = instance(&shared, Arc::new(b.attempt_counter()), guards[1].clone());
    let user = UserId::new("alice").unwrap();
    let secret = TotpSecret::generate().unwrap();
    let code = secret
        .code_at(TotpConfig::default(), shared.unix())
        .unwrap();

    let first = one.totp.verify(&user, &secret, code.expose_secret()).await;
    assert!(first.is_ok(), "{first:?}");
    for (name, on) in [("B", &two), ("A", &one)] {
        let again = on.totp.verify(&user, &secret, code.expose_secret()).await;
        assert!(
            matches!(
                again,
                Err(mcpsec_mfa::Error::WaitForNextCode { .. } | mcpsec_mfa::Error::Replayed)
            ),
            "the code is spent on {name}: {again:?}"
        );
    }
    // The next step's code works, once, on whichever instance gets it first.
    shared.clock.advance(Duration::from_secs(30));
    let next = secret
        .code_at(TotpConfig::default(), shared.unix())
        .unwrap();
    assert!(
        two.totp
            .verify(&user, &secret, next.expose_secret())
            .await
            .is_ok()
    );
    assert!(
        one.totp
            .verify(&user, &secret, next.expose_secret())
            .await
            .is_err()
    );

    assert_every_key_expires(&a).await;
}

/// Every key written under the test's prefix has a TTL.
async fn assert_every_key_expires(stores: &mcpsec_store_redis::RedisStores) {
    let keys = common::keys_with_ttl(stores, &format!("{}:*", stores.prefix())).await;
    assert!(!keys.is_empty());
    for (key, ttl) in keys {
        assert!(ttl > 0, "{key} has PTTL {ttl}");
    }
}
