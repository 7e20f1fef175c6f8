//! Conformance suite for [`ApiKeyStore`] backends (feature `testkit`); the
//! `AttemptCounter` suite is `mcpsec_core::attempt_counter_suite!`. Call them from a multi-threaded tokio test with a factory of fresh stores.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: failing loudly is its job"
)]

use crate::{ApiKeyRecord, ApiKeyStore, Env, KeyStatus};
use mcpsec_access::{AuthMethods, Authentication, CredentialKind, Principal, Role, ScopeSet};
use mcpsec_core::{KeyId, Label, OrgId, UserId};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600 + secs)
}

fn record(id: &str, owner: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: KeyId::new(id).unwrap(),
        hash: "hmac-sha256$v1$AAAA".to_owned(),
        owner: UserId::new(owner).unwrap(),
        org: OrgId::new("acme").unwrap(),
        scopes: ScopeSet::parse_strict("mcp:read").unwrap(),
        env: Env::Live,
        name: Label::new("ci").unwrap(),
        created_at: at(0),
        expires_at: None,
        last_used_at: None,
        status: KeyStatus::Active,
        hint: "abcd".to_owned(),
        created_by: UserId::new(owner).unwrap(),
    }
}

/// The principal tenant-scoped calls run as: a member of `org`.
fn tenant(org: &str) -> Principal {
    Principal::new(
        UserId::new("alice").unwrap(),
        OrgId::new(org).unwrap(),
        Role::Developer,
        ScopeSet::parse_strict("user:token mcp:read").unwrap(),
        CredentialKind::AccessToken,
        Authentication {
            at: None,
            methods: AuthMethods::EMPTY,
        },
    )
}

/// Runs every [`ApiKeyStore`] check against stores made by `make`.
pub async fn api_key_store_conformance<F>(make: F)
where
    F: Fn() -> Arc<dyn ApiKeyStore>,
{
    let store = make();
    let acme = tenant("acme");
    let r = record("k1", "alice");
    store.insert(&acme, &r).await.unwrap();
    assert!(
        store.insert(&acme, &r).await.is_err(),
        "duplicate ids are refused"
    );
    assert_eq!(store.get(&r.id).await.unwrap(), Some(r.clone()));
    assert_eq!(store.get(&KeyId::new("nope").unwrap()).await.unwrap(), None);
    store.insert(&acme, &record("k2", "alice")).await.unwrap();
    store.insert(&acme, &record("k3", "bob")).await.unwrap();
    assert_eq!(
        store
            .list_by_owner(&acme, &UserId::new("alice").unwrap())
            .await
            .unwrap()
            .len(),
        2
    );

    // replace_hash is compare-and-set.
    assert!(
        store
            .replace_hash(&r.id, &r.hash, "hmac-sha256$v2$BBBB")
            .await
            .unwrap()
    );
    assert!(
        !store
            .replace_hash(&r.id, &r.hash, "hmac-sha256$v2$CCCC")
            .await
            .unwrap()
    );
    assert_eq!(
        store.get(&r.id).await.unwrap().unwrap().hash,
        "hmac-sha256$v2$BBBB"
    );

    // set_status answers with the status it replaced; a revoked key stays revoked.
    assert_eq!(
        store
            .set_status(&acme, &r.id, KeyStatus::Disabled)
            .await
            .unwrap(),
        Some(KeyStatus::Active)
    );
    assert_eq!(
        store
            .set_status(&acme, &r.id, KeyStatus::Revoked)
            .await
            .unwrap(),
        Some(KeyStatus::Disabled)
    );
    assert_eq!(
        store
            .set_status(&acme, &r.id, KeyStatus::Active)
            .await
            .unwrap(),
        Some(KeyStatus::Revoked)
    );
    assert_eq!(
        store.get(&r.id).await.unwrap().unwrap().status,
        KeyStatus::Revoked
    );
    assert_eq!(
        store
            .set_status(&acme, &KeyId::new("nope").unwrap(), KeyStatus::Active)
            .await
            .unwrap(),
        None
    );

    assert!(store.set_expiry(&acme, &r.id, Some(at(100))).await.unwrap());
    assert_eq!(
        store.get(&r.id).await.unwrap().unwrap().expires_at,
        Some(at(100))
    );

    // The tenant face never reaches another organization's keys: they read as absent and
    // change nothing; a record outside the tenant is not inserted.
    let globex = tenant("globex");
    assert!(
        store
            .list_by_owner(&globex, &UserId::new("alice").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .set_status(&globex, &KeyId::new("k2").unwrap(), KeyStatus::Revoked)
            .await
            .unwrap(),
        None
    );
    assert!(
        !store
            .set_expiry(&globex, &KeyId::new("k2").unwrap(), None)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .get(&KeyId::new("k2").unwrap())
            .await
            .unwrap()
            .unwrap()
            .status,
        KeyStatus::Active
    );
    assert!(store.insert(&globex, &record("k4", "alice")).await.is_err());
    assert_eq!(store.get(&KeyId::new("k4").unwrap()).await.unwrap(), None);

    // A holder-proved revocation (the one status change without a principal).
    assert_eq!(
        store
            .revoke_by_holder(&KeyId::new("k3").unwrap())
            .await
            .unwrap(),
        Some(KeyStatus::Active)
    );
    assert_eq!(
        store
            .revoke_by_holder(&KeyId::new("nope").unwrap())
            .await
            .unwrap(),
        None
    );

    // last_used is written at most once per interval.
    let every = Duration::from_secs(300);
    assert!(store.touch_last_used(&r.id, at(10), every).await.unwrap());
    assert!(!store.touch_last_used(&r.id, at(200), every).await.unwrap());
    assert!(store.touch_last_used(&r.id, at(310), every).await.unwrap());
    assert_eq!(
        store.get(&r.id).await.unwrap().unwrap().last_used_at,
        Some(at(310))
    );

    // Concurrent upgrades: exactly one compare-and-set wins.
    let shared = make();
    shared
        .insert(&tenant("acme"), &record("race", "alice"))
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let s = Arc::clone(&shared);
        tasks.spawn(async move {
            s.replace_hash(
                &KeyId::new("race").unwrap(),
                "hmac-sha256$v1$AAAA",
                &format!("hmac-sha256$v2${i}"),
            )
            .await
            .unwrap()
        });
    }
    let mut wins = 0;
    while let Some(won) = tasks.join_next().await {
        wins += usize::from(won.expect("task"));
    }
    assert_eq!(wins, 1, "exactly one concurrent replace_hash wins");
}
