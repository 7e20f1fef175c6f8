//! Conformance suite for [`ApiKeyStore`] backends (feature `testkit`): one public async
//! function per case, each taking a fresh store, expanded into named tests per backend by
//! [`api_key_store_suite!`](crate::api_key_store_suite) (the workspace convention, see
//! `mcpsec_core::testkit::suite`). The `AttemptCounter` suite is
//! `mcpsec_core::attempt_counter_suite!`.
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

fn id(name: &str) -> KeyId {
    KeyId::new(name).unwrap()
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
    member("alice", org)
}

/// `user`, a developer of `org`.
fn member(user: &str, org: &str) -> Principal {
    mcpsec_access::danger::principal(
        UserId::new(user).unwrap(),
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

/// Stores `k1`, `k2` (alice's) and `k3` (bob's), all in `acme`, each inserted by its
/// owner (a store may refuse, as PostgreSQL's row-level security does, a developer's
/// insert of another user's key).
async fn seed(store: &dyn ApiKeyStore) {
    for (key, owner) in [("k1", "alice"), ("k2", "alice"), ("k3", "bob")] {
        store
            .insert(&member(owner, "acme"), &record(key, owner))
            .await
            .unwrap();
    }
}

/// A record is stored once, read back whole, and listed under its owner.
pub async fn insert_get_and_list_by_owner(store: Arc<dyn ApiKeyStore>) {
    seed(&*store).await;
    let acme = tenant("acme");
    let r = record("k1", "alice");
    assert!(
        store.insert(&acme, &r).await.is_err(),
        "duplicate ids are refused"
    );
    assert_eq!(store.get(&r.id).await.unwrap(), Some(r.clone()));
    assert_eq!(store.get(&id("nope")).await.unwrap(), None);
    assert_eq!(
        store
            .list_by_owner(&acme, &UserId::new("alice").unwrap())
            .await
            .unwrap()
            .len(),
        2
    );
}

/// `replace_hash` is a compare-and-set on the stored hash.
pub async fn replace_hash_is_compare_and_set(store: Arc<dyn ApiKeyStore>) {
    seed(&*store).await;
    let r = record("k1", "alice");
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
}

/// `set_status` answers with the status it replaced, a revoked key stays revoked, and
/// `set_expiry` writes the expiry.
pub async fn set_status_answers_the_replaced_status_and_revoked_stays(store: Arc<dyn ApiKeyStore>) {
    seed(&*store).await;
    let acme = tenant("acme");
    let k1 = id("k1");
    assert_eq!(
        store
            .set_status(&acme, &k1, KeyStatus::Disabled)
            .await
            .unwrap(),
        Some(KeyStatus::Active)
    );
    assert_eq!(
        store
            .set_status(&acme, &k1, KeyStatus::Revoked)
            .await
            .unwrap(),
        Some(KeyStatus::Disabled)
    );
    assert_eq!(
        store
            .set_status(&acme, &k1, KeyStatus::Active)
            .await
            .unwrap(),
        Some(KeyStatus::Revoked)
    );
    assert_eq!(
        store.get(&k1).await.unwrap().unwrap().status,
        KeyStatus::Revoked
    );
    assert_eq!(
        store
            .set_status(&acme, &id("nope"), KeyStatus::Active)
            .await
            .unwrap(),
        None
    );
    assert!(store.set_expiry(&acme, &k1, Some(at(100))).await.unwrap());
    assert_eq!(
        store.get(&k1).await.unwrap().unwrap().expires_at,
        Some(at(100))
    );
}

/// The tenant face never reaches another organization's keys: they read as absent and
/// change nothing; a record outside the tenant is not inserted.
pub async fn tenant_face_never_reaches_another_organization(store: Arc<dyn ApiKeyStore>) {
    seed(&*store).await;
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
            .set_status(&globex, &id("k2"), KeyStatus::Revoked)
            .await
            .unwrap(),
        None
    );
    assert!(!store.set_expiry(&globex, &id("k2"), None).await.unwrap());
    assert_eq!(
        store.get(&id("k2")).await.unwrap().unwrap().status,
        KeyStatus::Active
    );
    assert_eq!(
        store
            .insert(&globex, &record("k4", "alice"))
            .await
            .unwrap_err()
            .kind(),
        mcpsec_core::StoreErrorKind::Rejected
    );
    assert_eq!(store.get(&id("k4")).await.unwrap(), None);
}

/// A holder-proved revocation (the one status change without a principal) answers with
/// the status it replaced.
pub async fn revoke_by_holder_answers_the_replaced_status(store: Arc<dyn ApiKeyStore>) {
    seed(&*store).await;
    assert_eq!(
        store.revoke_by_holder(&id("k3")).await.unwrap(),
        Some(KeyStatus::Active)
    );
    assert_eq!(
        store.get(&id("k3")).await.unwrap().unwrap().status,
        KeyStatus::Revoked
    );
    assert_eq!(store.revoke_by_holder(&id("nope")).await.unwrap(), None);
}

/// `last_used_at` is written at most once per interval.
pub async fn touch_last_used_writes_at_most_once_per_interval(store: Arc<dyn ApiKeyStore>) {
    seed(&*store).await;
    let k1 = id("k1");
    let every = Duration::from_secs(300);
    assert!(store.touch_last_used(&k1, at(10), every).await.unwrap());
    assert!(!store.touch_last_used(&k1, at(200), every).await.unwrap());
    assert!(store.touch_last_used(&k1, at(310), every).await.unwrap());
    assert_eq!(
        store.get(&k1).await.unwrap().unwrap().last_used_at,
        Some(at(310))
    );
}

/// Of 32 concurrent hash upgrades of one key exactly one compare-and-set wins.
pub async fn concurrent_replace_hash_one_wins(shared: Arc<dyn ApiKeyStore>) {
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

/// Expands the [`ApiKeyStore`] suite into named tests in a module named after the backend:
/// `api_key_store_suite!(memory, |_ns| async { Arc::new(MemoryApiKeyStore::new()) as
/// Arc<dyn ApiKeyStore> })` gives `memory::concurrent_replace_hash_one_wins` and so on. The
/// factory is called once per test with that test's `mcpsec_core::testkit::Namespace`; the
/// calling crate needs tokio with `macros` and `rt-multi-thread`.
#[macro_export]
macro_rules! api_key_store_suite {
    ($backend:ident, $factory:expr $(,)?) => {
        $crate::testkit::__conformance_suite!(
            suite = "api_key_store",
            cases = [$crate::testkit],
            backend = $backend,
            factory = $factory,
            tests = [
                insert_get_and_list_by_owner,
                replace_hash_is_compare_and_set,
                set_status_answers_the_replaced_status_and_revoked_stays,
                tenant_face_never_reaches_another_organization,
                revoke_by_holder_answers_the_replaced_status,
                touch_last_used_writes_at_most_once_per_interval,
                concurrent_replace_hash_one_wins,
            ],
        );
    };
}

#[doc(hidden)]
pub use mcpsec_core::testkit::__conformance_suite;
