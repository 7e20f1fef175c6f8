//! The full decision matrix: 3 roles × all 512 scope subsets × 10 actions × 3 ownership
//! cases (46,080 decisions), against a table written here, independently of the crate's
//! own table, from the platform's security model.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use mcpsec_access::{
    Action, AuthMethod, AuthMethods, Authentication, Authorizer, CredentialKind, Principal,
    Resource, ScopeSet,
};
use mcpsec_core::{OrgId, UserId};
use std::time::UNIX_EPOCH;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Whose {
    Own,
    Org,
}

/// The nine scope names, in an order of this test's own choosing.
const SCOPES: [&str; 9] = [
    "org:admin",
    "user:token",
    "mcp:read",
    "org:read",
    "mcp:admin",
    "user:write",
    "mcp:write",
    "org:write",
    "user:read",
];

const ALL: &[&str] = &["org_admin", "developer", "viewer"];
const ADMIN_DEV: &[&str] = &["org_admin", "developer"];
const ADMIN: &[&str] = &["org_admin"];

/// action — scopes that satisfy it (the hierarchy spelled out by hand) — roles — whose.
const EXPECTED: &[(&str, &[&str], &[&str], Whose)] = &[
    (
        "mcp.use",
        &["mcp:read", "mcp:write", "mcp:admin"],
        ALL,
        Whose::Org,
    ),
    (
        "mcp.configure",
        &["mcp:write", "mcp:admin"],
        ADMIN_DEV,
        Whose::Org,
    ),
    ("mcp.manage_settings", &["mcp:admin"], ADMIN, Whose::Org),
    (
        "user.read_profile",
        &["user:read", "user:write"],
        ALL,
        Whose::Own,
    ),
    ("user.update_profile", &["user:write"], ALL, Whose::Own),
    ("user.manage_tokens", &["user:token"], ADMIN_DEV, Whose::Own),
    (
        "usage.view_own",
        &["user:read", "user:write"],
        ALL,
        Whose::Own,
    ),
    (
        "org.view_usage",
        &["org:read", "org:write", "org:admin"],
        ADMIN_DEV,
        Whose::Org,
    ),
    (
        "org.update_settings",
        &["org:write", "org:admin"],
        ADMIN,
        Whose::Org,
    ),
    ("org.manage_members", &["org:admin"], ADMIN, Whose::Org),
];

#[derive(Clone, Copy, Debug)]
enum Case {
    Own,
    OtherUserSameOrg,
    OtherOrg,
}

fn principal(role: &str, scopes: &str) -> Principal {
    mcpsec_access::danger::principal(
        UserId::new("alice").unwrap(),
        OrgId::new("acme").unwrap(),
        role.parse().unwrap(),
        ScopeSet::parse_strict(scopes).unwrap(),
        CredentialKind::AccessToken,
        // Stepped up with TOTP at the decision time, so the matrix shows the role, scope,
        // org and ownership rules alone (step-up has its own tests in decisions.rs).
        Authentication {
            at: Some(UNIX_EPOCH),
            methods: AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp]),
        },
    )
}

fn resource(case: Case) -> Resource {
    let (owner, org) = match case {
        Case::Own => ("alice", "acme"),
        Case::OtherUserSameOrg => ("bob", "acme"),
        Case::OtherOrg => ("mallory", "evil-corp"),
    };
    Resource::owned_by(UserId::new(owner).unwrap(), OrgId::new(org).unwrap())
}

#[test]
fn every_role_scope_set_action_and_owner() {
    assert_eq!(
        Action::ALL.len(),
        EXPECTED.len(),
        "the table covers every action"
    );
    let mut decisions = 0;
    let mut allowed = 0;
    for role in ALL {
        for bits in 0u32..512 {
            let granted: Vec<&str> = (0..9)
                .filter(|i| bits & (1 << i) != 0)
                .map(|i| SCOPES[i])
                .collect();
            let p = principal(role, &granted.join(" "));
            for &(action, satisfied_by, roles, whose) in EXPECTED {
                let action_value: Action = action.parse().unwrap();
                for case in [Case::Own, Case::OtherUserSameOrg, Case::OtherOrg] {
                    let role_ok = roles.contains(role);
                    let scope_ok = satisfied_by.iter().any(|s| granted.contains(s));
                    let owner_ok = match case {
                        Case::Own => true,
                        Case::OtherUserSameOrg => whose == Whose::Org,
                        Case::OtherOrg => false,
                    };
                    let expected = role_ok && scope_ok && owner_ok;
                    let got = Authorizer::default().authorize(
                        &p,
                        action_value,
                        &resource(case),
                        UNIX_EPOCH,
                    );
                    assert_eq!(
                        got.is_ok(),
                        expected,
                        "{role} with [{}] doing {action} on {case:?}: got {got:?}",
                        granted.join(" ")
                    );
                    // The denial names the first rule that failed, in the documented order.
                    if let Err(denial) = got {
                        let first = if !role_ok {
                            "role"
                        } else if !scope_ok {
                            "scope"
                        } else if matches!(case, Case::OtherOrg) {
                            "org"
                        } else {
                            "ownership"
                        };
                        assert_eq!(denial.rule(), first, "{role} {action} {case:?}");
                    } else {
                        allowed += 1;
                    }
                    decisions += 1;
                }
            }
        }
    }
    assert_eq!(decisions, 3 * 512 * 10 * 3);
    assert!(allowed > 0);
}

#[test]
fn roles_as_the_security_model_describes_them() {
    // With every scope, what each role can do is its role alone.
    let can = |role: &str, action: &str| {
        let p = principal(role, &SCOPES.join(" "));
        Authorizer::default()
            .authorize(
                &p,
                action.parse().unwrap(),
                &resource(Case::Own),
                UNIX_EPOCH,
            )
            .is_ok()
    };
    // Org admin: full control.
    for (action, ..) in EXPECTED {
        assert!(can("org_admin", action), "org_admin {action}");
    }
    // Developer: create and use MCP configurations, org usage, personal keys; no org admin.
    for action in [
        "mcp.use",
        "mcp.configure",
        "org.view_usage",
        "user.manage_tokens",
    ] {
        assert!(can("developer", action));
    }
    for action in [
        "mcp.manage_settings",
        "org.update_settings",
        "org.manage_members",
    ] {
        assert!(!can("developer", action));
    }
    // Viewer: use MCP read-only, personal usage; no configuration, no keys, no org usage.
    for action in [
        "mcp.use",
        "usage.view_own",
        "user.read_profile",
        "user.update_profile",
    ] {
        assert!(can("viewer", action));
    }
    for action in ["mcp.configure", "user.manage_tokens", "org.view_usage"] {
        assert!(!can("viewer", action));
    }
}
