//! # mcpsec-mfa
//!
//! Second factors, and when they are required:
//!
//! - [`TotpSecret`], [`PendingEnrollment`] and [`TotpVerifier`]: RFC 6238 codes on
//!   totp-rs (SHA-1, 6 digits, 30 s by default), enrollment confirmed by a first code,
//!   input normalisation, ±1 step of skew, a [`TotpReplayGuard`] so each code works once
//!   per enrollment, and an [`AttemptBudget`] counted before each code is checked.
//!   Secrets are stored sealed through core's `Sealer`.
//! - [`EmailCodes`]: numeric codes by email, ≤10 minutes, single use, latest only, five
//!   attempts per challenge and a failure budget per user across challenges, a resend
//!   cooldown claimed atomically, stored as keyed hashes bound to user, purpose and flow,
//!   sent through a host's [`EmailSender`].
//! - [`RecoveryCodes`]: ten 100-bit codes, shown once, stored as keyed hashes bound to the
//!   user and a key version, each usable once ([`RecoveryCodeStore::consume_once`]).
//! - [`StepUpPolicy`] (re-exported from `mcpsec-access`, where the access decision applies
//!   it through `Authorizer`): administrative actions need named methods (`otp`, or `hwk` +
//!   `user`) within 15 minutes; otherwise a [`StepUpRequired`] with the `acr_values` and
//!   `max_age` to ask for.
//!
//! Every verification returns the `amr` values it establishes ([`Verified`], [`Factor`]
//! has the table), so the host copies them into the session instead of writing `amr` by
//! hand: TOTP and recovery codes `otp`, email codes `email`, passkeys `hwk` (+ `user`).
//!
//! Cargo features:
//!
//! - `qr` (default): `EnrollmentQr`, the enrollment URI as a terminal QR code (Unicode half
//!   blocks) or a PNG — secret material, like the URI.
//! - `smtp`: `SmtpEmailSender`, an [`EmailSender`] on lettre with implicit TLS or required
//!   STARTTLS (rustls); the code goes in the body only.
//! - `passkeys`: `Passkeys`, WebAuthn registration and authentication on webauthn-rs with
//!   single-use, expiring, capped ceremony state in a `PasskeyStore` (which also enforces
//!   the per-user passkey maximum atomically) and user handles keyed by a server secret;
//!   a user-verified passkey (`amr` `hwk` + `user`) satisfies step-up.
//! - `testkit`: conformance suites for every store trait.
//!
//! ```
//! use mcpsec_access::{AuthMethod, AuthMethods};
//! use mcpsec_core::{ManualClock, NullSink, UserId};
//! use mcpsec_mfa::{MemoryReplayGuard, TotpConfig, TotpSecret, TotpVerifier, Error};
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let clock = ManualClock::at_unix(1_767_225_600);
//! let verifier = TotpVerifier::new(
//!     Arc::new(MemoryReplayGuard::new()), Arc::new(NullSink), Arc::new(clock.clone()), TotpConfig::default());
//! let secret = TotpSecret::generate()?;
//! let code = secret.code_at(TotpConfig::default(), 1_767_225_600)?;
//! let ada = UserId::new("ada")?;
//! let verified = verifier.verify(&ada, &secret, code.expose_secret()).await?;
//! let amr = verified.added_to(AuthMethods::of(&[AuthMethod::Pwd])); // into the session
//! assert!(amr.contains(AuthMethod::Otp));
//! // The same code twice is a replay: refused, with how long until the next code.
//! assert!(matches!(
//!     verifier.verify(&ada, &secret, code.expose_secret()).await,
//!     Err(Error::WaitForNextCode { .. })
//! ));
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "tests fail loudly on purpose"
    )
)]

mod budget;
mod email;
mod error;
mod factor;
#[cfg(feature = "passkeys")]
mod passkey;
#[cfg(feature = "passkeys")]
mod passkey_store;
#[cfg(feature = "qr")]
mod qr;
mod recovery;
mod replay;
#[cfg(feature = "smtp")]
mod smtp;
mod stepup;
#[cfg(feature = "testkit")]
pub mod testkit;
mod totp;

pub use budget::AttemptBudget;
pub use email::{
    AttemptOutcome, ChallengeKey, ChallengeRecord, Cooldown, EmailAddress, EmailCodePolicy,
    EmailCodeStore, EmailCodes, EmailSender, MemoryEmailCodeStore, MemoryOutbox,
};
pub use error::Error;
pub use factor::{Factor, Verified};
/// A store failure (the workspace's one store error). Carries no secret.
pub use mcpsec_core::StoreError;
#[cfg(feature = "passkeys")]
pub use passkey::{
    MAX_CLIENT_RESPONSE, MAX_PASSKEYS_PER_USER, MAX_USER_NAME, PasskeyAuthenticated, PasskeyConfig,
    Passkeys, parse_authentication_response, parse_registration_response,
};
#[cfg(feature = "passkeys")]
pub use passkey_store::{
    CeremonyId, CeremonyKind, CeremonyLimits, CeremonyRecord, CeremonyStored, CredentialAdded,
    MemoryPasskeyStore, PasskeyStore, StoredPasskey,
};
#[cfg(feature = "qr")]
pub use qr::{EnrollmentQr, MAX_PNG_SCALE, QUIET_ZONE};
pub use recovery::{
    CODES_PER_SET, CodeHash, MemoryRecoveryStore, RecoveryCodeStore, RecoveryCodes, Redeemed,
    generate_codes,
};
pub use replay::{EnrollmentId, MemoryReplayGuard, TotpReplayGuard};
#[cfg(feature = "smtp")]
pub use smtp::{
    CODE_PLACEHOLDER, EmailTemplate, PURPOSE_PLACEHOLDER, SmtpConfig, SmtpEmailSender, SmtpTls,
};
pub use stepup::{DEFAULT_ACR, Requirement, StepUpPolicy, StepUpRequired};
pub use totp::{PendingEnrollment, TotpAlgorithm, TotpConfig, TotpSecret, TotpVerifier, normalize};
#[cfg(feature = "passkeys")]
pub use webauthn_rs;
