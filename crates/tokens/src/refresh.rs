//! Refresh tokens with rotation and reuse detection (RFC 9700 §4.14.2).
//!
//! A refresh token is `mcp_rt_` followed by 43 base62 characters (256 bits from the OS
//! CSPRNG); only its SHA-256 is stored. Each login starts a *family*. Using a token
//! consumes it once, atomically, and returns its successor. Using an already consumed
//! token after the grace window means two parties hold the family's tokens: the whole
//! family is revoked and a critical `authn_token_reuse` event is recorded.
//!
//! Ending a family (logout, an admin's revocation, "sign out everywhere", reuse detected)
//! also revokes the session in the [`SessionRevocation`] the service was built with, before
//! the call returns, and records a `session_revoked` event: a verifier that checks sessions
//! refuses the access tokens minted from the family at their next use.

use crate::refresh_store::{
    ConsumeOutcome, FamilyRecord, RefreshRecord, RefreshTokenStore, SessionGrant, TokenHash,
};
use crate::session::SessionRevocation;
use crate::{AccessGrant, DEFAULT_MAX_ACCESS_TTL, Error, MAX_LEEWAY, RefreshError};
use aws_lc_rs::digest;
use mcpsec_access::{Authorized, ManagesCredentials, perm};
use mcpsec_core::StoreError;
use mcpsec_core::{
    Actor, EventKind, EventSink, Label, Outcome, ReasonCode, ResourceId, SecretString,
    SecurityEvent, Severity, SharedClock, TokenId, emit,
};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The prefix of every refresh token (lets secret scanners find leaked ones).
pub const REFRESH_PREFIX: &str = "mcp_rt_";
const SECRET_LEN: usize = 43;
const BASE62: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Lifetimes of a login session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// A family ends this long after login, however active (default 30 days).
    pub absolute_lifetime: Duration,
    /// A family ends when unused this long (default 7 days).
    pub idle_lifetime: Duration,
    /// A second use of one token within this window of the first is treated as a client
    /// retry (refused, family kept, a warning-level `authn_token_reuse` event recorded)
    /// rather than theft (default 0: no grace).
    pub reuse_grace: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            absolute_lifetime: Duration::from_secs(30 * 24 * 3600),
            idle_lifetime: Duration::from_secs(7 * 24 * 3600),
            reuse_grace: Duration::ZERO,
        }
    }
}

/// A refresh token as handed to the client, with its family.
#[derive(Debug)]
pub struct IssuedRefresh {
    /// The token, shown once: put it in the refresh cookie, never in a log.
    pub token: SecretString,
    /// The family (login session) it belongs to; use it to bind CSRF tokens and to log out.
    pub family: TokenId,
    /// What the session grants, to mint the access token that goes with it.
    pub grant: SessionGrant,
}

impl From<&IssuedRefresh> for AccessGrant {
    /// The access token a login or a refresh buys: the session's subject, org, role and
    /// scopes, the login's `auth_time`, `amr` and `acr` unchanged (a step-up check sees when
    /// and how the user really authenticated, not when the token was refreshed), and the
    /// session's id as `sid`, so revoking the session refuses the token at once.
    fn from(session: &IssuedRefresh) -> Self {
        let grant = &session.grant;
        AccessGrant {
            subject: grant.subject.clone(),
            org: grant.org.clone(),
            role: grant.role,
            scopes: grant.scopes,
            auth_time: Some(grant.auth_time),
            amr: grant.amr,
            acr: grant.acr.clone(),
            sid: Some(session.family.clone()),
        }
    }
}

/// How long past a family's end a revoked session is remembered: the longest access-token
/// lifetime an issuer accepts by default, plus the largest verifier leeway. An issuer whose
/// [`max_ttl`](crate::TokenIssuerBuilder::max_ttl) is raised above
/// [`DEFAULT_MAX_ACCESS_TTL`] mints tokens that can outlive the record.
const SESSION_MARGIN: Duration = DEFAULT_MAX_ACCESS_TTL.saturating_add(MAX_LEEWAY);

/// Starts, rotates and revokes refresh-token families.
#[derive(Debug, Clone)]
pub struct RefreshTokens {
    store: Arc<dyn RefreshTokenStore>,
    sessions: Arc<dyn SessionRevocation>,
    events: Arc<dyn EventSink>,
    clock: SharedClock,
    policy: RefreshPolicy,
}

