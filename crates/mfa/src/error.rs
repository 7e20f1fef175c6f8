//! The one error type of mcpsec-mfa.

use mcpsec_core::StoreError;

/// Why a second factor was refused. `Display` never holds a code or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The code is not a code: empty, over 32 characters, or not only digits (after
    /// removing spaces and dashes).
    #[error("malformed code")]
    Malformed,
    /// The code is all digits but not as many as the verifier uses (an 8-digit code
    /// checked by a 6-digit verifier, a digit dropped). Counted like [`Error::Malformed`]
    /// (the malformed-input budget, never the wrong-code budget); nothing was checked.
    #[error("the code must be {expected} digits")]
    WrongLength {
        /// The number of digits the verifier expects.
        expected: u8,
    },
    /// The code is wrong for every accepted time step.
    #[error("wrong code")]
    WrongCode,
    /// The code's time step was already used (the same code twice, or an older one).
    #[error("code already used")]
    Replayed,
    /// The code is right but its time step was already used, and it is still the code an
    /// authenticator shows: the user should wait for the next one. This is what a login
    /// right after enrollment confirmation gets (confirming spends the current step), and
    /// what a second submission of the same live code gets. It is a replay all the same:
    /// the code does not work twice, the failure event has reason `replayed`, and the
    /// attempt counts against the budget like [`Error::Replayed`].
    #[error("this code was already used; wait for the next code")]
    WaitForNextCode {
        /// At least this long until the authenticator shows a new code.
        retry_after: std::time::Duration,
    },
    /// Too many wrong codes for this user recently; retry after the given time.
    #[error("too many attempts; retry later")]
    TooManyAttempts {
        /// How long to wait.
        retry_after: std::time::Duration,
    },
    /// The email code expired.
    #[error("code expired")]
    CodeExpired,
    /// A new email code was asked for too soon; retry after the given time.
    #[error("a code was sent recently; retry later")]
    Cooldown {
        /// How long to wait.
        retry_after: std::time::Duration,
    },
    /// A recovery code that is unknown or already used.
    #[error("invalid recovery code")]
    InvalidRecoveryCode,
    /// The passkey ceremony is unknown, already finished, expired, of the other kind, or
    /// another user's.
    #[error("unknown or expired passkey ceremony")]
    CeremonyUnknown,
    /// The passkey response was malformed, too large, or failed verification (wrong
    /// origin, challenge, signature, or a credential id already registered).
    #[error("passkey response refused")]
    PasskeyRefused,
    /// The passkey's signature counter did not advance: a cloned authenticator, or the
    /// same credential used by two ceremonies at once.
    #[error("passkey counter did not advance")]
    PasskeyCounter,
    /// The user has no passkey.
    #[error("no passkey registered")]
    NoPasskey,
    /// The user already has the most passkeys allowed
    /// (`MAX_PASSKEYS_PER_USER`, feature `passkeys`); remove one first.
    #[error("too many passkeys for this user")]
    TooManyPasskeys,
    /// The ceremony store is full of live ceremonies; retry later.
    #[error("too many passkey ceremonies in progress")]
    TooManyCeremonies,
    /// A TOTP secret or configuration was refused.
    #[error("configuration: {0}")]
    Config(&'static str),
    /// The OS CSPRNG failed.
    #[error("randomness unavailable")]
    Random,
    /// The sealer refused to seal a TOTP secret, and says why: for example a keyset
    /// without the seal context's data category
    /// ([`mcpsec_core::Error::SealCategoryMissing`], which names it). A sealer whose
    /// store failed is [`Error::Store`] instead.
    #[error(transparent)]
    Seal(mcpsec_core::Error),
    /// A store, counter, sealer or mail transport failed; its kind and cause are kept.
    #[error(transparent)]
    Store(#[from] StoreError),
}
