//! # mcpsec-core
//!
//! The small vocabulary every mcpsec crate shares, so that capability crates never need
//! to depend on each other:
//!
//! - [`Clock`]: where time comes from ([`SystemClock`] in production, [`ManualClock`] in tests).
//! - [`SecretBytes`] and [`SecretString`]: secret material that zeroizes on drop, prints as
//!   `[REDACTED]`, has no `Display` or `Serialize`, compares in constant time and is filled
//!   from the operating system's CSPRNG.
//! - Typed identifiers ([`UserId`], [`OrgId`], [`KeyId`], …) so one cannot be passed for another.
//! - [`SecurityEvent`] and the [`EventSink`] trait: how every crate reports what happened,
//!   with fields that cannot carry a secret.
//! - The [`Sealer`] trait: seal small secrets at rest without depending on the field
//!   encryption crate, which implements it.
//! - The [`AttemptCounter`] trait: atomic failure counting that API keys and MFA share.
//! - The [`RateLimiter`] trait: GCRA quotas per principal, credential or source, with
//!   semantics every backend shares ([`MemoryRateLimiter`] here, governor and Redis elsewhere).
//! - [`StoreError`]: the one error every store trait returns (a kind to act on, the
//!   backend's cause kept as the source).
//! - Shared helpers, one implementation each: [`pem`] (PKCS#8 PEM, zeroizing),
//!   [`hmac`] (HMAC-SHA256 with explicit domain separation), [`secret_file`] (atomic 0600
//!   writes) and, with feature `https-client`, `https` (the outbound HTTPS policy).
//!
//! ```
//! use mcpsec_core::{
//!     Clock, EventKind, EventSink, ManualClock, MemorySink, Outcome, ReasonCode, SecretBytes,
//!     SecurityEvent, UserId,
//! };
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), mcpsec_core::Error> {
//! let clock = ManualClock::at_unix(1_700_000_000);
//! let key = SecretBytes::random(32)?;
//! assert_eq!(format!("{key:?}"), "[REDACTED]");
//!
//! let sink = MemorySink::new();
//! let event = SecurityEvent::new(EventKind::AuthnLoginFail, Outcome::Failure, clock.now())
//!     .with_user(UserId::new("user-42")?)
//!     .with_reason(ReasonCode::BadSignature);
//! sink.record(event).await?;
//!
//! clock.advance(Duration::from_secs(30));
//! assert_eq!(clock.unix_seconds(), 1_700_000_030);
//! assert_eq!(sink.events().len(), 1);
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

mod attempts;
mod clock;
mod error;
mod event;
mod fallback;
pub mod hmac;
#[cfg(feature = "https-client")]
pub mod https;
mod id;
mod invalidation;
pub mod pem;
mod random;
pub mod rate;
mod seal;
mod seal_text;
mod secret;
pub mod secret_file;
mod sink;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use attempts::{AttemptCounter, AttemptState, MemoryAttemptCounter};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use error::Error;
pub use event::{Actor, EventKind, Outcome, ReasonCode, ResourceRef, SecurityEvent, Severity};
pub use fallback::FallbackAttemptCounter;
pub use id::{
    KeyId, Label, MAX_ID_LEN, OrgId, RequestId, ResourceId, ServiceId, SessionId, TokenId, UserId,
};
pub use invalidation::{
    FlushOnInvalidation, Invalidation, InvalidationBus, InvalidationParseError,
    LocalInvalidationBus, MAX_INVALIDATION_LEN,
};
pub use random::fill_random;
pub use rate::{
    FallbackRateLimiter, MemoryRateLimiter, RateDecision, RateKey, RateKeyKind, RateLimitInfo,
    RateLimiter, RateQuota,
};
pub use seal::{MAX_SEAL_PLAINTEXT, SealContext, Sealer};
pub use seal_text::SealContextSyntaxError;
pub use secret::{SecretBytes, SecretString};
pub use sink::{EventSink, FanOut, MemorySink, NullSink, emit};
pub use store::{StoreError, StoreErrorKind};
