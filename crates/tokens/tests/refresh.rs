//! Refresh-token rotation, reuse detection and lifetimes, and the store conformance suite
//! on the in-memory backend.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use mcpsec_access::{AuthMethod, AuthMethods, Role, ScopeSet};
use mcpsec_core::{EventKind, ManualClock, MemorySink, OrgId, ReasonCode, TokenId, UserId};
use mcpsec_tokens::{
    ConsumeOutcome, Error, FamilyRecord, MemoryRefreshStore, MemorySessionRevocation,
    RefreshPolicy, RefreshRecord, RefreshTokenStore, RefreshTokens, SessionGrant, StoreError,
    TokenHash,
};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

mcpsec_tokens::refresh_store_suite!(memory_store, |_: mcpsec_core::testkit::Namespace| async {
    Arc::new(MemoryRefreshStore::new()) as Arc<dyn RefreshTokenStore>
});

struct Fixture {
    tokens: RefreshTokens,
    clock: ManualClock,
    events: MemorySink,
    store: Arc<MemoryRefreshStore>,
    sessions: Arc<MemorySessionRevocation>,
}

fn fixture(policy: RefreshPolicy) -> Fixture {
    let clock = ManualClock::at_unix(1_767_225_600);
    let events = MemorySink::new();
    let store = Arc::new(MemoryRefreshStore::new());
    let sessions = Arc::new(MemorySessionRevocation::new());
    let tokens = RefreshTokens::new(
        store.clone(),
        sessions.clone(),
        Arc::new(events.clone()),
        Arc::new(clock.clone()),
        policy,
    );
    Fixture {
        tokens,
        clock,
        events,
        store,
        sessions,
    }
}

fn grant() -> SessionGrant {
    SessionGrant {
        subject: UserId::new("alice").unwrap(),
        org: Some(OrgId::new("acme").unwrap()),
        role: Some(Role::Developer),
        scopes: ScopeSet::parse_strict("mcp:read").unwrap(),
        auth_time: UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        amr: AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp]),
        acr: Some("urn:mcpsec:mfa".to_owned()),
    }
}

#[tokio::test]
async fn rotation_hands_out_a_new_token_and_keeps_the_session() {
    let f = fixture(RefreshPolicy::default());
    let first = f.tokens.start(grant()).await.unwrap();
    assert!(first.token.expose_secret().starts_with("mcp_rt_"));
    assert_eq!(first.token.expose_secret().len(), 7 + 43);
    assert_eq!(format!("{:?}", first.token), "[REDACTED]");
    f.clock.advance(Duration::from_secs(60));
    let second = f
        .tokens
        .rotate(first.token.expose_secret(), None)
        .await
        .unwrap();
    assert_ne!(second.token, first.token);
    assert_eq!(second.family, first.family);
    assert_eq!(second.grant, grant(), "auth_time and amr survive rotation");
    let third = f
        .tokens
        .rotate(second.token.expose_secret(), None)
        .await
        .unwrap();
    assert_eq!(third.family, first.family);
    assert!(f.events.events().is_empty());
}

#[tokio::test]
async fn refresh_reuse_revokes_family() {
    let f = fixture(RefreshPolicy::default());
    let first = f.tokens.start(grant()).await.unwrap();
    let second = f
        .tokens
        .rotate(first.token.expose_secret(), None)
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(1));
    // An attacker replays the stolen first token.
    let source = "203.0.113.9".parse().unwrap();
    assert_eq!(
        f.tokens
            .rotate(first.token.expose_secret(), Some(source))
            .await
            .unwrap_err(),
        Error::Refresh(mcpsec_tokens::RefreshError::Reused)
    );
    // The session is revoked before the refusal returns: its access tokens are refused.
    assert!(
        mcpsec_tokens::SessionRevocation::is_revoked(&*f.sessions, &first.family)
            .await
            .unwrap()
    );
    // The legitimate holder's current token is dead too: the family is revoked.
    assert_eq!(
        f.tokens
            .rotate(second.token.expose_secret(), None)
            .await
            .unwrap_err(),
        Error::Refresh(mcpsec_tokens::RefreshError::Revoked)
    );
    let events = f.events.events();
    let reuse = events
        .iter()
        .find(|e| e.kind == EventKind::AuthnTokenReuse)
        .expect("reuse event");
    assert!(reuse.is_critical());
    assert_eq!(reuse.reason, Some(ReasonCode::Reused));
    assert_eq!(reuse.source, Some(source));
    assert_eq!(
        reuse
            .resource
            .as_ref()
            .and_then(|r| r.id.as_ref())
            .map(|id| id.as_str()),
        Some(first.family.as_str())
    );
    let json = serde_json::to_string(&events).unwrap();
    assert!(
        !json.contains(first.token.expose_secret()) && !json.contains("mcp_rt_"),
        "no token in events"
    );
}

