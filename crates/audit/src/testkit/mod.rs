//! Conformance suites for backends (feature `testkit`; never for production).
//!
//! - [`chain_storage`]: what every [`ChainStorage`](crate::ChainStorage) backend must do,
//!   expanded into named tests per backend by
//!   [`chain_storage_suite!`](crate::chain_storage_suite).

pub mod chain_storage;
