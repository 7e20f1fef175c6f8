//! Typed identifiers.
//!
//! Each identifier is its own type, so a `UserId` cannot be passed where an `OrgId` is
//! expected. They are also the only strings a [`SecurityEvent`](crate::SecurityEvent) can
//! hold, so their rules double as a guard against secrets reaching logs: at most
//! [`MAX_ID_LEN`] bytes of `[A-Za-z0-9._:|-]`, and never something shaped like an mcpsec
//! secret (an `mcp_sk_` API key) or a JWT (`eyJ…`). The guard is a backstop, not a licence:
//! identifiers are never to be built from secret material.
//!
//! Identifiers are reference-counted, so cloning one into a proof value or an event is a
//! counter increment, not an allocation.

use crate::Error;
use crate::random::random_from_alphabet;
use std::sync::Arc;

/// Longest identifier accepted, in bytes. UUIDs (36), Auth0 ids (~30), ULIDs (26) fit.
pub const MAX_ID_LEN: usize = 64;

const GENERATED_LEN: usize = 22; // 22 base62 characters ≈ 131 bits
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn validate(kind: &'static str, value: &str) -> Result<(), Error> {
    let reject = |reason| Err(Error::InvalidIdentifier { kind, reason });
    if value.is_empty() {
        return reject("empty");
    }
    if value.len() > MAX_ID_LEN {
        return reject("longer than 64 bytes");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'|' | b'-'))
    {
        return reject("only ASCII letters, digits and . _ : | - are allowed");
    }
    if value.starts_with("mcp_sk_") || value.starts_with("eyJ") {
        return reject("looks like a credential, not an identifier");
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps `value`: 1 to [`MAX_ID_LEN`] bytes of `[A-Za-z0-9._:|-]`,
            /// not shaped like a credential (`mcp_sk_…`, `eyJ…`).
            pub fn new(value: impl AsRef<str>) -> Result<Self, Error> {
                let value = value.as_ref();
                validate($kind, value)?;
                Ok(Self(Arc::from(value)))
            }

            /// A fresh random identifier (22 base62 characters, about 131 bits) from the
            /// OS CSPRNG, for hosts that let mcpsec name things.
            pub fn generate() -> Result<Self, Error> {
                let bytes = random_from_alphabet(GENERATED_LEN, BASE62)?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| Error::InvalidArgument("generated identifier"))?;
                Ok(Self(Arc::from(text)))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(value: String) -> Result<Self, Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

identifier!(
    /// A user (the `sub` of a token, the owner of an API key).
    UserId, "user id"
);
identifier!(
    /// An organization (tenant).
    OrgId, "org id"
);
identifier!(
    /// The public identifier of a key: an API key's id, a signing key's `kid`, a data key's
    /// id. Never the key itself.
    KeyId, "key id"
);
identifier!(
    /// A login session.
    SessionId, "session id"
);
identifier!(
    /// A token's public identifier (`jti`, a refresh-token family id). Never the token.
    TokenId, "token id"
);
identifier!(
    /// A request, for correlating log lines and events.
    RequestId, "request id"
);
identifier!(
    /// A resource the host owns (an MCP service configuration, a usage log).
    ResourceId, "resource id"
);
identifier!(
    /// A non-human caller (another service, a scheduled job).
    ServiceId, "service id"
);
identifier!(
    /// A short name from a fixed vocabulary: an action (`mcp.use`), a tool name, a
    /// resource kind, a data category. Same rules as identifiers.
    Label, "label"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_common_id_shapes() {
        for ok in [
            "42",
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "auth0|5f7c8ec7c33c6c004bbafe82",
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "mcp.use",
            "org:acme",
        ] {
            UserId::new(ok).unwrap();
        }
    }

    #[test]
    fn rejects_values_that_could_carry_secrets_or_break_logs() {
        for bad in [
            "",
            "has space",
            "new\nline",
            "quote\"",
            "a@example.com",
            "mcp_sk_live_abc",
            "eyJhbGciOiJSUzI1NiJ9",
            &"x".repeat(65),
        ] {
            let err = UserId::new(bad).unwrap_err();
            assert!(matches!(
                err,
                Error::InvalidIdentifier {
                    kind: "user id",
                    ..
                }
            ));
            assert!(!err.to_string().contains(bad) || bad.is_empty());
        }
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        let id: OrgId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"acme\"");
        assert!(serde_json::from_str::<OrgId>("\"a b\"").is_err());
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = RequestId::generate().unwrap();
        let b = RequestId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 22);
        RequestId::new(a.as_str()).unwrap();
    }

    proptest! {
        #[test]
        fn new_never_panics_and_round_trips(s in ".{0,80}") {
            if let Ok(id) = UserId::new(&s) {
                prop_assert_eq!(id.as_str(), s.as_str());
                prop_assert!(s.len() <= MAX_ID_LEN);
            }
        }
    }
}
