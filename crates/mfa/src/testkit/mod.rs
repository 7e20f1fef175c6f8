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

/// `user` as the principal a tenant-scoped call runs as (a suite stands in for a verifier).
#[expect(
    clippy::unwrap_used,
    reason = "a test suite: failing loudly is its job"
)]
pub(crate) fn as_user(user: &mcpsec_core::UserId) -> mcpsec_access::Principal {
    mcpsec_access::danger::principal(
        user.clone(),
        mcpsec_core::OrgId::new("acme").unwrap(),
        mcpsec_access::Role::Viewer,
        mcpsec_access::ScopeSet::of(&[mcpsec_access::Scope::UserWrite]),
        mcpsec_access::CredentialKind::AccessToken,
        mcpsec_access::Authentication {
            at: None,
            methods: mcpsec_access::AuthMethods::EMPTY,
        },
    )
}
