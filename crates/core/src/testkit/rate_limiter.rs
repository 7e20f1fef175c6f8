//! The [`RateLimiter`] conformance suite: one public async function per case, each taking
//! a [`LimiterFactory`] that builds a fresh limiter for a quota and a clock, and
//! [`rate_limiter_suite!`](crate::rate_limiter_suite) to expand them into named tests for
//! a backend. The cases pin the GCRA semantics of [`crate::RateLimiter`]'s module to the
//! microsecond, so every backend decides alike.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test suite: failing loudly is its job"
)]

use crate::{
    KeyId, ManualClock, RateDecision, RateKey, RateLimiter, RateQuota, SharedClock, TokenId,
};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Builds a limiter giving every key the quota, on the clock (a [`ManualClock`] the case
/// keeps a handle on). Called once or more per case; limiters one factory builds share
/// the backend's namespace for that case.
pub type LimiterFactory = Arc<dyn Fn(RateQuota, SharedClock) -> Arc<dyn RateLimiter> + Send + Sync>;

const START: u64 = 1_767_225_600;

fn setup(
    make: &LimiterFactory,
    burst: u32,
    period: Duration,
) -> (Arc<dyn RateLimiter>, ManualClock) {
    let clock = ManualClock::at_unix(START);
    let limiter = make(
        RateQuota::new(burst, period).unwrap(),
        Arc::new(clock.clone()),
    );
    (limiter, clock)
}

fn principal(name: &str) -> RateKey {
    RateKey::principal(name).unwrap()
}

async fn remaining(limiter: &Arc<dyn RateLimiter>, key: &RateKey) -> u32 {
    match limiter.check(key).await.unwrap() {
        RateDecision::Allowed(info) => info.remaining,
        RateDecision::Limited { retry_after } => {
            panic!("{key} limited (retry after {retry_after:?}) but should be allowed")
        }
    }
}

async fn retry_after(limiter: &Arc<dyn RateLimiter>, key: &RateKey) -> Duration {
    match limiter.check(key).await.unwrap() {
        RateDecision::Limited { retry_after } => retry_after,
        RateDecision::Allowed(info) => panic!("{key} allowed ({info:?}) but should be limited"),
    }
}

/// A burst of 3 per second is allowed at once, the fourth request is limited with a
/// retry-after of exactly one period, and 400 ms later the wait is 600 ms.
pub async fn burst_then_limited_with_retry_after(make: LimiterFactory) {
    let (limiter, clock) = setup(&make, 3, Duration::from_secs(1));
    let key = principal("burst");
    for _ in 0..3 {
        remaining(&limiter, &key).await;
    }
    assert_eq!(retry_after(&limiter, &key).await, Duration::from_secs(1));
    clock.advance(Duration::from_millis(400));
    assert_eq!(
        retry_after(&limiter, &key).await,
        Duration::from_millis(600),
        "a limited request is not counted"
    );
}

/// One request comes back exactly one period after the budget ran out (not a microsecond
/// earlier), and the whole burst after `burst × period` at rest.
pub async fn replenishes_at_the_period(make: LimiterFactory) {
    let (limiter, clock) = setup(&make, 2, Duration::from_secs(10));
    let key = principal("replenish");
    assert_eq!(remaining(&limiter, &key).await, 1);
    assert_eq!(remaining(&limiter, &key).await, 0);
    clock.advance(Duration::from_secs(10) - Duration::from_micros(1));
    assert_eq!(retry_after(&limiter, &key).await, Duration::from_micros(1));
    clock.advance(Duration::from_micros(1));
    assert_eq!(remaining(&limiter, &key).await, 0, "one request came back");
    retry_after(&limiter, &key).await;
    clock.advance(Duration::from_secs(20));
    assert_eq!(
        remaining(&limiter, &key).await,
        1,
        "the whole burst came back"
    );
    assert_eq!(remaining(&limiter, &key).await, 0);
}

/// Budgets of different keys are separate, and a principal named like an address, a key
/// id or a token id does not share a budget with that source or credential.
pub async fn keys_are_independent(make: LimiterFactory) {
    let (limiter, _clock) = setup(&make, 1, Duration::from_secs(60));
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    let named_like_everything = principal("10.0.0.1");
    assert_eq!(remaining(&limiter, &named_like_everything).await, 0);
    retry_after(&limiter, &named_like_everything).await;
    for key in [
        RateKey::source(ip),
        RateKey::api_key(&KeyId::new("10.0.0.1").unwrap()),
        RateKey::token(&TokenId::new("10.0.0.1").unwrap()),
        principal("10.0.0.2"),
    ] {
        assert_eq!(
            remaining(&limiter, &key).await,
            0,
            "{key} has its own budget"
        );
        retry_after(&limiter, &key).await;
    }
    let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    retry_after(&limiter, &RateKey::source(mapped)).await;
}

/// `remaining` counts down from `burst − 1` to 0, with the quota's limit and period.
pub async fn remaining_counts_down(make: LimiterFactory) {
    let (limiter, _clock) = setup(&make, 5, Duration::from_secs(2));
    let key = RateKey::source("2001:db8::1".parse().unwrap());
    for expected in (0..5).rev() {
        match limiter.check(&key).await.unwrap() {
            RateDecision::Allowed(info) => {
                assert_eq!(
                    (info.limit, info.remaining, info.period),
                    (5, expected, Duration::from_secs(2))
                );
            }
            limited => panic!("limited early: {limited:?}"),
        }
    }
    retry_after(&limiter, &key).await;
}

/// 32 concurrent checks on one fresh key admit exactly the burst (10), each seeing a
/// distinct `remaining`.
pub async fn thirty_two_concurrent_checks_admit_exactly_the_burst(make: LimiterFactory) {
    let (limiter, _clock) = setup(&make, 10, Duration::from_secs(3600));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let limiter = Arc::clone(&limiter);
        tasks.spawn(async move { limiter.check(&principal("flood")).await.unwrap() });
    }
    let mut seen = Vec::new();
    while let Some(decision) = tasks.join_next().await {
        if let RateDecision::Allowed(info) = decision.expect("task") {
            seen.push(info.remaining);
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..10).collect::<Vec<u32>>(), "exactly the burst");
}

