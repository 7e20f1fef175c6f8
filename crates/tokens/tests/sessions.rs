//! Sessions end everywhere (issue 18): access tokens carry their session (`sid`), ending the
//! session refuses them at once, a session store that does not answer refuses, and the
//! verifier records every outcome. Also the session-revocation conformance suite on the
//! in-memory backend.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use mcpsec_access::{AuthMethod, AuthMethods, Resource, Role, ScopeSet, authorize_as, perm};
use mcpsec_core::{
    Actor, EventKind, ManualClock, MemorySink, OrgId, Outcome, ReasonCode, StoreError, TokenId,
    UserId,
};
use mcpsec_tokens::{
    AccessGrant, Algorithm, Error, IssuedRefresh, KeySource, MemoryRefreshStore,
    MemorySessionRevocation, RefreshError, RefreshPolicy, RefreshTokens, SessionGrant,
    SessionRevocation, SigningKey, SigningKeyring, TokenIssuer, TokenVerifier,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mcpsec_tokens::session_revocation_suite!(memory, |_: mcpsec_core::testkit::Namespace| async {
    Arc::new(MemorySessionRevocation::new()) as Arc<dyn SessionRevocation>
});

const ISS: &str = "https://auth.example";
const AUD: &str = "mcp-server";
const NOW: u64 = 1_767_225_600;

struct Host {
    clock: ManualClock,
    issuer: TokenIssuer,
    verifier: TokenVerifier,
    refresh: RefreshTokens,
    /// What the verifier reported.
    verified: MemorySink,
    /// What the refresh service reported.
    sessions_log: MemorySink,
}

/// One process that issues, refreshes and verifies, with one shared session store.
fn host_with(sessions: Arc<dyn SessionRevocation>) -> Host {
    let clock = ManualClock::at_unix(NOW);
    let key =
        SigningKey::generate(mcpsec_core::KeyId::new("k1").unwrap(), Algorithm::EdDSA).unwrap();
    let keyring = Arc::new(RwLock::new(SigningKeyring::new(key)));
    let jwks = keyring.read().unwrap().jwks();
    let issuer = TokenIssuer::builder(keyring)
        .issuer(ISS)
        .audience(AUD)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let verified = MemorySink::new();
    let verifier = TokenVerifier::builder(KeySource::Static(jwks), verified.clone())
        .issuer(ISS)
        .audience(AUD)
        .clock(Arc::new(clock.clone()))
        .sessions(Arc::clone(&sessions))
        .build()
        .unwrap();
    let sessions_log = MemorySink::new();
    let refresh = RefreshTokens::new(
        Arc::new(MemoryRefreshStore::new()),
        sessions,
        Arc::new(sessions_log.clone()),
        Arc::new(clock.clone()),
        RefreshPolicy::default(),
    );
    Host {
        clock,
        issuer,
        verifier,
        refresh,
        verified,
        sessions_log,
    }
}

fn host() -> Host {
    host_with(Arc::new(MemorySessionRevocation::new()))
}

fn login() -> SessionGrant {
    SessionGrant {
        subject: UserId::new("alice").unwrap(),
        org: Some(OrgId::new("acme").unwrap()),
        role: Some(Role::Developer),
        scopes: ScopeSet::parse_strict("mcp:read user:token").unwrap(),
        auth_time: UNIX_EPOCH + Duration::from_secs(NOW),
        amr: AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp]),
        acr: Some("urn:mcpsec:mfa".to_owned()),
    }
}

