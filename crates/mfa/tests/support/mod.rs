//! Deterministic race hooks shared by the MFA tests: a gate that holds the first `n`
//! callers until all `n` have arrived. A fake store calls the real one, then waits at the
//! gate before returning, so all `n` requests have read (or written) before any of them
//! acts on the answer: the race interleaves for certain on a multi-thread runtime, never
//! by sleep-and-hope.
#![allow(dead_code, reason = "each test file uses part of the support module")]

use mcpsec_core::{AttemptCounter, AttemptState, MemoryAttemptCounter};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::Barrier;

/// Holds the first `n` calls to [`Gate::pass`] until `n` have arrived; later calls pass.
#[derive(Debug)]
pub struct Gate {
    arrived: AtomicUsize,
    n: usize,
    barrier: Barrier,
}

impl Gate {
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            arrived: AtomicUsize::new(0),
            n,
            barrier: Barrier::new(n),
        })
    }

    pub async fn pass(&self) {
        if self.arrived.fetch_add(1, Ordering::SeqCst) < self.n {
            self.barrier.wait().await;
        }
    }
}

/// A shared attempt counter (as a fleet would have) whose first `n` calls all suspend,
/// after doing their work, until `n` requests are inside it.
#[derive(Debug)]
pub struct SuspendingCounter {
    pub inner: MemoryAttemptCounter,
    pub gate: Arc<Gate>,
}

impl SuspendingCounter {
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryAttemptCounter::default(),
            gate: Gate::new(n),
        })
    }
}

#[async_trait::async_trait]
impl AttemptCounter for SuspendingCounter {
    async fn record_failure(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<AttemptState, mcpsec_core::Error> {
        let result = self.inner.record_failure(subject, window, now).await;
        self.gate.pass().await;
        result
    }

    async fn release(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptState>, mcpsec_core::Error> {
        let result = self.inner.release(subject, window, now).await;
        self.gate.pass().await;
        result
    }

    async fn state(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptState>, mcpsec_core::Error> {
        let result = self.inner.state(subject, window, now).await;
        self.gate.pass().await;
        result
    }
}

/// `user.update_profile` on `user`'s own profile: what a verified session of theirs proves.
pub fn own(
    user: &mcpsec_core::UserId,
) -> mcpsec_access::Authorized<mcpsec_access::perm::UserUpdateProfile> {
    let principal = mcpsec_access::danger::principal(
        user.clone(),
        mcpsec_core::OrgId::new("acme").unwrap(),
        mcpsec_access::Role::Viewer,
        mcpsec_access::ScopeSet::of(&[mcpsec_access::Scope::UserWrite]),
        mcpsec_access::CredentialKind::AccessToken,
        mcpsec_access::Authentication {
            at: None,
            methods: mcpsec_access::AuthMethods::EMPTY,
        },
    );
    mcpsec_access::authorize_as(&principal, &mcpsec_access::Resource::own(&principal)).unwrap()
}

/// `user` as the principal a tenant-scoped store call runs as.
pub fn as_user(user: &mcpsec_core::UserId) -> mcpsec_access::Principal {
    own(user).principal().clone()
}