/// A clock stepped back an hour grants nothing: still limited then, and when time
/// catches up again, a request comes back only a period after the budget ran out.
pub async fn clock_going_backwards_grants_nothing_extra(make: LimiterFactory) {
    let (limiter, clock) = setup(&make, 2, Duration::from_secs(10));
    let key = principal("rewind");
    remaining(&limiter, &key).await;
    remaining(&limiter, &key).await;
    clock.rewind(Duration::from_secs(3600));
    assert_eq!(
        retry_after(&limiter, &key).await,
        Duration::from_secs(3610),
        "the wait grows by the step back"
    );
    clock.advance(Duration::from_secs(3600));
    assert_eq!(retry_after(&limiter, &key).await, Duration::from_secs(10));
    clock.advance(Duration::from_secs(10));
    assert_eq!(remaining(&limiter, &key).await, 0);
    retry_after(&limiter, &key).await;
}

/// Expands the [`RateLimiter`] suite into named tests in a module named after the
/// backend: `rate_limiter_suite!(memory, |_ns| async { Arc::new(|q, c| Arc::new(
/// MemoryRateLimiter::new(q, c)) as Arc<dyn RateLimiter>) as LimiterFactory })` gives
/// `memory::burst_then_limited_with_retry_after` and so on. The factory is called once
/// per test with that test's [`Namespace`](crate::testkit::Namespace) and returns a
/// [`LimiterFactory`].
#[macro_export]
macro_rules! rate_limiter_suite {
    ($backend:ident, $factory:expr $(,)?) => {
        $crate::testkit::__conformance_suite!(
            suite = "rate_limiter",
            cases = [$crate::testkit::rate_limiter],
            backend = $backend,
            factory = $factory,
            tests = [
                burst_then_limited_with_retry_after,
                replenishes_at_the_period,
                keys_are_independent,
                remaining_counts_down,
                thirty_two_concurrent_checks_admit_exactly_the_burst,
                clock_going_backwards_grants_nothing_extra,
            ],
        );
    };
}

#[cfg(test)]
mod tests {
    use super::LimiterFactory;
    use crate::testkit::Namespace;
    use crate::{MemoryRateLimiter, RateLimiter};
    use std::sync::Arc;

    crate::rate_limiter_suite!(memory, |_: Namespace| async {
        Arc::new(|q, c| Arc::new(MemoryRateLimiter::new(q, c)) as Arc<dyn RateLimiter>)
            as LimiterFactory
    });
}
