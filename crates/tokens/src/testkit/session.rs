//! Conformance suite for [`SessionRevocation`] backends, expanded into named tests per
//! backend by [`session_revocation_suite!`](crate::session_revocation_suite):
//!
//! ```ignore
//! mcpsec_tokens::session_revocation_suite!(redis, |ns: Namespace| async move {
//!     Arc::new(RedisSessions::with_prefix(ns.as_str()).await) as Arc<dyn SessionRevocation>
//! });
//! // -> redis::revoked_session_is_revoked_and_others_are_not, …
//! ```

use crate::SessionRevocation;
use mcpsec_core::TokenId;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const T0: u64 = 1_767_225_600;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + secs)
}

fn sid() -> TokenId {
    TokenId::generate().unwrap()
}

/// A revoked session reads as revoked (through another handle too); an unknown one and a
/// different one do not.
pub async fn revoked_session_is_revoked_and_others_are_not(store: Arc<dyn SessionRevocation>) {
    let (revoked, other) = (sid(), sid());
    assert!(
        !store.is_revoked(&revoked).await.unwrap(),
        "unknown is not revoked"
    );
    store.revoke(&revoked, at(3600)).await.unwrap();
    let second_handle = Arc::clone(&store);
    assert!(second_handle.is_revoked(&revoked).await.unwrap());
    assert!(!store.is_revoked(&other).await.unwrap());
    // Revoking twice is not an error.
    store.revoke(&revoked, at(3600)).await.unwrap();
    assert!(store.is_revoked(&revoked).await.unwrap());
}

/// `prune` forgets revocations whose `until` has passed and keeps the others; a second
/// revocation keeps the later `until`.
pub async fn prune_forgets_only_past_revocations(store: Arc<dyn SessionRevocation>) {
    let (short, long, extended) = (sid(), sid(), sid());
    store.revoke(&short, at(100)).await.unwrap();
    store.revoke(&long, at(200)).await.unwrap();
    store.revoke(&extended, at(200)).await.unwrap();
    store.revoke(&extended, at(100)).await.unwrap();
    assert_eq!(store.prune(at(99)).await.unwrap(), 0, "nothing past yet");
    assert_eq!(store.prune(at(100)).await.unwrap(), 1);
    assert!(
        !store.is_revoked(&short).await.unwrap(),
        "forgotten after until"
    );
    assert!(store.is_revoked(&long).await.unwrap());
    assert!(
        store.is_revoked(&extended).await.unwrap(),
        "an earlier until never shortens a revocation"
    );
    assert_eq!(store.prune(at(200)).await.unwrap(), 2);
}

/// 32 concurrent revocations are all visible afterwards.
pub async fn concurrent_revocations_are_all_kept(store: Arc<dyn SessionRevocation>) {
    let sids: Vec<TokenId> = (0..32).map(|_| sid()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for sid in sids.clone() {
        let store = Arc::clone(&store);
        tasks.spawn(async move { store.revoke(&sid, at(3600)).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("task").expect("store");
    }
    for sid in &sids {
        assert!(store.is_revoked(sid).await.unwrap());
    }
}

/// Expands the [`SessionRevocation`] suite into named tests in a module named after the
/// backend: `session_revocation_suite!(memory, |_ns| async { Arc::new(MemorySessionRevocation::new())
/// as Arc<dyn SessionRevocation> })` gives `memory::prune_forgets_only_past_revocations` and
/// so on. The calling crate needs tokio with `macros` and `rt-multi-thread`.
#[macro_export]
macro_rules! session_revocation_suite {
    ($backend:ident, $factory:expr $(,)?) => {
        $crate::testkit::__conformance_suite!(
            suite = "session_revocation",
            cases = [$crate::testkit::session],
            backend = $backend,
            factory = $factory,
            tests = [
                revoked_session_is_revoked_and_others_are_not,
                prune_forgets_only_past_revocations,
                concurrent_revocations_are_all_kept,
            ],
        );
    };
}
