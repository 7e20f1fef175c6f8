//! Issuing access tokens (RFC 9068 profile: `typ: at+jwt`, `kid` in the header).

use crate::{Error, SigningKeyring};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpsec_access::{AuthMethods, Role, ScopeSet};
use mcpsec_core::{OrgId, SharedClock, SystemClock, TokenId, UserId};
use serde::Serialize;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The platform's access-token lifetime: 24 hours; refresh tokens carry the session, and a
/// token minted from one carries its `sid`, so a verifier built with
/// [`sessions`](crate::TokenVerifierBuilder::sessions) refuses it as soon as the session is
/// revoked. A verifier that cannot consult a shared session store should be paired with a
/// shorter lifetime (see docs/integration.md).
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest access-token lifetime an issuer accepts unless
/// [`max_ttl`](TokenIssuerBuilder::max_ttl) says otherwise: 24 hours.
pub const DEFAULT_MAX_ACCESS_TTL: Duration = Duration::from_secs(24 * 3600);
/// The shortest access-token lifetime: `exp` and `iat` are whole seconds, and a verifier
/// refuses `exp == iat`.
pub const MIN_ACCESS_TTL: Duration = Duration::from_secs(1);

/// What an access token grants: who, in which org, with which role and scopes, and how
/// the user authenticated.
#[derive(Debug, Clone)]
pub struct AccessGrant {
    /// The subject (`sub`).
    pub subject: UserId,
    /// The organization (`org`).
    pub org: Option<OrgId>,
    /// The subject's role in the organization (`role`).
    pub role: Option<Role>,
    /// The scopes (`scope`, space-separated).
    pub scopes: ScopeSet,
    /// When the user last authenticated (`auth_time`).
    pub auth_time: Option<SystemTime>,
    /// How (`amr`).
    pub amr: AuthMethods,
    /// Authentication context class (`acr`), for step-up. Never empty: a verifier
    /// refuses `acr: ""`, so the issuer does not sign it.
    pub acr: Option<String>,
    /// The login session the token belongs to (`sid`, the refresh-token family id), so that
    /// revoking the session refuses the token at once. `None` for a token not minted from a
    /// session; [`AccessGrant::from(&IssuedRefresh)`](crate::IssuedRefresh) sets it.
    pub sid: Option<TokenId>,
}

impl AccessGrant {
    /// A grant of `scopes` to `subject`, with nothing else set.
    pub fn new(subject: UserId, scopes: ScopeSet) -> Self {
        Self {
            subject,
            org: None,
            role: None,
            scopes,
            auth_time: None,
            amr: AuthMethods::EMPTY,
            acr: None,
            sid: None,
        }
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    iat: u64,
    jti: &'a str,
    #[serde(skip_serializing_if = "String::is_empty")]
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    org: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    amr: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    acr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
}

/// Signs access tokens with the keyring's current key.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    keyring: Arc<RwLock<SigningKeyring>>,
    issuer: String,
    audience: String,
    ttl: Duration,
    clock: SharedClock,
}

/// Builds a [`TokenIssuer`]; issuer and audience are required.
#[derive(Debug)]
pub struct TokenIssuerBuilder {
    keyring: Arc<RwLock<SigningKeyring>>,
    issuer: Option<String>,
    audience: Option<String>,
    ttl: Duration,
    max_ttl: Duration,
    clock: SharedClock,
}

impl TokenIssuer {
    /// Starts a builder around a shared keyring (rotate it through the same `Arc`).
    pub fn builder(keyring: Arc<RwLock<SigningKeyring>>) -> TokenIssuerBuilder {
        TokenIssuerBuilder {
            keyring,
            issuer: None,
            audience: None,
            ttl: DEFAULT_ACCESS_TTL,
            max_ttl: DEFAULT_MAX_ACCESS_TTL,
            clock: Arc::new(SystemClock),
        }
    }

