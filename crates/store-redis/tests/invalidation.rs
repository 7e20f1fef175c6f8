//! Fleet cache invalidation over Redis pub/sub, with two instances on one server: a
//! signing key removed on A is refused on B (also for a token B had cached), a subscriber
//! that reconnects flushes everything once, a message that does not parse flushes
//! everything, and instances under another prefix hear nothing.
//!
//! Every wait has a generous deadline so that a broken subscriber fails the test instead of
//! hanging it; no assertion is about how fast anything happened (the latency is measured
//! by `cargo run --release -p mcpsec-store-redis --example invalidation_latency`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use mcpsec_access::ScopeSet;
use mcpsec_core::testkit::Namespace;
use mcpsec_core::{FlushOnInvalidation, Invalidation, InvalidationBus, KeyId, NullSink, UserId};
use mcpsec_store_redis::{InvalidationSubscriber, RedisStores, SubscriberConfig};
use mcpsec_tokens::{
    AccessGrant, Algorithm, JwkSet, KeySource, SigningKey, SigningKeyring, TokenIssuer,
    TokenVerifier,
};
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

const ISS: &str = "https://auth.example";
const AUD: &str = "https://mcp.example/mcp";
/// A safety net, never a measurement: only a broken subscriber gets near it.
const DEADLINE: Duration = Duration::from_secs(20);

/// The reconnection test drops every pub/sub connection on the server; announcements made
/// meanwhile are lost (delivery is at most once), so it runs alone (write) while the other
/// tests of this binary share (read).
static KILLS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn ns(case: &str) -> Namespace {
    Namespace::new("redis", "invalidation", case)
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing after {DEADLINE:?}"))
}

/// A cache that only reports what it was told to forget.
#[derive(Debug)]
struct Recorder(mpsc::UnboundedSender<Invalidation>);

impl FlushOnInvalidation for Recorder {
    fn flush(&self, what: &Invalidation) {
        let _ = self.0.send(what.clone());
    }
}

fn recorder() -> (Arc<Recorder>, mpsc::UnboundedReceiver<Invalidation>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(Recorder(tx)), rx)
}

/// Waits until `rx` reports `want`, skipping anything else (another test in this binary
/// may make every subscriber reconnect, which only adds `Everything` flushes).
async fn heard(rx: &mut mpsc::UnboundedReceiver<Invalidation>, want: &Invalidation) {
    within(&format!("waiting for {want:?}"), async {
        loop {
            match rx.recv().await {
                Some(got) if &got == want => return,
                Some(_) => {}
                None => panic!("recorder closed"),
            }
        }
    })
    .await;
}

fn key(kid: &str) -> SigningKey {
    SigningKey::generate(KeyId::new(kid).unwrap(), Algorithm::EdDSA).unwrap()
}

fn one_key() -> JwkSet {
    JwkSet {
        keys: vec![key("only-1").public_jwk()],
    }
}

fn token(key: SigningKey) -> String {
    let keyring = Arc::new(RwLock::new(SigningKeyring::new(key)));
    let issuer = TokenIssuer::builder(keyring)
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap();
    let grant = AccessGrant::new(
        UserId::new("alice").unwrap(),
        ScopeSet::parse_strict("mcp:read").unwrap(),
    );
    issuer.issue(&grant).unwrap()
}

fn verifier(jwks: &JwkSet) -> Arc<TokenVerifier> {
    Arc::new(
        TokenVerifier::builder(KeySource::Static(jwks.clone()), NullSink)
            .issuer(ISS)
            .audience(AUD)
            .build()
            .unwrap(),
    )
}

fn quick() -> SubscriberConfig {
    SubscriberConfig {
        keepalive: Duration::from_millis(500),
        timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
    }
}

/// One instance: a verifier, a recorder after it (so once the recorder heard a message the
/// verifier has applied it), and the subscriber feeding both.
struct Instance {
    verifier: Arc<TokenVerifier>,
    heard: mpsc::UnboundedReceiver<Invalidation>,
    subscriber: InvalidationSubscriber,
}

