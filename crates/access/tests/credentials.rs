//! Proofs for credential management: whose credentials they reach, and that a credential
//! can only mint narrower ones.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use mcpsec_access::{
    AuthMethod, AuthMethods, Authentication, Authorizer, CredentialKind, Principal, Resource, Role,
    ScopeSet, authorize_as, perm,
};
use mcpsec_core::{Actor, OrgId, UserId};
use std::time::UNIX_EPOCH;

fn principal(user: &str, role: Role, scopes: &str) -> Principal {
    mcpsec_access::danger::principal(
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
    // Managing members is administrative: the admin stepped up with a TOTP code just now.
    let now = UNIX_EPOCH;
    let admin = mcpsec_access::danger::principal(
        id("root"),
        org("acme"),
        Role::OrgAdmin,
        ScopeSet::parse_strict("org:admin").unwrap(),
        CredentialKind::AccessToken,
        Authentication {
            at: Some(now),
            methods: AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp]),
        },
    );
    let proof = Authorizer::default()
        .authorize_as::<perm::OrgManageMembers>(&admin, &Resource::of_org(org("acme")), now)
        .unwrap();
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
