//! Conformance suites for [`RefreshTokenStore`] backends (here) and for
//! [`SessionRevocation`](crate::SessionRevocation) backends ([`session`]), feature `testkit`.
//!
//! The refresh-store suite: one public
//! async function per case, each taking a fresh store, expanded into named tests per backend
//! by [`refresh_store_suite!`](crate::refresh_store_suite) (the workspace convention, see
//! `mcpsec_core::testkit::suite`):
//!
//! ```ignore
//! mcpsec_tokens::refresh_store_suite!(postgres, |ns: Namespace| async move {
//!     Arc::new(PgRefreshStore::fresh_schema(ns.as_str()).await) as Arc<dyn RefreshTokenStore>
//! });
//! // -> postgres::concurrent_consume_one_wins, postgres::prune_removes_expired_families, …
//! ```
#![expect(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: failing loudly is its job"
)]

use crate::{
    ConsumeOutcome, FamilyRecord, RefreshRecord, RefreshTokenStore, SessionGrant, TokenHash,
};
use mcpsec_access::{AuthMethods, Authentication, CredentialKind, Principal, Role, ScopeSet};
use mcpsec_core::{OrgId, TokenId, UserId};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const T0: u64 = 1_767_225_600;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + secs)
}

fn hash(n: u8, salt: u8) -> TokenHash {
    let mut h = [n; 32];
    h[0] = salt;
    TokenHash(h)
}

/// Families made here live until `at(LIFETIME)`.
const LIFETIME: u64 = 3600;

fn family(id: &TokenId) -> FamilyRecord {
    FamilyRecord {
        id: id.clone(),
        grant: SessionGrant {
            subject: UserId::new("conformance-user").unwrap(),
            org: None,
            role: None,
            scopes: ScopeSet::parse_strict("mcp:read").unwrap(),
            auth_time: at(0),
            amr: AuthMethods::EMPTY,
            acr: None,
        },
        created_at: at(0),
        last_used_at: at(0),
        expires_at: at(LIFETIME),
        revoked: false,
    }
}

async fn start(store: &dyn RefreshTokenStore, salt: u8) -> (TokenId, TokenHash) {
    let id = TokenId::generate().unwrap();
    let first = hash(1, salt);
    let record = RefreshRecord {
        hash: first,
        family: id.clone(),
        issued_at: at(0),
        consumed_at: None,
        expires_at: at(LIFETIME),
    };
    store
        .create_family(&family(&id), &record)
        .await
        .expect("create_family");
    (id, first)
}

/// `prune` deletes expired families with every token (consumed or not), and nothing of a
/// live family.
pub async fn prune_removes_expired_families_and_keeps_live_ones(store: Arc<dyn RefreshTokenStore>) {
    let (old, old_first) = start(&*store, 70).await;
    store
        .consume_once(&old_first, &hash(2, 70), at(5))
        .await
        .unwrap();
    let live_id = TokenId::generate().unwrap();
    let mut live = family(&live_id);
    live.expires_at = at(LIFETIME + 1);
    let live_first = RefreshRecord {
        hash: hash(1, 71),
        family: live_id.clone(),
        issued_at: at(0),
        consumed_at: None,
        expires_at: at(LIFETIME + 1),
    };
    store.create_family(&live, &live_first).await.unwrap();
    store
        .consume_once(&live_first.hash, &hash(2, 71), at(5))
        .await
        .unwrap();

    assert_eq!(
        store.prune(at(LIFETIME - 1)).await.unwrap(),
        0,
        "nothing expired yet"
    );
    assert!(store.family(&old).await.unwrap().is_some());
    assert_eq!(store.prune(at(LIFETIME)).await.unwrap(), 1);
    assert!(
        store.family(&old).await.unwrap().is_none(),
        "pruned family gone"
    );
    for token in [old_first, hash(2, 70)] {
        assert_eq!(
            store
                .consume_once(&token, &hash(9, 70), at(LIFETIME))
                .await
                .unwrap(),
            ConsumeOutcome::NotFound,
            "a pruned family's tokens are gone"
        );
    }
    assert!(
        store.family(&live_id).await.unwrap().is_some(),
        "live family kept"
    );
    // Its consumed token is still known (reuse detection) and its successor still works.
    assert!(matches!(
        store
            .consume_once(&live_first.hash, &hash(3, 71), at(LIFETIME))
            .await
            .unwrap(),
        ConsumeOutcome::AlreadyConsumed { .. }
    ));
    assert!(matches!(
        store
            .consume_once(&hash(2, 71), &hash(4, 71), at(LIFETIME))
            .await
            .unwrap(),
        ConsumeOutcome::Consumed(_)
    ));
}

