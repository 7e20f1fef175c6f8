//! Cache invalidation across a fleet: what one instance announces when it revokes a
//! credential or changes keys, so every instance flushes what it remembered about it.
//!
//! An [`Invalidation`] names what changed; a cache that can forget it implements
//! [`FlushOnInvalidation`]; an [`InvalidationBus`] carries announcements between
//! instances (Redis pub/sub in `mcpsec-store-redis`). On the wire an announcement is one
//! line of ASCII, at most [`MAX_INVALIDATION_LEN`] bytes, that starts with a version
//! ([`Invalidation::encode`], [`Invalidation::parse`]). A message that does not parse is
//! outside input gone wrong: a subscriber flushes [`Invalidation::Everything`] for it
//! (fail closed) rather than ignore it.

use crate::{KeyId, OrgId, StoreError, UserId};

/// The longest wire message [`Invalidation::parse`] reads, in bytes.
pub const MAX_INVALIDATION_LEN: usize = 256;

/// The first word of every wire message: the format and its version.
const VERSION: &str = "mcpsec-inv/1";

/// What changed, so that caches holding something verified against it forget it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Invalidation {
    /// An API key was revoked: its verified-key cache entries go.
    ApiKeyRevoked(KeyId),
    /// An API key was disabled: its verified-key cache entries go.
    ApiKeyDisabled(KeyId),
    /// A signing key was retired (no longer signs; still verifies until removed): token
    /// caches reload their keys.
    SigningKeyRetired(KeyId),
    /// A signing key was removed: verifiers stop accepting it and forget every token
    /// they verified.
    SigningKeyRemoved(KeyId),
    /// The JWK set changed in a way the announcer does not name: verifiers reload it.
    JwksChanged,
    /// A user's membership (role) in an organization changed: role caches forget it.
    MembershipChanged {
        /// The organization.
        org: OrgId,
        /// The member.
        user: UserId,
    },
    /// Forget everything (a subscriber that may have missed announcements, or received
    /// one it cannot read).
    Everything,
}

/// Why a wire message is not an [`Invalidation`]. Carries no input bytes.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidationParseError {
    /// Longer than [`MAX_INVALIDATION_LEN`].
    #[error("invalidation message longer than {MAX_INVALIDATION_LEN} bytes")]
    TooLong,
    /// Not ASCII text.
    #[error("invalidation message is not ASCII")]
    NotText,
    /// A version (or format) this build does not read.
    #[error("invalidation message of an unknown version")]
    Version,
    /// An announcement kind this build does not know.
    #[error("invalidation message of an unknown kind")]
    Kind,
    /// Missing, extra or invalid fields for its kind.
    #[error("invalidation message with bad fields")]
    Fields,
}

impl Invalidation {
    /// The wire message: `mcpsec-inv/1 <kind> [<id>...]`, ASCII, fields separated by one
    /// space (identifiers never contain one), at most [`MAX_INVALIDATION_LEN`] bytes.
    pub fn encode(&self) -> String {
        let (kind, fields): (&str, Vec<&str>) = match self {
            Self::ApiKeyRevoked(id) => ("api-key-revoked", vec![id.as_str()]),
            Self::ApiKeyDisabled(id) => ("api-key-disabled", vec![id.as_str()]),
            Self::SigningKeyRetired(kid) => ("signing-key-retired", vec![kid.as_str()]),
            Self::SigningKeyRemoved(kid) => ("signing-key-removed", vec![kid.as_str()]),
            Self::JwksChanged => ("jwks-changed", vec![]),
            Self::MembershipChanged { org, user } => {
                ("membership-changed", vec![org.as_str(), user.as_str()])
            }
            Self::Everything => ("everything", vec![]),
        };
        let mut out = format!("{VERSION} {kind}");
        for field in fields {
            out.push(' ');
            out.push_str(field);
        }
        out
    }

    /// Reads a wire message written by [`encode`](Self::encode). Never panics; anything
    /// else is an [`InvalidationParseError`].
    pub fn parse(bytes: &[u8]) -> Result<Self, InvalidationParseError> {
        if bytes.len() > MAX_INVALIDATION_LEN {
            return Err(InvalidationParseError::TooLong);
        }
        if !bytes.is_ascii() {
            return Err(InvalidationParseError::NotText);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| InvalidationParseError::NotText)?;
        let mut words = text.split(' ');
        if words.next() != Some(VERSION) {
            return Err(InvalidationParseError::Version);
        }
        let kind = words.next().ok_or(InvalidationParseError::Kind)?;
        let fields: Vec<&str> = words.collect();
        let key = |make: fn(KeyId) -> Self| match fields.as_slice() {
            [id] => KeyId::new(id)
                .map(make)
                .map_err(|_| InvalidationParseError::Fields),
            _ => Err(InvalidationParseError::Fields),
        };
        let none = |value: Self| {
            if fields.is_empty() {
                Ok(value)
            } else {
                Err(InvalidationParseError::Fields)
            }
        };
        match kind {
            "api-key-revoked" => key(Self::ApiKeyRevoked),
            "api-key-disabled" => key(Self::ApiKeyDisabled),
            "signing-key-retired" => key(Self::SigningKeyRetired),
            "signing-key-removed" => key(Self::SigningKeyRemoved),
            "jwks-changed" => none(Self::JwksChanged),
            "everything" => none(Self::Everything),
            "membership-changed" => match fields.as_slice() {
                [org, user] => Ok(Self::MembershipChanged {
                    org: OrgId::new(org).map_err(|_| InvalidationParseError::Fields)?,
                    user: UserId::new(user).map_err(|_| InvalidationParseError::Fields)?,
                }),
                _ => Err(InvalidationParseError::Fields),
            },
            _ => Err(InvalidationParseError::Kind),
        }
    }
}

