//! The one error type of mcpsec-access (parsing; decisions return a [`Denial`](crate::Denial)).

/// Errors from parsing scopes, roles, actions and tool names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The scope string is longer than the cap.
    #[error("scope string is {len} bytes; at most {max} are accepted")]
    ScopeTooLong {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The scope string breaks the RFC 6749 grammar.
    #[error("invalid scope syntax: {0}")]
    InvalidScopeSyntax(&'static str),
    /// A scope that is not one of the nine (strict parsing only). Carries the name, cut
    /// to 40 printable characters, so configuration mistakes can be fixed.
    #[error("unknown scope {0:?}")]
    UnknownScope(String),
    /// A role name that is not `org_admin`, `developer` or `viewer`.
    #[error("unknown role (expected org_admin, developer or viewer)")]
    UnknownRole,
    /// An action name that is not in the canonical list.
    #[error("unknown action (see `mcpsec access matrix` for the list)")]
    UnknownAction,
    /// A tool name outside the MCP rules (1 to 128 of `A-Za-z0-9_.-`).
    #[error("invalid tool name: 1 to 128 ASCII letters, digits, '_', '-' or '.'")]
    InvalidToolName,
    /// An identifier was rejected by mcpsec-core.
    #[error(transparent)]
    Core(#[from] mcpsec_core::Error),
}
