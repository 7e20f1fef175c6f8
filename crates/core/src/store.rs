//! The one error every mcpsec store trait returns.
//!
//! A store backend (memory, SQL, Redis, a KMS) fails for reasons the caller acts on in a few
//! ways only: retry later ([`StoreErrorKind::Unavailable`], [`StoreErrorKind::Timeout`]),
//! give up on a write that lost to another ([`StoreErrorKind::Conflict`]), or page someone
//! ([`StoreErrorKind::Corrupt`]). The kind says which; the backend's own error rides along as
//! the [`source`](std::error::Error::source), so logs keep the cause while the type stays
//! `Clone` (rustls's `OtherError` is the model).

use std::fmt;
use std::sync::Arc;

/// What kind of failure a [`StoreError`] is: what the caller can do about it.
///
/// Every kind means the same for the operation that returned it: it did not happen (a
/// backend that cannot promise that for a write must report [`Corrupt`](Self::Corrupt)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The backend could not be reached or refused to serve (connection refused, pool
    /// exhausted, read-only replica, an event sink that refused). Retrying later may work.
    ///
    /// A connection lost while a write was in flight (during its statement or its
    /// `COMMIT`) also lands here, and then whether the write happened is unknown, as with
    /// [`Timeout`](Self::Timeout): a store's operations are built so that repeating one is
    /// safe or fails closed (a refresh token whose consume did commit is, on retry, a
    /// reused token, and its session is revoked).
    Unavailable,
    /// The backend did not answer in time. Whether a write landed is unknown to the
    /// caller; the store's own atomicity decides (a retry must be safe to repeat).
    Timeout,
    /// The write conflicts with data already stored (a duplicate id, a lost race for a
    /// unique row). Retrying the same write will fail the same way.
    Conflict,
    /// Stored data could not be understood (a row that does not decode, a broken
    /// invariant). Not retryable; someone should look.
    Corrupt,
    /// The request was refused by the store as invalid for it (a value it cannot hold).
    Rejected,
}

impl StoreErrorKind {
    /// A short lower-case name, for logs and `Display`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Timeout => "timed out",
            Self::Conflict => "conflict",
            Self::Corrupt => "corrupt data",
            Self::Rejected => "rejected",
        }
    }

    /// Whether the same call may succeed later.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Unavailable | Self::Timeout)
    }
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A store failed; the operation did not happen.
///
/// Carries a [`kind`](Self::kind), a fixed description of what was being done
/// ([`what`](Self::what), never data), and optionally the backend's error as its
/// [`source`](std::error::Error::source). `Display` shows the kind and the description only:
/// a backend error may quote a row or a query, so it is reached through the source chain by
/// code that decides to log it, never printed by accident.
///
/// Equality compares the kind and the description; the source is not compared (a backend
/// error has no meaningful equality).
///
/// ```
/// use mcpsec_core::{StoreError, StoreErrorKind};
///
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "db down");
/// let error = StoreError::unavailable("refresh store").with_source(io);
/// assert_eq!(error.kind(), StoreErrorKind::Unavailable);
/// assert_eq!(error.to_string(), "store unavailable: refresh store");
/// assert!(std::error::Error::source(&error).is_some());
/// let copy = error.clone(); // stays Clone: the source is shared
/// assert_eq!(copy, error);
/// ```
#[derive(Clone)]
pub struct StoreError {
    kind: StoreErrorKind,
    what: &'static str,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// A failure of `kind` while doing `what` (a fixed description such as
    /// `"duplicate key id"`; never data from the request or the row).
    pub fn new(kind: StoreErrorKind, what: &'static str) -> Self {
        Self {
            kind,
            what,
            source: None,
        }
    }

    /// [`StoreErrorKind::Unavailable`].
    pub fn unavailable(what: &'static str) -> Self {
        Self::new(StoreErrorKind::Unavailable, what)
    }

    /// [`StoreErrorKind::Timeout`].
    pub fn timeout(what: &'static str) -> Self {
        Self::new(StoreErrorKind::Timeout, what)
    }

    /// [`StoreErrorKind::Conflict`].
    pub fn conflict(what: &'static str) -> Self {
        Self::new(StoreErrorKind::Conflict, what)
    }

    /// [`StoreErrorKind::Corrupt`].
    pub fn corrupt(what: &'static str) -> Self {
        Self::new(StoreErrorKind::Corrupt, what)
    }

    /// [`StoreErrorKind::Rejected`].
    pub fn rejected(what: &'static str) -> Self {
        Self::new(StoreErrorKind::Rejected, what)
    }

    /// Attaches the backend's error as the cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Attaches a cause that is already shared.
    #[must_use]
    pub fn with_shared_source(mut self, source: Arc<dyn std::error::Error + Send + Sync>) -> Self {
        self.source = Some(source);
        self
    }

    /// The [`StoreError`] inside a core [`Error`](crate::Error) from a store-like call (an
    /// [`AttemptCounter`](crate::AttemptCounter), a [`Sealer`](crate::Sealer)), or, for any
    /// other core error, an [`Unavailable`](StoreErrorKind::Unavailable) failure of `what`
    /// with that error as its source: the variant is never lost.
    pub fn from_core(what: &'static str, error: crate::Error) -> Self {
        match error {
            crate::Error::Store(inner) => inner,
            other => Self::unavailable(what).with_source(other),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The fixed description of what was being done.
    pub fn what(&self) -> &'static str {
        self.what
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The source's Debug may quote backend data; its presence is enough here.
        f.debug_struct("StoreError")
            .field("kind", &self.kind)
            .field("what", &self.what)
            .field("has_source", &self.source.is_some())
            .finish()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store {}: {}", self.kind, self.what)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.what == other.what
    }
}

impl Eq for StoreError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn keeps_its_cause_and_stays_clone() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "secret row 42");
        let error = StoreError::timeout("consume").with_source(io);
        let copy = error.clone();
        let cause = copy.source().unwrap().to_string();
        assert_eq!(cause, "secret row 42");
        assert!(!error.to_string().contains("42"), "Display stays fixed");
        assert!(!format!("{error:?}").contains("42"), "Debug stays fixed");
        assert!(error.kind().is_transient());
    }

    #[test]
    fn equality_ignores_the_source() {
        let a = StoreError::conflict("duplicate").with_source(std::fmt::Error);
        assert_eq!(a, StoreError::conflict("duplicate"));
        assert_ne!(a, StoreError::corrupt("duplicate"));
    }

    #[test]
    fn from_core_keeps_the_variant() {
        let inner = StoreError::timeout("counter");
        assert_eq!(
            StoreError::from_core("x", crate::Error::Store(inner.clone())),
            inner
        );
        let wrapped = StoreError::from_core("sealer", crate::Error::Open);
        assert_eq!(wrapped.kind(), StoreErrorKind::Unavailable);
        let source = wrapped.source().unwrap();
        assert_eq!(
            source.downcast_ref::<crate::Error>(),
            Some(&crate::Error::Open)
        );
    }
}
