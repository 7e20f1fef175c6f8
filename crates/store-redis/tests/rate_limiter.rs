//! [`RedisRateLimiter`] through mcpsec-core's `RateLimiter` conformance suite (the cases the
//! in-process limiters pass), across two instances, and its key lifetimes. Without
//! `MCPSEC_TEST_REDIS_URL` the suite prints a notice and runs on `MemoryRateLimiter`
//! (in CI it fails).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use mcpsec_core::testkit::Namespace;
use mcpsec_core::testkit::rate_limiter::LimiterFactory;
use mcpsec_core::{ManualClock, MemoryRateLimiter, RateKey, RateLimiter, RateQuota, SharedClock};
use std::sync::Arc;
use std::time::Duration;

mcpsec_core::rate_limiter_suite!(redis, |ns: Namespace| async move {
    match common::stores(&ns).await {
        Some(stores) => {
            Arc::new(move |q, c| Arc::new(stores.rate_limiter(q, c)) as Arc<dyn RateLimiter>)
                as LimiterFactory
        }
        None => {
            eprintln!("notice: {} runs in memory", ns.as_str());
            Arc::new(|q, c| Arc::new(MemoryRateLimiter::new(q, c)) as Arc<dyn RateLimiter>)
                as LimiterFactory
        }
    }
});

fn clock() -> (ManualClock, SharedClock) {
    let clock = ManualClock::at_unix(1_767_225_600);
    (clock.clone(), Arc::new(clock))
}

/// 32 racers split over two instances (two connections, one prefix) admit exactly the
/// burst between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_racers_on_two_instances_admit_exactly_the_burst() {
    let ns = Namespace::new("redis", "rate_limiter", "two_instances");
    let (a, b) = skip_without_redis!(common::two_instances(&ns).await);
    let (_manual, shared) = clock();
    let quota = RateQuota::new(7, Duration::from_secs(3600)).unwrap();
    let limiters: [Arc<dyn RateLimiter>; 2] = [
        Arc::new(a.rate_limiter(quota, Arc::clone(&shared))),
        Arc::new(b.rate_limiter(quota, shared)),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let limiter = Arc::clone(&limiters[i % 2]);
        tasks.spawn(async move {
            limiter
                .check(&RateKey::principal("race").unwrap())
                .await
                .unwrap()
                .is_allowed()
        });
    }
    let mut allowed = 0;
    while let Some(ok) = tasks.join_next().await {
        if ok.unwrap() {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 7);
}

/// Every key the limiter writes has a TTL: the time until its TAT passes plus one second.
#[tokio::test]
async fn every_key_expires_a_second_after_its_tat() {
    let ns = Namespace::new("redis", "rate_limiter", "ttl");
    let stores = skip_without_redis!(common::stores(&ns).await);
    let (manual, shared) = clock();
    let limiter = stores.rate_limiter(RateQuota::new(3, Duration::from_secs(10)).unwrap(), shared);
    let key = RateKey::source("192.0.2.7".parse().unwrap());
    for _ in 0..3 {
        assert!(limiter.check(&key).await.unwrap().is_allowed());
    }
    assert!(!limiter.check(&key).await.unwrap().is_allowed());
    manual.advance(Duration::from_secs(1));
    limiter
        .check(&RateKey::principal("other").unwrap())
        .await
        .unwrap();
    let keys = common::keys_with_ttl(&stores, &format!("{}:*", stores.prefix())).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter().all(|(_, ttl)| *ttl != -1),
        "a key without a TTL: {keys:?}"
    );
    let mut ttls: Vec<i64> = keys.iter().map(|(_, ttl)| *ttl).collect();
    ttls.sort_unstable();
    // TATs 30 s and 10 s ahead of the clock at their writes, plus one second.
    assert!(ttls[0] > 9_000 && ttls[0] <= 11_000, "{ttls:?}");
    assert!(ttls[1] > 29_000 && ttls[1] <= 31_000, "{ttls:?}");
}
