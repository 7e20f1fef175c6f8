//! Measures the time from an announcement on instance A to refusal on instance B: B
//! verifies (and caches) a token, A announces that its signing key was removed, and B is
//! asked again until it refuses. 1,000 trials on loopback; prints p50, p99 and the maximum.
//!
//! ```text
//! MCPSEC_TEST_REDIS_URL=redis://127.0.0.1:6379 \
//!   cargo run --release -p mcpsec-store-redis --example invalidation_latency [TRIALS]
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a measurement tool"
)]

use mcpsec_access::ScopeSet;
use mcpsec_core::{InvalidationBus, KeyId, NullSink, UserId};
use mcpsec_store_redis::RedisStores;
use mcpsec_tokens::{
    AccessGrant, Algorithm, JwkSet, KeySource, SigningKey, SigningKeyring, TokenIssuer,
    TokenVerifier,
};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ISS: &str = "https://auth.example";
const AUD: &str = "https://mcp.example/mcp";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::var("MCPSEC_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let trials: usize = std::env::args()
        .nth(1)
        .map_or(1000, |n| n.parse().expect("TRIALS is a number"));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("mcpsec-bench:invalidation:{nanos:x}");
    let a = RedisStores::connect(&url, &prefix)
        .await
        .expect("Redis reachable");
    let b = RedisStores::connect(&url, &prefix)
        .await
        .expect("Redis reachable");

    let keys: Vec<SigningKey> = (0..trials)
        .map(|i| {
            SigningKey::generate(KeyId::new(format!("k-{i}")).unwrap(), Algorithm::EdDSA).unwrap()
        })
        .collect();
    let jwks = JwkSet {
        keys: keys.iter().map(SigningKey::public_jwk).collect(),
    };
    let tokens: Vec<String> = keys
        .into_iter()
        .map(|key| {
            let issuer = TokenIssuer::builder(Arc::new(RwLock::new(SigningKeyring::new(key))))
                .issuer(ISS)
                .audience(AUD)
                .build()
                .unwrap();
            let grant = AccessGrant::new(
                UserId::new("alice").unwrap(),
                ScopeSet::parse_strict("mcp:read").unwrap(),
            );
            issuer.issue(&grant).unwrap()
        })
        .collect();
    let on_b = Arc::new(
        TokenVerifier::builder(KeySource::Static(jwks), NullSink)
            .issuer(ISS)
            .audience(AUD)
            .build()
            .unwrap(),
    );
    let subscriber = b.subscribe_invalidations(vec![on_b.clone()]).unwrap();
    subscriber.subscribed().await.unwrap();
    let bus = a.invalidation_bus(vec![]);

    let mut samples = Vec::with_capacity(trials);
    for (i, token) in tokens.iter().enumerate() {
        assert!(on_b.verify(token).await.is_ok(), "B accepts before");
        let kid = KeyId::new(format!("k-{i}")).unwrap();
        let start = Instant::now();
        bus.announce(&mcpsec_core::Invalidation::SigningKeyRemoved(kid))
            .await
            .unwrap();
        while on_b.verify(token).await.is_ok() {
            assert!(start.elapsed() < Duration::from_secs(10), "B never refused");
            tokio::task::yield_now().await;
        }
        samples.push(start.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "revoke on A -> refused on B, {trials} trials: p50 {:?}  p99 {:?}  max {:?}  (goal p99 <= 50ms)",
        at(0.50),
        at(0.99),
        samples[samples.len() - 1]
    );
    println!("subscriber: {:?}", subscriber.stats());
}
