//! The authenticated caller: who, in which organization, with which role and scopes, and
//! how they proved it.

use crate::{Role, ScopeSet};
use mcpsec_core::{Actor, KeyId, OrgId, SessionId, TokenId, UserId};
use std::time::SystemTime;

/// What kind of credential the principal presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// A bearer access token (JWT).
    AccessToken,
    /// An `mcp_sk_` API key.
    ApiKey,
    /// A first-party session (cookie).
    Session,
}

/// The identifier of the credential a principal presented: what a per-credential rate limit
/// keys on, and what an [`Actor::ApiKey`] event names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialId {
    /// An API key's public id (never the key).
    Key(KeyId),
    /// An access token's `jti`.
    Token(TokenId),
    /// A first-party session's id.
    Session(SessionId),
}

/// The credential a principal presented: its kind and, when the verifier knows it, its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Credential {
    kind: CredentialKind,
    id: Option<CredentialId>,
}

impl Credential {
    /// An API key, by its public id. An API key always has one.
    pub fn api_key(key: KeyId) -> Self {
        Self {
            kind: CredentialKind::ApiKey,
            id: Some(CredentialId::Key(key)),
        }
    }

    /// An access token, by its `jti` when it has one (and it is a valid [`TokenId`]).
    pub fn access_token(jti: Option<TokenId>) -> Self {
        Self {
            kind: CredentialKind::AccessToken,
            id: jti.map(CredentialId::Token),
        }
    }

    /// A first-party session, by its id when the host has one.
    pub fn session(id: Option<SessionId>) -> Self {
        Self {
            kind: CredentialKind::Session,
            id: id.map(CredentialId::Session),
        }
    }

    /// The kind of credential.
    pub fn kind(&self) -> CredentialKind {
        self.kind
    }

    /// Its id, if known.
    pub fn id(&self) -> Option<&CredentialId> {
        self.id.as_ref()
    }
}

/// A credential of `kind` whose id the verifier does not know.
impl From<CredentialKind> for Credential {
    fn from(kind: CredentialKind) -> Self {
        Self { kind, id: None }
    }
}

/// An authentication method, by its RFC 8176 `amr` value (plus `email`, which RFC 8176
/// does not name and which mcpsec treats as a weaker factor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// `pwd`: password.
    Pwd,
    /// `otp`: one-time password (TOTP).
    Otp,
    /// `hwk`: proof of possession of a hardware-secured key (a passkey on a security key).
    Hwk,
    /// `swk`: proof of possession of a software-secured key.
    Swk,
    /// `sms`: confirmation by text message.
    Sms,
    /// `tel`: confirmation by telephone call.
    Tel,
    /// `pin`: a PIN or pattern.
    Pin,
    /// `fpt`: fingerprint biometric.
    Fpt,
    /// `face`: facial recognition.
    Face,
    /// `user`: user presence test (as in WebAuthn).
    User,
    /// `mfa`: multiple factors were used.
    Mfa,
    /// `email`: a code sent by email (not in RFC 8176).
    Email,
}

impl AuthMethod {
    /// Every method, in bit order.
    pub const ALL: [AuthMethod; 12] = [
        AuthMethod::Pwd,
        AuthMethod::Otp,
        AuthMethod::Hwk,
        AuthMethod::Swk,
        AuthMethod::Sms,
        AuthMethod::Tel,
        AuthMethod::Pin,
        AuthMethod::Fpt,
        AuthMethod::Face,
        AuthMethod::User,
        AuthMethod::Mfa,
        AuthMethod::Email,
    ];

