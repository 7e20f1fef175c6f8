//! Failure behaviour that needs no Redis: an unreachable server, a prefix refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcpsec_core::StoreErrorKind;
use mcpsec_store_redis::RedisStores;
use std::error::Error as _;

#[tokio::test]
async fn an_unreachable_server_is_unavailable_with_the_cause_kept() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let error = RedisStores::connect("redis://127.0.0.1:1", "p")
        .await
        .unwrap_err();
    assert!(
        error.kind().is_transient(),
        "a retryable kind, got {:?}",
        error.kind()
    );
    assert_eq!(error.kind(), StoreErrorKind::Unavailable);
    assert!(
        error
            .source()
            .and_then(|s| s.downcast_ref::<redis::RedisError>())
            .is_some(),
        "the redis error is the source"
    );
}

#[tokio::test]
async fn a_bad_url_or_prefix_is_rejected_before_connecting() {
    for (url, prefix) in [
        ("redis://127.0.0.1:1", "a{b}"),
        ("redis://127.0.0.1:1", ""),
        ("not a url", "p"),
    ] {
        let error = RedisStores::connect(url, prefix).await.unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Rejected, "{url} {prefix}");
    }
}
