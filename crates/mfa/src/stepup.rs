//! Step-up lives in `mcpsec-access` now: it is part of the access decision
//! (`mcpsec_access::Authorizer`), and the HTTP layer turns its
//! `Denial::StepUpRequired` into an RFC 9470 challenge without depending on this crate.
//!
//! Re-exported here so existing `mcpsec_mfa::StepUpPolicy` users keep compiling; the
//! methods this crate's verifiers return ([`crate::Verified`]) are the ones the default
//! requirement accepts (`otp`, or `hwk` + `user`).

pub use mcpsec_access::{DEFAULT_ACR, Requirement, StepUpPolicy, StepUpRequired};
