//! Races across two instances: 32 tasks on a multi-thread runtime, half on each of two
//! pools over one database (two service instances sharing it), all using one secret at
//! once. Exactly one wins, and the state afterwards is the winner's alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use mcpsec_access::{AuthMethods, Authentication, CredentialKind, Role, ScopeSet};
use mcpsec_core::testkit::Namespace;
use mcpsec_core::{Label, OrgId, TokenId, UserId};
use mcpsec_mfa::{
    AttemptOutcome, ChallengeKey, ChallengeRecord, EmailCodeStore, EnrollmentId, RecoveryCodeStore,
    TotpReplayGuard,
};
use mcpsec_store_sql::{SqlEmailCodeStore, SqlRecoveryStore, SqlRefreshStore, SqlReplayGuard};
use mcpsec_tokens::{
    ConsumeOutcome, FamilyRecord, RefreshRecord, RefreshTokenStore, SessionGrant, TokenHash,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const RACERS: u8 = 32;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600 + secs)
}

fn user(name: &str) -> UserId {
    UserId::new(name).unwrap()
}

/// Runs `RACERS` copies of `race(store, i)` at once, alternating between the two stores,
/// and returns how many returned `true`.
async fn race<S, F, Fut>(stores: [Arc<S>; 2], race: F) -> usize
where
    S: ?Sized + Send + Sync + 'static,
    F: Fn(Arc<S>, u8) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(usize::from(RACERS)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..RACERS {
        let store = Arc::clone(&stores[usize::from(i % 2)]);
        let run = race(store, i);
        let barrier = Arc::clone(&barrier);
        tasks.spawn(async move {
            barrier.wait().await;
            run.await
        });
    }
    let mut wins = 0;
    while let Some(won) = tasks.join_next().await {
        wins += usize::from(won.expect("task"));
    }
    wins
}

async fn refresh_token_consumed_once(stores: [Arc<dyn RefreshTokenStore>; 2]) {
    let id = TokenId::generate().unwrap();
    let family = FamilyRecord {
        id: id.clone(),
        grant: SessionGrant {
            subject: user("racer"),
            org: Some(OrgId::new("acme").unwrap()),
            role: Some(Role::Developer),
            scopes: ScopeSet::parse_strict("mcp:read").unwrap(),
            auth_time: at(0),
            amr: AuthMethods::EMPTY,
            acr: None,
        },
        created_at: at(0),
        last_used_at: at(0),
        expires_at: at(3600),
        revoked: false,
    };
    let first = TokenHash([1; 32]);
    let record = RefreshRecord {
        hash: first,
        family: id.clone(),
        issued_at: at(0),
        consumed_at: None,
        expires_at: at(3600),
    };
    stores[0].create_family(&family, &record).await.unwrap();
    let wins = race(stores.clone(), move |store, i| async move {
        match store
            .consume_once(&first, &TokenHash([100 + i; 32]), at(5))
            .await
            .unwrap()
        {
            ConsumeOutcome::Consumed(_) => true,
            ConsumeOutcome::AlreadyConsumed { .. } => false,
            other => panic!("unexpected {other:?}"),
        }
    })
    .await;
    assert_eq!(wins, 1, "exactly one of 32 consumers wins");
    // Exactly one successor was stored: the losers' candidates do not exist.
    let mut live = 0;
    for i in 0..RACERS {
        let outcome = stores[1]
            .consume_once(&TokenHash([100 + i; 32]), &TokenHash([200 + i; 32]), at(6))
            .await
            .unwrap();
        live += usize::from(matches!(outcome, ConsumeOutcome::Consumed(_)));
    }
    assert_eq!(live, 1, "exactly one successor was stored");
}

