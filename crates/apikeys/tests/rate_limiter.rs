//! [`GovernorRateLimiter`] through mcpsec-core's `RateLimiter` conformance suite (the same
//! cases the Redis limiter passes), and its memory bound.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcpsec_apikeys::GovernorRateLimiter;
use mcpsec_core::testkit::Namespace;
use mcpsec_core::testkit::rate_limiter::LimiterFactory;
use mcpsec_core::{ManualClock, RateKey, RateLimiter, RateQuota};
use std::sync::Arc;
use std::time::Duration;

mcpsec_core::rate_limiter_suite!(governor, |_: Namespace| async {
    Arc::new(|q, c| Arc::new(GovernorRateLimiter::new(q, c)) as Arc<dyn RateLimiter>)
        as LimiterFactory
});

#[tokio::test]
async fn keys_at_rest_are_swept() {
    let clock = ManualClock::at_unix(1_767_225_600);
    let limiter = GovernorRateLimiter::new(
        RateQuota::new(2, Duration::from_secs(1)).unwrap(),
        Arc::new(clock.clone()),
    );
    for i in 0..1000 {
        let key = RateKey::principal(&format!("user-{i}")).unwrap();
        assert!(limiter.check(&key).await.unwrap().is_allowed());
    }
    assert_eq!(limiter.len(), 1000);
    clock.advance(Duration::from_secs(5));
    let fresh = RateKey::principal("fresh").unwrap();
    for _ in 0..24 {
        limiter.check(&fresh).await.unwrap();
    }
    assert!(
        limiter.len() <= 1,
        "keys back at rest were dropped: {}",
        limiter.len()
    );
}
