//! # mcpsec-mfa
//!
//! Second factors, and when they are required:
//!
//! - [`TotpSecret`], [`PendingEnrollment`] and [`TotpVerifier`]: RFC 6238 codes on
//!   totp-rs (SHA-1, 6 digits, 30 s by default), enrollment confirmed by a first code,
//!   input normalisation, ±1 step of skew, and a [`TotpReplayGuard`] so each code works
//!   once. Secrets are stored sealed through core's `Sealer`.
//! - [`EmailCodes`]: numeric codes by email, ≤10 minutes, single use, latest only, five
//!   attempts, a resend cooldown, stored as keyed hashes bound to user, purpose and flow,
//!   sent through a host's [`EmailSender`].
//! - [`RecoveryCodes`]: ten 100-bit codes, shown once, stored as keyed hashes, each usable
//!   once ([`RecoveryCodeStore::consume_once`]).
//! - [`StepUpPolicy`]: administrative actions need MFA within 15 minutes; otherwise a
//!   [`StepUpRequired`] with the `acr_values` and `max_age` to ask for.
//!
//! ```
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
//! verifier.verify(&ada, &secret, code.expose_secret()).await?;
//! assert_eq!(verifier.verify(&ada, &secret, code.expose_secret()).await, Err(Error::Replayed));
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

mod email;
mod error;
mod recovery;
mod replay;
mod stepup;
#[cfg(feature = "testkit")]
pub mod testkit;
mod totp;

pub use email::{
    AttemptOutcome, ChallengeKey, ChallengeRecord, EmailAddress, EmailCodePolicy, EmailCodeStore,
    EmailCodes, EmailSender, MemoryEmailCodeStore, MemoryOutbox,
};
pub use error::{Error, StoreError};
pub use recovery::{
    CODES_PER_SET, CodeHash, MemoryRecoveryStore, RecoveryCodeStore, RecoveryCodes,
};
pub use replay::{MemoryReplayGuard, TotpReplayGuard};
pub use stepup::{DEFAULT_ACR, Requirement, StepUpPolicy, StepUpRequired};
pub use totp::{
    AttemptBudget, PendingEnrollment, TotpAlgorithm, TotpConfig, TotpSecret, TotpVerifier,
    normalize,
};