#[tokio::test]
async fn reuse_within_the_grace_window_is_refused_without_revoking() {
    let f = fixture(RefreshPolicy {
        reuse_grace: Duration::from_secs(5),
        ..RefreshPolicy::default()
    });
    let first = f.tokens.start(grant()).await.unwrap();
    let second = f
        .tokens
        .rotate(first.token.expose_secret(), None)
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(2));
    assert_eq!(
        f.tokens
            .rotate(first.token.expose_secret(), None)
            .await
            .unwrap_err(),
        Error::Refresh(mcpsec_tokens::RefreshError::Raced)
    );
    assert!(
        f.tokens
            .rotate(second.token.expose_secret(), None)
            .await
            .is_ok(),
        "family kept"
    );
    f.clock.advance(Duration::from_secs(10));
    assert_eq!(
        f.tokens
            .rotate(first.token.expose_secret(), None)
            .await
            .unwrap_err(),
        Error::Refresh(mcpsec_tokens::RefreshError::Reused)
    );
}

#[tokio::test]
async fn idle_and_absolute_lifetimes_end_the_session() {
    let policy = RefreshPolicy {
        absolute_lifetime: Duration::from_secs(3600),
        idle_lifetime: Duration::from_secs(600),
        reuse_grace: Duration::ZERO,
    };
    let f = fixture(policy);
    let first = f.tokens.start(grant()).await.unwrap();
    f.clock.advance(Duration::from_secs(600));
    assert_eq!(
        f.tokens
            .rotate(first.token.expose_secret(), None)
            .await
            .unwrap_err(),
        Error::Refresh(mcpsec_tokens::RefreshError::Expired)
    );

    let f = fixture(policy);
    let mut token = f.tokens.start(grant()).await.unwrap().token;
    for _ in 0..6 {
        f.clock.advance(Duration::from_secs(599));
        token = f
            .tokens
            .rotate(token.expose_secret(), None)
            .await
            .unwrap()
            .token;
    }
    f.clock.advance(Duration::from_secs(599));
    assert_eq!(
        f.tokens
            .rotate(token.expose_secret(), None)
            .await
            .unwrap_err(),
        Error::Refresh(mcpsec_tokens::RefreshError::Expired),
        "active but past the absolute lifetime"
    );
    assert!(
        f.events
            .events()
            .iter()
            .any(|e| e.kind == EventKind::SessionExpired)
    );
}

fn proof_of<P: mcpsec_access::Permission>(
    user: &str,
    role: Role,
    scopes: &str,
    resource: impl FnOnce(&mcpsec_access::Principal) -> mcpsec_access::Resource,
) -> mcpsec_access::Authorized<P> {
    let principal = mcpsec_access::danger::principal(
        UserId::new(user).unwrap(),
        OrgId::new("acme").unwrap(),
        role,
        ScopeSet::parse_strict(scopes).unwrap(),
        mcpsec_access::CredentialKind::AccessToken,
        // Stepped up with TOTP at the decision time: `org.manage_members` is administrative.
        mcpsec_access::Authentication {
            at: Some(std::time::UNIX_EPOCH),
            methods: AuthMethods::of(&[
                mcpsec_access::AuthMethod::Pwd,
                mcpsec_access::AuthMethod::Otp,
            ]),
        },
    );
    mcpsec_access::Authorizer::default()
        .authorize_as::<P>(&principal, &resource(&principal), std::time::UNIX_EPOCH)
        .unwrap()
}

fn own_proof(user: &str) -> mcpsec_access::Authorized<mcpsec_access::perm::UserManageTokens> {
    proof_of(
        user,
        Role::Developer,
        "user:token",
        mcpsec_access::Resource::own,
    )
}