/// A consume returns the family as it was and stores a consumable successor.
pub async fn consume_returns_family_and_stores_successor(store: Arc<dyn RefreshTokenStore>) {
    let (id, first) = start(&*store, 10).await;
    let second = hash(2, 10);
    match store.consume_once(&first, &second, at(5)).await.unwrap() {
        ConsumeOutcome::Consumed(f) => {
            assert_eq!(f.last_used_at, at(0), "the family as it was before")
        }
        other => panic!("expected Consumed, got {other:?}"),
    }
    assert_eq!(
        store.family(&id).await.unwrap().unwrap().last_used_at,
        at(5)
    );
    // The successor is a live token of the same family.
    match store
        .consume_once(&second, &hash(3, 10), at(6))
        .await
        .unwrap()
    {
        ConsumeOutcome::Consumed(f) => assert_eq!(f.id, id),
        other => panic!("successor should be consumable, got {other:?}"),
    }
}

/// A second consume of one token reports the first use and stores nothing.
pub async fn second_consume_reports_first_use(store: Arc<dyn RefreshTokenStore>) {
    let (_, first) = start(&*store, 20).await;
    assert!(matches!(
        store
            .consume_once(&first, &hash(2, 20), at(5))
            .await
            .unwrap(),
        ConsumeOutcome::Consumed(_)
    ));
    match store
        .consume_once(&first, &hash(3, 20), at(9))
        .await
        .unwrap()
    {
        ConsumeOutcome::AlreadyConsumed { consumed_at, .. } => assert_eq!(consumed_at, at(5)),
        other => panic!("expected AlreadyConsumed, got {other:?}"),
    }
    // The losing call stored nothing: its successor does not exist.
    assert_eq!(
        store
            .consume_once(&hash(3, 20), &hash(4, 20), at(10))
            .await
            .unwrap(),
        ConsumeOutcome::NotFound
    );
}

fn tenant(user: &str, org: &str) -> Principal {
    // A suite stands in for a verifier here.
    mcpsec_access::danger::principal(
        UserId::new(user).unwrap(),
        OrgId::new(org).unwrap(),
        Role::OrgAdmin,
        ScopeSet::parse_strict("org:admin user:token").unwrap(),
        CredentialKind::AccessToken,
        Authentication {
            at: None,
            methods: AuthMethods::EMPTY,
        },
    )
}

/// The tenant face (`revoke_family_as`) revokes only the tenant's families: its
/// organization's, or the tenant's own organization-less session; anything else reads as
/// absent and stays live.
pub async fn tenant_revocation_stays_in_the_tenant(store: Arc<dyn RefreshTokenStore>) {
    // An organization-less session of `conformance-user`.
    let (own, _) = start(&*store, 80).await;
    let other = tenant("other", "acme");
    assert!(!store.revoke_family_as(&other, &own).await.unwrap());
    assert!(!store.family(&own).await.unwrap().unwrap().revoked);
    let me = tenant("conformance-user", "acme");
    assert!(store.revoke_family_as(&me, &own).await.unwrap());
    assert!(store.family(&own).await.unwrap().unwrap().revoked);

    // A session in `acme`.
    let id = TokenId::generate().unwrap();
    let mut in_acme = family(&id);
    in_acme.grant.org = Some(OrgId::new("acme").unwrap());
    let first = RefreshRecord {
        hash: hash(1, 81),
        family: id.clone(),
        issued_at: at(0),
        consumed_at: None,
        expires_at: at(LIFETIME),
    };
    store.create_family(&in_acme, &first).await.unwrap();
    let globex = tenant("root", "globex");
    assert!(!store.revoke_family_as(&globex, &id).await.unwrap());
    assert!(!store.family(&id).await.unwrap().unwrap().revoked);
    let acme = tenant("root", "acme");
    assert!(store.revoke_family_as(&acme, &id).await.unwrap());
    assert!(store.family(&id).await.unwrap().unwrap().revoked);
    let unknown = TokenId::generate().unwrap();
    assert!(!store.revoke_family_as(&acme, &unknown).await.unwrap());
}

/// A revoked family's tokens are never consumed.
pub async fn revoked_family_consumes_nothing(store: Arc<dyn RefreshTokenStore>) {
    let (id, first) = start(&*store, 30).await;
    store.revoke_family(&id).await.unwrap();
    assert!(store.family(&id).await.unwrap().unwrap().revoked);
    assert!(matches!(
        store
            .consume_once(&first, &hash(2, 30), at(5))
            .await
            .unwrap(),
        ConsumeOutcome::FamilyRevoked(_)
    ));
    assert_eq!(
        store
            .consume_once(&hash(2, 30), &hash(3, 30), at(6))
            .await
            .unwrap(),
        ConsumeOutcome::NotFound
    );
}

