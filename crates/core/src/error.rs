//! The one error type of mcpsec-core.

use crate::StoreError;

/// Errors from mcpsec-core. `Display` never contains secret material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An identifier or label was rejected; `kind` names the type ("user id", "label", …).
    #[error("invalid {kind}: {reason}")]
    InvalidIdentifier {
        /// Which identifier type rejected the value.
        kind: &'static str,
        /// Why, without echoing the value (it may be something that should not be logged).
        reason: &'static str,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator is unavailable")]
    RandomUnavailable,
    /// An argument was outside what the function accepts (for example an empty alphabet).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// An event sink could not accept the event; the caller must treat the operation as
    /// not recorded.
    #[error("the event sink could not accept the event: {0}")]
    SinkUnavailable(&'static str),
    /// Sealing failed (backend unavailable, input too large).
    #[error("sealing failed: {0}")]
    Seal(&'static str),
    /// Sealing was refused because the sealer holds no key for the seal context's data
    /// category (a keyset without that category). Category names are not secret; the
    /// fix is to add the category to the keyset or to seal under one it has.
    #[error("sealing failed: the keyset has no keyring for data category {category:?}")]
    SealCategoryMissing {
        /// The seal context's category.
        category: String,
    },
    /// A store (a counter, a cache shared by the fleet) failed; nothing was changed. The
    /// [`StoreError`] says what kind of failure and keeps the backend's cause.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Opening failed: wrong context, tampered or truncated data, unknown or retired key.
    /// Deliberately coarse: which of these it was is not told to the caller.
    #[error("sealed data could not be opened")]
    Open,
}
