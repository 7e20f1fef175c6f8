//! The signing keyring's metadata store: conformance suite per backend, and a keyring
//! that persists and reloads through it (issue 13).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly on purpose"
)]

use mcpsec_core::{KeyId, StoreErrorKind};
use mcpsec_tokens::{
    Algorithm, Error, KeyRecord, KeyState, MemorySigningKeyProvider, MemorySigningKeyStore,
    SigningKey, SigningKeyStore, SigningKeyring,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mcpsec_tokens::signing_key_store_suite!(memory, |_: mcpsec_core::testkit::Namespace| async {
    Arc::new(MemorySigningKeyStore::new()) as Arc<dyn SigningKeyStore>
});

fn key(kid: &str) -> SigningKey {
    SigningKey::generate(KeyId::new(kid).unwrap(), Algorithm::EdDSA).unwrap()
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// k1 retired, k2 current, k3 next; the provider holds all three.
fn rotated() -> (SigningKeyring, MemorySigningKeyProvider) {
    let provider = MemorySigningKeyProvider::new();
    for kid in ["k1", "k2", "k3"] {
        provider.insert(key(kid));
    }
    // The ring holds its own copies: same kids, which is all the store records.
    let mut ring = SigningKeyring::new(key("k1"));
    ring.add_next(key("k2")).unwrap();
    ring.rotate(now(), Duration::from_secs(900), key("k3"))
        .unwrap();
    (ring, provider)
}

#[tokio::test]
async fn a_keyring_saved_and_loaded_keeps_states_and_dates() {
    let (ring, provider) = rotated();
    let store = MemorySigningKeyStore::new();
    assert_eq!(ring.save(&store, 0).await.unwrap(), 1);
    let (loaded, generation) = SigningKeyring::load(&store, &provider).await.unwrap();
    assert_eq!(generation, 1);
    assert_eq!(loaded.states(), ring.states());
    assert_eq!(loaded.current().unwrap().kid().as_str(), "k2");
    assert_eq!(loaded.jwks().keys.len(), 3);
}

#[tokio::test]
async fn two_instances_rotating_at_once_cannot_both_win() {
    let (ring, provider) = rotated();
    let store = MemorySigningKeyStore::new();
    ring.save(&store, 0).await.unwrap();
    let (mut a, generation) = SigningKeyring::load(&store, &provider).await.unwrap();
    let (mut b, _) = SigningKeyring::load(&store, &provider).await.unwrap();
    provider.insert(key("k4"));
    provider.insert(key("k5"));
    a.rotate(now(), Duration::from_secs(900), key("k4"))
        .unwrap();
    b.rotate(now(), Duration::from_secs(900), key("k5"))
        .unwrap();
    a.save(&store, generation).await.unwrap();
    let lost = b.save(&store, generation).await;
    assert!(
        matches!(&lost, Err(Error::Store(e)) if e.kind() == StoreErrorKind::Conflict),
        "{lost:?}"
    );
    let (stored, _) = SigningKeyring::load(&store, &provider).await.unwrap();
    assert_eq!(stored.states(), a.states());
}

#[tokio::test]
async fn a_store_that_breaks_the_keyring_invariants_is_refused() {
    let provider = MemorySigningKeyProvider::new();
    provider.insert(key("k1"));
    provider.insert(key("k2"));
    let record = |kid: &str, state| KeyRecord {
        kid: KeyId::new(kid).unwrap(),
        algorithm: Algorithm::EdDSA,
        state,
    };
    let cases = [
        vec![],
        vec![record("k1", KeyState::Next)],
        vec![
            record("k1", KeyState::Current),
            record("k2", KeyState::Current),
        ],
        vec![record("k1", KeyState::Next), record("k2", KeyState::Next)],
        vec![
            record("k1", KeyState::Current),
            record("k1", KeyState::Next),
        ],
        // A kid the provider does not hold, or holds for another algorithm.
        vec![record("k9", KeyState::Current)],
        vec![KeyRecord {
            algorithm: Algorithm::ES256,
            ..record("k1", KeyState::Current)
        }],
    ];
    for records in cases {
        let store = MemorySigningKeyStore::new();
        store.replace(0, records.clone()).await.unwrap();
        let loaded = SigningKeyring::load(&store, &provider).await;
        assert!(
            matches!(loaded, Err(Error::Key(mcpsec_tokens::KeyError::Keyring(_)))),
            "{records:?} loaded"
        );
    }
}
