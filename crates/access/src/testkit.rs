//! Conformance suites for the stores this crate defines (feature `testkit`): today
//! [`Memberships`](crate::Memberships), expanded into named tests per backend by
//! [`memberships_suite!`](crate::memberships_suite).

pub mod memberships;

#[doc(hidden)]
pub use mcpsec_core as __core;
