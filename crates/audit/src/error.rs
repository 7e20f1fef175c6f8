//! The one error type of mcpsec-audit.

use crate::verify::Finding;

/// Errors from mcpsec-audit. `Display` never contains event contents or key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the log (or a key, or a checkpoint mirror) failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A record line could not be parsed (bad JSON, unknown field, over the size cap).
    #[error("invalid record: {0}")]
    InvalidRecord(&'static str),
    /// An event was refused before it was chained (a time the log cannot represent).
    #[error("invalid event: {0}")]
    InvalidEvent(&'static str),
    /// A checkpoint key could not be generated, read or used.
    #[error("checkpoint key: {0}")]
    Key(&'static str),
    /// The sink was closed, or its writer failed earlier; the event was not recorded.
    #[error("audit sink unavailable: {0}")]
    Unavailable(&'static str),
    /// Another writer (a sink, `mcpsec audit append`, a prune) holds the log's lock.
    #[error("log in use by another writer")]
    InUse,
    /// A configuration value was refused.
    #[error("configuration: {0}")]
    Config(&'static str),
    /// Verification found a bad record.
    #[error("{0}")]
    Tampered(Finding),
    /// Verification found no bad record but had no checkpoint key, so it proved only that
    /// the file is self-consistent (anyone able to write it can rebuild a consistent
    /// chain). Verify with the public key, or opt in with
    /// [`VerifyOptions::unauthenticated`](crate::VerifyOptions::unauthenticated).
    #[error(
        "chain unauthenticated: no checkpoint key was given, so only the file's self-consistency was checked"
    )]
    Unauthenticated,
    /// A [`ChainStorage`](crate::ChainStorage) backend other than the file failed (a SQL
    /// table unreachable, a unique-key conflict on `(instance, seq)`): the kind says what
    /// to do, the backend's cause is the source.
    #[error(transparent)]
    Store(#[from] mcpsec_core::StoreError),
    /// An error from mcpsec-core (an identifier, the random generator, a sealer).
    #[error(transparent)]
    Core(#[from] mcpsec_core::Error),
}

impl Error {
    pub(crate) fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { context, source }
    }
}

impl From<Error> for mcpsec_core::Error {
    /// For the `EventSink` face: the caller learns the event was not recorded.
    fn from(error: Error) -> Self {
        match error {
            Error::Core(inner) => inner,
            Error::Store(store) => mcpsec_core::Error::Store(store),
            Error::InvalidEvent(why) => mcpsec_core::Error::InvalidArgument(why),
            Error::Unavailable(why) => mcpsec_core::Error::SinkUnavailable(why),
            _ => mcpsec_core::Error::SinkUnavailable("audit log write failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpsec_core::{StoreError, StoreErrorKind};

    #[test]
    fn a_storage_failure_keeps_its_kind_and_cause_through_the_event_sink_face() {
        let cause = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "db down");
        let error = Error::from(StoreError::unavailable("chain table").with_source(cause));
        match mcpsec_core::Error::from(error) {
            mcpsec_core::Error::Store(store) => {
                assert_eq!(store.kind(), StoreErrorKind::Unavailable);
                assert!(std::error::Error::source(&store).is_some());
            }
            other => panic!("{other:?}"),
        }
    }
}
