//! The [`Memberships`] conformance suite: one public async function per case, each taking a
//! fresh [`MembershipsHarness`], and [`memberships_suite!`](crate::memberships_suite) to
//! expand them into named `#[tokio::test]`s for a backend.
#![expect(
    clippy::unwrap_used,
    reason = "a test suite: failing loudly is its job"
)]

use crate::{Memberships, Role, resolve_role};
use mcpsec_core::{OrgId, UserId};
use std::sync::Arc;

/// A backend under test: the store the verifier reads, and a way to write memberships
/// (the trait is read-only; a SQL backend writes rows into its fresh schema here).
#[async_trait::async_trait]
pub trait MembershipsHarness: Send + Sync {
    /// The store under test.
    fn memberships(&self) -> Arc<dyn Memberships>;
    /// Sets `user`'s role in `org`; `None` removes the membership.
    async fn set(&self, user: &UserId, org: &OrgId, role: Option<Role>);
}

fn user(name: &str) -> UserId {
    UserId::new(name).unwrap()
}

fn org(name: &str) -> OrgId {
    OrgId::new(name).unwrap()
}

/// A member's role is the one that was set.
pub async fn member_has_their_role(h: impl MembershipsHarness) {
    h.set(&user("ada"), &org("acme"), Some(Role::Developer))
        .await;
    let store = h.memberships();
    assert_eq!(
        store.role(&user("ada"), &org("acme")).await.unwrap(),
        Some(Role::Developer)
    );
}

/// Someone who is not a member has no role: unknown users, and members of another org.
pub async fn non_member_has_no_role(h: impl MembershipsHarness) {
    h.set(&user("ada"), &org("acme"), Some(Role::OrgAdmin))
        .await;
    let store = h.memberships();
    assert_eq!(store.role(&user("eve"), &org("acme")).await.unwrap(), None);
    assert_eq!(
        store.role(&user("ada"), &org("globex")).await.unwrap(),
        None
    );
}

/// One user's roles in two organizations are separate.
pub async fn organizations_are_separate(h: impl MembershipsHarness) {
    h.set(&user("ada"), &org("acme"), Some(Role::OrgAdmin))
        .await;
    h.set(&user("ada"), &org("globex"), Some(Role::Viewer))
        .await;
    let store = h.memberships();
    assert_eq!(
        store.role(&user("ada"), &org("acme")).await.unwrap(),
        Some(Role::OrgAdmin)
    );
    assert_eq!(
        store.role(&user("ada"), &org("globex")).await.unwrap(),
        Some(Role::Viewer)
    );
}

/// A demotion is seen by the very next lookup (no stale role).
pub async fn demotion_is_seen_by_the_next_lookup(h: impl MembershipsHarness) {
    let store = h.memberships();
    h.set(&user("ada"), &org("acme"), Some(Role::OrgAdmin))
        .await;
    assert_eq!(
        store.role(&user("ada"), &org("acme")).await.unwrap(),
        Some(Role::OrgAdmin)
    );
    h.set(&user("ada"), &org("acme"), Some(Role::Viewer)).await;
    assert_eq!(
        store.role(&user("ada"), &org("acme")).await.unwrap(),
        Some(Role::Viewer)
    );
}

/// A removal is seen by the very next lookup.
pub async fn removal_is_seen_by_the_next_lookup(h: impl MembershipsHarness) {
    let store = h.memberships();
    h.set(&user("ada"), &org("acme"), Some(Role::Developer))
        .await;
    h.set(&user("ada"), &org("acme"), None).await;
    assert_eq!(store.role(&user("ada"), &org("acme")).await.unwrap(), None);
}

/// A role carried by a credential lowers the membership's role and never raises it; a
/// non-member gets no role whatever the credential carries.
pub async fn carried_role_never_raises(h: impl MembershipsHarness) {
    h.set(&user("ada"), &org("acme"), Some(Role::Viewer)).await;
    h.set(&user("bob"), &org("acme"), Some(Role::OrgAdmin))
        .await;
    let store = h.memberships();
    let (ada, bob, eve, acme) = (user("ada"), user("bob"), user("eve"), org("acme"));
    let carried = Some(Role::OrgAdmin);
    assert_eq!(
        resolve_role(&*store, &ada, &acme, carried).await.unwrap(),
        Some(Role::Viewer)
    );
    assert_eq!(
        resolve_role(&*store, &bob, &acme, Some(Role::Developer))
            .await
            .unwrap(),
        Some(Role::Developer)
    );
    assert_eq!(
        resolve_role(&*store, &eve, &acme, carried).await.unwrap(),
        None
    );
}

/// Expands the [`Memberships`] suite into one named `#[tokio::test]` per case, in a module
/// named after the backend, with the workspace's convention
/// (`mcpsec_core::conformance_suite!`): the factory is an async closure taking a
/// `Namespace` and returning a fresh [`MembershipsHarness`].
///
/// ```ignore
/// mcpsec_access::memberships_suite!(postgres, |ns: mcpsec_core::testkit::Namespace| async move {
///     PgMembershipsHarness::fresh_schema(ns.as_str()).await
/// });
/// // -> postgres::demotion_is_seen_by_the_next_lookup, …
/// ```
#[macro_export]
macro_rules! memberships_suite {
    ($backend:ident, $factory:expr) => {
        $crate::testkit::__core::conformance_suite!(
            suite = "memberships",
            cases = [$crate::testkit::memberships],
            backend = $backend,
            factory = $factory,
            tests = [
                member_has_their_role,
                non_member_has_no_role,
                organizations_are_separate,
                demotion_is_seen_by_the_next_lookup,
                removal_is_seen_by_the_next_lookup,
                carried_role_never_raises,
            ],
        );
    };
}

/// The memory backend's harness, for hosts that test against it.
#[derive(Debug, Default)]
pub struct MemoryHarness(Arc<crate::MemoryMemberships>);

impl MemoryHarness {
    /// A fresh, empty backend.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl MembershipsHarness for MemoryHarness {
    fn memberships(&self) -> Arc<dyn Memberships> {
        Arc::clone(&self.0) as Arc<dyn Memberships>
    }
    async fn set(&self, user: &UserId, org: &OrgId, role: Option<Role>) {
        match role {
            Some(role) => {
                self.0.set(user.clone(), org.clone(), role);
            }
            None => {
                self.0.remove(user, org);
            }
        }
    }
}
