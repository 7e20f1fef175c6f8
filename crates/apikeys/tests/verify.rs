//! Verification against the attacks the issue names, and the key lifecycle.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use mcpsec_apikeys::{
    ApiKeyLookup, ApiKeys, Argon2Params, Env, Error, HashMode, KeyHasher, KeyStatus, LockoutPolicy,
    MemoryApiKeyStore, NewKey, Pepper, Source,
};
use mcpsec_core::{
    EventKind, ManualClock, MemorySink, NullSink, OrgId, SecretBytes, SecretString, UserId,
};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{members, victim_proof};

struct Fixture {
    keys: ApiKeys,
    store: Arc<MemoryApiKeyStore>,
    clock: ManualClock,
    events: MemorySink,
}

fn pepper(version: u32) -> Pepper {
    Pepper::new(version, SecretBytes::from_slice(&[version as u8; 32])).unwrap()
}

fn fixture_with(
    mode: HashMode,
    configure: impl FnOnce(mcpsec_apikeys::ApiKeysBuilder) -> mcpsec_apikeys::ApiKeysBuilder,
) -> Fixture {
    let store = Arc::new(MemoryApiKeyStore::new());
    let clock = ManualClock::at_unix(1_767_225_600);
    let events = MemorySink::new();
    let builder = ApiKeys::builder(
        store.clone(),
        members(),
        KeyHasher::new(pepper(1), vec![], mode).unwrap(),
        Arc::new(events.clone()),
    )
    .clock(Arc::new(clock.clone()));
    Fixture {
        keys: configure(builder).build().unwrap(),
        store,
        clock,
        events,
    }
}

fn fixture() -> Fixture {
    fixture_with(HashMode::HmacSha256, |b| b)
}

fn new_key(env: Env) -> NewKey {
    NewKey {
        owner: UserId::new("victim").unwrap(),
        org: OrgId::new("acme").unwrap(),
        scopes: "mcp:read user:read".into(),
        env,
        name: "laptop".into(),
        expires_at: None,
    }
}

fn ip(n: u8) -> Source {
    Source::Ip(std::net::IpAddr::from([203, 0, 113, n]))
}

/// Recomputes the checksum the way the format does, to build keys an attacker could.
fn with_checksum(body: &str) -> String {
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = crc32fast::hash(body.as_bytes());
    let mut sum = [b'0'; 6];
    for slot in sum.iter_mut().rev() {
        *slot = B62[(n % 62) as usize];
        n /= 62;
    }
    format!("{body}{}", std::str::from_utf8(&sum).unwrap())
}

fn wrong_secret_for(key: &SecretString) -> String {
    let text = key.expose_secret();
    let body = &text[..text.len() - 6];
    let (head, secret) = body.split_at(body.len() - 43);
    with_checksum(&format!("{head}{}", "Z".repeat(secret.len())))
}