/// An unknown token or family reads as not found.
pub async fn unknown_token_is_not_found(store: Arc<dyn RefreshTokenStore>) {
    assert_eq!(
        store
            .consume_once(&hash(9, 40), &hash(8, 40), at(1))
            .await
            .unwrap(),
        ConsumeOutcome::NotFound
    );
    assert!(
        store
            .family(&TokenId::new("no-such-family").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

/// A family id is stored once.
pub async fn duplicate_family_is_refused(store: Arc<dyn RefreshTokenStore>) {
    let (id, _) = start(&*store, 50).await;
    let again = RefreshRecord {
        hash: hash(7, 50),
        family: id.clone(),
        issued_at: at(0),
        consumed_at: None,
        expires_at: at(LIFETIME),
    };
    assert!(store.create_family(&family(&id), &again).await.is_err());
}

/// Of 32 concurrent consumers of one token exactly one wins
/// (`refresh_token_used_by_32_concurrent_consumers_succeeds_once`).
pub async fn concurrent_consume_one_wins(store: Arc<dyn RefreshTokenStore>) {
    let (_, first) = start(&*store, 60).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32u8 {
        let store = Arc::clone(&store);
        tasks.spawn(async move { store.consume_once(&first, &hash(100 + i, 60), at(5)).await });
    }
    let mut winners = 0;
    let mut losers = 0;
    while let Some(result) = tasks.join_next().await {
        match result.expect("task").expect("store") {
            ConsumeOutcome::Consumed(_) => winners += 1,
            ConsumeOutcome::AlreadyConsumed { .. } => losers += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        (winners, losers),
        (1, 31),
        "exactly one of 32 concurrent consumers wins"
    );
}

/// `revoke_all` revokes every family of the subject (live tokens, consumed ones and
/// successors alike refuse) and leaves other subjects' families alone.
pub async fn revoke_all_revokes_every_family_of_the_subject(store: Arc<dyn RefreshTokenStore>) {
    let (a, a_first) = start(&*store, 80).await;
    let (b, b_first) = start(&*store, 81).await;
    store
        .consume_once(&b_first, &hash(2, 81), at(5))
        .await
        .unwrap();
    let other_id = TokenId::generate().unwrap();
    let mut other = family(&other_id);
    other.grant.subject = UserId::new("someone-else").unwrap();
    let other_first = RefreshRecord {
        hash: hash(1, 82),
        family: other_id.clone(),
        issued_at: at(0),
        consumed_at: None,
        expires_at: at(LIFETIME),
    };
    store.create_family(&other, &other_first).await.unwrap();

    let subject = UserId::new("conformance-user").unwrap();
    let mut revoked = store.revoke_all(&subject).await.unwrap();
    revoked.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    assert_eq!(revoked, expected, "the subject's families, listed");
    for id in [&a, &b] {
        assert!(store.family(id).await.unwrap().unwrap().revoked);
    }
    for token in [a_first, hash(2, 81)] {
        assert!(matches!(
            store
                .consume_once(&token, &hash(9, 80), at(6))
                .await
                .unwrap(),
            ConsumeOutcome::FamilyRevoked(_)
        ));
    }
    assert!(!store.family(&other_id).await.unwrap().unwrap().revoked);
    assert!(matches!(
        store
            .consume_once(&other_first.hash, &hash(2, 82), at(6))
            .await
            .unwrap(),
        ConsumeOutcome::Consumed(_)
    ));
    assert_eq!(
        store.revoke_all(&subject).await.unwrap(),
        Vec::<TokenId>::new(),
        "already revoked families are not listed again"
    );
}

/// Expands the [`RefreshTokenStore`] suite into named tests in a module named after the
/// backend: `refresh_store_suite!(memory, |_ns| async { Arc::new(MemoryRefreshStore::new())
/// as Arc<dyn RefreshTokenStore> })` gives `memory::concurrent_consume_one_wins` and so on.
/// The factory is called once per test with that test's `mcpsec_core::testkit::Namespace`;
/// the calling crate needs tokio with `macros` and `rt-multi-thread`.
#[macro_export]
macro_rules! refresh_store_suite {
    ($backend:ident, $factory:expr $(,)?) => {
        $crate::testkit::__conformance_suite!(
            suite = "refresh_store",
            cases = [$crate::testkit],
            backend = $backend,
            factory = $factory,
            tests = [
                consume_returns_family_and_stores_successor,
                second_consume_reports_first_use,
                revoked_family_consumes_nothing,
                unknown_token_is_not_found,
                duplicate_family_is_refused,
                concurrent_consume_one_wins,
                prune_removes_expired_families_and_keeps_live_ones,
                revoke_all_revokes_every_family_of_the_subject,
                tenant_revocation_stays_in_the_tenant,
            ],
        );
    };
}

#[doc(hidden)]
pub use mcpsec_core::testkit::__conformance_suite;

pub mod session;
