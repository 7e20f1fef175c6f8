//! The one error type of mcpsec-detect.

/// Errors from detection and alert delivery. `Display` never contains event contents,
/// webhook URLs or key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value was refused (a webhook URL, a signing key).
    #[error("configuration: {0}")]
    Config(&'static str),
    /// Writing an alert failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An alert sink or responder could not deliver (a webhook unreachable or refusing).
    #[error("alert delivery failed: {0}")]
    Unavailable(&'static str),
}

impl Error {
    pub(crate) fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { context, source }
    }
}
