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
    let service = service_login(ns, &owner).await?;
    Some((owner, service))
}

/// A fresh LOGIN role for `ns`, set up by `grant_service_role` on `owner`'s schema, and a
/// pool logged in as it; `None` without `MCPSEC_TEST_DATABASE_URL`.
async fn service_login(ns: &Namespace, owner: &PgPool) -> Option<PgPool> {
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
    mcpsec_store_sql::postgres::grant_service_role(owner, &role)
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
    Some(service)
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

mod passkey_store {
    use mcpsec_core::testkit::Namespace;
    use mcpsec_core::{ManualClock, SharedClock};
    use mcpsec_mfa::PasskeyStore;
    use mcpsec_store_sql::SqlPasskeyStore;
    use std::sync::Arc;

    /// At the suite's `t(0)`, where its ceremonies are live.
    fn clock() -> SharedClock {
        Arc::new(ManualClock::at(super::at(0)))
    }

    mcpsec_mfa::passkey_store_suite!(service_role, |ns: Namespace| async move {
        match crate::service_pools(&ns).await {
            Some((_owner, service)) => {
                Arc::new(SqlPasskeyStore::new(service).with_clock(clock())) as Arc<dyn PasskeyStore>
            }
            None => {
                eprintln!("notice: {} runs on SQLite", ns.as_str());
                Arc::new(
                    SqlPasskeyStore::new(crate::common::sqlite_pool(&ns).await).with_clock(clock()),
                ) as Arc<dyn PasskeyStore>
            }
        }
    });
}

mod recovery_store {
    use mcpsec_core::testkit::Namespace;
    use mcpsec_mfa::RecoveryCodeStore;
    use mcpsec_store_sql::SqlRecoveryStore;
    use std::sync::Arc;

    mcpsec_mfa::recovery_store_suite!(service_role, |ns: Namespace| async move {
        match crate::service_pools(&ns).await {
            Some((_owner, service)) => {
                Arc::new(SqlRecoveryStore::new(service)) as Arc<dyn RecoveryCodeStore>
            }
            None => {
                eprintln!("notice: {} runs on SQLite", ns.as_str());
                Arc::new(SqlRecoveryStore::new(crate::common::sqlite_pool(&ns).await))
                    as Arc<dyn RecoveryCodeStore>
            }
        }
    });
}

mod memberships {
    use mcpsec_access::testkit::memberships::MembershipsHarness;
    use mcpsec_access::{Memberships, Role};
    use mcpsec_core::testkit::Namespace;
    use mcpsec_core::{OrgId, UserId};
    use mcpsec_store_sql::SqlMemberships;
    use std::sync::Arc;

    /// The memberships written and read through one store: the service role's pool (both
    /// the bootstrap calls and the pre-authorization read go through the functions).
    struct Harness(Arc<dyn Memberships>, Box<dyn Set>);

    /// `SqlMemberships::{set_role, remove}` of either backend.
    #[async_trait::async_trait]
    trait Set: Send + Sync {
        async fn set(&self, user: &UserId, org: &OrgId, role: Option<Role>);
    }

    macro_rules! set {
        ($db:ty) => {
            #[async_trait::async_trait]
            impl Set for Arc<SqlMemberships<$db>> {
                async fn set(&self, user: &UserId, org: &OrgId, role: Option<Role>) {
                    match role {
                        Some(role) => self.set_role(user, org, role).await.unwrap(),
                        None => {
                            self.remove(user, org).await.unwrap();
                        }
                    }
                }
            }
        };
    }
    set!(sqlx::Sqlite);
    set!(sqlx::Postgres);

    #[async_trait::async_trait]
    impl MembershipsHarness for Harness {
        fn memberships(&self) -> Arc<dyn Memberships> {
            Arc::clone(&self.0)
        }
        async fn set(&self, user: &UserId, org: &OrgId, role: Option<Role>) {
            self.1.set(user, org, role).await
        }
    }

    mcpsec_access::memberships_suite!(service_role, |ns: Namespace| async move {
        match crate::service_pools(&ns).await {
            Some((_owner, service)) => {
                let store = Arc::new(SqlMemberships::new(service));
                Harness(Arc::clone(&store) as Arc<dyn Memberships>, Box::new(store))
            }
            None => {
                eprintln!("notice: {} runs on SQLite", ns.as_str());
                let store = Arc::new(SqlMemberships::new(crate::common::sqlite_pool(&ns).await));
                Harness(Arc::clone(&store) as Arc<dyn Memberships>, Box::new(store))
            }
        }
    });
}

/// The tables under row-level security: the service role holds no right on any of them.
const RLS_TABLES: [&str; 10] = [
    "api_keys",
    "refresh_families",
    "refresh_tokens",
    "totp_enrollments",
    "passkey_credentials",
    "passkey_users",
    "recovery_code_sets",
    "recovery_codes",
    "memberships",
    "mcp_services",
];

/// Every table under row-level security in the schema, by the catalogue.
async fn rls_tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT relname::text FROM pg_class
          WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'
            AND relrowsecurity ORDER BY relname",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The service role's reach on every table under row-level security: the SQLSTATE of a
/// `SELECT` and a `DELETE` on each (`None` where one succeeds).
async fn reach(service: &PgPool) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for table in RLS_TABLES {
        for statement in [
            format!("SELECT * FROM {table}"),
            format!("DELETE FROM {table}"),
        ] {
            let state = sqlstate(service, &statement).await;
            out.push((statement, state));
        }
    }
    out
}

