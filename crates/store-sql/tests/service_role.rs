//! A pool that logs in as a service role, not as the schema's owner (PostgreSQL, migration
//! `0007_service_role.sql`, `mcpsec_store_sql::postgres::grant_service_role`).
//!
//! Each test makes a LOGIN role of its own (roles are cluster-wide: named after the test's
//! namespace, dropped with its pool), grants it as the owner, and connects a second pool
//! as it into the test's schema. Through that pool:
//! - the API-key and refresh-token conformance suites pass (the pre-authentication
//!   statements run through the `SECURITY DEFINER` functions, the tenant-scoped ones
//!   through `begin_as`);
//! - `SELECT * FROM api_keys` (and `refresh_tokens`, `refresh_families`) is refused:
//!   permission denied, the role holds no right on them;
//! - a lookup function answers with the one row asked for, and with nothing for a wrong
//!   id, never a listing.
//!
//! Without `MCPSEC_TEST_DATABASE_URL` every test prints a notice and passes (SQLite has no
//! roles).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use mcpsec_access::{
    AuthMethod, AuthMethods, Authentication, CredentialKind, Principal, Role, ScopeSet, danger,
};
use mcpsec_apikeys::{ApiKeyLookup, ApiKeyRecord, ApiKeyStore, Env, KeyStatus};
use mcpsec_core::testkit::Namespace;
use mcpsec_core::{KeyId, Label, OrgId, StoreErrorKind, TokenId, UserId};
use mcpsec_store_sql::{SqlApiKeyStore, SqlRefreshStore};
use mcpsec_tokens::{
    ConsumeOutcome, FamilyRecord, RefreshRecord, RefreshTokenStore, SessionGrant, TokenHash,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgPool};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Drops a test's login role when dropped (after the pools logged in as it).
struct LoginRole {
    url: String,
    role: String,
}

impl Drop for LoginRole {
    fn drop(&mut self) {
        let (url, role) = (self.url.clone(), self.role.clone());
        // As `common::PgSchema`: a thread with a runtime of its own, waited for.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                // The schema may be dropped at the same time ("tuple concurrently
                // deleted"): once more then.
                if drop_role(&mut conn, &role).await.is_err() {
                    drop_role(&mut conn, &role).await?;
                }
                conn.close().await
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("warning: could not drop test role {}", self.role);
        }
    }
}

/// Drops `role` if it exists, with whatever it holds in this database.
async fn drop_role(conn: &mut sqlx::PgConnection, role: &str) -> Result<(), sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&mut *conn)
            .await?;
    if exists {
        conn.execute(sqlx::AssertSqlSafe(format!(
            "DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\""
        )))
        .await?;
    }
    Ok(())
}

/// The owner's pool (migrated, the test's schema) and a pool logged in as a fresh LOGIN
/// role set up by `grant_service_role`; `None` without `MCPSEC_TEST_DATABASE_URL`.
async fn service_pools(ns: &Namespace) -> Option<(PgPool, PgPool)> {
    let owner = common::pg_pool(ns).await?;
    let url = common::database_url()?;
    let schema = ns.as_str().to_owned();
    // A role name of PostgreSQL's length, apart from the schema's.
    let role: String = format!("svc_{schema}").chars().take(63).collect();
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    drop_role(&mut admin, &role).await.unwrap(); // a leftover of an earlier run
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE \"{role}\" LOGIN NOSUPERUSER NOBYPASSRLS"
        )))
        .await
        .unwrap();
    admin.close().await.unwrap();
    let guard = Arc::new(LoginRole {
        url: url.clone(),
        role: role.clone(),
    });
    mcpsec_store_sql::postgres::grant_service_role(&owner, &role)
        .await
        .unwrap();
    let options = PgConnectOptions::from_str(&url)
        .unwrap()
        .username(&role)
        .options([("search_path", schema.as_str())]);
    // The service pool keeps the owner's, whose last handle drops the schema, and the
    // role's guard.
    let keep_owner = owner.clone();
    let service = PgPoolOptions::new()
        .max_connections(6)
        .after_connect(move |_, _| {
            let _keep = (Arc::clone(&guard), keep_owner.clone());
            Box::pin(async { Ok(()) })
        })
        .connect_with(options)
        .await
        .expect("log in as the service role");
    Some((owner, service))
}

