//! Migrations run again change nothing, on both backends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use mcpsec_core::testkit::Namespace;

#[tokio::test]
async fn sqlite_migrations_are_idempotent() {
    let pool = mcpsec_store_sql::sqlite::connect("sqlite::memory:", 1)
        .await
        .unwrap();
    mcpsec_store_sql::sqlite::migrate(&pool).await.unwrap();
    mcpsec_store_sql::sqlite::migrate(&pool).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        applied,
        i64::try_from(mcpsec_store_sql::sqlite::MIGRATOR.iter().count()).unwrap()
    );
}

#[tokio::test]
async fn postgres_migrations_are_idempotent() {
    let Some(pool) = common::pg_pool(&Namespace::new("postgres", "migrate", "twice")).await else {
        return;
    };
    // pg_pool migrated once already.
    mcpsec_store_sql::postgres::migrate(&pool).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        applied,
        i64::try_from(mcpsec_store_sql::postgres::MIGRATOR.iter().count()).unwrap()
    );
}
