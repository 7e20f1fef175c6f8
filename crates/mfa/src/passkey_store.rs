//! Storage for passkeys and for the state of ceremonies in progress (feature `passkeys`).
//!
//! Records are opaque bytes (webauthn-rs's JSON) so a SQL or Redis backend stores them
//! without depending on webauthn-rs; the service in `passkey.rs` builds and reads them.

use crate::{Error, StoreError};
use base64::Engine as _;
use mcpsec_core::{SecretBytes, UserId};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

/// Longest ceremony id accepted from a client.
const MAX_CEREMONY_ID: usize = 64;

/// Names one registration or authentication ceremony between its start and its finish:
/// 256 random bits, base64url. Given to the client; not a secret by itself (the
/// ceremony also needs the user's session and the authenticator's signature).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CeremonyId(String);

impl CeremonyId {
    /// A fresh id from the OS CSPRNG.
    pub fn generate() -> Result<Self, Error> {
        let bytes = SecretBytes::random(32).map_err(|_| Error::Random)?;
        Ok(Self(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.expose_secret()),
        ))
    }

    /// An id sent back by a client: 1 to 64 base64url characters.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let ok = !text.is_empty()
            && text.len() <= MAX_CEREMONY_ID
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(Error::CeremonyUnknown)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CeremonyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which ceremony a stored state belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyKind {
    /// Registering a new passkey.
    Registration,
    /// Authenticating with a registered passkey.
    Authentication,
}

/// A ceremony in progress: who started it, which kind, webauthn-rs's state (with the
/// challenge; kept server-side only) and when it stops being accepted.
#[derive(Debug, PartialEq, Eq)]
pub struct CeremonyRecord {
    /// The user who started it.
    pub user: UserId,
    /// Registration or authentication.
    pub kind: CeremonyKind,
    /// The serialised webauthn-rs state.
    pub state: SecretBytes,
    /// When it expires.
    pub expires_at: SystemTime,
}

/// A registered passkey: its credential id, the last signature counter seen, and
/// webauthn-rs's serialised `Passkey` (public key and flags; no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPasskey {
    /// The credential id chosen by the authenticator (unique across all users).
    pub credential_id: Vec<u8>,
    /// The signature counter (0 for authenticators that keep none).
    pub counter: u32,
    /// The serialised passkey.
    pub passkey: Vec<u8>,
    /// When it was registered.
    pub created_at: SystemTime,
}

/// Storage for passkeys and ceremony state.
///
/// Atomicity each backend must give (the conformance suite in `mcpsec_mfa::testkit`
/// checks it): [`take_ceremony`](PasskeyStore::take_ceremony) returns a record to exactly
/// one of any number of concurrent callers; [`add_credential`](PasskeyStore::add_credential)
/// refuses a credential id already registered to anyone; and
/// [`update_credential`](PasskeyStore::update_credential) is a compare-and-set on the
/// counter, so of concurrent updates with the same counter exactly one wins.
#[async_trait::async_trait]
pub trait PasskeyStore: Send + Sync + std::fmt::Debug {
    /// Stores a ceremony under `id`; the backend may drop records expired at `now`.
    async fn put_ceremony(
        &self,
        id: &CeremonyId,
        record: CeremonyRecord,
        now: SystemTime,
    ) -> Result<(), StoreError>;

    /// Removes and returns the ceremony `id`, atomically (single use).
    async fn take_ceremony(&self, id: &CeremonyId) -> Result<Option<CeremonyRecord>, StoreError>;

    /// Registers `passkey` for `user`; `false` (and no change) if its credential id is
    /// already registered, to this user or another.
    async fn add_credential(
        &self,
        user: &UserId,
        passkey: StoredPasskey,
    ) -> Result<bool, StoreError>;

    /// The user's passkeys.
    async fn credentials(&self, user: &UserId) -> Result<Vec<StoredPasskey>, StoreError>;

    /// Replaces the user's passkey with `updated.credential_id` if the stored counter is
    /// lower than `updated.counter`, or both are 0 (an authenticator without a counter).
    /// `false` (and no change) otherwise, or when there is no such passkey.
    async fn update_credential(
        &self,
        user: &UserId,
        updated: StoredPasskey,
    ) -> Result<bool, StoreError>;

    /// Removes the user's passkey `credential_id`; whether there was one.
    async fn remove_credential(
        &self,
        user: &UserId,
        credential_id: &[u8],
    ) -> Result<bool, StoreError>;
}

#[derive(Debug, Default)]
struct Inner {
    ceremonies: HashMap<CeremonyId, CeremonyRecord>,
    passkeys: HashMap<UserId, Vec<StoredPasskey>>,
}

/// In-memory [`PasskeyStore`].
#[derive(Debug, Default)]
pub struct MemoryPasskeyStore {
    inner: Mutex<Inner>,
}

impl MemoryPasskeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl PasskeyStore for MemoryPasskeyStore {
    async fn put_ceremony(
        &self,
        id: &CeremonyId,
        record: CeremonyRecord,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.ceremonies.retain(|_, r| r.expires_at > now);
        inner.ceremonies.insert(id.clone(), record);
        Ok(())
    }

    async fn take_ceremony(&self, id: &CeremonyId) -> Result<Option<CeremonyRecord>, StoreError> {
        Ok(self.lock().ceremonies.remove(id))
    }

    async fn add_credential(
        &self,
        user: &UserId,
        passkey: StoredPasskey,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let taken = inner
            .passkeys
            .values()
            .flatten()
            .any(|p| p.credential_id == passkey.credential_id);
        if taken {
            return Ok(false);
        }
        inner
            .passkeys
            .entry(user.clone())
            .or_default()
            .push(passkey);
        Ok(true)
    }

    async fn credentials(&self, user: &UserId) -> Result<Vec<StoredPasskey>, StoreError> {
        Ok(self.lock().passkeys.get(user).cloned().unwrap_or_default())
    }

    async fn update_credential(
        &self,
        user: &UserId,
        updated: StoredPasskey,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(stored) = inner.passkeys.get_mut(user).and_then(|list| {
            list.iter_mut()
                .find(|p| p.credential_id == updated.credential_id)
        }) else {
            return Ok(false);
        };
        let newer =
            stored.counter < updated.counter || (stored.counter == 0 && updated.counter == 0);
        if newer {
            *stored = updated;
        }
        Ok(newer)
    }

    async fn remove_credential(
        &self,
        user: &UserId,
        credential_id: &[u8],
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(list) = inner.passkeys.get_mut(user) else {
            return Ok(false);
        };
        let before = list.len();
        list.retain(|p| p.credential_id != credential_id);
        Ok(list.len() != before)
    }
}
