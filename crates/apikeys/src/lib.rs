//! # mcpsec-apikeys
//!
//! `mcp_sk_` API keys the way GitHub and Stripe do them:
//!
//! - [`format`](mod@format): `mcp_sk_{env}_{id}_{secret}{checksum}`, 256-bit secrets from the OS
//!   CSPRNG, a CRC32 checksum so junk is refused without a lookup, and the regular
//!   expression for secret scanners ([`format::SCANNER_REGEX`]).
//! - [`KeyHasher`]: only hashes are stored: HMAC-SHA256 with a versioned pepper (default),
//!   Argon2id, or legacy bcrypt (feature `legacy-bcrypt`), upgraded on use.
//! - [`ApiKeys`]: built with a required event sink and for live keys only unless
//!   [`ApiKeysBuilder::allow_test_keys`] (`mcp_sk_test_` keys are refused by default);
//!   create (the plaintext is shown once), list (hints only), rotate with an overlap,
//!   disable, revoke, each under the caller's `Authorized` proof, and
//!   [`verify`](ApiKeys::verify), which reads the owner's role from `Memberships`:
//!   constant-time, with a dummy comparison for unknown ids, throttling of failing
//!   *sources* (never of the key), and a per-key quota. Slow hashes run on a bounded [`SlowHashPool`], off the async executor.
//! - [`ApiKeyStore`] and [`AttemptCounter`]: where state lives, with in-memory backends
//!   and conformance suites (feature `testkit`).
//!
//! ```
//! use mcpsec_access::{
//!     AuthMethods, Authentication, CredentialKind, MemoryMemberships, Principal, Resource, Role,
//!     ScopeSet, authorize_as, perm,
//! };
//! use mcpsec_apikeys::{ApiKeys, Env, HashMode, KeyHasher, MemoryApiKeyStore, NewKey, Pepper, Source};
//! use mcpsec_core::{MemorySink, OrgId, UserId};
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (ada, acme) = (UserId::new("ada")?, OrgId::new("acme")?);
//! let members = Arc::new(MemoryMemberships::new());
//! members.set(ada.clone(), acme.clone(), Role::Developer);
//! let hasher = KeyHasher::new(Pepper::generate(1)?, vec![], HashMode::HmacSha256)?;
//! // Every refusal is an event: the sink is required (in production, the audit log).
//! let events = MemorySink::new();
//! let store = Arc::new(MemoryApiKeyStore::new());
//! let keys = ApiKeys::builder(store, members, hasher, Arc::new(events.clone())).build()?;
//!
//! // Ada, signed in with a token that may manage her keys, creates one.
//! # let caller = mcpsec_access::danger::principal(ada.clone(), acme.clone(), Role::Developer,
//! #     ScopeSet::parse_strict("user:token mcp:read")?, CredentialKind::AccessToken,
//! #     Authentication { at: None, methods: AuthMethods::EMPTY });
//! let proof = authorize_as::<perm::UserManageTokens>(&caller, &Resource::own(&caller))?;
//! let new = NewKey {
//!     owner: ada.clone(),
//!     org: acme,
//!     scopes: "mcp:read".into(),
//!     env: Env::Live,
//!     name: "ci-runner".into(),
//!     expires_at: None,
//! };
//! let (key, record) = keys.create(&proof, new).await?;
//! assert!(key.expose_secret().starts_with("mcp_sk_live_"));
//!
//! // The key verifies with its owner's current role.
//! let verified = keys.verify(key.expose_secret(), &Source::Ip("192.0.2.1".parse()?)).await?;
//! let principal = verified.principal();
//! assert_eq!(principal.subject(), &record.owner);
//! assert_eq!(principal.role(), Role::Developer);
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

mod cache;
mod error;
pub mod format;
mod hash;
mod lifecycle;
mod limits;
mod pepper_file;
mod pool;
mod service;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
mod verify;

pub use error::Error;
pub use format::{Env, ParsedKey};
pub use hash::{Argon2Params, HashCheck, HashMode, KeyHasher, Pepper};
pub use lifecycle::{KeySummary, NewKey};
pub use limits::{GovernorRateLimiter, LockoutPolicy, RateLimitInfo};
pub use mcpsec_core::{AttemptCounter, AttemptState, MemoryAttemptCounter};
pub use pepper_file::{MAX_PEPPER_FILE, MIN_PEPPER_BYTES, PepperFileError, PepperTextError};
pub use pool::SlowHashPool;
pub use service::{
    ApiKeys, ApiKeysBuilder, DEFAULT_IPV6_SOURCE_PREFIX, DEFAULT_LAST_USED_INTERVAL,
    DEFAULT_QUOTA_PER_MINUTE, DEFAULT_THROTTLED_SLOW_HASH_ALLOWANCE,
};
pub use store::{
    ApiKeyLookup, ApiKeyRecord, ApiKeyStore, KeyStatus, MemoryApiKeyStore, StoreError,
};
pub use verify::{Source, VerifiedKey};