fn all_denied(reach: &[(String, Option<String>)]) {
    for (statement, state) in reach {
        assert_eq!(
            state.as_deref(),
            Some("42501"),
            "{statement} as the service role"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_role_reads_no_secret_passkey_code_or_membership_directly() {
    use mcpsec_access::Memberships;
    use mcpsec_mfa::{PasskeyStore, RecoveryCodeStore, StoredPasskey, TotpConfig, TotpSecret};
    use mcpsec_store_sql::{
        Confirmation, SqlMemberships, SqlPasskeyStore, SqlRecoveryStore, SqlTotpEnrollments,
    };

    let ns = Namespace::new("postgres", "service_role", "mfa_rows");
    let Some((owner, service)) = service_pools(&ns).await else {
        return;
    };
    let mut listed = rls_tables(&owner).await;
    let mut expected: Vec<String> = RLS_TABLES.iter().map(|t| (*t).to_owned()).collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "the tables under row-level security");
    all_denied(&reach(&service).await);
    let alice = UserId::new("alice").unwrap();
    let bob = UserId::new("bob").unwrap();
    let acme = OrgId::new("acme").unwrap();

    // Memberships: the operator's bootstrap and the role read, through the functions.
    let members = SqlMemberships::new(service.clone());
    members
        .set_role(&alice, &acme, Role::Developer)
        .await
        .unwrap();
    assert_eq!(
        members.role(&alice, &acme).await.unwrap(),
        Some(Role::Developer)
    );
    assert_eq!(members.role(&bob, &acme).await.unwrap(), None);

    // TOTP: saved, loaded, listed, confirmed once and removed, by user and enrollment.
    let totp = SqlTotpEnrollments::new(service.clone(), common::sealer_for("totp_secrets"));
    let secret = TotpSecret::generate().unwrap();
    let config = TotpConfig::default();
    let id = totp
        .save_pending(&alice, &secret, config, at(0))
        .await
        .unwrap();
    assert!(totp.load(&alice, &id).await.unwrap().is_some());
    assert!(totp.load(&bob, &id).await.unwrap().is_none(), "bob's row");
    assert_eq!(totp.list(&alice).await.unwrap().len(), 1);
    assert!(totp.list(&bob).await.unwrap().is_empty());
    assert_eq!(
        totp.confirm(&alice, &id, at(1)).await.unwrap(),
        Confirmation::Confirmed
    );
    assert_eq!(
        totp.confirm(&alice, &id, at(2)).await.unwrap(),
        Confirmation::AlreadyConfirmed
    );
    assert_eq!(
        totp.confirm(&bob, &id, at(2)).await.unwrap(),
        Confirmation::Unknown
    );

    // Passkeys: registered as the tenant, read and counted through the functions.
    let passkeys = SqlPasskeyStore::new(service.clone());
    let passkey = StoredPasskey {
        credential_id: vec![1, 2, 3],
        counter: 1,
        passkey: b"public key".to_vec(),
        created_at: at(0),
    };
    passkeys
        .add_credential(&developer("alice"), passkey.clone(), 10)
        .await
        .unwrap();
    assert_eq!(
        passkeys.credentials(&alice).await.unwrap(),
        vec![passkey.clone()]
    );
    assert!(passkeys.credentials(&bob).await.unwrap().is_empty());
    let used = StoredPasskey {
        counter: 2,
        ..passkey.clone()
    };
    assert!(
        passkeys
            .update_credential(&alice, used.clone())
            .await
            .unwrap()
    );
    assert!(
        !passkeys.update_credential(&alice, used).await.unwrap(),
        "same counter"
    );

    // Recovery codes: written as the tenant, used once through the function.
    let codes = SqlRecoveryStore::new(service.clone());
    codes
        .replace_set(&developer("alice"), vec![[4; 32], [5; 32]])
        .await
        .unwrap();
    assert_eq!(codes.remaining(&alice).await.unwrap(), 2);
    assert!(codes.consume_once(&alice, &[4; 32]).await.unwrap());
    assert!(!codes.consume_once(&alice, &[4; 32]).await.unwrap(), "once");
    assert!(
        !codes.consume_once(&bob, &[5; 32]).await.unwrap(),
        "bob's code"
    );
    assert_eq!(codes.remaining(&alice).await.unwrap(), 1);

    assert!(totp.remove(&alice, &id).await.unwrap());
    assert!(!totp.remove(&alice, &id).await.unwrap());

    // Still no direct reach, and the functions answer with nothing for a pattern.
    all_denied(&reach(&service).await);
    for (statement, arg) in [
        ("SELECT count(*) FROM passkey_credentials_of($1)", "%"),
        ("SELECT count(*) FROM totp_enrollment_list($1)", "%"),
    ] {
        let n: i64 = sqlx::query_scalar(statement)
            .bind(arg)
            .fetch_one(&service)
            .await
            .unwrap();
        assert_eq!(n, 0, "{statement} with {arg:?}");
    }
}

/// A schema migrated to 0007 whose login was set up then (with a see-all policy on the
/// MFA and membership tables) loses that reach when 0008 is applied, without the
/// operator granting again, and its stores keep working.
#[tokio::test(flavor = "multi_thread")]
async fn upgrading_to_0008_closes_the_see_all_policies_of_an_existing_login() {
    use mcpsec_mfa::{TotpConfig, TotpSecret};
    use mcpsec_store_sql::SqlTotpEnrollments;

    let ns = Namespace::new("postgres", "service_role", "upgrade");
    let Some((owner, _second)) = common::pg_pools_unmigrated(&ns).await else {
        return;
    };
    // Migrations 0001..=0007 only, from a copy of their files.
    let dir = std::env::temp_dir().join(format!("mcpsec-mig-{}", ns.as_str()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "0008" {
            std::fs::copy(&path, dir.join(&name)).unwrap();
        }
    }
    let old = sqlx::migrate::Migrator::new(dir.as_path()).await.unwrap();
    old.run(&owner).await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    let service = service_login(&ns, &owner).await.unwrap();
    // Before: the login reads every sealed secret in one statement (the statements of
    // this version of the crate need 0008, so the table is empty here).
    assert_eq!(
        sqlstate(&service, "SELECT * FROM totp_enrollments").await,
        None
    );

    mcpsec_store_sql::postgres::migrate(&owner).await.unwrap();
    let alice = UserId::new("alice").unwrap();
    let sealer = common::sealer_for("totp_secrets");
    let totp = SqlTotpEnrollments::new(owner.clone(), Arc::clone(&sealer));
    let id = totp
        .save_pending(
            &alice,
            &TotpSecret::generate().unwrap(),
            TotpConfig::default(),
            at(0),
        )
        .await
        .unwrap();
    // A fresh connection (the policy is gone for every session anyway).
    all_denied(&reach(&service).await);
    let policies: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_policies
          WHERE schemaname = current_schema() AND policyname LIKE 'service\\_%'",
    )
    .fetch_one(&owner)
    .await
    .unwrap();
    assert_eq!(policies, 0);
    let through = SqlTotpEnrollments::new(service, sealer);
    assert_eq!(through.list(&alice).await.unwrap().len(), 1);
    assert!(through.remove(&alice, &id).await.unwrap());
}
