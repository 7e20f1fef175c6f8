//! Lifecycle calls take the proof of the action that allows them, and a key's role comes
//! from its owner's membership at every use (issue 13).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::*;
use mcpsec_access::{Action, Resource, Role, authorize};
use mcpsec_apikeys::{ApiKeyLookup, Env, Error, HashMode, KeyStatus};
use mcpsec_core::{Actor, OrgId, ServiceId, UserId};
use std::time::Duration;

fn acme() -> OrgId {
    OrgId::new("acme").unwrap()
}

/// The attack: a token that may only manage keys (`user:token`) mints a key that may write
/// MCP configurations. Before issue 13 `create` took no proof and this succeeded.
#[tokio::test]
async fn user_token_only_credential_cannot_mint_an_mcp_write_key() {
    let f = fixture_with(HashMode::HmacSha256, |b| b);
    let token_only = proof_for("victim", "user:token");
    let mut wider = new_key(Env::Live);
    wider.scopes = "mcp:write".into();
    assert_eq!(
        f.keys.create(&token_only, wider).await.unwrap_err(),
        Error::ScopesExceedCreator
    );
    assert!(f.events.events().is_empty(), "nothing was created");
    // Through the hierarchy: mcp:write held allows minting an mcp:read key.
    let writer = proof_for("victim", "user:token mcp:write user:read");
    let (_, record) = f.keys.create(&writer, new_key(Env::Live)).await.unwrap();
    assert_eq!(record.created_by, UserId::new("victim").unwrap());
}

/// A `user.manage_tokens` proof reaches its subject's keys only: another user's key is not
/// created, listed, rotated, disabled or revoked, and is left as it was.
#[tokio::test]
async fn manage_tokens_proof_cannot_touch_another_users_keys() {
    let f = fixture_with(HashMode::HmacSha256, |b| b);
    let (key, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let mallory = proof_for("mallory", "user:token mcp:read user:read");
    assert_eq!(
        f.keys
            .create(&mallory, new_key(Env::Live))
            .await
            .unwrap_err(),
        Error::NotAllowed
    );
    assert_eq!(
        f.keys
            .list(&mallory, &UserId::new("victim").unwrap())
            .await
            .unwrap_err(),
        Error::NotAllowed
    );
    assert_eq!(
        f.keys
            .rotate(&mallory, &record.id, Duration::from_secs(60))
            .await
            .unwrap_err(),
        Error::NotAllowed
    );
    assert_eq!(
        f.keys.disable(&mallory, &record.id).await,
        Err(Error::NotAllowed)
    );
    assert_eq!(
        f.keys.revoke(&mallory, &record.id).await,
        Err(Error::NotAllowed)
    );
    assert_eq!(
        f.store.get(&record.id).await.unwrap().unwrap().status,
        KeyStatus::Active
    );
    assert_eq!(
        f.keys
            .list(&victim_proof(), &UserId::new("victim").unwrap())
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(f.keys.verify(key.expose_secret(), &ip(1)).await.is_ok());
}

/// An org admin revokes a departed member's keys through `org.manage_members`; an admin of
/// another organization cannot even learn the key exists.
#[tokio::test]
async fn org_admin_revokes_a_departed_members_keys() {
    let f = fixture_with(HashMode::HmacSha256, |b| b);
    let (key, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    assert_eq!(
        f.keys.revoke(&admin_proof("globex"), &record.id).await,
        Err(Error::Unknown)
    );
    let admin = admin_proof("acme");
    let listed = f
        .keys
        .list(&admin, &UserId::new("victim").unwrap())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    f.keys.revoke(&admin, &record.id).await.unwrap();
    assert_eq!(
        f.keys
            .verify(key.expose_secret(), &ip(1))
            .await
            .unwrap_err(),
        Error::Revoked
    );
    let revoked = f
        .events
        .events()
        .into_iter()
        .find(|e| e.action.as_ref().is_some_and(|a| a.as_str() == "revoke"))
        .unwrap();
    assert_eq!(
        revoked.actor,
        Actor::User {
            user: UserId::new("admin").unwrap()
        },
        "the revocation names the admin who acted"
    );
}

/// A demoted owner's key loses the rights at its next use: the role is read from the
/// membership on every verification, never stored with the key.
#[tokio::test]
async fn demoted_owner_key_loses_rights_at_next_request() {
    let f = fixture_with(HashMode::HmacSha256, |b| b);
    let mut new = new_key(Env::Live);
    new.scopes = "mcp:write".into();
    let writer = proof_for("victim", "user:token mcp:write");
    let (key, _) = f.keys.create(&writer, new).await.unwrap();
    let config = Resource::of_org(acme());

    let before = f.keys.verify(key.expose_secret(), &ip(1)).await.unwrap();
    assert_eq!(before.role(), Role::Developer);
    authorize(&before.principal(), Action::McpConfigure, &config).unwrap();

    f.members
        .set(UserId::new("victim").unwrap(), acme(), Role::Viewer);
    let after = f.keys.verify(key.expose_secret(), &ip(1)).await.unwrap();
    assert_eq!(after.role(), Role::Viewer);
    assert!(authorize(&after.principal(), Action::McpConfigure, &config).is_err());
}

/// An owner removed from the organization: their keys are refused (reported, not counted
/// as guessing), whatever the key's own status.
#[tokio::test]
async fn removed_members_key_is_refused() {
    let f = fixture_with(HashMode::HmacSha256, |b| b);
    let (key, _) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    f.members.remove(&UserId::new("victim").unwrap(), &acme());
    assert_eq!(
        f.keys
            .verify(key.expose_secret(), &ip(1))
            .await
            .unwrap_err(),
        Error::NotAMember
    );
}

/// Holding the key is the proof for `revoke_leaked`; a wrong secret or an unknown id
/// changes nothing.
#[tokio::test]
async fn revoke_leaked_needs_the_key_itself() {
    let f = fixture_with(HashMode::HmacSha256, |b| b);
    let (key, record) = f
        .keys
        .create(&victim_proof(), new_key(Env::Live))
        .await
        .unwrap();
    let scanner = Actor::Service {
        service: ServiceId::new("scanner").unwrap(),
    };
    assert_eq!(
        f.keys
            .revoke_leaked(&wrong_secret_for(&key), scanner.clone())
            .await,
        Err(Error::SecretMismatch)
    );
    assert_eq!(
        f.store.get(&record.id).await.unwrap().unwrap().status,
        KeyStatus::Active
    );
    f.keys
        .revoke_leaked(key.expose_secret(), scanner)
        .await
        .unwrap();
    assert_eq!(
        f.store.get(&record.id).await.unwrap().unwrap().status,
        KeyStatus::Revoked
    );
}
