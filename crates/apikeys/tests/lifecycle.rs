//! The key lifecycle: who acted, what may follow what, and failures that are counted
//! (issue 12 item 14).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::*;
use mcpsec_apikeys::{
    ApiKeyLookup, ApiKeys, Env, Error, HashMode, KeyHasher, KeyStatus, MemoryApiKeyStore,
    MemoryAttemptCounter,
};
use mcpsec_core::{Actor, EventKind, ManualClock, MemorySink, ServiceId, UserId};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn enable_of_a_revoked_key_is_an_error() {
    let f = fixture_with(HashMode::HmacSha256, |b| b);
    let (key, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    f.keys.revoke(&victim_proof(), &record.id).await.unwrap();
    assert_eq!(
        f.keys.enable(&victim_proof(), &record.id).await,
        Err(Error::Revoked)
    );
    assert_eq!(
        f.keys
            .verify(key.expose_secret(), &ip(1))
            .await
            .unwrap_err(),
        Error::Revoked
    );
}

#[tokio::test]
async fn rotating_a_disabled_key_makes_a_disabled_successor() {
    let f = fixture_with(HashMode::HmacSha256, |b| b);
    let (_, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    f.keys.disable(&victim_proof(), &record.id).await.unwrap();
    let (next, next_record) = f
        .keys
        .rotate(&victim_proof(), &record.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(next_record.status, KeyStatus::Disabled);
    assert_eq!(
        f.store.get(&next_record.id).await.unwrap().unwrap().status,
        KeyStatus::Disabled
    );
    assert_eq!(
        f.keys
            .verify(next.expose_secret(), &ip(1))
            .await
            .unwrap_err(),
        Error::Disabled,
        "rotation is not a way to re-enable a disabled key"
    );
}

/// A stored hash that cannot be read, or one under a pepper version this service does not
/// hold, is refused like a wrong secret: an event and a counted failure, not a bare error.
#[tokio::test]
async fn bad_stored_hash_and_unknown_pepper_take_the_failure_path() {
    for (case, stored) in [
        ("bad hash", "argon2id$v1$junk"),
        (
            "unknown pepper",
            "hmac-sha256$v9$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ),
    ] {
        let log = CallLog::default();
        let store = Arc::new(MemoryApiKeyStore::new());
        let events = MemorySink::new();
        let keys = ApiKeys::builder(
            store.clone(),
            members(),
            KeyHasher::new(pepper(1), vec![], HashMode::HmacSha256).unwrap(),
            Arc::new(events.clone()),
        )
        .clock(Arc::new(ManualClock::at_unix(1_767_225_600)))
        .attempt_counter(Arc::new(CountingCounter {
            inner: MemoryAttemptCounter::default(),
            log: log.clone(),
        }))
        .build()
        .unwrap();
        let (key, record) = keys
            .create(&victim_proof(), new_key(Env::Live))
            .await
            .unwrap();
        assert!(
            store
                .replace_hash(&record.id, &record.hash, stored)
                .await
                .unwrap()
        );
        let _ = log.take(&[]);

        assert_eq!(
            keys.verify(key.expose_secret(), &ip(1)).await.unwrap_err(),
            Error::BadStoredHash,
            "{case}"
        );
        let calls = log.take(&[&record.id]);
        assert!(
            calls
                .iter()
                .any(|c| c.starts_with("counter.record_failure src:")),
            "{case}: counted against the source: {calls:?}"
        );
        assert!(
            calls.contains(&"counter.record_failure key:<id>".to_owned()),
            "{case}: counted against the key id: {calls:?}"
        );
        let failures: Vec<_> = events
            .events()
            .into_iter()
            .filter(|e| e.kind == EventKind::AuthnLoginFail)
            .collect();
        assert_eq!(failures.len(), 1, "{case}: one failure event");
    }
}

#[tokio::test]
async fn record_debug_hides_the_stored_hash() {
    let f = fixture_with(HashMode::HmacSha256, |b| b);
    let (_, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let mac = record.hash.rsplit('$').next().unwrap().to_owned();
    let text = format!("{record:?}");
    assert!(!text.contains(&mac), "stored hash in Debug: {text}");
    assert!(
        text.contains(record.id.as_str()),
        "the id is still shown: {text}"
    );
}

/// Events name who acted, not who created the key: the proof's subject, or the service
/// that reported a leaked key.
#[tokio::test]
async fn lifecycle_events_name_who_acted() {
    let f = fixture_with(HashMode::HmacSha256, |b| b);
    let (key, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let admin = Actor::User {
        user: UserId::new("admin").unwrap(),
    };
    let service = Actor::Service {
        service: ServiceId::new("scanner").unwrap(),
    };
    f.keys
        .disable(&admin_proof("acme"), &record.id)
        .await
        .unwrap();
    f.keys.enable(&victim_proof(), &record.id).await.unwrap();
    f.keys
        .revoke_leaked(key.expose_secret(), service.clone())
        .await
        .unwrap();
    let acted: Vec<(String, Actor)> = f
        .events
        .events()
        .into_iter()
        .skip(1)
        .map(|e| (e.action.map(|a| a.to_string()).unwrap_or_default(), e.actor))
        .collect();
    assert_eq!(
        acted,
        [
            ("disable".to_owned(), admin),
            (
                "enable".to_owned(),
                Actor::User {
                    user: UserId::new("victim").unwrap()
                }
            ),
            ("revoke".to_owned(), service),
        ]
    );
}
