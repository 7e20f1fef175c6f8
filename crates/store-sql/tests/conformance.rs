//! Every trait implemented here, through its own conformance suite, as named tests per
//! backend: `sqlite::<case>` and `postgres::<case>` in a module per suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod attempt_counter {
    use super::common;
    use mcpsec_core::AttemptCounter;
    use mcpsec_core::testkit::Namespace;
    use mcpsec_store_sql::SqlAttemptCounter;
    use std::sync::Arc;

    mcpsec_core::attempt_counter_suite!(sqlite, |ns: Namespace| async move {
        Arc::new(SqlAttemptCounter::new(common::sqlite_pool(&ns).await)) as Arc<dyn AttemptCounter>
    });
    mcpsec_core::attempt_counter_suite!(postgres, |ns: Namespace| async move {
        crate::pg_or_sqlite!(ns, SqlAttemptCounter as AttemptCounter)
    });
}

mod api_key_store {
    use super::common;
    use mcpsec_apikeys::ApiKeyStore;
    use mcpsec_core::testkit::Namespace;
    use mcpsec_store_sql::SqlApiKeyStore;
    use std::sync::Arc;

    mcpsec_apikeys::api_key_store_suite!(sqlite, |ns: Namespace| async move {
        Arc::new(SqlApiKeyStore::new(common::sqlite_pool(&ns).await)) as Arc<dyn ApiKeyStore>
    });
    mcpsec_apikeys::api_key_store_suite!(postgres, |ns: Namespace| async move {
        crate::pg_or_sqlite!(ns, SqlApiKeyStore as ApiKeyStore)
    });
}

mod refresh_store {
    use super::common;
    use mcpsec_core::testkit::Namespace;
    use mcpsec_store_sql::SqlRefreshStore;
    use mcpsec_tokens::RefreshTokenStore;
    use std::sync::Arc;

    mcpsec_tokens::refresh_store_suite!(sqlite, |ns: Namespace| async move {
        Arc::new(SqlRefreshStore::new(common::sqlite_pool(&ns).await)) as Arc<dyn RefreshTokenStore>
    });
    mcpsec_tokens::refresh_store_suite!(postgres, |ns: Namespace| async move {
        match common::pg_pool(&ns).await {
            Some(pool) => {
                // The suite's org admin `root` of `acme`: row-level security confirms an
                // admin's reach over the organization's sessions in `memberships`.
                sqlx::Executor::execute(
                    &pool,
                    "INSERT INTO orgs (id) VALUES ('acme');
                     INSERT INTO users (id) VALUES ('root');
                     INSERT INTO memberships (user_id, org_id, role)
                         VALUES ('root', 'acme', 'org_admin');",
                )
                .await
                .unwrap();
                Arc::new(SqlRefreshStore::new(pool)) as Arc<dyn RefreshTokenStore>
            }
            None => crate::pg_or_sqlite!(ns, SqlRefreshStore as RefreshTokenStore),
        }
    });
}

mod memberships {
    use super::common;
    use mcpsec_access::testkit::memberships::MembershipsHarness;
    use mcpsec_access::{Memberships, Role};
    use mcpsec_core::testkit::Namespace;
    use mcpsec_core::{OrgId, UserId};
    use mcpsec_store_sql::SqlMemberships;
    use std::sync::Arc;

    /// Writes memberships through the store's own bootstrap calls.
    struct Harness<DB: sqlx::Database>(Arc<SqlMemberships<DB>>);

    macro_rules! harness {
        ($db:ty) => {
            #[async_trait::async_trait]
            impl MembershipsHarness for Harness<$db> {
                fn memberships(&self) -> Arc<dyn Memberships> {
                    Arc::clone(&self.0) as Arc<dyn Memberships>
                }
                async fn set(&self, user: &UserId, org: &OrgId, role: Option<Role>) {
                    match role {
                        Some(role) => self.0.set_role(user, org, role).await.unwrap(),
                        None => {
                            self.0.remove(user, org).await.unwrap();
                        }
                    }
                }
            }
        };
    }
    harness!(sqlx::Sqlite);
    harness!(sqlx::Postgres);

    /// Either backend's harness, boxed so one factory can return both.
    struct Any(Box<dyn MembershipsHarness>);

    #[async_trait::async_trait]
    impl MembershipsHarness for Any {
        fn memberships(&self) -> Arc<dyn Memberships> {
            self.0.memberships()
        }
        async fn set(&self, user: &UserId, org: &OrgId, role: Option<Role>) {
            self.0.set(user, org, role).await
        }
    }

    mcpsec_access::memberships_suite!(sqlite, |ns: Namespace| async move {
        Harness(Arc::new(SqlMemberships::new(
            common::sqlite_pool(&ns).await,
        )))
    });
    mcpsec_access::memberships_suite!(postgres, |ns: Namespace| async move {
        match common::pg_pool(&ns).await {
            Some(pool) => Any(Box::new(Harness(Arc::new(SqlMemberships::new(pool))))),
            None => Any(Box::new(Harness(Arc::new(SqlMemberships::new(
                common::sqlite_pool(&ns).await,
            ))))),
        }
    });
}

mod totp_replay_guard {
    use super::common;
    use mcpsec_core::testkit::Namespace;
    use mcpsec_mfa::TotpReplayGuard;
    use mcpsec_store_sql::SqlReplayGuard;
    use std::sync::Arc;

    mcpsec_mfa::totp_replay_guard_suite!(sqlite, |ns: Namespace| async move {
        Arc::new(SqlReplayGuard::new(common::sqlite_pool(&ns).await)) as Arc<dyn TotpReplayGuard>
    });
    mcpsec_mfa::totp_replay_guard_suite!(postgres, |ns: Namespace| async move {
        crate::pg_or_sqlite!(ns, SqlReplayGuard as TotpReplayGuard)
    });
}

mod recovery_store {
    use super::common;
    use mcpsec_core::testkit::Namespace;
    use mcpsec_mfa::RecoveryCodeStore;
    use mcpsec_store_sql::SqlRecoveryStore;
    use std::sync::Arc;

    mcpsec_mfa::recovery_store_suite!(sqlite, |ns: Namespace| async move {
        Arc::new(SqlRecoveryStore::new(common::sqlite_pool(&ns).await))
            as Arc<dyn RecoveryCodeStore>
    });
    mcpsec_mfa::recovery_store_suite!(postgres, |ns: Namespace| async move {
        crate::pg_or_sqlite!(ns, SqlRecoveryStore as RecoveryCodeStore)
    });
}

mod email_code_store {
    use super::common;
    use mcpsec_core::testkit::Namespace;
    use mcpsec_mfa::EmailCodeStore;
    use mcpsec_store_sql::SqlEmailCodeStore;
    use std::sync::Arc;

    mcpsec_mfa::email_code_store_suite!(sqlite, |ns: Namespace| async move {
        Arc::new(SqlEmailCodeStore::new(common::sqlite_pool(&ns).await)) as Arc<dyn EmailCodeStore>
    });
    mcpsec_mfa::email_code_store_suite!(postgres, |ns: Namespace| async move {
        crate::pg_or_sqlite!(ns, SqlEmailCodeStore as EmailCodeStore)
    });
}