async fn recovery_code_used_once(stores: [Arc<dyn RecoveryCodeStore>; 2]) {
    let tenant = mcpsec_access::danger::principal(
        user("racer"),
        OrgId::new("acme").unwrap(),
        Role::Viewer,
        ScopeSet::parse_strict("user:write").unwrap(),
        CredentialKind::AccessToken,
        Authentication {
            at: None,
            methods: AuthMethods::EMPTY,
        },
    );
    stores[0]
        .replace_set(&tenant, vec![[7; 32], [8; 32]])
        .await
        .unwrap();
    let wins = race(stores.clone(), |store, _| async move {
        store.consume_once(&user("racer"), &[7; 32]).await.unwrap()
    })
    .await;
    assert_eq!(
        wins, 1,
        "exactly one of 32 uses of a recovery code succeeds"
    );
    assert_eq!(stores[1].remaining(&user("racer")).await.unwrap(), 1);
}

async fn totp_step_accepted_once(stores: [Arc<dyn TotpReplayGuard>; 2]) {
    let wins = race(stores, |guard, _| async move {
        guard
            .record_step_if_newer(&user("racer"), &EnrollmentId([4; 16]), 9)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(wins, 1, "exactly one of 32 uses of one TOTP step succeeds");
}

async fn email_code_consumed_once(stores: [Arc<dyn EmailCodeStore>; 2]) {
    let key = ChallengeKey {
        user: user("racer"),
        purpose: Label::new("login").unwrap(),
        flow: TokenId::new("race-flow").unwrap(),
    };
    let record = ChallengeRecord {
        hash: [5; 32],
        sent_at: at(0),
        expires_at: at(600),
        attempts: 0,
    };
    stores[0].put(&key, record).await.unwrap();
    let wins =
        race(stores.clone(), move |store, _| {
            let key = key.clone();
            async move {
                store.attempt(&key, &[5; 32], at(1), 5).await.unwrap() == AttemptOutcome::Consumed
            }
        })
        .await;
    assert_eq!(
        wins, 1,
        "exactly one of 32 right attempts consumes the code"
    );
}

/// The four races as named tests for one backend; `$pools` turns a namespace into two
/// pools on one database (or `None`: skip).
macro_rules! races {
    ($backend:ident, $db:ty, $pools:path) => {
        mod $backend {
            use super::*;

            async fn pools(case: &str) -> Option<(sqlx::Pool<$db>, sqlx::Pool<$db>)> {
                $pools(&Namespace::new(stringify!($backend), "races", case)).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn refresh_token_consumed_by_32_racers_on_two_instances_succeeds_once() {
                let Some((a, b)) = pools("refresh").await else {
                    return;
                };
                refresh_token_consumed_once([
                    Arc::new(SqlRefreshStore::new(a)),
                    Arc::new(SqlRefreshStore::new(b)),
                ])
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn recovery_code_used_by_32_racers_on_two_instances_succeeds_once() {
                let Some((a, b)) = pools("recovery").await else {
                    return;
                };
                recovery_code_used_once([
                    Arc::new(SqlRecoveryStore::new(a)),
                    Arc::new(SqlRecoveryStore::new(b)),
                ])
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn totp_step_used_by_32_racers_on_two_instances_succeeds_once() {
                let Some((a, b)) = pools("totp").await else {
                    return;
                };
                totp_step_accepted_once([
                    Arc::new(SqlReplayGuard::new(a)),
                    Arc::new(SqlReplayGuard::new(b)),
                ])
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn email_code_used_by_32_racers_on_two_instances_succeeds_once() {
                let Some((a, b)) = pools("email").await else {
                    return;
                };
                email_code_consumed_once([
                    Arc::new(SqlEmailCodeStore::new(a)),
                    Arc::new(SqlEmailCodeStore::new(b)),
                ])
                .await;
            }
        }
    };
}

async fn sqlite_pools(ns: &Namespace) -> Option<(sqlx::SqlitePool, sqlx::SqlitePool)> {
    Some(common::sqlite_pools(ns).await)
}

races!(sqlite, sqlx::Sqlite, sqlite_pools);
races!(postgres, sqlx::Postgres, common::pg_pools);
