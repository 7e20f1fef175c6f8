//! # mcpsec-tokens
//!
//! Access tokens a service can trust without reading the JWT RFCs:
//!
//! - [`SigningKey`] and [`generate_pem`]: RS256 (default), ES256 and EdDSA keys, PKCS#8
//!   PEM, parsed once, never printed. [`KeyDir`]: the key directory `mcpsec keys generate`
//!   writes and a server's `--keys DIR` reads.
//! - [`SigningKeyring`]: next → current → retired → removed, one call to
//!   [`rotate`](SigningKeyring::rotate), and the [`JwkSet`] to publish; its metadata
//!   (states and dates, no private key) shared through a [`SigningKeyStore`].
//! - [`RefreshTokens`]: refresh tokens with rotation and reuse detection over a
//!   [`RefreshTokenStore`]; [`refresh_cookie`], [`CsrfKey`] and [`check_origin`] for the
//!   refresh endpoint.
//! - [`TokenIssuer`]: RFC 9068 access tokens (`typ: at+jwt`, `kid`); one minted from a
//!   session ([`issue_for_session`](TokenIssuer::issue_for_session)) carries its `sid`.
//! - [`TokenVerifier`]: strict verification that refuses to build without an issuer, an
//!   audience and an [`EventSink`](mcpsec_core::EventSink), binds the algorithm to the key,
//!   checks every claim's type, refuses a token whose session was revoked
//!   ([`SessionRevocation`]), and records every outcome. It yields [`VerifiedClaims`],
//!   which only it can make, and from them a [`Principal`](mcpsec_access::Principal).
//!
//! ```
//! use mcpsec_access::{Action, Resource, Role, ScopeSet, authorize};
//! use mcpsec_core::{KeyId, NullSink, OrgId, UserId};
//! use mcpsec_tokens::{
//!     AccessGrant, Algorithm, KeySource, SigningKey, SigningKeyring, TokenIssuer, TokenVerifier,
//! };
//! use std::sync::{Arc, RwLock};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::generate(KeyId::new("2026-11")?, Algorithm::EdDSA)?;
//! let keyring = Arc::new(RwLock::new(SigningKeyring::new(key)));
//! let jwks = keyring.read().map_err(|_| "poisoned")?.jwks();
//!
//! let issuer = TokenIssuer::builder(keyring).issuer("https://auth.example").audience("mcp").build()?;
//! // Events to NullSink, by name: the audit log's sink in a real service.
//! let verifier = TokenVerifier::builder(KeySource::Static(jwks), NullSink)
//!     .issuer("https://auth.example")
//!     .audience("mcp")
//!     .build()?;
//!
//! let mut grant = AccessGrant::new(UserId::new("ada")?, ScopeSet::parse_strict("mcp:read")?);
//! grant.org = Some(OrgId::new("acme")?);
//! grant.role = Some(Role::Developer);
//! let token = issuer.issue(&grant)?;
//!
//! let principal = verifier.verify(&token).await?.principal()?;
//! authorize(&principal, Action::McpUse, &Resource::of_org(OrgId::new("acme")?))?;
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

mod alg;
mod cache;
mod claims;
mod cookie;
mod error;
mod issue;
mod jwk;
mod key_dir;
mod key_store;
#[cfg(feature = "testkit")]
pub mod key_store_testkit;
mod keyring;
mod keys;
mod refresh;
mod refresh_store;
#[cfg(feature = "remote-jwks")]
mod remote;
mod session;
mod strict_json;
#[cfg(feature = "testkit")]
pub mod testkit;
mod verify;

pub use alg::Algorithm;
pub use cache::DEFAULT_CACHE_CAPACITY;
pub use claims::{MAX_CLAIM_ID_LEN, VerifiedClaims};
pub use cookie::{
    CSRF_COOKIE, CSRF_HEADER, CsrfKey, REFRESH_COOKIE, check_origin, clear_refresh_cookie,
    csrf_cookie, read_cookie, refresh_cookie,
};
pub use error::{Error, KeyError, RefreshError};
pub use issue::{
    AccessGrant, DEFAULT_ACCESS_TTL, DEFAULT_MAX_ACCESS_TTL, MIN_ACCESS_TTL, TokenIssuer,
    TokenIssuerBuilder,
};
pub use jwk::{
    Jwk, JwkSet, MAX_JWKS_KEYS, MAX_JWKS_LEN, MAX_KID_LEN, SkippedKey, UsableKeys, VerifyingKey,
};
pub use key_dir::{GeneratedKey, JWKS_FILE, KeyDir, KeyDirError, LOCK_FILE};
pub use key_store::{
    KeyRecord, KeyringRecords, MemorySigningKeyProvider, MemorySigningKeyStore, SigningKeyProvider,
    SigningKeyStore,
};
pub use keyring::{KeyState, SigningKeyring};
pub use keys::{RsaBits, SigningKey, generate_pem};
pub use refresh::{IssuedRefresh, REFRESH_PREFIX, RefreshPolicy, RefreshTokens};
pub use refresh_store::{
    ConsumeOutcome, FamilyRecord, MemoryRefreshStore, RefreshRecord, RefreshTokenStore,
    SessionGrant, StoreError, TokenHash,
};
#[cfg(feature = "remote-jwks")]
pub use remote::{
    DEFAULT_JWKS_COOLDOWN, DEFAULT_JWKS_TIMEOUT, DEFAULT_JWKS_TTL, RemoteJwks, RemoteJwksBuilder,
    verify_with_remote,
};
pub use session::{MemorySessionRevocation, SessionRevocation};
pub use verify::{
    DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_LEN, JtiRevocation, KeySource, MAX_LEEWAY, TokenVerifier,
    TokenVerifierBuilder,
};