async fn start(host: &Host) -> (IssuedRefresh, String) {
    let session = host.refresh.start(login()).await.unwrap();
    let access = host.issuer.issue_for_session(&session).unwrap();
    (session, access)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_session_access_token_refused_at_once() {
    let host = host();
    let (session, access) = start(&host).await;
    let (_, other_access) = start(&host).await;
    let claims = host.verifier.verify(&access).await.unwrap();
    assert_eq!(claims.sid(), Some(session.family.as_str()));
    // Verified again: answered from the cache.
    host.verifier.verify(&access).await.unwrap();

    // The user logs out, through the refresh service (not the verifier).
    let principal = host.verifier.principal(&claims).await.unwrap();
    let proof =
        authorize_as::<perm::UserManageTokens>(&principal, &Resource::own(&principal)).unwrap();
    host.refresh.revoke(&proof, &session.family).await.unwrap();

    assert_eq!(
        host.verifier.verify(&access).await.unwrap_err(),
        Error::SessionRevoked,
        "a cached token of a revoked session is refused at its next use"
    );
    assert_eq!(
        host.verifier.verify(&access).await.unwrap_err(),
        Error::SessionRevoked
    );
    host.verifier
        .verify(&other_access)
        .await
        .expect("another session of the same user is untouched");
    let ended = host
        .sessions_log
        .events()
        .into_iter()
        .find(|e| e.kind == EventKind::SessionRevoked)
        .expect("a session_revoked event");
    assert_eq!(ended.reason, Some(ReasonCode::Revoked));
    assert_eq!(
        ended
            .resource
            .and_then(|r| r.id)
            .map(|id| id.as_str().to_owned()),
        Some(session.family.as_str().to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reuse_detection_revokes_the_sessions_access_tokens() {
    let host = host();
    let (first, first_access) = start(&host).await;
    host.clock.advance(Duration::from_secs(60));
    let second = host
        .refresh
        .rotate(first.token.expose_secret(), None)
        .await
        .unwrap();
    let second_access = host.issuer.issue_for_session(&second).unwrap();
    host.verifier.verify(&first_access).await.unwrap();
    host.verifier.verify(&second_access).await.unwrap();

    // The stolen first refresh token is replayed.
    host.clock.advance(Duration::from_secs(60));
    assert_eq!(
        host.refresh
            .rotate(first.token.expose_secret(), None)
            .await
            .unwrap_err(),
        Error::Refresh(RefreshError::Reused)
    );
    for access in [&first_access, &second_access] {
        assert_eq!(
            host.verifier.verify(access).await.unwrap_err(),
            Error::SessionRevoked
        );
    }
    let refused = host.verified.events().pop().unwrap();
    assert_eq!(
        (refused.kind, refused.reason),
        (EventKind::AuthnLoginFail, Some(ReasonCode::Revoked))
    );
    assert_eq!(
        refused.actor,
        Actor::User {
            user: UserId::new("alice").unwrap()
        },
        "a revoked session's token verified: the event names whose it was"
    );
    let events = host.sessions_log.events();
    let ended = events
        .iter()
        .find(|e| e.kind == EventKind::SessionRevoked)
        .expect("an event says the session was revoked");
    assert_eq!(ended.reason, Some(ReasonCode::Reused));
    assert!(events.iter().any(|e| e.kind == EventKind::AuthnTokenReuse));
}

#[tokio::test]
async fn sign_out_everywhere_ends_every_session() {
    let host = host();
    let (_, a) = start(&host).await;
    let (_, b) = start(&host).await;
    let claims = host.verifier.verify(&a).await.unwrap();
    let principal = host.verifier.principal(&claims).await.unwrap();
    let proof =
        authorize_as::<perm::UserManageTokens>(&principal, &Resource::own(&principal)).unwrap();
    assert_eq!(host.refresh.revoke_all(&proof).await.unwrap(), 2);
    for access in [&a, &b] {
        assert_eq!(
            host.verifier.verify(access).await.unwrap_err(),
            Error::SessionRevoked
        );
    }
    let ended = host
        .sessions_log
        .events()
        .into_iter()
        .filter(|e| e.kind == EventKind::SessionRevoked)
        .count();
    assert_eq!(ended, 2);
}

#[tokio::test]
async fn revoking_through_the_verifier_refuses_the_cached_token() {
    let host = host();
    let (session, access) = start(&host).await;
    host.verifier.verify(&access).await.unwrap();
    host.verifier
        .revoke_session(
            &session.family,
            SystemTime::now() + Duration::from_secs(3600),
        )
        .await
        .unwrap();
    assert_eq!(
        host.verifier.verify(&access).await.unwrap_err(),
        Error::SessionRevoked
    );
}

/// A session store whose answers can be switched off.
#[derive(Debug, Default)]
struct Flaky {
    inner: MemorySessionRevocation,
    down: AtomicBool,
}

#[async_trait::async_trait]
impl SessionRevocation for Flaky {
    async fn revoke(&self, sid: &TokenId, until: SystemTime) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("session store down"));
        }
        self.inner.revoke(sid, until).await
    }
    async fn is_revoked(&self, sid: &TokenId) -> Result<bool, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("session store down"));
        }
        self.inner.is_revoked(sid).await
    }
    async fn prune(&self, now: SystemTime) -> Result<usize, StoreError> {
        self.inner.prune(now).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_store_unavailable_fails_closed() {
    let flaky = Arc::new(Flaky::default());
    let host = host_with(flaky.clone());
    let (session, access) = start(&host).await;
    host.verifier.verify(&access).await.unwrap();
    flaky.down.store(true, Ordering::SeqCst);
    // Cached, and still refused: unknown is not "not revoked".
    assert!(matches!(
        host.verifier.verify(&access).await.unwrap_err(),
        Error::SessionCheckUnavailable(_)
    ));
    let failed = host.verified.events().pop().unwrap();
    assert_eq!(failed.kind, EventKind::AuthnLoginFail);
    assert_eq!(failed.reason, Some(ReasonCode::Unavailable));
    assert_eq!(
        failed.actor,
        Actor::Anonymous,
        "an outage of our store is not counted against the user"
    );

    // A token not minted from a session has nothing to check.
    let plain = host
        .issuer
        .issue(&AccessGrant::new(
            UserId::new("bob").unwrap(),
            ScopeSet::parse_strict("mcp:read").unwrap(),
        ))
        .unwrap();
    let claims = host.verifier.verify(&plain).await.unwrap();
    assert_eq!(claims.sid(), None);

    // A logout while the store is down is not reported as done.
    let principal = mcpsec_access::danger::principal(
        UserId::new("alice").unwrap(),
        OrgId::new("acme").unwrap(),
        Role::Developer,
        ScopeSet::parse_strict("user:token").unwrap(),
        mcpsec_access::CredentialKind::AccessToken,
        mcpsec_access::Authentication {
            at: None,
            methods: AuthMethods::EMPTY,
        },
    );
    let proof =
        authorize_as::<perm::UserManageTokens>(&principal, &Resource::own(&principal)).unwrap();
    assert!(matches!(
        host.refresh
            .revoke(&proof, &session.family)
            .await
            .unwrap_err(),
        Error::Store(_)
    ));
}

#[test]
fn amr_without_auth_time_refused_at_issue() {
    let host = host();
    let mut grant = AccessGrant::new(
        UserId::new("alice").unwrap(),
        ScopeSet::parse_strict("mcp:read").unwrap(),
    );
    grant.amr = AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp]);
    assert_eq!(
        host.issuer.issue(&grant).unwrap_err(),
        Error::MissingClaim("auth_time")
    );
    grant.auth_time = Some(UNIX_EPOCH + Duration::from_secs(NOW));
    assert!(host.issuer.issue(&grant).is_ok());
}

