//! Proofs for credential management: whose credentials they reach, and that a credential
//! can only mint narrower ones.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use mcpsec_access::{
    AuthMethods, Authentication, CredentialKind, Principal, Resource, Role, ScopeSet, authorize_as,
    perm,
};
use mcpsec_core::{Actor, OrgId, UserId};

fn principal(user: &str, role: Role, scopes: &str) -> Principal {
    Principal::new(
        UserId::new(user).unwrap(),
        OrgId::new("acme").unwrap(),
        role,
        ScopeSet::parse_strict(scopes).unwrap(),
        CredentialKind::AccessToken,
        Authentication {
            at: None,
            methods: AuthMethods::EMPTY,
        },
    )
}

fn id(user: &str) -> UserId {
    UserId::new(user).unwrap()
}

fn org(name: &str) -> OrgId {
    OrgId::new(name).unwrap()
}

#[test]
fn manage_tokens_reaches_only_ones_own_credentials() {
    let ada = principal("ada", Role::Developer, "user:token");
    let proof = authorize_as::<perm::UserManageTokens>(&ada, &Resource::own(&ada)).unwrap();
    assert!(proof.may_manage(&id("ada"), &org("acme")));
    assert!(!proof.may_manage(&id("bob"), &org("acme")));
    assert!(!proof.may_manage(&id("ada"), &org("globex")));
    assert_eq!(proof.actor(), Actor::User { user: id("ada") });
}

#[test]
fn manage_members_reaches_members_of_the_admins_org_only() {
    let admin = principal("root", Role::OrgAdmin, "org:admin");
    let proof =
        authorize_as::<perm::OrgManageMembers>(&admin, &Resource::of_org(org("acme"))).unwrap();
    assert!(proof.may_manage(&id("bob"), &org("acme")));
    assert!(!proof.may_manage(&id("bob"), &org("globex")));
}

#[test]
fn a_proof_grants_only_its_principals_effective_scopes() {
    let ada = principal("ada", Role::Developer, "user:token mcp:write");
    let proof = authorize_as::<perm::UserManageTokens>(&ada, &Resource::own(&ada)).unwrap();
    // mcp:write implies mcp:read.
    assert!(proof.grants(ScopeSet::parse_strict("mcp:read mcp:write").unwrap()));
    assert!(!proof.grants(ScopeSet::parse_strict("mcp:admin").unwrap()));
    assert_eq!(proof.principal().subject(), &id("ada"));
}
