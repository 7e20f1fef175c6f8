//! The email code store and the passkey ceremony store on Redis: their conformance suites
//! as named tests (`email_code_store::redis::<case>`, `passkey_store::redis::<case>`; in
//! memory with a notice without `MCPSEC_TEST_REDIS_URL`), races of 32 tasks over two
//! instances on one ceremony, one cooldown and one challenge, corrupt values, and a scan
//! finding no key without a TTL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use mcpsec_core::testkit::Namespace;
use mcpsec_core::{Label, StoreErrorKind, TokenId, UserId};
use mcpsec_mfa::{AttemptOutcome, ChallengeKey, ChallengeRecord, Cooldown, EmailCodeStore};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The conformance suites' `t(0)`.
fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600 + s)
}

fn ns(case: &str) -> Namespace {
    Namespace::new("redis", "mfa_stores", case)
}

mod email_code_store {
    use super::common;
    use mcpsec_core::testkit::Namespace;
    use mcpsec_mfa::{EmailCodeStore, MemoryEmailCodeStore};
    use std::sync::Arc;

    mcpsec_mfa::email_code_store_suite!(redis, |ns: Namespace| async move {
        match common::stores(&ns).await {
            Some(stores) => Arc::new(stores.email_code_store()) as Arc<dyn EmailCodeStore>,
            None => {
                eprintln!("notice: {} runs in memory", ns.as_str());
                Arc::new(MemoryEmailCodeStore::new()) as Arc<dyn EmailCodeStore>
            }
        }
    });
}

#[cfg(feature = "passkeys")]
mod passkey_store {
    use super::common;
    use mcpsec_core::testkit::Namespace;
    use mcpsec_mfa::{MemoryPasskeyStore, PasskeyStore};
    use std::sync::Arc;

    // Ceremonies on Redis; credentials in the inner store (memory here, SQL in a service).
    mcpsec_mfa::passkey_store_suite!(redis, |ns: Namespace| async move {
        match common::stores(&ns).await {
            Some(stores) => {
                Arc::new(stores.passkey_store(MemoryPasskeyStore::new())) as Arc<dyn PasskeyStore>
            }
            None => {
                eprintln!("notice: {} runs in memory", ns.as_str());
                Arc::new(MemoryPasskeyStore::new()) as Arc<dyn PasskeyStore>
            }
        }
    });
}

fn challenge(flow: &str) -> ChallengeKey {
    ChallengeKey {
        user: UserId::new("alice").unwrap(),
        purpose: Label::new("login").unwrap(),
        flow: TokenId::new(flow).unwrap(),
    }
}

fn record(hash: u8) -> ChallengeRecord {
    ChallengeRecord {
        hash: [hash; 32],
        sent_at: t(0),
        expires_at: t(600),
        attempts: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_cooldown_starts_from_two_instances_start_one() {
    let (a, b) = skip_without_redis!(common::two_instances(&ns("cooldown_race")).await);
    let stores: [Arc<dyn EmailCodeStore>; 2] = [
        Arc::new(a.email_code_store()),
        Arc::new(b.email_code_store()),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let store = Arc::clone(&stores[i % 2]);
        tasks.spawn(async move {
            store
                .try_start_cooldown(
                    &UserId::new("alice").unwrap(),
                    &Label::new("login").unwrap(),
                    t(0),
                    t(60),
                )
                .await
                .unwrap()
        });
    }
    let (mut started, mut running) = (0, 0);
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            Cooldown::Started => started += 1,
            Cooldown::Running { until } => {
                assert_eq!(until, t(60));
                running += 1;
            }
        }
    }
    assert_eq!((started, running), (1, 31), "exactly one send starts it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_wrong_guesses_from_two_instances_get_exactly_the_budget() {
    let (a, b) = skip_without_redis!(common::two_instances(&ns("guess_race")).await);
    let stores: [Arc<dyn EmailCodeStore>; 2] = [
        Arc::new(a.email_code_store()),
        Arc::new(b.email_code_store()),
    ];
    stores[0].put(&challenge("race"), record(7)).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let store = Arc::clone(&stores[i % 2]);
        tasks.spawn(async move {
            store
                .attempt(&challenge("race"), &[9; 32], t(1), 5)
                .await
                .unwrap()
        });
    }
    let mut outcomes = Vec::new();
    while let Some(outcome) = tasks.join_next().await {
        outcomes.push(outcome.unwrap());
    }
    let n = |o: AttemptOutcome| outcomes.iter().filter(|&&x| x == o).count();
    assert_eq!(n(AttemptOutcome::Wrong), 5, "exactly the budget of guesses");
    assert_eq!(n(AttemptOutcome::TooManyAttempts), 1, "then one refusal");
    assert_eq!(n(AttemptOutcome::NotFound), 26, "and the challenge is gone");
    assert_eq!(
        stores[1]
            .attempt(&challenge("race"), &[7; 32], t(2), 5)
            .await
            .unwrap(),
        AttemptOutcome::NotFound,
        "the right code no longer works"
    );
}

