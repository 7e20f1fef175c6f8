//! The one error type of mcpsec-apikeys.

use mcpsec_core::{ReasonCode, StoreError};
use std::time::Duration;

/// Why a key was refused or an operation failed.
///
/// Clients must be told only "invalid key" (see [`Error::client_message`]); the variant is
/// for the service's own logic and its security events. `Display` never holds key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not the key format (length, prefix, env, separators, alphabet).
    #[error("malformed API key")]
    Malformed,
    /// The format is right but the checksum is not: a typo or junk.
    #[error("API key checksum mismatch")]
    BadChecksum,
    /// An `mcp_sk_test_` key presented to a service that accepts live keys only: the
    /// default, unless the builder called
    /// [`allow_test_keys`](crate::ApiKeysBuilder::allow_test_keys).
    #[error("test API key refused: this service accepts live keys only")]
    TestKeyRefused,
    /// No key with this id.
    #[error("unknown API key")]
    Unknown,
    /// The id exists but the secret does not match.
    #[error("API key secret mismatch")]
    SecretMismatch,
    /// The key was revoked.
    #[error("API key revoked")]
    Revoked,
    /// The key is disabled.
    #[error("API key disabled")]
    Disabled,
    /// The key expired.
    #[error("API key expired")]
    Expired,
    /// This source failed too often; retry after the given time.
    #[error("too many failed attempts; retry later")]
    Throttled {
        /// How long to wait.
        retry_after: Duration,
    },
    /// The key's request quota is used up; retry after the given time.
    #[error("rate limit exceeded")]
    RateLimited {
        /// How long to wait.
        retry_after: Duration,
    },
    /// The slow-hash pool is full (see [`SlowHashPool`](crate::SlowHashPool)): refused at
    /// once rather than queued without bound. Not counted against the source, since the
    /// caller did nothing wrong; retry after the given time.
    #[error("slow-hash capacity exhausted; retry later")]
    Busy {
        /// How long to wait.
        retry_after: Duration,
    },
    /// A slow-hash worker stopped without an answer (it panicked); the key is refused.
    #[error("slow-hash worker failed")]
    HashWorker,
    /// A stored hash string could not be understood, or names a pepper version this
    /// service does not hold.
    #[error("unrecognised stored hash")]
    BadStoredHash,
    /// Configuration refused (a short pepper, bad Argon2 parameters, an empty quota).
    #[error("configuration: {0}")]
    Config(&'static str),
    /// Invalid scopes or names when creating a key.
    #[error("invalid input: {0}")]
    Invalid(&'static str),
    /// The OS CSPRNG failed.
    #[error("randomness unavailable")]
    Random,
    /// The proof given to a lifecycle call does not reach this key: another user's key
    /// under a `user.manage_tokens` proof, or another organization's.
    #[error("the proof does not allow managing this key")]
    NotAllowed,
    /// A new key would grant scopes its creator does not hold.
    #[error("a key cannot grant scopes its creator does not hold")]
    ScopesExceedCreator,
    /// The key's owner is not a member of the key's organization (any more).
    #[error("the key's owner is not a member of its organization")]
    NotAMember,
    /// A store, counter or membership lookup failed; its kind and cause are kept.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// What to tell the client: one opaque message for every credential failure, so the
    /// response never says whether the id exists or which check failed.
    pub fn client_message(&self) -> &'static str {
        match self {
            Error::Throttled { .. } | Error::RateLimited { .. } | Error::Busy { .. } => {
                "too many requests"
            }
            Error::Store(_) | Error::HashWorker => "service unavailable",
            Error::NotAllowed | Error::ScopesExceedCreator => "not allowed",
            _ => "invalid key",
        }
    }

    /// The reason code for the security event about this failure.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Error::Malformed | Error::BadStoredHash => ReasonCode::Malformed,
            // Well formed, but not the type of key this service takes.
            Error::TestKeyRefused => ReasonCode::WrongType,
            Error::BadChecksum => ReasonCode::BadChecksum,
            Error::Unknown => ReasonCode::UnknownCredential,
            Error::SecretMismatch => ReasonCode::SecretMismatch,
            Error::Revoked => ReasonCode::Revoked,
            Error::Disabled => ReasonCode::Disabled,
            Error::Expired => ReasonCode::Expired,
            Error::Throttled { .. } => ReasonCode::LockedOut,
            Error::RateLimited { .. } | Error::Busy { .. } => ReasonCode::RateLimited,
            Error::NotAllowed => ReasonCode::NotOwner,
            Error::ScopesExceedCreator => ReasonCode::ScopeMissing,
            Error::NotAMember => ReasonCode::RoleForbids,
            _ => ReasonCode::Malformed,
        }
    }
}
