//! # mcpsec-access
//!
//! The vocabulary every credential carries, and the one place authorization decisions are
//! made.
//!
//! - [`Scope`] and [`ScopeSet`]: the nine scopes, their hierarchy ([`IMPLIES`]), strict
//!   parsing for configuration and tolerant parsing for incoming tokens.
//! - [`Role`] and [`Action`]: the three roles and the canonical list of ten actions, each
//!   with its scope, roles and ownership ([`Action::spec`] is the table).
//! - [`Principal`]: the authenticated caller, made only by a credential verifier
//!   (`mcpsec-tokens`, `mcpsec-apikeys`) or through the explicitly named [`danger`] module,
//!   with the credential ([`Credential`]: kind and id) it presented.
//! - [`Authorizer`]: role, then scopes, then organization, then ownership, then step-up
//!   ([`StepUpPolicy`]); deny by default. It returns an [`Authorized`] proof that only this
//!   crate can make, or a [`Denial`] naming the rule that failed
//!   ([`Denial::StepUpRequired`] carries the RFC 9470 challenge; an API key is refused an
//!   action that needs step-up with [`Denial::InteractiveOnly`]). [`authorize`] is the
//!   same decision for actions that need no step-up.
//! - [`ToolPolicy`]: MCP tool names mapped to a [`ToolRequirement`] (any verified caller,
//!   or an action), unmapped tools denied.
//! - [`Memberships`]: the role a verifier gives a principal, read from the user's current
//!   membership at every request ([`resolve_role`]); conformance suite in `testkit`.
//! - [`ManagesCredentials`]: the proofs credential lifecycle calls take
//!   (`user.manage_tokens` for one's own, `org.manage_members` for a member's).
//!
//! ```
//! use mcpsec_access::{
//!     Action, Authentication, AuthMethods, CredentialKind, Denial, Resource, Role, ScopeSet,
//!     authorize, danger,
//! };
//! use mcpsec_core::{OrgId, UserId};
//! use std::time::UNIX_EPOCH;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let org = OrgId::new("acme")?;
//! // A verifier (mcpsec-tokens, mcpsec-apikeys) makes principals; a test names the danger.
//! let dev = danger::principal(
//!     UserId::new("ada")?,
//!     org.clone(),
//!     Role::Developer,
//!     ScopeSet::parse_tolerant("mcp:write openid")?, // `openid` is dropped
//!     CredentialKind::AccessToken,
//!     Authentication { at: Some(UNIX_EPOCH), methods: AuthMethods::EMPTY },
//! );
//! let config = Resource::of_org(org);
//!
//! // mcp:write implies mcp:read, and developers may use MCP services.
//! let proof = authorize(&dev, Action::McpUse, &config)?;
//! assert_eq!(proof.action(), Action::McpUse);
//!
//! // Only org admins may manage organization-wide MCP settings.
//! let denied = authorize(&dev, Action::McpManageSettings, &config).unwrap_err();
//! assert!(matches!(denied, Denial::RoleForbids { .. }));
//! assert_eq!(denied.rule(), "role");
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

mod action;
pub mod danger;
mod decision;
mod error;
mod manage;
mod memberships;
mod principal;
mod role;
mod scope;
mod stepup;
#[cfg(feature = "testkit")]
pub mod testkit;
mod tools;

pub use action::{Action, ActionSpec, Ownership, Permission, perm};
pub use decision::{Authorized, Authorizer, Denial, Resource, authorize, authorize_as, permits};
pub use error::Error;
pub use manage::ManagesCredentials;
pub use memberships::{Memberships, MemoryMemberships, StoreError, resolve_role};
pub use principal::{
    AuthMethod, AuthMethods, Authentication, Credential, CredentialId, CredentialKind, Principal,
};
pub use role::Role;
pub use scope::{IMPLIES, MAX_SCOPE_LEN, Scope, ScopeSet};
pub use stepup::{DEFAULT_ACR, Requirement, StepUpPolicy, StepUpRequired};
pub use tools::{MAX_TOOL_NAME_LEN, ToolAccess, ToolPolicy, ToolRequirement};
