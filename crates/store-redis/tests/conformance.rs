//! Every trait implemented here, through its own conformance suite, as named tests:
//! `redis::<case>` in a module per suite. Without `MCPSEC_TEST_REDIS_URL` each case prints
//! a notice and runs on the in-memory implementation instead (in CI it fails).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

/// `Arc::new(stores.$method())` on Redis under the case's own prefix, or `$fallback` when
/// no Redis is configured (the notice says so), as `Arc<dyn $tr>`.
macro_rules! redis_or_memory {
    ($ns:expr, $method:ident as $tr:path, else $fallback:expr) => {{
        let ns = $ns;
        match $crate::common::stores(&ns).await {
            Some(stores) => std::sync::Arc::new(stores.$method()) as std::sync::Arc<dyn $tr>,
            None => {
                eprintln!("notice: {} runs in memory", ns.as_str());
                std::sync::Arc::new($fallback) as std::sync::Arc<dyn $tr>
            }
        }
    }};
}

mod attempt_counter {
    use mcpsec_core::testkit::Namespace;
    use mcpsec_core::{AttemptCounter, MemoryAttemptCounter};

    mcpsec_core::attempt_counter_suite!(redis, |ns: Namespace| async move {
        redis_or_memory!(ns, attempt_counter as AttemptCounter, else MemoryAttemptCounter::default())
    });
}

mod totp_replay_guard {
    use mcpsec_core::testkit::Namespace;
    use mcpsec_mfa::{MemoryReplayGuard, TotpReplayGuard};

    mcpsec_mfa::totp_replay_guard_suite!(redis, |ns: Namespace| async move {
        redis_or_memory!(ns, replay_guard as TotpReplayGuard, else MemoryReplayGuard::new())
    });
}

mod usage_ledger {
    use mcpsec_core::testkit::Namespace;
    use mcpsec_fieldcrypt::{MemoryLedger, UsageLedger};

    mcpsec_fieldcrypt::usage_ledger_suite!(redis, |ns: Namespace| async move {
        redis_or_memory!(ns, usage_ledger as UsageLedger, else MemoryLedger::new())
    });
}
