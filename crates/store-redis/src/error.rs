//! One mapping from `redis::RedisError` to the workspace's [`StoreError`] kinds.
//!
//! Every store in this crate returns its failures through [`store_error`], so a caller sees
//! the same kind for the same cause as on the SQL backends, and the redis error rides along
//! as the source (reached by code that decides to log it; `Display` of a [`StoreError`]
//! never quotes it).

use mcpsec_core::{StoreError, StoreErrorKind};
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// The [`StoreError`] for `error`, raised while doing `what` (a fixed description).
///
/// | cause | kind |
/// | --- | --- |
/// | I/O timeout (the connection's response timeout ran out) | [`Timeout`](StoreErrorKind::Timeout) |
/// | connection refused, reset or closed, other I/O, authentication failed, server loading (`LOADING`), read-only replica (`READONLY`), cluster or master down, `TRYAGAIN`, `MOVED`/`ASK` (no cluster client here) | [`Unavailable`](StoreErrorKind::Unavailable) |
/// | a reply of the wrong type or shape, a parse error, a script that raised an error (`ERR … script`), `WRONGTYPE`, `CROSSSLOT` | [`Corrupt`](StoreErrorKind::Corrupt) |
/// | no permission (`NOPERM`), a bad client configuration or URL, anything else | [`Rejected`](StoreErrorKind::Rejected) |
///
/// A timeout or a connection lost while a script was in flight leaves its outcome unknown
/// to the caller, as with SQL: every operation here either is safe to repeat or, repeated
/// after it did happen, fails closed (one more failure counted, a TOTP step refused as a
/// replay, a nonce block reserved twice and never used).
pub fn store_error(what: &'static str, error: RedisError) -> StoreError {
    StoreError::new(kind_of(&error), what).with_source(error)
}

/// The kind [`store_error`] gives `error`.
pub fn kind_of(error: &RedisError) -> StoreErrorKind {
    use StoreErrorKind::{Corrupt, Rejected, Timeout, Unavailable};
    if error.is_timeout() {
        return Timeout;
    }
    if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() {
        return Unavailable;
    }
    match error.kind() {
        ErrorKind::Io
        | ErrorKind::AuthenticationFailed
        | ErrorKind::ClusterConnectionNotFound
        | ErrorKind::MasterNameNotFoundBySentinel
        | ErrorKind::NoValidReplicasFoundBySentinel => Unavailable,
        ErrorKind::Server(server) => server_kind(server, error.code()),
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => Corrupt,
        ErrorKind::Extension => match error.code() {
            Some("WRONGTYPE") => Corrupt,
            Some("BUSY") | Some("NOREPLICAS") | Some("MISCONF") => Unavailable,
            _ => Rejected,
        },
        // InvalidClientConfig, Client, RESP3NotSupported, EmptySentinelList and kinds
        // added later: a request this store cannot carry out as configured.
        _ => Rejected,
    }
}

fn server_kind(server: ServerErrorKind, code: Option<&str>) -> StoreErrorKind {
    use StoreErrorKind::{Corrupt, Rejected, Unavailable};
    match server {
        ServerErrorKind::BusyLoading
        | ServerErrorKind::ReadOnly
        | ServerErrorKind::ClusterDown
        | ServerErrorKind::MasterDown
        | ServerErrorKind::TryAgain
        | ServerErrorKind::Moved
        | ServerErrorKind::Ask => Unavailable,
        ServerErrorKind::CrossSlot | ServerErrorKind::ExecAbort => Corrupt,
        // A script that raised an error (a bad stored value, a wrong key type) answers
        // `ERR`: our scripts only raise on data they cannot understand.
        ServerErrorKind::ResponseError => match code {
            Some("ERR") | None => Corrupt,
            _ => Rejected,
        },
        // NoScript is handled by `Script` (it falls back to EVAL); NoPerm, NotBusy, NoSub.
        _ => Rejected,
    }
}

/// A value a script returned that does not have the shape this crate wrote.
pub(crate) fn corrupt(what: &'static str) -> StoreError {
    StoreError::corrupt(what)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::error::Error as _;

    fn io(kind: std::io::ErrorKind) -> RedisError {
        RedisError::from(std::io::Error::new(kind, "test"))
    }

    #[test]
    fn connection_failures_are_unavailable() {
        for e in [
            io(std::io::ErrorKind::ConnectionRefused),
            io(std::io::ErrorKind::ConnectionReset),
            io(std::io::ErrorKind::BrokenPipe),
            io(std::io::ErrorKind::UnexpectedEof),
            RedisError::from((ErrorKind::Io, "closed")),
            RedisError::from((ErrorKind::Server(ServerErrorKind::BusyLoading), "loading")),
            RedisError::from((ErrorKind::Server(ServerErrorKind::ReadOnly), "replica")),
        ] {
            assert_eq!(kind_of(&e), StoreErrorKind::Unavailable, "{e}");
        }
    }

    #[test]
    fn timeouts_are_timeouts() {
        assert_eq!(
            kind_of(&io(std::io::ErrorKind::TimedOut)),
            StoreErrorKind::Timeout
        );
    }

    #[test]
    fn bad_replies_and_script_errors_are_corrupt() {
        for e in [
            RedisError::from((ErrorKind::UnexpectedReturnType, "not an int")),
            RedisError::from((ErrorKind::Parse, "garbage")),
            RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "script")),
            RedisError::from((ErrorKind::Server(ServerErrorKind::CrossSlot), "slots")),
        ] {
            assert_eq!(kind_of(&e), StoreErrorKind::Corrupt, "{e}");
        }
    }

    #[test]
    fn configuration_and_permission_errors_are_rejected() {
        for e in [
            RedisError::from((ErrorKind::InvalidClientConfig, "bad url")),
            RedisError::from((ErrorKind::Server(ServerErrorKind::NoPerm), "acl")),
        ] {
            assert_eq!(kind_of(&e), StoreErrorKind::Rejected, "{e}");
        }
    }

    #[test]
    fn the_redis_error_is_the_source_and_never_displayed() {
        let e = store_error("count a failure", io(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(e.kind(), StoreErrorKind::Unavailable);
        assert_eq!(e.to_string(), "store unavailable: count a failure");
        assert!(e.source().unwrap().downcast_ref::<RedisError>().is_some());
    }
}