    /// The access-token lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs an access token for `grant`; returns the compact serialization.
    ///
    /// Refuses ([`Error::InvalidClaim`]) a grant its own verifier would refuse: an empty
    /// `acr`; and ([`Error::MissingClaim`]`("auth_time")`) a grant that says how the user
    /// authenticated (`amr`) but not when: a step-up check would have to guess.
    pub fn issue(&self, grant: &AccessGrant) -> Result<String, Error> {
        if grant.acr.as_deref().is_some_and(str::is_empty) {
            return Err(Error::InvalidClaim("acr"));
        }
        if grant.amr != AuthMethods::EMPTY && grant.auth_time.is_none() {
            return Err(Error::MissingClaim("auth_time"));
        }
        let key = self
            .keyring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .current()?;
        let now = unix(self.clock.now());
        let jti = TokenId::generate().map_err(|_| Error::Key(crate::KeyError::Signing))?;
        let header = Header {
            alg: key.algorithm().as_str(),
            typ: "at+jwt",
            kid: key.kid().as_str(),
        };
        let claims = Claims {
            iss: &self.issuer,
            sub: grant.subject.as_str(),
            aud: &self.audience,
            exp: now.saturating_add(self.ttl.as_secs()),
            iat: now,
            jti: jti.as_str(),
            scope: grant.scopes.to_string(),
            org: grant.org.as_ref().map(OrgId::as_str),
            role: grant.role.map(Role::as_str),
            auth_time: grant.auth_time.map(unix),
            amr: grant.amr.iter().map(|m| m.as_str()).collect(),
            acr: grant.acr.as_deref(),
            sid: grant.sid.as_ref().map(TokenId::as_str),
        };
        sign_compact(&key, &header, &claims)
    }

    /// Signs the access token that goes with a session just started or rotated by
    /// [`RefreshTokens`](crate::RefreshTokens): its subject, org, role, scopes, the login's
    /// `auth_time`, `amr` and `acr`, and its `sid`, so revoking the session (logout, reuse
    /// detected) refuses this token at once at a verifier that checks sessions. Same as
    /// `issue(&AccessGrant::from(session))`.
    pub fn issue_for_session(&self, session: &crate::IssuedRefresh) -> Result<String, Error> {
        self.issue(&AccessGrant::from(session))
    }
}

/// Encodes and signs any header and claims with `key` (also used by tests to forge
/// tokens that a verifier must refuse).
pub(crate) fn sign_compact<H: Serialize, C: Serialize>(
    key: &crate::SigningKey,
    header: &H,
    claims: &C,
) -> Result<String, Error> {
    let header = serde_json::to_vec(header).map_err(|_| Error::Key(crate::KeyError::Signing))?;
    let claims = serde_json::to_vec(claims).map_err(|_| Error::Key(crate::KeyError::Signing))?;
    let mut token = String::with_capacity(header.len() * 2 + claims.len() * 2 + 400);
    URL_SAFE_NO_PAD.encode_string(&header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(token)
}

pub(crate) fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl TokenIssuerBuilder {
    /// The `iss` to put in every token (required).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The `aud` to put in every token (required).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Access-token lifetime (default 24 hours; at least [`MIN_ACCESS_TTL`], at most
    /// [`max_ttl`](TokenIssuerBuilder::max_ttl)).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The longest lifetime [`build`](TokenIssuerBuilder::build) accepts (default
    /// [`DEFAULT_MAX_ACCESS_TTL`]): a guard against a configuration typo minting tokens
    /// that outlive every rotation and revocation plan.
    pub fn max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = max_ttl;
        self
    }

    /// The clock (default the system clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the issuer; fails without an issuer or an audience, or with a lifetime under
    /// [`MIN_ACCESS_TTL`] or over the maximum.
    pub fn build(self) -> Result<TokenIssuer, Error> {
        let issuer = self
            .issuer
            .filter(|s| !s.is_empty())
            .ok_or(Error::Config("an issuer is required"))?;
        let audience = self
            .audience
            .filter(|s| !s.is_empty())
            .ok_or(Error::Config("an audience is required"))?;
        if self.ttl < MIN_ACCESS_TTL {
            return Err(Error::Config("token lifetime under one second"));
        }
        if self.ttl > self.max_ttl {
            return Err(Error::Config("token lifetime over the configured maximum"));
        }
        Ok(TokenIssuer {
            keyring: self.keyring,
            issuer,
            audience,
            ttl: self.ttl,
            clock: self.clock,
        })
    }
}