impl RefreshTokens {
    /// Refresh tokens kept in `store`, ending sessions in `sessions` (the same
    /// [`SessionRevocation`] the access-token verifiers consult), reporting to `events`.
    pub fn new(
        store: Arc<dyn RefreshTokenStore>,
        sessions: Arc<dyn SessionRevocation>,
        events: Arc<dyn EventSink>,
        clock: SharedClock,
        policy: RefreshPolicy,
    ) -> Self {
        Self {
            store,
            sessions,
            events,
            clock,
            policy,
        }
    }

    /// Starts a family at login and returns its first token.
    pub async fn start(&self, grant: SessionGrant) -> Result<IssuedRefresh, Error> {
        if grant.acr.as_deref().is_some_and(str::is_empty) {
            return Err(Error::InvalidClaim("acr"));
        }
        let now = self.clock.now();
        let family = TokenId::generate()
            .map_err(|e| Error::Store(StoreError::from_core("randomness unavailable", e)))?;
        let (token, hash) = new_token()?;
        // An absolute lifetime too large to add is a session that is over at once, which
        // `expired` agrees with.
        let expires_at = now
            .checked_add(self.policy.absolute_lifetime)
            .unwrap_or(now);
        let record = FamilyRecord {
            id: family.clone(),
            grant: grant.clone(),
            created_at: now,
            last_used_at: now,
            expires_at,
            revoked: false,
        };
        let first = RefreshRecord {
            hash,
            family: family.clone(),
            issued_at: now,
            consumed_at: None,
            expires_at,
        };
        self.store
            .create_family(&record, &first)
            .await
            .map_err(Error::Store)?;
        Ok(IssuedRefresh {
            token,
            family,
            grant,
        })
    }

    /// Consumes `presented` and returns its successor. The token's format is checked
    /// before the store is touched.
    pub async fn rotate(
        &self,
        presented: &str,
        source: Option<IpAddr>,
    ) -> Result<IssuedRefresh, Error> {
        let hash = parse(presented)?;
        let now = self.clock.now();
        let (token, successor) = new_token()?;
        let outcome = self
            .store
            .consume_once(&hash, &successor, now)
            .await
            .map_err(Error::Store)?;
        match outcome {
            ConsumeOutcome::Consumed(family) => {
                if let Some(reason) = self.expired(&family, now) {
                    self.store
                        .revoke_family(&family.id)
                        .await
                        .map_err(Error::Store)?;
                    self.report(
                        EventKind::SessionExpired,
                        Outcome::Failure,
                        &family,
                        reason,
                        source,
                    )
                    .await;
                    return Err(Error::Refresh(RefreshError::Expired));
                }
                Ok(IssuedRefresh {
                    token,
                    family: family.id,
                    grant: family.grant,
                })
            }
            ConsumeOutcome::AlreadyConsumed {
                family,
                consumed_at,
            } => {
                let since = now.duration_since(consumed_at).unwrap_or(Duration::ZERO);
                if since <= self.policy.reuse_grace {
                    // Most likely a client retry, but a thief racing the client looks the
                    // same here: record it (as a warning, not the critical theft event).
                    let event = self
                        .event(
                            EventKind::AuthnTokenReuse,
                            Outcome::Failure,
                            &family,
                            ReasonCode::Reused,
                            source,
                        )
                        .with_severity(Severity::Warning);
                    emit(self.events.as_ref(), event).await;
                    return Err(Error::Refresh(RefreshError::Raced));
                }
                self.store
                    .revoke_family(&family.id)
                    .await
                    .map_err(Error::Store)?;
                // Two parties hold the family's tokens: the access tokens it bought go too,
                // before the refusal is returned.
                let ended = self.end_session(&family).await;
                self.report(
                    EventKind::AuthnTokenReuse,
                    Outcome::Failure,
                    &family,
                    ReasonCode::Reused,
                    source,
                )
                .await;
                self.report_ended(&ended, &family, ReasonCode::Reused, source)
                    .await;
                ended?;
                Err(Error::Refresh(RefreshError::Reused))
            }
            ConsumeOutcome::FamilyRevoked(family) => {
                self.report(
                    EventKind::AuthnLoginFail,
                    Outcome::Failure,
                    &family,
                    ReasonCode::Revoked,
                    source,
                )
                .await;
                Err(Error::Refresh(RefreshError::Revoked))
            }
            ConsumeOutcome::NotFound => Err(Error::Refresh(RefreshError::Invalid)),
        }
    }