    /// The `amr` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Pwd => "pwd",
            AuthMethod::Otp => "otp",
            AuthMethod::Hwk => "hwk",
            AuthMethod::Swk => "swk",
            AuthMethod::Sms => "sms",
            AuthMethod::Tel => "tel",
            AuthMethod::Pin => "pin",
            AuthMethod::Fpt => "fpt",
            AuthMethod::Face => "face",
            AuthMethod::User => "user",
            AuthMethod::Mfa => "mfa",
            AuthMethod::Email => "email",
        }
    }

    /// The method with `amr` value `name`, if known. Unknown values are for the caller to
    /// drop: an unknown method never satisfies a requirement.
    pub fn from_amr(name: &str) -> Option<AuthMethod> {
        AuthMethod::ALL.into_iter().find(|m| m.as_str() == name)
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of [`AuthMethod`]s (a bitset, `Copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AuthMethods(u16);

impl AuthMethods {
    /// No methods.
    pub const EMPTY: AuthMethods = AuthMethods(0);

    /// The set of `methods`.
    pub fn of(methods: &[AuthMethod]) -> AuthMethods {
        methods.iter().fold(AuthMethods::EMPTY, |s, &m| s.with(m))
    }

    /// The methods among `amr` values that are known; unknown values are dropped.
    pub fn from_amr<'a>(values: impl IntoIterator<Item = &'a str>) -> AuthMethods {
        values
            .into_iter()
            .filter_map(AuthMethod::from_amr)
            .fold(AuthMethods::EMPTY, AuthMethods::with)
    }

    /// This set plus `method`.
    #[must_use]
    pub const fn with(self, method: AuthMethod) -> AuthMethods {
        AuthMethods(self.0 | method.bit())
    }

    /// Whether `method` is in the set.
    pub const fn contains(self, method: AuthMethod) -> bool {
        self.0 & method.bit() != 0
    }

    /// The methods in the set.
    pub fn iter(self) -> impl Iterator<Item = AuthMethod> {
        AuthMethod::ALL
            .into_iter()
            .filter(move |m| self.contains(*m))
    }
}

/// When and how the subject authenticated (the `auth_time` and `amr` of a token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authentication {
    /// When the subject last authenticated (not when the credential was issued), or `None`
    /// when the verifier does not know (a token without `auth_time`, an API key).
    ///
    /// Unknown is never "just now": every recency check (step-up `max_age`) fails on
    /// `None`. A verifier never fills this in from the credential's issue time.
    pub at: Option<SystemTime>,
    /// How.
    pub methods: AuthMethods,
}

/// The caller of a request, as established by a credential verifier.
///
/// Only credential verifiers make one: `mcpsec-tokens` (`VerifiedClaims::principal`),
/// `mcpsec-apikeys` (`VerifiedKey::principal`), and a host's own verifier through the
/// explicitly named [`danger::principal`](crate::danger::principal). There is no public
/// constructor, so code that merely holds request data cannot mint an org admin:
///
/// ```compile_fail,E0599
/// use mcpsec_access::{Authentication, AuthMethods, CredentialKind, Principal, Role, ScopeSet};
/// use mcpsec_core::{OrgId, UserId};
///
/// let forged = Principal::new(
///     UserId::new("mallory").unwrap(),
///     OrgId::new("acme").unwrap(),
///     Role::OrgAdmin,
///     ScopeSet::parse_strict("org:admin mcp:admin").unwrap(),
///     CredentialKind::AccessToken,
///     Authentication { at: None, methods: AuthMethods::EMPTY },
/// );
/// ```
///
/// Nor can it be written as a struct literal (its fields are private):
///
/// ```compile_fail,E0451
/// use mcpsec_access::{Principal, Role};
///
/// let forged = Principal { role: Role::OrgAdmin };
/// ```
///
/// Everything else only reads it. For API keys, `scopes` are the key's scopes; the
/// decision intersects them with the owner's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    subject: UserId,
    org: OrgId,
    role: Role,
    scopes: ScopeSet,
    credential: Credential,
    authentication: Authentication,
}

impl Principal {
    /// Reached only through [`danger::principal`](crate::danger::principal), so that every
    /// place outside this crate that mints a principal names the danger.
    pub(crate) fn new(
        subject: UserId,
        org: OrgId,
        role: Role,
        scopes: ScopeSet,
        credential: Credential,
        authentication: Authentication,
    ) -> Self {
        Self {
            subject,
            org,
            role,
            scopes,
            credential,
            authentication,
        }
    }

    /// The user.
    pub fn subject(&self) -> &UserId {
        &self.subject
    }

    /// The user's organization.
    pub fn org(&self) -> &OrgId {
        &self.org
    }

    /// The user's role in the organization.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The scopes the credential grants (as granted; see [`ScopeSet::effective`]).
    pub fn scopes(&self) -> ScopeSet {
        self.scopes
    }

    /// The kind of credential presented.
    pub fn credential(&self) -> CredentialKind {
        self.credential.kind()
    }

    /// The credential's id, when the verifier knows it: an API key's id, a token's `jti`,
    /// a session's id. Per-credential rate limits key on it.
    pub fn credential_id(&self) -> Option<&CredentialId> {
        self.credential.id()
    }

    /// Who acts, for an event: the API key (with its owner) when the credential is one,
    /// otherwise the user.
    pub fn actor(&self) -> Actor {
        match self.credential.id() {
            Some(CredentialId::Key(key)) => Actor::ApiKey {
                key: key.clone(),
                owner: Some(self.subject.clone()),
            },
            _ => Actor::User {
                user: self.subject.clone(),
            },
        }
    }

    /// When and how the subject authenticated.
    pub fn authentication(&self) -> Authentication {
        self.authentication
    }

    /// The same principal restricted to `requested` scopes, for handing a narrower
    /// credential to a delegate. The result's scopes are `requested` intersected with what
    /// this principal effectively holds, so it can never grant more than its parent.
    #[must_use]
    pub fn downscope(&self, requested: ScopeSet) -> Principal {
        Principal {
            scopes: requested.intersection(self.scopes.effective()),
            ..self.clone()
        }
    }
}