mod api_key_store {
    use mcpsec_apikeys::ApiKeyStore;
    use mcpsec_core::testkit::Namespace;
    use mcpsec_store_sql::SqlApiKeyStore;
    use std::sync::Arc;

    mcpsec_apikeys::api_key_store_suite!(service_role, |ns: Namespace| async move {
        match crate::service_pools(&ns).await {
            Some((_owner, service)) => {
                Arc::new(SqlApiKeyStore::new(service)) as Arc<dyn ApiKeyStore>
            }
            None => {
                eprintln!("notice: {} runs on SQLite", ns.as_str());
                Arc::new(SqlApiKeyStore::new(crate::common::sqlite_pool(&ns).await))
                    as Arc<dyn ApiKeyStore>
            }
        }
    });
}

mod refresh_store {
    use mcpsec_core::testkit::Namespace;
    use mcpsec_store_sql::SqlRefreshStore;
    use mcpsec_tokens::RefreshTokenStore;
    use std::sync::Arc;

    mcpsec_tokens::refresh_store_suite!(service_role, |ns: Namespace| async move {
        match crate::service_pools(&ns).await {
            Some((owner, service)) => {
                // The suite's org admin `root` of `acme` (see tests/conformance.rs),
                // seeded by the owner.
                sqlx::Executor::execute(
                    &owner,
                    "INSERT INTO orgs (id) VALUES ('acme');
                     INSERT INTO users (id) VALUES ('root');
                     INSERT INTO memberships (user_id, org_id, role)
                         VALUES ('root', 'acme', 'org_admin');",
                )
                .await
                .unwrap();
                Arc::new(SqlRefreshStore::new(service)) as Arc<dyn RefreshTokenStore>
            }
            None => {
                eprintln!("notice: {} runs on SQLite", ns.as_str());
                Arc::new(SqlRefreshStore::new(crate::common::sqlite_pool(&ns).await))
                    as Arc<dyn RefreshTokenStore>
            }
        }
    });
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600 + secs)
}

fn key(id: &str, owner: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: KeyId::new(id).unwrap(),
        hash: format!("hmac-sha256$v1${id}"),
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

fn developer(user: &str) -> Principal {
    danger::principal(
        UserId::new(user).unwrap(),
        OrgId::new("acme").unwrap(),
        Role::Developer,
        ScopeSet::parse_strict("mcp:admin user:token user:write user:read").unwrap(),
        CredentialKind::AccessToken,
        Authentication {
            at: Some(at(0)),
            methods: AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp]),
        },
    )
}