    /// Logs out the session `presented` belongs to (a browser's logout, where the refresh
    /// cookie is the only credential): the token is consumed as by
    /// [`rotate`](Self::rotate), which proves it is live and current, then its family is
    /// revoked and its session ended, so the access tokens it bought are refused at once.
    /// Returns the family (session) id.
    ///
    /// A token that does not rotate is refused as [`rotate`](Self::rotate) refuses it: a
    /// consumed one is reuse, which revokes the family too; an unknown, expired or revoked
    /// one changes nothing.
    pub async fn logout(&self, presented: &str, source: Option<IpAddr>) -> Result<TokenId, Error> {
        let session = self.rotate(presented, source).await?;
        let record = self
            .store
            .family(&session.family)
            .await
            .map_err(Error::Store)?
            .ok_or(Error::Refresh(RefreshError::Invalid))?;
        self.store
            .revoke_family(&record.id)
            .await
            .map_err(Error::Store)?;
        let ended = self.end_session(&record).await;
        self.report(
            EventKind::AuthnTokenRevoked,
            Outcome::Success,
            &record,
            ReasonCode::Revoked,
            source,
        )
        .await;
        self.report_ended(&ended, &record, ReasonCode::Revoked, source)
            .await;
        ended.map(|()| record.id)
    }

    /// Deletes the families past their absolute lifetime, and their tokens, from the store
    /// ([`RefreshTokenStore::prune`]); returns how many went. Call it on a schedule.
    pub async fn prune(&self) -> Result<usize, Error> {
        self.store
            .prune(self.clock.now())
            .await
            .map_err(Error::Store)
    }

    /// Revokes a family under `proof`: the user ending their own session
    /// (`user.manage_tokens`), or an org admin ending a member's (`org.manage_members`).
    ///
    /// An unknown family and another organization's answer [`RefreshError::Invalid`], so a
    /// proof cannot probe which families exist elsewhere; another member's family under a
    /// `user.manage_tokens` proof is [`Error::NotAllowed`]. A session without an
    /// organization can be ended only by its own user. Neither changes anything.
    pub async fn revoke<P: ManagesCredentials>(
        &self,
        proof: &Authorized<P>,
        family: &TokenId,
    ) -> Result<(), Error> {
        let record = self
            .store
            .family(family)
            .await
            .map_err(Error::Store)?
            .ok_or(Error::Refresh(RefreshError::Invalid))?;
        let grant = &record.grant;
        let allowed = match &grant.org {
            Some(org) if org != proof.org() => return Err(Error::Refresh(RefreshError::Invalid)),
            Some(org) => proof.may_manage(&grant.subject, org),
            None => &grant.subject == proof.subject(),
        };
        if !allowed {
            return Err(Error::NotAllowed);
        }
        let revoked = self
            .store
            .revoke_family_as(proof.principal(), family)
            .await
            .map_err(Error::Store)?;
        if !revoked {
            // Gone (pruned) or moved out of the tenant since it was read.
            return Err(Error::Refresh(RefreshError::Invalid));
        }
        let ended = self.end_session(&record).await;
        let event = self
            .event(
                EventKind::AuthnTokenRevoked,
                Outcome::Success,
                &record,
                ReasonCode::Revoked,
                None,
            )
            .with_actor(proof.actor());
        emit(self.events.as_ref(), event).await;
        self.report_ended(&ended, &record, ReasonCode::Revoked, None)
            .await;
        ended
    }

    /// "Sign out everywhere": revokes every family of the proof's subject, in every
    /// organization ([`RefreshTokenStore::revoke_all`]), and each one's session, so the
    /// access tokens they bought are refused at once. Returns how many families it revoked.
    ///
    /// Takes the user's own `user.manage_tokens` proof: the store call spans organizations,
    /// so an org admin's proof cannot reach it (an admin ends a member's sessions one by one
    /// with [`revoke`](RefreshTokens::revoke)).
    pub async fn revoke_all(
        &self,
        proof: &Authorized<perm::UserManageTokens>,
    ) -> Result<usize, Error> {
        let now = self.clock.now();
        let families = self
            .store
            .revoke_all(proof.subject())
            .await
            .map_err(Error::Store)?;
        // No family outlives its absolute lifetime from now.
        let until = now
            .checked_add(self.policy.absolute_lifetime)
            .and_then(|t| t.checked_add(SESSION_MARGIN))
            .unwrap_or(now);
        let mut failed = None;
        for family in &families {
            match self.sessions.revoke(family, until).await {
                Ok(()) => {
                    let mut event =
                        SecurityEvent::new(EventKind::SessionRevoked, Outcome::Success, now)
                            .with_actor(proof.actor())
                            .with_reason(ReasonCode::Revoked);
                    if let (Ok(kind), Ok(id)) = (
                        Label::new("refresh_family"),
                        ResourceId::new(family.as_str()),
                    ) {
                        event = event.with_resource(kind, Some(id));
                    }
                    emit(self.events.as_ref(), event).await;
                }
                Err(error) => failed = Some(error),
            }
        }
        match failed {
            Some(error) => Err(Error::Store(error)),
            None => Ok(families.len()),
        }
    }

