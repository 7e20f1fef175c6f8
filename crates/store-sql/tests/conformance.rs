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
        crate::pg_or_sqlite!(ns, SqlRefreshStore as RefreshTokenStore)
    });
}
