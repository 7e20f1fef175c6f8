//! Shows a login session with mcpsec-tokens: a signing keyring and its JWKS, an access
//! token verified strictly into a `Principal`, refresh-token rotation, what happens when
//! a stolen refresh token is replayed (the session ends, and its access tokens with it),
//! and a signing-key rotation.
//!
//! Run: `cargo run -p example-tokens`

use mcpsec_access::{Action, AuthMethod, AuthMethods, Resource, Role, ScopeSet, authorize};
use mcpsec_core::{Clock, KeyId, ManualClock, MemorySink, OrgId, UserId};
use mcpsec_tokens::{
    Algorithm, KeySource, MemoryRefreshStore, MemorySessionRevocation, RefreshPolicy,
    RefreshTokens, SessionGrant, SigningKey, SigningKeyring, TokenIssuer, TokenVerifier,
};
use std::sync::{Arc, RwLock};
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::at_unix(1_767_225_600);
    let events = MemorySink::new();
    // Ended sessions, shared by the refresh service and every verifier (SQL or Redis in a
    // fleet).
    let sessions = Arc::new(MemorySessionRevocation::new());

    // Keys: one signing now, one published ahead of its turn.
    let mut ring = SigningKeyring::new(SigningKey::generate(
        KeyId::new("2026-01")?,
        Algorithm::RS256,
    )?);
    ring.add_next(SigningKey::generate(
        KeyId::new("2026-02")?,
        Algorithm::RS256,
    )?)?;
    let jwks = ring.jwks();
    println!("JWKS publishes {} keys", jwks.keys.len());
    let ring = Arc::new(RwLock::new(ring));

    let issuer = TokenIssuer::builder(ring.clone())
        .issuer("https://auth.example")
        .audience("mcp-server")
        .clock(Arc::new(clock.clone()))
        .build()?;
    let verifier = TokenVerifier::builder(KeySource::Static(jwks), events.clone())
        .issuer("https://auth.example")
        .audience("mcp-server")
        .clock(Arc::new(clock.clone()))
        .sessions(sessions.clone())
        .build()?;

    // Login: a refresh family and an access token.
    let session = SessionGrant {
        subject: UserId::new("ada")?,
        org: Some(OrgId::new("acme")?),
        role: Some(Role::Developer),
        scopes: ScopeSet::parse_strict("mcp:write user:token")?,
        auth_time: clock.now(),
        amr: AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp]),
        acr: None,
    };
    let refresh = RefreshTokens::new(
        Arc::new(MemoryRefreshStore::new()),
        sessions,
        Arc::new(events.clone()),
        Arc::new(clock.clone()),
        RefreshPolicy::default(),
    );
    let login = refresh.start(session.clone()).await?;
    // The access token carries the session (`sid`): ending the session refuses it.
    let access = issuer.issue_for_session(&login)?;

    // A request: verify, then decide.
    let principal = verifier.verify(&access).await?.principal()?;
    let proof = authorize(
        &principal,
        Action::McpConfigure,
        &Resource::of_org(OrgId::new("acme")?),
    )?;
    println!("ada may {}", proof.action());

    // An hour later the client refreshes; the old refresh token is now spent.
    clock.advance(Duration::from_secs(3600));
    let rotated = refresh.rotate(login.token.expose_secret(), None).await?;
    println!("rotated within family {}", rotated.family);

    // Someone replays the first refresh token: the whole family is revoked.
    clock.advance(Duration::from_secs(60));
    let replay = refresh.rotate(login.token.expose_secret(), None).await;
    println!(
        "replay: {}",
        replay.err().map_or("accepted?!".into(), |e| e.to_string())
    );
    let after = refresh.rotate(rotated.token.expose_secret(), None).await;
    println!(
        "legitimate client after the replay: {}",
        after.err().map_or("accepted?!".into(), |e| e.to_string())
    );
    println!(
        "the session's access token after the replay: {}",
        verifier
            .verify(&access)
            .await
            .err()
            .map_or("accepted?!".into(), |e| e.to_string())
    );
    for event in events.events() {
        println!("event: {} ({:?})", event.kind, event.severity);
    }

    // Ada logs in again.
    let login = refresh.start(session).await?;
    let access = issuer.issue_for_session(&login)?;

    // Signing-key rotation: the next key signs, the old one verifies until its tokens expire.
    ring.write().map_err(|_| "keyring lock poisoned")?.rotate(
        clock.now(),
        issuer.ttl(),
        SigningKey::generate(KeyId::new("2026-03")?, Algorithm::RS256)?,
    )?;
    verifier.set_keys(&ring.read().map_err(|_| "keyring lock poisoned")?.jwks())?;
    let new_access = issuer.issue_for_session(&login)?;
    println!(
        "new tokens are signed by {}",
        verifier.verify(&new_access).await?.kid()
    );
    println!(
        "old token still verifies: {}",
        verifier.verify(&access).await.is_ok()
    );
    Ok(())
}