    /// Revokes the session of `family` in the session store, until the last access token
    /// it can have bought has expired. A store failure is returned (the access tokens would
    /// otherwise live on unnoticed).
    async fn end_session(&self, family: &FamilyRecord) -> Result<(), Error> {
        let until = family
            .expires_at
            .checked_add(SESSION_MARGIN)
            .unwrap_or(family.expires_at);
        self.sessions
            .revoke(&family.id, until)
            .await
            .map_err(Error::Store)
    }

    /// Records the `session_revoked` event of a successful [`end_session`](Self::end_session).
    async fn report_ended(
        &self,
        ended: &Result<(), Error>,
        family: &FamilyRecord,
        reason: ReasonCode,
        source: Option<IpAddr>,
    ) {
        if ended.is_ok() {
            self.report(
                EventKind::SessionRevoked,
                Outcome::Success,
                family,
                reason,
                source,
            )
            .await;
        }
    }

    fn expired(&self, family: &FamilyRecord, now: SystemTime) -> Option<ReasonCode> {
        let past = |start: SystemTime, lifetime: Duration| {
            start.checked_add(lifetime).is_none_or(|end| now >= end)
        };
        (past(family.created_at, self.policy.absolute_lifetime)
            || past(family.last_used_at, self.policy.idle_lifetime))
        .then_some(ReasonCode::Expired)
    }

    async fn report(
        &self,
        kind: EventKind,
        outcome: Outcome,
        family: &FamilyRecord,
        reason: ReasonCode,
        source: Option<IpAddr>,
    ) {
        // The caller is refused either way; a sink failure cannot make this fail open, and
        // `emit` logs it rather than dropping it silently.
        let event = self.event(kind, outcome, family, reason, source);
        emit(self.events.as_ref(), event).await;
    }

    fn event(
        &self,
        kind: EventKind,
        outcome: Outcome,
        family: &FamilyRecord,
        reason: ReasonCode,
        source: Option<IpAddr>,
    ) -> SecurityEvent {
        let mut event = SecurityEvent::new(kind, outcome, self.clock.now())
            .with_actor(Actor::User {
                user: family.grant.subject.clone(),
            })
            .with_reason(reason);
        if let Some(org) = &family.grant.org {
            event = event.with_org(org.clone());
        }
        if let Some(source) = source {
            event = event.with_source(source);
        }
        if let (Ok(kind), Ok(id)) = (
            Label::new("refresh_family"),
            ResourceId::new(family.id.as_str()),
        ) {
            event = event.with_resource(kind, Some(id));
        }
        event
    }
}

fn new_token() -> Result<(SecretString, TokenHash), Error> {
    let secret = SecretString::random_from_alphabet(SECRET_LEN, BASE62)
        .map_err(|e| Error::Store(StoreError::from_core("randomness unavailable", e)))?;
    let token = SecretString::new(format!("{REFRESH_PREFIX}{}", secret.expose_secret()));
    let hash = hash(token.expose_secret());
    Ok((token, hash))
}

/// Checks the format (prefix, length, alphabet) and returns the hash to look up.
pub(crate) fn parse(presented: &str) -> Result<TokenHash, Error> {
    let secret = presented
        .strip_prefix(REFRESH_PREFIX)
        .ok_or(Error::Refresh(RefreshError::Invalid))?;
    if secret.len() != SECRET_LEN || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::Refresh(RefreshError::Invalid));
    }
    Ok(hash(presented))
}

fn hash(token: &str) -> TokenHash {
    let digest = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    TokenHash(out)
}