#[tokio::test]
async fn logout_revokes_the_family() {
    let f = fixture(RefreshPolicy::default());
    let first = f.tokens.start(grant()).await.unwrap();
    f.tokens
        .revoke(&own_proof("alice"), &first.family)
        .await
        .unwrap();
    assert_eq!(
        f.tokens
            .rotate(first.token.expose_secret(), None)
            .await
            .unwrap_err(),
        Error::Refresh(mcpsec_tokens::RefreshError::Revoked)
    );
    assert!(
        f.store
            .family(&first.family)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
}

/// A store that fails the test if it is touched.
#[derive(Debug)]
struct Untouchable;

#[async_trait::async_trait]
impl RefreshTokenStore for Untouchable {
    async fn create_family(&self, _: &FamilyRecord, _: &RefreshRecord) -> Result<(), StoreError> {
        panic!("store touched")
    }
    async fn consume_once(
        &self,
        _: &TokenHash,
        _: &TokenHash,
        _: std::time::SystemTime,
    ) -> Result<ConsumeOutcome, StoreError> {
        panic!("store touched")
    }
    async fn revoke_family(&self, _: &TokenId) -> Result<(), StoreError> {
        panic!("store touched")
    }
    async fn revoke_all(&self, _: &UserId) -> Result<Vec<TokenId>, StoreError> {
        panic!("store touched")
    }
    async fn revoke_family_as(
        &self,
        _: &mcpsec_access::Principal,
        _: &TokenId,
    ) -> Result<bool, StoreError> {
        panic!("store touched")
    }
    async fn family(&self, _: &TokenId) -> Result<Option<FamilyRecord>, StoreError> {
        panic!("store touched")
    }
    async fn prune(&self, _: std::time::SystemTime) -> Result<usize, StoreError> {
        panic!("store touched")
    }
}

#[tokio::test]
async fn malformed_tokens_never_reach_the_store() {
    let tokens = RefreshTokens::new(
        Arc::new(Untouchable),
        Arc::new(MemorySessionRevocation::new()),
        Arc::new(MemorySink::new()),
        Arc::new(ManualClock::at_unix(0)),
        RefreshPolicy::default(),
    );
    let long = format!("mcp_rt_{}", "a".repeat(44));
    let bad_char = format!("mcp_rt_{}!", "a".repeat(42));
    let short = format!("mcp_rt_{}", "a".repeat(42));
    let wrong_prefix = format!("mcp_sk_{}", "a".repeat(43));
    for bad in [
        "",
        "mcp_rt_",
        short.as_str(),
        long.as_str(),
        bad_char.as_str(),
        wrong_prefix.as_str(),
    ] {
        assert_eq!(
            tokens.rotate(bad, None).await.unwrap_err(),
            Error::Refresh(mcpsec_tokens::RefreshError::Invalid),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn unknown_well_formed_token_is_invalid() {
    let f = fixture(RefreshPolicy::default());
    let unknown = format!("mcp_rt_{}", "a".repeat(43));
    assert_eq!(
        f.tokens.rotate(&unknown, None).await.unwrap_err(),
        Error::Refresh(mcpsec_tokens::RefreshError::Invalid)
    );
}

/// Item 9 of issue 12: a replay inside the grace window is refused without revoking, and
/// it is recorded: a retry and a thief racing the client look alike at this point.
#[tokio::test]
async fn replay_inside_the_grace_window_emits_an_event() {
    let f = fixture(RefreshPolicy {
        reuse_grace: Duration::from_secs(5),
        ..RefreshPolicy::default()
    });
    let first = f.tokens.start(grant()).await.unwrap();
    f.tokens
        .rotate(first.token.expose_secret(), None)
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(2));
    assert_eq!(
        f.tokens
            .rotate(first.token.expose_secret(), None)
            .await
            .unwrap_err(),
        Error::Refresh(mcpsec_tokens::RefreshError::Raced)
    );
    let events = f.events.events();
    let [event] = events.as_slice() else {
        panic!("one event expected: {events:?}");
    };
    assert_eq!(event.kind, EventKind::AuthnTokenReuse);
    assert_eq!(event.reason, Some(ReasonCode::Reused));
    assert!(!event.is_critical(), "a retry is not yet theft");
}

/// Item 7 of issue 12: refresh records end with their session. `prune` deletes families
/// past their absolute lifetime with every token (so an authenticated client rotating in a
/// loop cannot grow the store past its sessions' lifetimes), and keeps live ones.
#[tokio::test]
async fn expired_refresh_families_are_pruned() {
    let policy = RefreshPolicy {
        absolute_lifetime: Duration::from_secs(3600),
        ..RefreshPolicy::default()
    };
    let f = fixture(policy);
    let old = f.tokens.start(grant()).await.unwrap();
    let mut token = old.token;
    for _ in 0..10 {
        token = f
            .tokens
            .rotate(token.expose_secret(), None)
            .await
            .unwrap()
            .token;
    }
    f.clock.advance(Duration::from_secs(1800));
    let live = f.tokens.start(grant()).await.unwrap();
    let record = f.store.family(&old.family).await.unwrap().unwrap();
    assert_eq!(
        record.expires_at,
        record.created_at + Duration::from_secs(3600)
    );
    assert_eq!(f.tokens.prune().await.unwrap(), 0);
    f.clock.advance(Duration::from_secs(1800));
    assert_eq!(f.tokens.prune().await.unwrap(), 1);
    assert!(f.store.family(&old.family).await.unwrap().is_none());
    assert!(f.store.family(&live.family).await.unwrap().is_some());
    assert_eq!(
        f.tokens
            .rotate(token.expose_secret(), None)
            .await
            .unwrap_err(),
        Error::Refresh(mcpsec_tokens::RefreshError::Invalid)
    );
    assert!(
        f.tokens
            .rotate(live.token.expose_secret(), None)
            .await
            .is_ok()
    );
}

/// Item 5 of issue 12: the access token a refresh buys keeps the login's `auth_time`,
/// `amr` and `acr`, with no host glue.
#[tokio::test]
async fn refresh_keeps_auth_time_amr_and_acr() {
    let f = fixture(RefreshPolicy::default());
    let first = f.tokens.start(grant()).await.unwrap();
    f.clock.advance(Duration::from_secs(3 * 24 * 3600));
    let next = f
        .tokens
        .rotate(first.token.expose_secret(), None)
        .await
        .unwrap();
    let access = mcpsec_tokens::AccessGrant::from(&next);
    assert_eq!(access.sid.as_ref(), Some(&first.family), "the session's id");
    assert_eq!(access.subject, grant().subject);
    assert_eq!(access.org, grant().org);
    assert_eq!(access.role, grant().role);
    assert_eq!(access.scopes, grant().scopes);
    assert_eq!(
        access.auth_time,
        Some(grant().auth_time),
        "login time, not now"
    );
    assert_eq!(access.amr, grant().amr);
    assert_eq!(access.acr.as_deref(), Some("urn:mcpsec:mfa"));
    let mut empty_acr = grant();
    empty_acr.acr = Some(String::new());
    assert!(
        f.tokens.start(empty_acr).await.is_err(),
        "acr: \"\" is refused"
    );
}

/// Revoking a session takes a proof that reaches it: another member's
/// `user.manage_tokens` cannot end alice's session (before issue 13 `revoke` took only the
/// family id), an org admin's `org.manage_members` can, and the event names who acted.
#[tokio::test]
async fn refresh_family_revocation_needs_a_proof_that_reaches_it() {
    let f = fixture(RefreshPolicy::default());
    let first = f.tokens.start(grant()).await.unwrap();
    assert_eq!(
        f.tokens
            .revoke(&own_proof("mallory"), &first.family)
            .await
            .unwrap_err(),
        Error::NotAllowed
    );
    assert!(
        !f.store
            .family(&first.family)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );

    let admin = proof_of::<mcpsec_access::perm::OrgManageMembers>(
        "root",
        Role::OrgAdmin,
        "org:admin",
        |p| mcpsec_access::Resource::of_org(p.org().clone()),
    );
    f.tokens.revoke(&admin, &first.family).await.unwrap();
    assert!(
        f.store
            .family(&first.family)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    let revoked = f
        .events
        .events()
        .into_iter()
        .find(|e| e.kind == EventKind::AuthnTokenRevoked)
        .unwrap();
    assert_eq!(
        revoked.actor,
        mcpsec_core::Actor::User {
            user: UserId::new("root").unwrap()
        }
    );
    assert_eq!(
        f.tokens
            .revoke(
                &own_proof("alice"),
                &TokenId::new("no-such-family").unwrap()
            )
            .await
            .unwrap_err(),
        Error::Refresh(mcpsec_tokens::RefreshError::Invalid)
    );
}
