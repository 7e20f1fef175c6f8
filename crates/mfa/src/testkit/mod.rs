//! Conformance suites for the MFA store traits (feature `testkit`), in the workspace
//! convention (`mcpsec_core::testkit::suite`): each module holds one public async function
//! per case taking a fresh store, and a macro expands a suite into named tests per backend:
//!
//! - [`replay_guard`]: [`TotpReplayGuard`](crate::TotpReplayGuard), [`totp_replay_guard_suite!`](crate::totp_replay_guard_suite);
//! - [`recovery_store`]: [`RecoveryCodeStore`](crate::RecoveryCodeStore), [`recovery_store_suite!`](crate::recovery_store_suite);
//! - [`email_code_store`]: [`EmailCodeStore`](crate::EmailCodeStore), [`email_code_store_suite!`](crate::email_code_store_suite);
//! - `passkey_store` (feature `passkeys`): `PasskeyStore`, `passkey_store_suite!`.

pub mod email_code_store;
#[cfg(feature = "passkeys")]
pub mod passkey_store;
pub mod recovery_store;
pub mod replay_guard;

#[doc(hidden)]
pub use mcpsec_core::testkit::__conformance_suite;