#[tokio::test]
async fn access_token_from_a_session_keeps_the_login() {
    let host = host();
    let (session, access) = start(&host).await;
    let claims = host.verifier.verify(&access).await.unwrap();
    let grant = login();
    assert_eq!(claims.subject(), grant.subject.as_str());
    assert_eq!(claims.org(), grant.org.as_ref().map(OrgId::as_str));
    assert_eq!(claims.role(), grant.role);
    assert_eq!(claims.scopes(), grant.scopes);
    assert_eq!(claims.auth_time(), Some(grant.auth_time));
    assert_eq!(claims.amr(), grant.amr);
    assert_eq!(claims.acr(), grant.acr.as_deref());
    assert_eq!(claims.sid(), Some(session.family.as_str()));
}

#[tokio::test]
async fn verifier_emits_success_and_failure_events() {
    let host = host();
    let (_, access) = start(&host).await;
    host.verifier.verify(&access).await.unwrap();
    // Change a character well inside the signature: the last one also carries padding
    // bits, so changing it may decode to the same bytes or be refused as malformed.
    let mut bytes = access.clone().into_bytes();
    let at = bytes.len() - 10;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert!(host.verifier.verify(&tampered).await.is_err());
    assert_eq!(
        host.verifier.verify("not a token").await.unwrap_err(),
        Error::Malformed
    );

    let events = host.verified.events();
    assert_eq!(events.len(), 3, "one event per verification");
    let ok = &events[0];
    assert_eq!(
        (ok.kind, ok.outcome),
        (EventKind::AuthnLoginSuccess, Outcome::Success)
    );
    assert_eq!(
        ok.actor,
        Actor::User {
            user: UserId::new("alice").unwrap()
        }
    );
    assert_eq!(ok.org, Some(OrgId::new("acme").unwrap()));
    for (failed, reason) in [
        (&events[1], ReasonCode::BadSignature),
        (&events[2], ReasonCode::Malformed),
    ] {
        assert_eq!(
            (failed.kind, failed.outcome),
            (EventKind::AuthnLoginFail, Outcome::Failure)
        );
        assert_eq!(failed.reason, Some(reason));
        assert_eq!(
            failed.actor,
            Actor::Anonymous,
            "an unverified token names nobody"
        );
    }
    let json = serde_json::to_string(&events).unwrap();
    for part in access.split('.') {
        assert!(!json.contains(part), "token text in an event");
    }
}

#[tokio::test]
async fn sid_is_capped_and_checked_like_the_other_claim_ids() {
    use common::{claims, ed, forge, header};
    let clock = common::clock();
    let sessions: Arc<dyn SessionRevocation> = Arc::new(MemorySessionRevocation::new());
    let verifier = TokenVerifier::builder(KeySource::Static(common::jwks()), mcpsec_core::NullSink)
        .issuer(common::ISS)
        .audience(common::AUD)
        .clock(Arc::new(clock.clone()))
        .sessions(sessions)
        .build()
        .unwrap();
    for bad in [
        serde_json::json!("s".repeat(mcpsec_tokens::MAX_CLAIM_ID_LEN + 1)),
        serde_json::json!("line\nbreak"),
        serde_json::json!(""),
        serde_json::json!(7),
        // Not a family id this workspace mints: it cannot be looked up, so it is refused.
        serde_json::json!("has space"),
    ] {
        let mut c = claims();
        c["sid"] = bad.clone();
        assert_eq!(
            verifier
                .verify(&forge(ed(), &header(ed()), &c))
                .await
                .unwrap_err(),
            Error::InvalidClaim("sid"),
            "{bad}"
        );
    }
}
