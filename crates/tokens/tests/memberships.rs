//! The verifier reads the subject's role from memberships at every request, so a demoted
//! user loses rights at their next request and a removed one is refused (issue 13).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::*;
use mcpsec_access::{MemoryMemberships, Role};
use mcpsec_core::{OrgId, UserId};
use mcpsec_tokens::{Error, KeySource, TokenVerifier};
use serde_json::json;
use std::sync::Arc;

fn verifier_with(members: Arc<MemoryMemberships>) -> TokenVerifier {
    TokenVerifier::builder(KeySource::Static(jwks()), mcpsec_core::NullSink)
        .issuer(ISS)
        .audience(AUD)
        .clock(Arc::new(clock()))
        .memberships(members)
        .build()
        .unwrap()
}

fn alice() -> (UserId, OrgId) {
    (UserId::new("alice").unwrap(), OrgId::new("acme").unwrap())
}

/// The token says `org_admin`; the membership was lowered to viewer after it was issued.
/// Before issue 13 the principal kept `org_admin` until the token expired.
#[tokio::test]
async fn demoted_user_loses_rights_at_next_request() {
    let members = Arc::new(MemoryMemberships::new());
    let (user, org) = alice();
    members.set(user.clone(), org.clone(), Role::OrgAdmin);
    let verifier = verifier_with(members.clone());
    let token = forge(rsa(), &header(rsa()), &with("role", json!("org_admin")));

    let claims = verifier.verify(&token).await.unwrap();
    assert_eq!(
        verifier.principal(&claims).await.unwrap().role(),
        Role::OrgAdmin
    );

    members.set(user, org, Role::Viewer);
    let claims = verifier.verify(&token).await.unwrap();
    assert_eq!(
        verifier.principal(&claims).await.unwrap().role(),
        Role::Viewer
    );
}

/// A `role` claim lowers the membership's role, never raises it.
#[tokio::test]
async fn role_claim_never_raises_the_membership() {
    let members = Arc::new(MemoryMemberships::new());
    let (user, org) = alice();
    members.set(user.clone(), org.clone(), Role::Developer);
    let verifier = verifier_with(members.clone());

    let admin_claim = forge(rsa(), &header(rsa()), &with("role", json!("org_admin")));
    let claims = verifier.verify(&admin_claim).await.unwrap();
    assert_eq!(
        verifier.principal(&claims).await.unwrap().role(),
        Role::Developer
    );

    let viewer_claim = forge(rsa(), &header(rsa()), &with("role", json!("viewer")));
    let claims = verifier.verify(&viewer_claim).await.unwrap();
    assert_eq!(
        verifier.principal(&claims).await.unwrap().role(),
        Role::Viewer
    );

    // Without a role claim the membership decides.
    let no_claim = forge(
        rsa(),
        &header(rsa()),
        &with("role", serde_json::Value::Null),
    );
    let claims = verifier.verify(&no_claim).await.unwrap();
    assert_eq!(
        verifier.principal(&claims).await.unwrap().role(),
        Role::Developer
    );
}

/// A user removed from the organization is refused, whatever the token carries.
#[tokio::test]
async fn removed_member_is_refused() {
    let members = Arc::new(MemoryMemberships::new());
    let (user, org) = alice();
    members.set(user.clone(), org.clone(), Role::Developer);
    let verifier = verifier_with(members.clone());
    let token = forge(rsa(), &header(rsa()), &claims());
    members.remove(&user, &org);
    let claims = verifier.verify(&token).await.unwrap();
    assert_eq!(
        verifier.principal(&claims).await.unwrap_err(),
        Error::NotAMember
    );
}
