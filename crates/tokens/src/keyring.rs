//! The signing keyring: which key signs now, which are published ahead of use, and which
//! still verify tokens they signed.
//!
//! States, in order: **next** (published in the JWKS, not signing yet, so verifiers'
//! caches learn it before the first token), **current** (signing), **retired** (still
//! published until every token it signed has expired), then removed: by
//! [`prune`](SigningKeyring::prune) on schedule, or at once by
//! [`remove`](SigningKeyring::remove) when a key leaked.
//!
//! Instances that share a keyring keep its metadata in a
//! [`SigningKeyStore`](crate::SigningKeyStore) ([`SigningKeyring::save`],
//! [`SigningKeyring::load`]); private keys stay with a
//! [`SigningKeyProvider`](crate::SigningKeyProvider).

use crate::jwk::{JwkSet, VerifyingKey};
use crate::verify::MAX_LEEWAY;
use crate::{Error, SigningKey};
use mcpsec_core::{EventKind, Label, Outcome, ReasonCode, ResourceId, SecurityEvent};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not yet signing.
    Next,
    /// Signing.
    Current,
    /// Published for verification until `until` plus [`MAX_LEEWAY`], then removed by
    /// [`SigningKeyring::prune`].
    Retired {
        /// When the last token it signed has expired.
        until: SystemTime,
    },
}

#[derive(Debug)]
struct Entry {
    key: Arc<SigningKey>,
    state: KeyState,
}

/// Keys by state. Exactly one current key; at most one next key.
#[derive(Debug)]
pub struct SigningKeyring {
    entries: Vec<Entry>,
}

impl SigningKeyring {
    /// A keyring whose current key is `current`.
    pub fn new(current: SigningKey) -> Self {
        Self {
            entries: vec![Entry {
                key: Arc::new(current),
                state: KeyState::Current,
            }],
        }
    }

    /// Publishes `next` ahead of use. Refused if its kid is already in the ring or a next
    /// key is already published.
    pub fn add_next(&mut self, next: SigningKey) -> Result<(), Error> {
        if self.entries.iter().any(|e| e.key.kid() == next.kid()) {
            return Err(Error::Key(crate::KeyError::Keyring(
                "kid already in the keyring",
            )));
        }
        if self.entries.iter().any(|e| e.state == KeyState::Next) {
            return Err(Error::Key(crate::KeyError::Keyring(
                "a next key is already published",
            )));
        }
        self.entries.push(Entry {
            key: Arc::new(next),
            state: KeyState::Next,
        });
        Ok(())
    }

    /// One rotation: the next key becomes current, the current key is retired until
    /// `now + token_lifetime` (every token it signed has expired by then), and
    /// `new_next` is published as the next key. Refused when no next key was published,
    /// because verifiers must see a key before it signs.
    pub fn rotate(
        &mut self,
        now: SystemTime,
        token_lifetime: Duration,
        new_next: SigningKey,
    ) -> Result<(), Error> {
        if self.entries.iter().any(|e| e.key.kid() == new_next.kid()) {
            return Err(Error::Key(crate::KeyError::Keyring(
                "kid already in the keyring",
            )));
        }
        if !self.entries.iter().any(|e| e.state == KeyState::Next) {
            return Err(Error::Key(crate::KeyError::Keyring(
                "no next key published: add_next first",
            )));
        }
        let until = now.checked_add(token_lifetime).unwrap_or(now);
        for entry in &mut self.entries {
            entry.state = match entry.state {
                KeyState::Current => KeyState::Retired { until },
                KeyState::Next => KeyState::Current,
                retired => retired,
            };
        }
        self.entries.push(Entry {
            key: Arc::new(new_next),
            state: KeyState::Next,
        });
        Ok(())
    }

    /// Removes retired keys whose tokens every verifier refuses at `now` — past their
    /// `exp` plus [`MAX_LEEWAY`], the largest clock-skew allowance a verifier accepts —
    /// and returns their kids. Pruning at `exp` alone would make a verifier with leeway
    /// refuse, as an unknown key, a token it still counts as valid.
    pub fn prune(&mut self, now: SystemTime) -> Vec<mcpsec_core::KeyId> {
        let mut removed = Vec::new();
        self.entries.retain(|e| match e.state {
            KeyState::Retired { until }
                if until.checked_add(MAX_LEEWAY).is_some_and(|end| end <= now) =>
            {
                removed.push(e.key.kid().clone());
                false
            }
            _ => true,
        });
        removed
    }