async fn instance(stores: &RedisStores, jwks: &JwkSet) -> Instance {
    let verifier = verifier(jwks);
    let (recorder, heard) = recorder();
    let subscriber = stores
        .subscribe_invalidations_with(vec![verifier.clone(), recorder], quick())
        .unwrap();
    within("first subscription", subscriber.subscribed())
        .await
        .unwrap();
    Instance {
        verifier,
        heard,
        subscriber,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signing_key_removed_on_one_instance_is_refused_on_the_other() {
    let _shared = KILLS.read().await;
    let Some((a_stores, b_stores)) = common::two_instances(&ns("removed")).await else {
        return;
    };
    let (leaked, kept) = (key("leaked-1"), key("kept-1"));
    let jwks = JwkSet {
        keys: vec![leaked.public_jwk(), kept.public_jwk()],
    };
    let (leaked_token, kept_token) = (token(leaked), token(kept));
    let mut a = instance(&a_stores, &jwks).await;
    let mut b = instance(&b_stores, &jwks).await;
    // B verifies (and caches) both tokens.
    assert!(b.verifier.verify(&leaked_token).await.is_ok());
    assert!(b.verifier.verify(&kept_token).await.is_ok());

    let removed = Invalidation::SigningKeyRemoved(KeyId::new("leaked-1").unwrap());
    let bus = a_stores.invalidation_bus(vec![a.verifier.clone()]);
    bus.announce(&removed).await.unwrap();

    heard(&mut b.heard, &removed).await;
    assert_eq!(
        b.verifier.verify(&leaked_token).await.unwrap_err(),
        mcpsec_tokens::Error::UnknownKey,
        "the cached token of a removed key is refused on B"
    );
    assert!(
        b.verifier.verify(&kept_token).await.is_ok(),
        "other keys stay"
    );
    // A refused at once (its own caches are flushed before publishing), and hears its own
    // announcement too.
    assert_eq!(
        a.verifier.verify(&leaked_token).await.unwrap_err(),
        mcpsec_tokens::Error::UnknownKey
    );
    heard(&mut a.heard, &removed).await;
    assert!(b.subscriber.stats().received >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_that_reconnects_flushes_everything_and_listens_again() {
    let _alone = KILLS.write().await;
    let Some((a_stores, b_stores)) = common::two_instances(&ns("reconnect")).await else {
        return;
    };
    let mut b = instance(&b_stores, &one_key()).await;
    let before = b.subscriber.stats();
    assert!(before.subscribed);
    assert!(before.full_flushes >= 1, "the first subscription flushed");
    // Drain what the first subscription flushed.
    while b.heard.try_recv().is_ok() {}

    // Drop every pub/sub connection on the server: B may have missed announcements.
    let mut admin = a_stores.connection();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(killed >= 1);

    within(
        "resubscription",
        b.subscriber.subscribed_after(before.subscriptions),
    )
    .await
    .unwrap();
    heard(&mut b.heard, &Invalidation::Everything).await;
    let after = b.subscriber.stats();
    assert!(after.subscriptions > before.subscriptions);
    assert!(after.full_flushes > before.full_flushes);

    // And it hears announcements again.
    let revoked = Invalidation::ApiKeyRevoked(KeyId::new("k-1").unwrap());
    a_stores
        .invalidation_bus(vec![])
        .announce(&revoked)
        .await
        .unwrap();
    heard(&mut b.heard, &revoked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreadable_message_flushes_everything() {
    let _shared = KILLS.read().await;
    let Some((a_stores, b_stores)) = common::two_instances(&ns("garbage")).await else {
        return;
    };
    let mut b = instance(&b_stores, &one_key()).await;
    while b.heard.try_recv().is_ok() {}
    let channel = format!("{}:invalidation", a_stores.prefix());
    let mut conn = a_stores.connection();
    for garbage in [
        b"mcpsec-inv/9 everything".to_vec(),
        b"mcpsec-inv/1 api-key-revoked".to_vec(),
        vec![0xff; 300],
    ] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(garbage)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // A readable one after them, so all three have been read once it is heard.
    let done = Invalidation::JwksChanged;
    a_stores
        .invalidation_bus(vec![])
        .announce(&done)
        .await
        .unwrap();
    heard(&mut b.heard, &done).await;
    assert_eq!(b.subscriber.stats().unreadable, 3);
    assert!(b.subscriber.stats().full_flushes >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_prefix_hears_nothing() {
    let _shared = KILLS.read().await;
    let Some(url) = common::redis_url() else {
        return;
    };
    let ours = common::connect(&url, &common::prefix(&ns("ours"))).await;
    let theirs = common::connect(&url, &common::prefix(&ns("theirs"))).await;
    let mut b = instance(&ours, &one_key()).await;
    while b.heard.try_recv().is_ok() {}
    let foreign = Invalidation::ApiKeyRevoked(KeyId::new("foreign").unwrap());
    theirs
        .invalidation_bus(vec![])
        .announce(&foreign)
        .await
        .unwrap();
    let mine = Invalidation::ApiKeyRevoked(KeyId::new("mine").unwrap());
    ours.invalidation_bus(vec![]).announce(&mine).await.unwrap();
    within("our announcement", async {
        loop {
            let got = b.heard.recv().await.unwrap();
            assert_ne!(
                got, foreign,
                "another deployment's announcement was applied"
            );
            if got == mine {
                return;
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_without_a_client_cannot_subscribe() {
    let _shared = KILLS.read().await;
    let Some(url) = common::redis_url() else {
        return;
    };
    let client = redis::Client::open(url.as_str()).unwrap();
    let manager = redis::aio::ConnectionManager::new(client.clone())
        .await
        .unwrap();
    let stores = RedisStores::new(manager, "mcpsec-test:invalidation-noclient").unwrap();
    let refused = stores.subscribe_invalidations(vec![]).unwrap_err();
    assert_eq!(refused.kind(), mcpsec_core::StoreErrorKind::Rejected);
    let with_client = stores.with_client(client);
    let subscriber = with_client.subscribe_invalidations(vec![]).unwrap();
    within("subscription", subscriber.subscribed())
        .await
        .unwrap();
}

#[test]
fn spawning_outside_a_runtime_is_refused() {
    let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
    let refused = InvalidationSubscriber::spawn(client, "p", vec![], SubscriberConfig::default())
        .unwrap_err();
    assert_eq!(refused.kind(), mcpsec_core::StoreErrorKind::Rejected);
}
