//! # mcpsec-bench
//!
//! The benchmark rows behind `mcpsec bench`: each times an mcpsec operation and, in the
//! same run, the raw primitive or hand-rolled baseline it is built on (raw `jsonwebtoken`,
//! `aes-gcm`, `argon2`, `totp-rs`, aws-lc digests), so the ratio holds whatever the
//! machine. The rows live in their own crate so that those primitives are not
//! dependencies of the `mcpsec` binary itself: the CLI pulls this crate in through its
//! default-on `bench` feature, and `--no-default-features` builds it without them.
//!
//! - [`rows`] builds the rows (all, or those whose name contains a filter) and [`measure`]
//!   times one for a budget; [`Measurement`] is exactly what `mcpsec bench --json` prints.
//! - The `store.*` rows time the SQL stores of `mcpsec-store-sql` beside the raw
//!   statement at their core: SQLite on a temporary file, and PostgreSQL when
//!   `MCPSEC_BENCH_DATABASE_URL` (or `MCPSEC_TEST_DATABASE_URL`) names a database (in a
//!   fresh schema, dropped afterwards); without one [`pg_skip_notice`] says they were
//!   left out.
//! - [`audit::commit`] is `mcpsec audit bench-commit`: group-commit throughput and latency.
//! - `cargo bench -p mcpsec-bench` runs the same rows under criterion.
//!
//! ```
//! use std::time::Duration;
//!
//! let mut rows = mcpsec_bench::rows(Some("access.authorize")).unwrap();
//! let m = mcpsec_bench::measure(&mut rows[0], Duration::from_millis(20));
//! assert_eq!(m.name, "access.authorize");
//! assert!(m.ns_per_op > 0.0 && m.baseline_ns_per_op > 0.0);
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

mod access;
mod apikeys;
pub mod audit;
mod fieldcrypt;
mod http;
mod mfa;
mod row;
mod store;
mod store_redis;
mod tokens;

pub use row::{Measurement, Row, measure, rows};
pub use store::pg_skip_notice;

/// Every library crate's README example, run as a doctest here: this crate depends on all
/// of them, and a README whose example no longer compiles fails `cargo test -p
/// mcpsec-bench --doc`.
#[cfg(doctest)]
pub mod readmes {
    #[doc = include_str!("../README.md")]
    pub struct Bench;
    #[doc = include_str!("../../core/README.md")]
    pub struct Core;
    #[doc = include_str!("../../access/README.md")]
    pub struct Access;
    #[doc = include_str!("../../tokens/README.md")]
    pub struct Tokens;
    #[doc = include_str!("../../apikeys/README.md")]
    pub struct ApiKeys;
    #[doc = include_str!("../../mfa/README.md")]
    pub struct Mfa;
    #[doc = include_str!("../../audit/README.md")]
    pub struct Audit;
    #[doc = include_str!("../../detect/README.md")]
    pub struct Detect;
    #[doc = include_str!("../../fieldcrypt/README.md")]
    pub struct FieldCrypt;
    #[doc = include_str!("../../http/README.md")]
    pub struct Http;
}

/// The workspace's own documents, run as doctests like the READMEs above: every ```rust
/// block in `docs/` and the root README compiles here, so a guide cannot drift from the
/// code. (`docs/architecture.md` holds no Rust; its layout tree is an unlabelled block.)
#[cfg(doctest)]
pub mod docs {
    #[doc = include_str!("../../../README.md")]
    pub struct Readme;
    #[doc = include_str!("../../../docs/integration.md")]
    pub struct Integration;
    #[doc = include_str!("../../../docs/audit-events.md")]
    pub struct AuditEvents;
    #[doc = include_str!("../../../docs/runbooks/audit-checkpoint-key.md")]
    pub struct AuditCheckpointKey;
    #[doc = include_str!("../../../docs/runbooks/field-key-rotation.md")]
    pub struct FieldKeyRotation;
    #[doc = include_str!("../../../docs/runbooks/pepper-rotation.md")]
    pub struct PepperRotation;
    #[doc = include_str!("../../../docs/runbooks/signing-key-rotation.md")]
    pub struct SigningKeyRotation;
}