#[tokio::test]
async fn a_created_key_verifies_and_maps_to_its_owner() {
    let f = fixture();
    let (key, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let verified = f.keys.verify(key.expose_secret(), &ip(1)).await.unwrap();
    assert_eq!(verified.record().id, record.id);
    let principal = verified.principal();
    assert_eq!(principal.scopes().to_string(), "mcp:read user:read");
    assert_eq!(
        principal.credential(),
        mcpsec_access::CredentialKind::ApiKey
    );
    // The key id travels with the principal: per-key rate limits and `Actor::ApiKey`
    // events keep it.
    assert_eq!(
        principal.credential_id(),
        Some(&mcpsec_access::CredentialId::Key(record.id.clone()))
    );
    assert_eq!(
        principal.actor(),
        mcpsec_core::Actor::ApiKey {
            key: record.id.clone(),
            owner: Some(record.owner.clone()),
        }
    );
    assert!(record.hash.starts_with("hmac-sha256$v1$"));
    assert!(!record.hash.contains(key.expose_secret()));
}

#[tokio::test]
async fn id_of_one_key_with_the_secret_of_another_is_refused() {
    let f = fixture();
    let (a, _) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let (b, _) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let a = a.expose_secret();
    let b = b.expose_secret();
    // a's prefix and id, b's secret, a valid checksum.
    let spliced = with_checksum(&format!("{}{}", &a[..29], &b[29..b.len() - 6]));
    let err = f.keys.verify(&spliced, &ip(1)).await.unwrap_err();
    assert_eq!(err, Error::SecretMismatch);
    assert_eq!(err.client_message(), "invalid key");
}

#[tokio::test]
async fn unknown_ids_go_through_the_dummy_comparison_and_look_the_same_to_clients() {
    let f = fixture();
    let (key, _) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let text = key.expose_secret();
    let unknown = with_checksum(&format!(
        "mcp_sk_live_{}_{}",
        "Q".repeat(16),
        &text[29..text.len() - 6]
    ));
    let unknown_err = f.keys.verify(&unknown, &ip(1)).await.unwrap_err();
    let wrong_err = f
        .keys
        .verify(&wrong_secret_for(&key), &ip(1))
        .await
        .unwrap_err();
    assert_eq!(unknown_err, Error::Unknown);
    assert_eq!(unknown_err.client_message(), wrong_err.client_message());
    let reasons: Vec<_> = f.events.events().iter().filter_map(|e| e.reason).collect();
    assert!(reasons.contains(&mcpsec_core::ReasonCode::UnknownCredential));
    assert!(reasons.contains(&mcpsec_core::ReasonCode::SecretMismatch));
}

#[tokio::test]
async fn a_default_service_refuses_test_keys_with_a_typed_error_and_an_event() {
    // issue 18: no builder call, so live keys only.
    let f = fixture();
    let (test_key, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Test))
        .await
        .unwrap();
    assert!(test_key.expose_secret().starts_with("mcp_sk_test_"));
    let error = f
        .keys
        .verify(test_key.expose_secret(), &ip(1))
        .await
        .unwrap_err();
    assert_eq!(error, Error::TestKeyRefused);
    assert!(error.to_string().contains("live keys only"), "{error}");
    assert_eq!(error.client_message(), "invalid key");
    let events = f.events.events();
    let event = events
        .iter()
        .find(|e| e.kind == EventKind::AuthnLoginFail)
        .expect("the refusal is reported");
    assert_eq!(event.reason, Some(mcpsec_core::ReasonCode::WrongType));
    assert!(
        matches!(&event.actor, mcpsec_core::Actor::ApiKey { key, .. } if *key == record.id),
        "{:?}",
        event.actor
    );
    let (live_key, _) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    assert!(
        f.keys
            .verify(live_key.expose_secret(), &ip(1))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn allow_test_keys_accepts_test_and_live_keys() {
    let f = fixture_with(HashMode::HmacSha256, |b| b.allow_test_keys());
    for env in [Env::Test, Env::Live] {
        let (key, record) = f.keys.create(&victim_proof(), new_key(env)).await.unwrap();
        let verified = f.keys.verify(key.expose_secret(), &ip(1)).await.unwrap();
        assert_eq!(verified.record().id, record.id, "{env:?}");
    }
    assert!(
        !f.events
            .events()
            .iter()
            .any(|e| e.kind == EventKind::AuthnLoginFail)
    );
}

#[tokio::test]
async fn revoked_disabled_and_expired_keys_are_refused() {
    let f = fixture();
    let (key, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    f.keys.disable(&victim_proof(), &record.id).await.unwrap();
    assert_eq!(
        f.keys
            .verify(key.expose_secret(), &ip(1))
            .await
            .unwrap_err(),
        Error::Disabled
    );
    f.keys.enable(&victim_proof(), &record.id).await.unwrap();
    assert!(f.keys.verify(key.expose_secret(), &ip(1)).await.is_ok());
    f.keys.revoke(&victim_proof(), &record.id).await.unwrap();
    assert_eq!(
        f.keys
            .verify(key.expose_secret(), &ip(1))
            .await
            .unwrap_err(),
        Error::Revoked
    );
    assert_eq!(
        f.keys.enable(&victim_proof(), &record.id).await,
        Err(Error::Revoked)
    );
    assert_eq!(
        f.keys
            .verify(key.expose_secret(), &ip(1))
            .await
            .unwrap_err(),
        Error::Revoked,
        "revoked is final"
    );

    let mut expiring = new_key(Env::Live);
    expiring.expires_at = Some(mcpsec_core::Clock::now(&f.clock) + Duration::from_secs(60));
    let (key, _) = f.keys.create(&victim_proof(), expiring).await.unwrap();
    assert!(f.keys.verify(key.expose_secret(), &ip(1)).await.is_ok());
    f.clock.advance(Duration::from_secs(60));
    assert_eq!(
        f.keys
            .verify(key.expose_secret(), &ip(1))
            .await
            .unwrap_err(),
        Error::Expired
    );
}

#[tokio::test]
async fn victims_correct_key_verifies_while_an_attacker_floods_its_id() {
    let f = fixture();
    let (key, _) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let attacker = ip(66);
    let wrong = wrong_secret_for(&key);
    let mut throttled = 0;
    for _ in 0..100 {
        match f.keys.verify(&wrong, &attacker).await.unwrap_err() {
            Error::Throttled { retry_after } => {
                assert!(retry_after > Duration::ZERO);
                throttled += 1;
            }
            Error::SecretMismatch => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        throttled >= 90,
        "the attacker's source is throttled after the threshold"
    );
    // The holder of the right secret is never locked out: from elsewhere, or even from
    // the attacker's own address (a shared NAT).
    assert!(f.keys.verify(key.expose_secret(), &ip(7)).await.is_ok());
    assert!(f.keys.verify(key.expose_secret(), &attacker).await.is_ok());
    let events = f.events.events();
    let alerts = events
        .iter()
        .filter(|e| e.kind == EventKind::AuthnLoginFailMax)
        .count();
    let locks = events
        .iter()
        .filter(|e| e.kind == EventKind::AuthnLoginLock)
        .count();
    assert_eq!(
        (alerts, locks),
        (1, 1),
        "one alert for the hammered id, one for the throttled source"
    );
}

#[tokio::test]
async fn throttle_backs_off_and_expires() {
    let policy = LockoutPolicy {
        source_threshold: 3,
        ..LockoutPolicy::default()
    };
    let f = fixture_with(HashMode::HmacSha256, |b| b.lockout(policy));
    let (key, _) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let wrong = wrong_secret_for(&key);
    for _ in 0..3 {
        assert_eq!(
            f.keys.verify(&wrong, &ip(9)).await.unwrap_err(),
            Error::SecretMismatch
        );
    }
    assert_eq!(
        f.keys.verify(&wrong, &ip(9)).await.unwrap_err(),
        Error::Throttled {
            retry_after: Duration::from_secs(1)
        }
    );
    // Four failures now: the next period is 2 s.
    f.clock.advance(Duration::from_millis(1_500));
    assert_eq!(
        f.keys.verify(&wrong, &ip(9)).await.unwrap_err(),
        Error::Throttled {
            retry_after: Duration::from_millis(500)
        }
    );
    f.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(
        f.keys.verify(&wrong, &ip(9)).await.unwrap_err(),
        Error::SecretMismatch,
        "a new window"
    );
}

#[tokio::test]
async fn junk_is_refused_before_any_lookup_and_counts_against_the_source() {
    let f = fixture_with(HashMode::HmacSha256, |b| {
        b.lockout(LockoutPolicy {
            source_threshold: 2,
            ..LockoutPolicy::default()
        })
    });
    for junk in ["", "mcp_sk_live_nope", "Bearer x"] {
        assert_eq!(
            f.keys.verify(junk, &ip(3)).await.unwrap_err(),
            Error::Malformed
        );
    }
    let (key, _) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let mut typo = key.expose_secret().to_owned();
    typo.replace_range(40..41, if &typo[40..41] == "a" { "b" } else { "a" });
    assert_eq!(
        f.keys.verify(&typo, &ip(4)).await.unwrap_err(),
        Error::BadChecksum
    );
}

#[tokio::test]
async fn pepper_rotation_rehashes_on_next_use() {
    let f = fixture();
    let (key, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let rotated = ApiKeys::builder(
        f.store.clone(),
        members(),
        KeyHasher::new(pepper(2), vec![pepper(1)], HashMode::HmacSha256).unwrap(),
        NullSink,
    )
    .build()
    .unwrap();
    assert!(rotated.verify(key.expose_secret(), &ip(1)).await.is_ok());
    let stored = f.store.get(&record.id).await.unwrap().unwrap().hash;
    assert!(stored.starts_with("hmac-sha256$v2$"), "{stored}");
    let only_new = ApiKeys::builder(
        f.store.clone(),
        members(),
        KeyHasher::new(pepper(2), vec![], HashMode::HmacSha256).unwrap(),
        NullSink,
    )
    .build()
    .unwrap();
    assert!(
        only_new.verify(key.expose_secret(), &ip(1)).await.is_ok(),
        "v1 no longer needed"
    );
}

#[tokio::test]
async fn bcrypt_hashes_verify_and_are_upgraded() {
    let f = fixture();
    let (key, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let legacy = bcrypt::hash(key.expose_secret(), 4).unwrap();
    assert!(
        f.store
            .replace_hash(&record.id, &record.hash, &legacy)
            .await
            .unwrap()
    );
    assert!(f.keys.verify(key.expose_secret(), &ip(1)).await.is_ok());
    let stored = f.store.get(&record.id).await.unwrap().unwrap().hash;
    assert!(stored.starts_with("hmac-sha256$v1$"), "upgraded: {stored}");
    assert_eq!(
        f.keys
            .verify(&wrong_secret_for(&key), &ip(2))
            .await
            .unwrap_err(),
        Error::SecretMismatch
    );
}

fn fast_argon2() -> HashMode {
    HashMode::Argon2id(Argon2Params {
        m_cost: 256,
        t_cost: 1,
        p_cost: 1,
    })
}

#[tokio::test]
async fn argon2_keys_verify_and_the_cache_serves_throttled_holders() {
    let policy = LockoutPolicy {
        source_threshold: 1,
        ..LockoutPolicy::default()
    };
    let f = fixture_with(fast_argon2(), |b| b.lockout(policy));
    let (key, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    assert!(record.hash.starts_with("argon2id$v1$m=256,t=1,p=1$"));
    assert!(
        f.keys.verify(key.expose_secret(), &ip(1)).await.is_ok(),
        "cold: Argon2 runs, then cached"
    );
    // Throttle the source; a throttled source gets no slow hashing...
    let _ = f.keys.verify(&wrong_secret_for(&key), &ip(1)).await;
    assert!(matches!(
        f.keys.verify(&wrong_secret_for(&key), &ip(1)).await,
        Err(Error::Throttled { .. })
    ));
    // ...but the cached correct key still passes.
    assert!(f.keys.verify(key.expose_secret(), &ip(1)).await.is_ok());
    // Revocation flushes the cache entry.
    f.keys.revoke(&victim_proof(), &record.id).await.unwrap();
    assert_eq!(
        f.keys
            .verify(key.expose_secret(), &ip(2))
            .await
            .unwrap_err(),
        Error::Revoked
    );
}

#[tokio::test]
async fn argon2_mode_upgrades_hmac_keys_and_vice_versa() {
    let f = fixture();
    let (key, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let slow = ApiKeys::builder(
        f.store.clone(),
        members(),
        KeyHasher::new(pepper(1), vec![], fast_argon2()).unwrap(),
        NullSink,
    )
    .build()
    .unwrap();
    assert!(slow.verify(key.expose_secret(), &ip(1)).await.is_ok());
    assert!(
        f.store
            .get(&record.id)
            .await
            .unwrap()
            .unwrap()
            .hash
            .starts_with("argon2id$")
    );
    assert!(f.keys.verify(key.expose_secret(), &ip(1)).await.is_ok());
    assert!(
        f.store
            .get(&record.id)
            .await
            .unwrap()
            .unwrap()
            .hash
            .starts_with("hmac-sha256$")
    );
}

#[tokio::test]
async fn successful_use_is_rate_limited_per_key() {
    let f = fixture_with(HashMode::HmacSha256, |b| b.quota_per_minute(3));
    let (key, _) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let (other, _) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let remaining: Vec<u32> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(
                f.keys
                    .verify(key.expose_secret(), &ip(1))
                    .await
                    .unwrap()
                    .rate_limit()
                    .remaining,
            );
        }
        out
    };
    assert_eq!(remaining, [2, 1, 0]);
    let Err(Error::RateLimited { retry_after }) = f.keys.verify(key.expose_secret(), &ip(1)).await
    else {
        panic!("expected RateLimited")
    };
    assert_eq!(retry_after, Duration::from_secs(20));
    assert!(
        f.keys.verify(other.expose_secret(), &ip(1)).await.is_ok(),
        "quotas are per key"
    );
    f.clock.advance(retry_after);
    assert!(f.keys.verify(key.expose_secret(), &ip(1)).await.is_ok());
}

#[tokio::test]
async fn last_used_is_coarse() {
    let f = fixture();
    let (key, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    f.keys.verify(key.expose_secret(), &ip(1)).await.unwrap();
    let first = f
        .store
        .get(&record.id)
        .await
        .unwrap()
        .unwrap()
        .last_used_at
        .unwrap();
    f.clock.advance(Duration::from_secs(60));
    f.keys.verify(key.expose_secret(), &ip(1)).await.unwrap();
    assert_eq!(
        f.store.get(&record.id).await.unwrap().unwrap().last_used_at,
        Some(first)
    );
    f.clock.advance(Duration::from_secs(300));
    f.keys.verify(key.expose_secret(), &ip(1)).await.unwrap();
    assert!(
        f.store
            .get(&record.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at
            .unwrap()
            > first
    );
}

#[tokio::test]
async fn rotation_overlaps_then_the_old_key_expires() {
    let f = fixture();
    let (old, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let (new, new_record) = f
        .keys
        .rotate(&victim_proof(), &record.id, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(new_record.scopes, record.scopes);
    assert!(
        f.keys.verify(old.expose_secret(), &ip(1)).await.is_ok(),
        "overlap"
    );
    assert!(f.keys.verify(new.expose_secret(), &ip(1)).await.is_ok());
    f.clock.advance(Duration::from_secs(3600));
    assert_eq!(
        f.keys
            .verify(old.expose_secret(), &ip(1))
            .await
            .unwrap_err(),
        Error::Expired
    );
    assert!(f.keys.verify(new.expose_secret(), &ip(1)).await.is_ok());
    let listed = f
        .keys
        .list(&victim_proof(), &UserId::new("victim").unwrap())
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|k| k.hint.len() == 4 && k.status == KeyStatus::Active)
    );
}

#[tokio::test]
async fn creation_parses_scopes_strictly() {
    let f = fixture();
    let mut bad = new_key(Env::Live);
    bad.scopes = "mcp:read mcp:everything".into();
    assert_eq!(
        f.keys.create(&victim_proof(), bad).await.unwrap_err(),
        Error::Invalid("scopes")
    );
}

#[tokio::test]
async fn nothing_secret_in_debug_display_or_events() {
    let f = fixture();
    let (key, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let secret = &key.expose_secret()[29..72];
    let _ = f.keys.verify(key.expose_secret(), &ip(1)).await;
    let _ = f.keys.verify(&wrong_secret_for(&key), &ip(1)).await;
    f.keys.revoke(&victim_proof(), &record.id).await.unwrap();
    let err = f
        .keys
        .verify(key.expose_secret(), &ip(1))
        .await
        .unwrap_err();
    let parsed = mcpsec_apikeys::format::parse(key.expose_secret()).unwrap();
    let texts = [
        format!("{key:?}"),
        format!("{record:?}"),
        format!("{err:?} {err}"),
        format!("{:?}", f.keys),
        format!("{parsed:?}"),
        serde_json::to_string(&f.events.events()).unwrap(),
    ];
    for text in texts {
        assert!(!text.contains(secret), "secret leaked into: {text}");
        assert!(
            !text.contains(key.expose_secret()),
            "key leaked into: {text}"
        );
    }
}