#[tokio::test]
async fn a_corrupt_challenge_is_a_typed_error() {
    let stores = skip_without_redis!(common::stores(&ns("corrupt_challenge")).await);
    let store = stores.email_code_store();
    store.put(&challenge("c"), record(1)).await.unwrap();
    let key = common::keys_with_ttl(&stores, &format!("{}:*", stores.prefix())).await;
    assert_eq!(key.len(), 1);
    let _: () = redis::cmd("HSET")
        .arg(&key[0].0)
        .arg("e")
        .arg("soon")
        .query_async(&mut stores.connection())
        .await
        .unwrap();
    let err = store
        .attempt(&challenge("c"), &[1; 32], t(1), 5)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt);
}

#[cfg(feature = "passkeys")]
mod ceremonies {
    use super::{common, ns, t};
    use crate::skip_without_redis;
    use mcpsec_core::{SecretBytes, StoreErrorKind, UserId};
    use mcpsec_mfa::{
        CeremonyId, CeremonyKind, CeremonyLimits, CeremonyRecord, CeremonyStored,
        MemoryPasskeyStore, PasskeyStore,
    };
    use std::sync::Arc;

    fn ceremony(user: &str, expires: u64) -> CeremonyRecord {
        CeremonyRecord {
            user: UserId::new(user).unwrap(),
            kind: CeremonyKind::Authentication,
            state: SecretBytes::from_slice(b"{\"challenge\":\"x\"}"),
            expires_at: t(expires),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn thirty_two_takes_from_two_instances_of_one_ceremony_win_once() {
        let (a, b) = skip_without_redis!(common::two_instances(&ns("ceremony_race")).await);
        let stores: [Arc<dyn PasskeyStore>; 2] = [
            Arc::new(a.passkey_store(MemoryPasskeyStore::new())),
            Arc::new(b.passkey_store(MemoryPasskeyStore::new())),
        ];
        let id = CeremonyId::generate().unwrap();
        let stored = stores[0]
            .put_ceremony(&id, ceremony("alice", 300), t(0), CeremonyLimits::default())
            .await
            .unwrap();
        assert_eq!(stored, CeremonyStored::Stored);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..32 {
            let store = Arc::clone(&stores[i % 2]);
            let id = id.clone();
            tasks.spawn(async move {
                store
                    .take_ceremony(
                        &id,
                        &UserId::new("alice").unwrap(),
                        CeremonyKind::Authentication,
                    )
                    .await
                    .unwrap()
            });
        }
        let mut won = Vec::new();
        while let Some(taken) = tasks.join_next().await {
            won.extend(taken.unwrap());
        }
        assert_eq!(
            won,
            vec![ceremony("alice", 300)],
            "exactly one gets the record"
        );
        let left = common::keys_with_ttl(&a, &format!("{}:*", a.prefix())).await;
        assert!(
            left.is_empty(),
            "the user's hash goes with its last ceremony"
        );
    }

    #[tokio::test]
    async fn an_expired_ceremony_is_not_stored_and_the_oldest_drop_leaves_others() {
        let stores = skip_without_redis!(common::stores(&ns("ceremony_expired")).await);
        let store = stores.passkey_store(MemoryPasskeyStore::new());
        let limits = CeremonyLimits { per_user: 1 };
        let alice = UserId::new("alice").unwrap();
        let auth = CeremonyKind::Authentication;
        let (old, new) = (
            CeremonyId::generate().unwrap(),
            CeremonyId::generate().unwrap(),
        );
        store
            .put_ceremony(&old, ceremony("alice", 300), t(0), limits)
            .await
            .unwrap();
        // Already over at `now`: not stored, and it drops nothing.
        let over = store
            .put_ceremony(&new, ceremony("alice", 300), t(300), limits)
            .await
            .unwrap();
        assert_eq!(over, CeremonyStored::Stored);
        assert!(
            store
                .take_ceremony(&new, &alice, auth)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .take_ceremony(&old, &alice, auth)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_corrupt_ceremony_is_a_typed_error_and_oversized_state_is_refused() {
        let stores = skip_without_redis!(common::stores(&ns("ceremony_corrupt")).await);
        let store = stores.passkey_store(MemoryPasskeyStore::new());
        let alice = UserId::new("alice").unwrap();
        let big = CeremonyRecord {
            state: SecretBytes::new(vec![b'x'; mcpsec_store_redis::MAX_CEREMONY_STATE + 1]),
            ..ceremony("alice", 300)
        };
        let id = CeremonyId::generate().unwrap();
        let err = store
            .put_ceremony(&id, big, t(0), CeremonyLimits::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Rejected);

        store
            .put_ceremony(&id, ceremony("alice", 300), t(0), CeremonyLimits::default())
            .await
            .unwrap();
        let key = common::keys_with_ttl(&stores, &format!("{}:*", stores.prefix())).await;
        assert_eq!(key.len(), 1);
        let fields: Vec<String> = redis::cmd("HKEYS")
            .arg(&key[0].0)
            .query_async(&mut stores.connection())
            .await
            .unwrap();
        let meta = fields
            .iter()
            .find(|f| *f != "#seq" && !f.contains('.'))
            .unwrap();
        assert!(
            !fields.iter().any(|f| f.contains(id.as_str())),
            "no ceremony id in a field name"
        );
        let _: () = redis::cmd("HSET")
            .arg(&key[0].0)
            .arg(meta)
            .arg("garbage")
            .query_async(&mut stores.connection())
            .await
            .unwrap();
        let err = store
            .take_ceremony(&id, &alice, CeremonyKind::Authentication)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt);
    }
}

/// Every case of both suites under one parent prefix, then a `SCAN` of it: no key without
/// a TTL, and none outliving what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_key_is_left_without_a_ttl() {
    use mcpsec_mfa::testkit::email_code_store as email_cases;
    let Some(url) = common::redis_url() else {
        return;
    };
    let parent = common::prefix(&ns("no_key_without_ttl"));
    let case = |n: &str| {
        let url = url.clone();
        let prefix = format!("{parent}:{n}");
        async move { common::connect(&url, &prefix).await }
    };
    let e = |s: mcpsec_store_redis::RedisStores| {
        Arc::new(s.email_code_store()) as Arc<dyn EmailCodeStore>
    };
    email_cases::only_the_latest_code_counts_and_once(e(case("e1").await)).await;
    email_cases::expiry_and_attempt_cap_hold(e(case("e2").await)).await;
    email_cases::concurrent_right_attempts_consume_once(e(case("e3").await)).await;
    email_cases::cooldown_is_per_user_and_purpose_and_ends_on_time(e(case("e4").await)).await;
    email_cases::concurrent_sends_start_one_cooldown(e(case("e5").await)).await;
    // A challenge nobody attempts stays until its TTL.
    let left = case("e6").await;
    e(left.clone())
        .put(&challenge("open"), record(1))
        .await
        .unwrap();

    #[cfg(feature = "passkeys")]
    {
        use mcpsec_mfa::testkit::passkey_store as passkey_cases;
        use mcpsec_mfa::{MemoryPasskeyStore, PasskeyStore};
        let p = |s: mcpsec_store_redis::RedisStores| {
            Arc::new(s.passkey_store(MemoryPasskeyStore::new())) as Arc<dyn PasskeyStore>
        };
        passkey_cases::ceremony_is_taken_once_by_its_user_and_kind(p(case("p1").await)).await;
        passkey_cases::ceremony_cap_per_user_drops_the_oldest(p(case("p2").await)).await;
        passkey_cases::passkey_ceremony_finished_32_times_concurrently_succeeds_once(p(
            case("p3").await
        ))
        .await;
        // Open ceremonies nobody finishes stay until their TTL.
        let open = p(case("p4").await);
        for user in ["alice", "bob"] {
            let record = mcpsec_mfa::CeremonyRecord {
                user: UserId::new(user).unwrap(),
                kind: mcpsec_mfa::CeremonyKind::Registration,
                state: mcpsec_core::SecretBytes::from_slice(b"{}"),
                expires_at: t(300),
            };
            let id = mcpsec_mfa::CeremonyId::generate().unwrap();
            open.put_ceremony(&id, record, t(0), Default::default())
                .await
                .unwrap();
        }
    }

    let scanner = case("scan").await;
    let ours = common::keys_with_ttl(&scanner, &format!("{parent}:*")).await;
    assert!(ours.len() >= 2, "the suites left keys to check: {ours:?}");
    for (key, ttl) in &ours {
        assert!(*ttl > 0, "{key} has no TTL ({ttl})");
        // Challenges live 600 s, cooldowns 60 s, ceremonies 300 s (the suites' values).
        assert!(
            *ttl <= 600_000,
            "{key} lives longer than what it holds ({ttl} ms)"
        );
    }
}