    /// Emergency removal of a key that leaked: it leaves the published JWKS at once,
    /// whatever its state says, and tokens it signed stop verifying as soon as each
    /// verifier takes the new set ([`TokenVerifier::set_keys`](crate::TokenVerifier::set_keys),
    /// or the next JWKS refresh for a remote verifier); a verifier's cache never answers for
    /// a key it no longer has. The current key cannot be removed: publish a next key and
    /// [`rotate`](SigningKeyring::rotate) first, then remove the retired one
    /// (docs/runbooks/signing-key-rotation.md).
    pub fn remove(&mut self, kid: &mcpsec_core::KeyId) -> Result<(), Error> {
        let index = self
            .entries
            .iter()
            .position(|e| e.key.kid() == kid)
            .ok_or(Error::Key(crate::KeyError::Keyring("no key with this kid")))?;
        if self
            .entries
            .get(index)
            .is_some_and(|e| e.state == KeyState::Current)
        {
            return Err(Error::Key(crate::KeyError::Keyring(
                "the current key signs: rotate before removing it",
            )));
        }
        self.entries.remove(index);
        Ok(())
    }

    /// The key that signs now.
    pub fn current(&self) -> Result<Arc<SigningKey>, Error> {
        self.entries
            .iter()
            .find(|e| e.state == KeyState::Current)
            .map(|e| Arc::clone(&e.key))
            .ok_or(Error::Key(crate::KeyError::Keyring("no current key")))
    }

    /// Every key with its state.
    pub fn states(&self) -> Vec<(mcpsec_core::KeyId, KeyState)> {
        self.entries
            .iter()
            .map(|e| (e.key.kid().clone(), e.state))
            .collect()
    }

    /// The JWKS to publish: next, current and retired keys (public halves only).
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.entries.iter().map(|e| e.key.public_jwk()).collect(),
        }
    }

    /// A `sys_crypto_key_rotated` event naming the key that signs now, to record after
    /// [`rotate`](SigningKeyring::rotate) (critical: sinks make it durable).
    pub fn rotation_event(&self, time: SystemTime) -> Result<SecurityEvent, Error> {
        let current = self.current()?;
        let mut event = SecurityEvent::new(EventKind::SysCryptoKeyRotated, Outcome::Success, time)
            .with_reason(ReasonCode::Rotation);
        if let (Ok(kind), Ok(id)) = (
            Label::new("signing_key"),
            ResourceId::new(current.kid().as_str()),
        ) {
            event = event.with_resource(kind, Some(id));
        }
        Ok(event)
    }

    /// Every key with its state, for the metadata store.
    pub(crate) fn keys(&self) -> impl Iterator<Item = (&SigningKey, KeyState)> {
        self.entries.iter().map(|e| (&*e.key, e.state))
    }

    /// A keyring from stored entries, holding the invariants [`SigningKeyring::new`],
    /// [`add_next`](SigningKeyring::add_next) and [`rotate`](SigningKeyring::rotate) keep:
    /// exactly one current key, at most one next key, no kid twice.
    pub(crate) fn from_entries(entries: Vec<(Arc<SigningKey>, KeyState)>) -> Result<Self, Error> {
        let count = |wanted: KeyState| entries.iter().filter(|(_, s)| *s == wanted).count();
        if count(KeyState::Current) != 1 {
            return Err(Error::Key(crate::KeyError::Keyring(
                "a stored keyring needs exactly one current key",
            )));
        }
        if count(KeyState::Next) > 1 {
            return Err(Error::Key(crate::KeyError::Keyring(
                "a stored keyring has more than one next key",
            )));
        }
        for (index, (key, _)) in entries.iter().enumerate() {
            if entries
                .iter()
                .skip(index.saturating_add(1))
                .any(|(other, _)| other.kid() == key.kid())
            {
                return Err(Error::Key(crate::KeyError::Keyring(
                    "a stored keyring lists a kid twice",
                )));
            }
        }
        Ok(Self {
            entries: entries
                .into_iter()
                .map(|(key, state)| Entry { key, state })
                .collect(),
        })
    }

    /// The verifying keys for a verifier in the same process.
    pub fn verifying_keys(&self) -> Result<Vec<VerifyingKey>, Error> {
        self.jwks().verifying_keys()
    }
}
