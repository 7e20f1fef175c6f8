//! The one error type of mcpsec-tokens.

use mcpsec_core::{ReasonCode, StoreError};

/// Why a token, key or key set was refused. Coarse on purpose: enough to act on and to
/// log, never which byte was wrong, never any key material or token text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The compact token is longer than the configured cap.
    #[error("token larger than the size cap")]
    TooLarge,
    /// Not three base64url parts, bad base64url, or not a JSON object.
    #[error("malformed token")]
    Malformed,
    /// A JSON object in the token repeats a member name.
    #[error("duplicate JSON member in token")]
    DuplicateMember,
    /// The header's `alg` is not the algorithm bound to the key (includes `none`, HS256
    /// against an RSA key, and any mismatch of algorithm and key type).
    #[error("algorithm not allowed for this key")]
    WrongAlgorithm,
    /// No key with the token's `kid` (or no `kid`).
    #[error("unknown signing key")]
    UnknownKey,
    /// The header carries a key or a key reference (`jwk`, `jku`, `x5u`, `x5c`); such keys
    /// are never used, and tokens that carry them are refused.
    #[error("token header embeds or references a key")]
    EmbeddedKey,
    /// The header has a `crit` member; no extension is understood, so all are refused.
    #[error("token header has critical extensions")]
    CriticalHeader,
    /// The header's `typ` is not in the accepted set.
    #[error("token type not accepted")]
    WrongType,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is not in the future (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim is absent.
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type or an invalid value (never treated as absent).
    #[error("invalid claim {0}")]
    InvalidClaim(&'static str),
    /// A verified claim (`sub`, `org`) is valid data but not an mcpsec identifier, so it
    /// cannot name a [`Principal`](mcpsec_access::Principal) by itself: map it with
    /// [`VerifiedClaims::principal_mapped`](crate::VerifiedClaims::principal_mapped).
    #[error("claim {0} is not an mcpsec identifier")]
    NotAnIdentifier(&'static str),
    /// The token's `jti` is on the revocation list.
    #[error("token revoked")]
    Revoked,
    /// The login session the token was minted from (`sid`) has ended: logout, an admin's
    /// revocation, or refresh-token reuse.
    #[error("session revoked")]
    SessionRevoked,
    /// The session store could not say whether the token's session was revoked, so the
    /// token is refused (unknown is never read as "not revoked"). The store's cause is kept.
    #[error("session revocation check unavailable")]
    SessionCheckUnavailable(#[source] StoreError),
    /// A required scope is not granted.
    #[error("required scope not granted")]
    InsufficientScope,
    /// A key, key set, keyring or the signer failed; the nested reason says which.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A builder was missing a required setting.
    #[error("configuration: {0}")]
    Config(&'static str),
    /// A refresh token was refused; the nested reason says why (rustls nests its
    /// `CertificateError` the same way), so a caller handles every session outcome with
    /// one arm.
    #[error(transparent)]
    Refresh(#[from] RefreshError),
    /// The CSRF token, the double-submit cookie or the request's origin did not check out.
    #[error("cross-site request refused")]
    Csrf,
    /// The store failed; nothing was issued. Its kind and cause are kept.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The proof given does not reach this session or credential (another user's, under a
    /// `user.manage_tokens` proof); nothing changed.
    #[error("the proof does not allow managing this session")]
    NotAllowed,
    /// The token's subject is not a member of its organization (any more).
    #[error("the subject is not a member of the organization")]
    NotAMember,
}

impl Error {
    /// The reason code for a security event about this failure.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Error::TooLarge => ReasonCode::TooLarge,
            Error::Malformed
            | Error::DuplicateMember
            | Error::EmbeddedKey
            | Error::CriticalHeader => ReasonCode::Malformed,
            Error::WrongAlgorithm => ReasonCode::WrongAlgorithm,
            Error::UnknownKey => ReasonCode::UnknownKey,
            Error::WrongType => ReasonCode::WrongType,
            Error::BadSignature => ReasonCode::BadSignature,
            Error::Expired => ReasonCode::Expired,
            Error::NotYetValid | Error::IssuedInFuture => ReasonCode::NotYetValid,
            Error::WrongIssuer => ReasonCode::WrongIssuer,
            Error::WrongAudience => ReasonCode::WrongAudience,
            Error::InsufficientScope => ReasonCode::ScopeMissing,
            Error::Refresh(refresh) => refresh.reason_code(),
            Error::Revoked | Error::SessionRevoked => ReasonCode::Revoked,
            Error::SessionCheckUnavailable(_) | Error::Store(_) => ReasonCode::Unavailable,
            Error::NotAllowed => ReasonCode::NotOwner,
            Error::NotAMember => ReasonCode::RoleForbids,
            _ => ReasonCode::Malformed,
        }
    }
}

/// Why a refresh token was refused: the session outcomes of
/// [`RefreshTokens::rotate`](crate::RefreshTokens::rotate) and `revoke`, nested in [`Error::Refresh`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// The refresh token is malformed or unknown.
    #[error("invalid refresh token")]
    Invalid,
    /// The refresh token was already used: its family has been revoked.
    #[error("refresh token reused; the session has been revoked")]
    Reused,
    /// The refresh token was used again within the grace window (a client retry); the
    /// session is kept, but this request gets no new token.
    #[error("refresh token already rotated")]
    Raced,
    /// The session's family was revoked (logout or earlier reuse).
    #[error("session revoked")]
    Revoked,
    /// The session passed its absolute or idle lifetime.
    #[error("session expired")]
    Expired,
}

impl RefreshError {
    /// The reason code for a security event about this refusal.
    pub fn reason_code(self) -> ReasonCode {
        match self {
            Self::Invalid => ReasonCode::UnknownCredential,
            Self::Reused | Self::Raced => ReasonCode::Reused,
            Self::Revoked => ReasonCode::Revoked,
            Self::Expired => ReasonCode::Expired,
        }
    }
}

/// Why a key, a key set, the keyring or signing failed, nested in [`Error::Key`]. The
/// descriptions are fixed text: never key material, never which byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key could not be parsed, generated or used.
    #[error("invalid key: {0}")]
    Invalid(&'static str),
    /// A JWK set could not be parsed or is unacceptable.
    #[error("invalid key set: {0}")]
    InvalidSet(&'static str),
    /// The keyring has no key in the state the operation needs.
    #[error("keyring: {0}")]
    Keyring(&'static str),
    /// Signing failed in the crypto backend.
    #[error("signing failed")]
    Signing,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_refusals_nest_and_keep_their_reason() {
        let cases = [
            (RefreshError::Invalid, ReasonCode::UnknownCredential),
            (RefreshError::Reused, ReasonCode::Reused),
            (RefreshError::Raced, ReasonCode::Reused),
            (RefreshError::Revoked, ReasonCode::Revoked),
            (RefreshError::Expired, ReasonCode::Expired),
        ];
        for (refresh, reason) in cases {
            let error = Error::from(refresh);
            assert_eq!(error, Error::Refresh(refresh));
            assert_eq!(error.reason_code(), reason);
            assert_eq!(error.to_string(), refresh.to_string());
        }
    }

    #[test]
    fn key_failures_nest_and_read_as_before() {
        let error = Error::from(KeyError::InvalidSet("duplicate kid"));
        assert_eq!(error.to_string(), "invalid key set: duplicate kid");
        assert!(matches!(error, Error::Key(KeyError::InvalidSet(_))));
        assert_eq!(Error::from(KeyError::Signing).to_string(), "signing failed");
    }
}
