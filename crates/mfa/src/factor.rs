//! What a verified factor proves, as `amr` values, so the host never writes `amr` by hand.
//!
//! Every verification returns the `amr` (RFC 8176) values it establishes: a [`Verified`]
//! from [`TotpVerifier::verify`](crate::TotpVerifier::verify),
//! [`EmailCodes::verify`](crate::EmailCodes::verify) and
//! [`RecoveryCodes::redeem`](crate::RecoveryCodes::redeem), and the `methods` of a
//! `PasskeyAuthenticated` (feature `passkeys`). The host adds them to the methods of its
//! first factor (`pwd`) with [`Verified::added_to`] and puts the result in the session or
//! token. A hand-written `mfa` once let "password + email code" pass an administrative
//! step-up; the [`StepUpPolicy`](crate::StepUpPolicy) now names the methods it accepts and
//! no factor here reports `mfa`.
//!
//! | Factor | `amr` | Why |
//! |---|---|---|
//! | TOTP | `otp` | RFC 8176 `otp` names RFC 6238 |
//! | Recovery code | `otp` | a single-use look-up secret (NIST SP 800-63B §5.1.2), an AAL2 "something you have" like TOTP; RFC 8176 has no closer value. [`Verified::factor`] tells the two apart for auditing |
//! | Email code | `email` | not in RFC 8176; mcpsec's own value for a weaker factor (NIST SP 800-63B does not allow email as an out-of-band authenticator) |
//! | Passkey | `hwk`, plus `user` when the authenticator verified the user | RFC 8176 `hwk`: proof of possession of a hardware-secured key; `user` records the WebAuthn user-verification flag |

use mcpsec_access::{AuthMethod, AuthMethods};

/// Which kind of factor was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Factor {
    /// A TOTP code.
    Totp,
    /// A code sent by email.
    EmailCode,
    /// A recovery code.
    RecoveryCode,
    /// A passkey (WebAuthn).
    Passkey,
}

impl Factor {
    /// The `amr` values this factor establishes (see the module table); `user_verified`
    /// matters for passkeys only.
    pub(crate) fn amr(self, user_verified: bool) -> AuthMethods {
        match self {
            Factor::Totp | Factor::RecoveryCode => AuthMethods::of(&[AuthMethod::Otp]),
            Factor::EmailCode => AuthMethods::of(&[AuthMethod::Email]),
            Factor::Passkey if user_verified => {
                AuthMethods::of(&[AuthMethod::Hwk, AuthMethod::User])
            }
            Factor::Passkey => AuthMethods::of(&[AuthMethod::Hwk]),
        }
    }
}

/// A factor that was just verified, and the `amr` values it establishes. Only this
/// crate's verifiers make one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the amr values go into the session or token"]
pub struct Verified {
    factor: Factor,
    amr: AuthMethods,
}

impl Verified {
    /// For the code factors; a passkey's `amr` depends on user verification and is
    /// reported in `PasskeyAuthenticated::methods`.
    pub(crate) fn new(factor: Factor) -> Self {
        Self {
            factor,
            amr: factor.amr(false),
        }
    }

    /// Which factor.
    pub fn factor(self) -> Factor {
        self.factor
    }

    /// The `amr` values this verification establishes.
    pub fn amr(self) -> AuthMethods {
        self.amr
    }

    /// `session` (the methods of the first factor, such as `pwd`) plus this factor's.
    pub fn added_to(self, session: AuthMethods) -> AuthMethods {
        self.amr.iter().fold(session, AuthMethods::with)
    }
}
