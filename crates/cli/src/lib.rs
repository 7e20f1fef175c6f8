//! # mcpsec-cli
//!
//! The library half of the `mcpsec` operator tool. The binary (`src/main.rs`) parses
//! arguments and sets exit codes; the work lives here so it can be tested. `mcpsec bench`
//! runs the rows of `mcpsec-bench` (default-on feature `bench`), which keeps the raw
//! primitives it compares against out of this crate's own dependencies.
//!
//! - [`access`]: `mcpsec access check` and `mcpsec access matrix`.
//! - [`apikeys`]: `mcpsec apikey generate|inspect|hash|verify|new-pepper`.
//! - [`audit`]: `mcpsec audit append|verify|tail|export|keygen`.
//! - [`crypt`]: `mcpsec crypt keygen|encrypt|decrypt|rotate|info`.
//! - [`db`]: `mcpsec db migrate` and `mcpsec user add` on SQLite or PostgreSQL.
//! - [`mfa`]: `mcpsec totp enroll|code|verify` and `mcpsec recovery generate`.
//! - [`progress`]: progress bars on a terminal, nothing when piped.
//! - [`rewrap`]: `mcpsec crypt rewrap`, re-encrypting a table's column after a rotation.
//! - [`stored_keys`]: `mcpsec apikey create|list|revoke`, keys kept in the database.
//! - [`tokens`]: `mcpsec keys generate` and `mcpsec token issue|verify|inspect`.
//!
//! ```
//! use mcpsec_access::{Action, Role, ScopeSet};
//! use mcpsec_cli::access::{Owner, check};
//!
//! let answer = check(Role::Viewer, ScopeSet::parse_strict("mcp:read").unwrap(),
//!                    Action::McpConfigure, Owner::SameOrg);
//! assert_eq!(answer.first_line(), "deny: role: viewer may not mcp.configure");
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

pub mod access;
pub mod apikeys;
pub mod audit;
pub mod crypt;
pub mod db;
pub mod mfa;
pub mod progress;
pub mod rewrap;
pub mod stored_keys;
pub mod tokens;