/// A cache that forgets what an [`Invalidation`] names. Called from a subscriber task for
/// every announcement, so it must be quick and must not block: drop entries, bump a
/// generation, and leave slow work (a refetch) to the next request.
///
/// An implementation flushes at least what the announcement names and may flush more
/// (all of it, for a kind it has no finer answer to); it ignores kinds that do not concern
/// it. [`Invalidation::Everything`] empties the cache.
pub trait FlushOnInvalidation: Send + Sync + std::fmt::Debug {
    /// Forgets what `what` names.
    fn flush(&self, what: &Invalidation);
}

/// Announces an [`Invalidation`] to every instance of the fleet (this one included).
///
/// Announce after the change is committed in the shared store, so that an instance that
/// flushes and then re-reads sees the new state. Delivery is at most once: a subscriber
/// that loses its connection flushes everything when it is back, because it may have
/// missed announcements.
#[async_trait::async_trait]
pub trait InvalidationBus: Send + Sync + std::fmt::Debug {
    /// Sends `what`. An error means it may not have reached the other instances.
    async fn announce(&self, what: &Invalidation) -> Result<(), StoreError>;
}

/// A bus for one instance: flushes the registered caches directly. For a service that
/// runs as one process, and for tests.
#[derive(Debug, Default, Clone)]
pub struct LocalInvalidationBus {
    caches: Vec<std::sync::Arc<dyn FlushOnInvalidation>>,
}

impl LocalInvalidationBus {
    /// A bus that flushes `caches`.
    pub fn new(caches: Vec<std::sync::Arc<dyn FlushOnInvalidation>>) -> Self {
        Self { caches }
    }
}

#[async_trait::async_trait]
impl InvalidationBus for LocalInvalidationBus {
    async fn announce(&self, what: &Invalidation) -> Result<(), StoreError> {
        for cache in &self.caches {
            cache.flush(what);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._:|-]{1,64}".prop_filter("not credential-shaped", |s| {
            !s.starts_with("mcp_sk_") && !s.starts_with("eyJ")
        })
    }

    fn invalidation() -> impl Strategy<Value = Invalidation> {
        prop_oneof![
            id().prop_map(|s| Invalidation::ApiKeyRevoked(KeyId::new(s).unwrap())),
            id().prop_map(|s| Invalidation::ApiKeyDisabled(KeyId::new(s).unwrap())),
            id().prop_map(|s| Invalidation::SigningKeyRetired(KeyId::new(s).unwrap())),
            id().prop_map(|s| Invalidation::SigningKeyRemoved(KeyId::new(s).unwrap())),
            Just(Invalidation::JwksChanged),
            Just(Invalidation::Everything),
            (id(), id()).prop_map(|(o, u)| Invalidation::MembershipChanged {
                org: OrgId::new(o).unwrap(),
                user: UserId::new(u).unwrap(),
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trips_within_the_cap(what in invalidation()) {
            let wire = what.encode();
            prop_assert!(wire.len() <= MAX_INVALIDATION_LEN);
            prop_assert_eq!(Invalidation::parse(wire.as_bytes()), Ok(what));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(what) = Invalidation::parse(&bytes) {
                let wire = what.encode();
                prop_assert_eq!(wire.as_bytes(), &bytes[..]);
            }
        }

        #[test]
        fn mutated_messages_never_panic(what in invalidation(), at in any::<usize>(), byte in any::<u8>()) {
            let mut wire = what.encode().into_bytes();
            let at = at % wire.len();
            wire[at] = byte;
            let _ = Invalidation::parse(&wire);
        }
    }

    #[test]
    fn refusals_are_typed() {
        let parse = |s: &str| Invalidation::parse(s.as_bytes());
        assert_eq!(
            parse("mcpsec-inv/2 everything"),
            Err(InvalidationParseError::Version)
        );
        assert_eq!(
            parse("mcpsec-inv/1 reboot"),
            Err(InvalidationParseError::Kind)
        );
        assert_eq!(parse("mcpsec-inv/1"), Err(InvalidationParseError::Kind));
        assert_eq!(
            parse("mcpsec-inv/1 everything x"),
            Err(InvalidationParseError::Fields)
        );
        assert_eq!(
            parse("mcpsec-inv/1 api-key-revoked"),
            Err(InvalidationParseError::Fields)
        );
        assert_eq!(
            parse("mcpsec-inv/1 api-key-revoked  k"),
            Err(InvalidationParseError::Fields),
            "two spaces: an empty field"
        );
        assert_eq!(
            parse("mcpsec-inv/1 api-key-revoked mcp_sk_live_x"),
            Err(InvalidationParseError::Fields)
        );
        assert_eq!(
            Invalidation::parse(&[0xff]),
            Err(InvalidationParseError::NotText)
        );
        let long = format!(
            "mcpsec-inv/1 everything{}",
            " ".repeat(MAX_INVALIDATION_LEN)
        );
        assert_eq!(parse(&long), Err(InvalidationParseError::TooLong));
    }

    #[test]
    fn local_bus_flushes_its_caches() {
        #[derive(Debug, Default)]
        struct Seen(std::sync::Mutex<Vec<Invalidation>>);
        impl FlushOnInvalidation for Seen {
            fn flush(&self, what: &Invalidation) {
                self.0.lock().unwrap().push(what.clone());
            }
        }
        let seen = std::sync::Arc::new(Seen::default());
        let bus = LocalInvalidationBus::new(vec![seen.clone()]);
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(bus.announce(&Invalidation::JwksChanged))
            .unwrap();
        assert_eq!(*seen.0.lock().unwrap(), vec![Invalidation::JwksChanged]);
    }
}
