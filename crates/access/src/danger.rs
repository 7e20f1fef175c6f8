//! The escape hatch: building a [`Principal`] without one of the workspace's verifiers.
//!
//! A [`Principal`] is what [`authorize`](crate::authorize) trusts, so whoever can make one
//! can make an org admin with every scope. It has no public constructor; the one way to
//! build it is [`principal`] here, named so that every call site reads as a choice and a
//! review can find them all with `grep -rn 'access::danger'` (rustls keeps its custom
//! certificate verifiers behind `rustls::client::danger` for the same reason).
//!
//! Who calls it:
//! - the workspace's own verifiers, `mcpsec-tokens` (`VerifiedClaims::principal*`) and
//!   `mcpsec-apikeys` (`VerifiedKey::principal`), right after their checks, each call
//!   commented. Rust has no workspace-wide visibility, so a sibling crate needs a public
//!   path; a sealed "verifier token" type would need one too, and would be this module
//!   under another name.
//! - a host's own verifier (a session cookie layer, an mTLS client certificate), after it
//!   has verified the credential itself;
//! - tests.
//!
//! Request handlers, middleware that copies headers into request extensions, and anything
//! that deserializes a principal must never call it.

use crate::{Authentication, Credential, Principal, Role, ScopeSet};
use mcpsec_core::{OrgId, UserId};

/// A principal for a credential the caller has verified: `subject` in `org` with `role`,
/// the credential's `scopes`, the `credential` itself (kind and id) and how the subject
/// authenticated.
///
/// Nothing is checked here: this is the statement "I verified this credential". Pass
/// `authentication.at: None` unless the credential says when the user last authenticated
/// (never its issue time), so step-up fails closed.
pub fn principal(
    subject: UserId,
    org: OrgId,
    role: Role,
    scopes: ScopeSet,
    credential: impl Into<Credential>,
    authentication: Authentication,
) -> Principal {
    Principal::new(
        subject,
        org,
        role,
        scopes,
        credential.into(),
        authentication,
    )
}
