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
