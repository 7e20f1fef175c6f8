//! Test connections: each test works under a key prefix of its own, so tests run in
//! parallel on one server and a rerun never sees an earlier run's keys.
//!
//! Without `MCPSEC_TEST_REDIS_URL` a test prints a notice and skips (in CI, where
//! `CI=true`, a missing variable fails the test); set but unreachable fails the test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcpsec_core::testkit::Namespace;
use mcpsec_store_redis::{RedisStores, TtlPolicy};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Every test prefix starts with this, so a scan can find every key tests wrote.
pub const ROOT: &str = "mcpsec-test";

/// Short lifetimes, so a test server does not keep a run's keys for long.
pub const TEST_TTL: TtlPolicy = TtlPolicy {
    attempt_grace: Duration::from_secs(60),
    replay: Duration::from_secs(600),
    ledger: Duration::from_secs(600),
};

/// The Redis URL, or `None` (with a notice) when tests should not use one.
pub fn redis_url() -> Option<String> {
    mcpsec_core::testkit::redis_url()
}

/// `mcpsec-test:<namespace>:<pid and time>`: unique to this test and this run.
pub fn prefix(ns: &Namespace) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{ROOT}:{}:{:x}-{nanos:x}", ns.as_str(), std::process::id())
}

/// Stores under `prefix` on a connection of their own.
pub async fn connect(url: &str, prefix: &str) -> RedisStores {
    RedisStores::connect(url, prefix)
        .await
        .unwrap_or_else(|e| panic!("MCPSEC_TEST_REDIS_URL is set but unreachable: {e}"))
        .with_ttl(TEST_TTL)
}

/// Stores under a fresh prefix for `ns`; `None` without `MCPSEC_TEST_REDIS_URL`.
pub async fn stores(ns: &Namespace) -> Option<RedisStores> {
    let url = redis_url()?;
    Some(connect(&url, &prefix(ns)).await)
}

/// Two instances: two connection managers on one server under one fresh prefix.
pub async fn two_instances(ns: &Namespace) -> Option<(RedisStores, RedisStores)> {
    let url = redis_url()?;
    let prefix = prefix(ns);
    Some((connect(&url, &prefix).await, connect(&url, &prefix).await))
}

/// Every key matching `pattern` (`SCAN`, never `KEYS`) with its `PTTL`.
pub async fn keys_with_ttl(stores: &RedisStores, pattern: &str) -> Vec<(String, i64)> {
    let mut conn = stores.connection();
    let mut cursor: u64 = 0;
    let mut found = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        for key in keys {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            found.push((key, ttl));
        }
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

/// Runs `$body` with `Some(stores)`, or returns early (the notice is printed) without Redis.
#[macro_export]
macro_rules! skip_without_redis {
    ($e:expr) => {
        match $e {
            Some(value) => value,
            None => return,
        }
    };
}
