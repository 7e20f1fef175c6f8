//! A refresh consume racing a revocation of its family (PostgreSQL, where the two run
//! concurrently; SQLite serializes writers). The revocation commits while the consume is
//! in flight: the consume must answer `FamilyRevoked` and store no successor, never
//! `Consumed` (which would mint tokens for a session just ended).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use mcpsec_access::{AuthMethods, Role, ScopeSet};
use mcpsec_core::testkit::Namespace;
use mcpsec_core::{OrgId, TokenId, UserId};
use mcpsec_store_sql::SqlRefreshStore;
use mcpsec_tokens::{
    ConsumeOutcome, FamilyRecord, RefreshRecord, RefreshTokenStore, SessionGrant, TokenHash,
};
use sqlx::{Executor, Row};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600 + secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_consume_racing_a_revocation_answers_revoked_and_stores_no_successor() {
    let Some(pool) = common::pg_pool(&Namespace::new("postgres", "revoke", "race")).await else {
        return;
    };
    let store = SqlRefreshStore::new(pool.clone());
    let id = TokenId::generate().unwrap();
    let family = FamilyRecord {
        id: id.clone(),
        grant: SessionGrant {
            subject: UserId::new("alice").unwrap(),
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
    store.create_family(&family, &record).await.unwrap();

    // A second connection revokes the family and holds its transaction open.
    let mut revoker = pool.begin().await.unwrap();
    revoker
        .execute(
            sqlx::query("UPDATE refresh_families SET revoked = TRUE WHERE id = $1")
                .bind(id.as_str()),
        )
        .await
        .unwrap();

    // The consume starts while the revocation is uncommitted ...
    let consumer = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .consume_once(&first, &TokenHash([2; 32]), at(5))
                .await
                .unwrap()
        })
    };
    // ... and is seen waiting on a lock (polled, not slept on) before the revocation
    // commits, so the interleaving is the one under test on every run.
    loop {
        let waiting: i64 = sqlx::query(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
        if waiting > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    revoker.commit().await.unwrap();

    let outcome = consumer.await.unwrap();
    assert!(
        matches!(outcome, ConsumeOutcome::FamilyRevoked(_)),
        "a consume racing a revocation must not succeed: {outcome:?}"
    );
    let successors: i64 = sqlx::query("SELECT count(*) FROM refresh_tokens WHERE hash = $1")
        .bind(&[2u8; 32][..])
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(successors, 0, "no successor for a revoked session");
    let consumed: Option<i64> =
        sqlx::query("SELECT consumed_at FROM refresh_tokens WHERE hash = $1")
            .bind(&[1u8; 32][..])
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
    assert_eq!(
        consumed, None,
        "the revoked session's token is left as it was"
    );
}