/// The SQLSTATE of a statement `pool` runs, or `None` when it succeeds.
async fn sqlstate(pool: &PgPool, statement: &str) -> Option<String> {
    match pool
        .execute(sqlx::AssertSqlSafe(statement.to_owned()))
        .await
    {
        Ok(_) => None,
        Err(e) => Some(
            e.as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.into_owned())
                .unwrap_or_else(|| panic!("not a database error: {e}")),
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_role_reaches_one_key_or_token_by_its_key_and_no_table() {
    let ns = Namespace::new("postgres", "service_role", "one_row");
    let Some((owner, service)) = service_pools(&ns).await else {
        return;
    };
    // Two keys, stored by the owner's bootstrap path.
    let owners = SqlApiKeyStore::new(owner.clone());
    owners
        .insert_as_owner(&key("k-alice", "alice"))
        .await
        .unwrap();
    owners.insert_as_owner(&key("k-bob", "bob")).await.unwrap();

    // The pre-authentication lookup, through the service role: the one key asked for.
    let keys = SqlApiKeyStore::new(service.clone());
    let found = keys.get(&KeyId::new("k-alice").unwrap()).await.unwrap();
    assert_eq!(found, Some(key("k-alice", "alice")));
    assert_eq!(
        keys.get(&KeyId::new("k-carol").unwrap()).await.unwrap(),
        None
    );
    assert!(
        keys.touch_last_used(
            &KeyId::new("k-alice").unwrap(),
            at(5),
            Duration::from_secs(60)
        )
        .await
        .unwrap()
    );

    // Called directly: one row for a real id, none for a wrong one or a pattern.
    for (id, rows) in [("k-alice", 1), ("k-nobody", 0), ("%", 0), ("", 0)] {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM api_key_lookup($1)")
            .bind(id)
            .fetch_one(&service)
            .await
            .unwrap();
        assert_eq!(n, rows, "api_key_lookup({id:?})");
    }

    // The tables themselves: no right at all, not even to see that rows are hidden.
    for table in ["api_keys", "refresh_tokens", "refresh_families"] {
        for statement in [
            format!("SELECT * FROM {table}"),
            format!("DELETE FROM {table}"),
        ] {
            assert_eq!(
                sqlstate(&service, &statement).await.as_deref(),
                Some("42501"),
                "{statement} as the service role"
            );
        }
    }
    // Granted: the tables without row-level security the pre-authentication paths use.
    assert_eq!(
        sqlstate(&service, "SELECT * FROM attempt_counters").await,
        None
    );
    assert_eq!(
        sqlstate(&service, "SELECT * FROM passkey_ceremonies").await,
        None
    );
    // Not granted: the owner's helper and the migrations' ledger.
    assert_eq!(
        sqlstate(&service, "SELECT mcpsec_grant_service_role('x')")
            .await
            .as_deref(),
        Some("42501")
    );
    assert_eq!(
        sqlstate(&service, "SELECT * FROM _sqlx_migrations")
            .await
            .as_deref(),
        Some("42501")
    );

    // A tenant-scoped method works through `begin_as` (membership of mcpsec_app), within
    // the principal's reach only.
    let listed = keys
        .list_by_owner(&developer("alice"), &UserId::new("alice").unwrap())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let none = keys
        .list_by_owner(&developer("alice"), &UserId::new("bob").unwrap())
        .await
        .unwrap();
    assert!(none.is_empty(), "another user's keys through begin_as");

    // A refresh family created, its token consumed once; the second consume refused.
    let tokens = SqlRefreshStore::new(service.clone());
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
    let first = RefreshRecord {
        hash: TokenHash([7; 32]),
        family: id.clone(),
        issued_at: at(0),
        consumed_at: None,
        expires_at: at(3600),
    };
    tokens.create_family(&family, &first).await.unwrap();
    let once = tokens
        .consume_once(&TokenHash([7; 32]), &TokenHash([8; 32]), at(10))
        .await
        .unwrap();
    assert_eq!(once, ConsumeOutcome::Consumed(family.clone()));
    let twice = tokens
        .consume_once(&TokenHash([7; 32]), &TokenHash([9; 32]), at(11))
        .await
        .unwrap();
    assert!(
        matches!(twice, ConsumeOutcome::AlreadyConsumed { consumed_at, .. } if consumed_at == at(10)),
        "{twice:?}"
    );
    let unknown = tokens
        .consume_once(&TokenHash([1; 32]), &TokenHash([2; 32]), at(12))
        .await
        .unwrap();
    assert_eq!(unknown, ConsumeOutcome::NotFound);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_token_state($1)")
        .bind(&[1u8; 32][..])
        .fetch_one(&service)
        .await
        .unwrap();
    assert_eq!(n, 0, "a wrong hash reads nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn granting_refuses_a_role_that_bypasses_row_level_security() {
    let ns = Namespace::new("postgres", "service_role", "refusals");
    let Some((owner, _service)) = service_pools(&ns).await else {
        return;
    };
    // The test's own login is the superuser owner; an unknown role is no role.
    let whoami: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&owner)
        .await
        .unwrap();
    for role in [whoami.as_str(), "mcpsec_no_such_role_anywhere"] {
        let refused = mcpsec_store_sql::postgres::grant_service_role(&owner, role)
            .await
            .unwrap_err();
        assert_eq!(
            refused.kind(),
            StoreErrorKind::Rejected,
            "{role}: {refused}"
        );
    }
}
