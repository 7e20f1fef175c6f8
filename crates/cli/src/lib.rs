//! # mcpsec-cli
//!
//! The library half of the `mcpsec` operator tool. The binary (`src/main.rs`) parses
//! arguments and sets exit codes; the work lives here so it can be tested and so that the
//! criterion benches under `benches/` run exactly the rows `mcpsec bench` prints.
//!
//! - [`access`]: `mcpsec access check` and `mcpsec access matrix`.
//! - [`apikeys`]: `mcpsec apikey generate|inspect|hash|verify|new-pepper`.
//! - [`audit`]: `mcpsec audit append|verify|tail|export|keygen|bench-commit`.
//! - [`bench`](mod@bench): the benchmark rows, each an mcpsec operation beside the raw primitive or
//!   hand-rolled baseline it is compared with, and the timing loop.
//! - [`crypt`]: `mcpsec crypt keygen|encrypt|decrypt|rotate|info`.
//! - [`mfa`]: `mcpsec totp enroll|code|verify` and `mcpsec recovery generate`.
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
pub mod bench;
mod bench_apikeys;
mod bench_audit;
mod bench_fieldcrypt;
mod bench_mfa;
mod bench_tokens;
pub mod crypt;
pub mod mfa;
pub mod tokens;
