//! Algebraic properties of decisions, over random principals, actions and resources.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use mcpsec_access::{
    Action, AuthMethods, Authentication, CredentialKind, Principal, Resource, Role, ScopeSet,
    authorize,
};
use mcpsec_core::{OrgId, UserId};
use proptest::prelude::*;
use std::time::UNIX_EPOCH;

fn principal(role: Role, scopes: ScopeSet) -> Principal {
    mcpsec_access::danger::principal(
        UserId::new("alice").unwrap(),
        OrgId::new("acme").unwrap(),
        role,
        scopes,
        CredentialKind::ApiKey,
        Authentication {
            at: Some(UNIX_EPOCH),
            methods: AuthMethods::EMPTY,
        },
    )
}

fn resources() -> Vec<Resource> {
    let acme = OrgId::new("acme").unwrap();
    vec![
        Resource::owned_by(UserId::new("alice").unwrap(), acme.clone()),
        Resource::owned_by(UserId::new("bob").unwrap(), acme.clone()),
        Resource::of_org(acme),
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(Role::ALL.to_vec())
}

fn scopes() -> impl Strategy<Value = ScopeSet> {
    (0u16..512).prop_map(ScopeSet::from_bits_truncate)
}

fn allowed(p: &Principal) -> Vec<bool> {
    let mut out = Vec::new();
    for action in Action::ALL {
        for r in resources() {
            out.push(authorize(p, action, &r).is_ok());
        }
    }
    out
}

proptest! {
    #[test]
    fn adding_scopes_never_removes_a_permission(role in role(), a in scopes(), b in scopes()) {
        let before = allowed(&principal(role, a));
        let after = allowed(&principal(role, a.union(b)));
        for (was, now) in before.iter().zip(&after) {
            prop_assert!(!was || *now);
        }
    }

    #[test]
    fn removing_scopes_never_adds_a_permission(role in role(), a in scopes(), b in scopes()) {
        let before = allowed(&principal(role, a));
        let after = allowed(&principal(role, a.intersection(b)));
        for (was, now) in before.iter().zip(&after) {
            prop_assert!(*was || !now);
        }
    }

    #[test]
    fn a_downscoped_credential_never_gets_more_than_its_parent(
        role in role(), parent in scopes(), requested in scopes()
    ) {
        let parent = principal(role, parent);
        let child = parent.downscope(requested);
        for (p, c) in allowed(&parent).iter().zip(&allowed(&child)) {
            prop_assert!(*p || !c);
        }
        prop_assert!(child.scopes().effective().is_subset(parent.scopes().effective()));
    }

    #[test]
    fn another_organization_is_always_denied(role in role(), s in scopes(), other in "[a-z]{1,12}") {
        prop_assume!(other != "acme");
        let p = principal(role, s);
        let org = OrgId::new(&other).unwrap();
        for action in Action::ALL {
            for r in [
                Resource::of_org(org.clone()),
                Resource::owned_by(UserId::new("alice").unwrap(), org.clone()),
            ] {
                prop_assert!(authorize(&p, action, &r).is_err());
            }
        }
    }

    #[test]
    fn no_scopes_means_nothing_is_allowed(role in role()) {
        prop_assert!(allowed(&principal(role, ScopeSet::EMPTY)).iter().all(|a| !a));
    }
}
