//! Storage for passkeys and for the state of ceremonies in progress (feature `passkeys`).
//!
//! Records are opaque bytes (webauthn-rs's JSON) so a SQL or Redis backend stores them
//! without depending on webauthn-rs; the service in `passkey.rs` builds and reads them.

use crate::{Error, StoreError};
use base64::Engine as _;
use mcpsec_access::Principal;
use mcpsec_core::{SecretBytes, UserId};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

/// Longest ceremony id accepted from a client.
const MAX_CEREMONY_ID: usize = 64;
/// Most expired ceremonies [`MemoryPasskeyStore`] drops per `put_ceremony`, so one call
/// never walks the whole table.
const PRUNE_BATCH: usize = 64;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// How many ceremonies a store keeps open: per user (the oldest is dropped to make room,
/// so a user who starts many ceremonies only loses their own old ones) and in total (a new
/// one is refused when the store is full of live ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CeremonyLimits {
    /// Open ceremonies per user (default 8).
    ///
    /// The only limit in the trait: a per-user count is one conditional statement on the
    /// user's rows (or one Redis script on the user's key), where a count across all
    /// users is not. A backend bounds its total size its own way (the memory backend:
    /// [`MemoryPasskeyStore::with_max_ceremonies`]; SQL: expiry and pruning).
    pub per_user: usize,
}

impl Default for CeremonyLimits {
    fn default() -> Self {
        Self { per_user: 8 }
    }
}

/// What [`PasskeyStore::put_ceremony`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CeremonyStored {
    /// Stored (possibly after dropping the user's oldest ceremony).
    Stored,
    /// Refused: the backend is at its own capacity (the memory backend's
    /// [`MemoryPasskeyStore::with_max_ceremonies`]); nothing was dropped.
    Full,
}

/// What [`PasskeyStore::add_credential`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialAdded {
    /// Registered.
    Added,
    /// Refused, no change: the credential id is already registered (to anyone).
    DuplicateId,
    /// Refused, no change: the user already has the maximum number of passkeys.
    TooMany,
}

/// Storage for passkeys and ceremony state.
///
/// Atomicity each backend must give (the conformance suite in `mcpsec_mfa::testkit`
/// checks it): [`take_ceremony`](PasskeyStore::take_ceremony) returns a record to exactly
/// one of any number of concurrent callers, and only to a caller naming its user and kind;
/// [`put_ceremony`](PasskeyStore::put_ceremony) enforces [`CeremonyLimits`];
/// [`add_credential`](PasskeyStore::add_credential) refuses a credential id already
/// registered to anyone and enforces the per-user maximum in the same step, so of
/// concurrent registrations exactly the ones that fit win; and
/// [`update_credential`](PasskeyStore::update_credential) is a compare-and-set on the
/// counter, so of concurrent updates with the same counter exactly one wins.
#[async_trait::async_trait]
pub trait PasskeyStore: Send + Sync + std::fmt::Debug {
    /// Stores a ceremony under `id` within `limits`: when the user already has
    /// `limits.per_user` open ceremonies the oldest is dropped, in the same atomic step
    /// (of concurrent starts by one user, the user never ends with more than
    /// `per_user`). A backend at its own capacity refuses ([`CeremonyStored::Full`],
    /// dropping nothing). The backend may drop records expired at `now` (a bounded amount
    /// of work per call).
    async fn put_ceremony(
        &self,
        id: &CeremonyId,
        record: CeremonyRecord,
        now: SystemTime,
        limits: CeremonyLimits,
    ) -> Result<CeremonyStored, StoreError>;

    /// Removes and returns the ceremony `id`, atomically (single use), if it belongs to
    /// `user` and is of `kind`; otherwise returns `None` and leaves it in place, so a
    /// finish by the wrong user cannot burn another user's ceremony.
    async fn take_ceremony(
        &self,
        id: &CeremonyId,
        user: &UserId,
        kind: CeremonyKind,
    ) -> Result<Option<CeremonyRecord>, StoreError>;

    /// Registers `passkey` for `tenant`'s subject unless its credential id is already registered (to
    /// this user or another) or the user already has `max` passkeys; checked and stored
    /// atomically.
    ///
    /// Tenant face: `tenant` is the user registering their own passkey; a SQL backend runs
    /// it as that principal under row-level security.
    async fn add_credential(
        &self,
        tenant: &Principal,
        passkey: StoredPasskey,
        max: usize,
    ) -> Result<CredentialAdded, StoreError>;

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

    /// Removes `tenant`'s subject's passkey `credential_id`; whether there was one.
    ///
    /// Tenant face, as [`add_credential`](PasskeyStore::add_credential).
    async fn remove_credential(
        &self,
        tenant: &Principal,
        credential_id: &[u8],
    ) -> Result<bool, StoreError>;
}

/// A stored ceremony and its place in the indexes.
#[derive(Debug)]
struct Open {
    record: CeremonyRecord,
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    ceremonies: HashMap<CeremonyId, Open>,
    /// Expiry order, for bounded pruning.
    by_expiry: BTreeMap<(SystemTime, u64), CeremonyId>,
    /// Each user's open ceremonies, oldest first (at most `per_user`).
    by_user: HashMap<UserId, VecDeque<CeremonyId>>,
    seq: u64,
    passkeys: HashMap<UserId, Vec<StoredPasskey>>,
    /// Which user holds each credential id (unique across users).
    owners: HashMap<Vec<u8>, UserId>,
}

impl Inner {
    /// Removes ceremony `id` from the table and both indexes.
    fn remove_ceremony(&mut self, id: &CeremonyId) -> Option<CeremonyRecord> {
        let open = self.ceremonies.remove(id)?;
        self.by_expiry.remove(&(open.record.expires_at, open.seq));
        if let Some(list) = self.by_user.get_mut(&open.record.user) {
            list.retain(|c| c != id);
            if list.is_empty() {
                self.by_user.remove(&open.record.user);
            }
        }
        Some(open.record)
    }

    /// Drops up to [`PRUNE_BATCH`] ceremonies expired at `now`, earliest first.
    fn prune(&mut self, now: SystemTime) {
        for _ in 0..PRUNE_BATCH {
            let expired = match self.by_expiry.first_key_value() {
                Some(((expires_at, _), id)) if *expires_at <= now => id.clone(),
                _ => break,
            };
            self.remove_ceremony(&expired);
        }
    }
}

/// In-memory [`PasskeyStore`]. Ceremonies are indexed by expiry and by user, so storing
/// one costs O(log n) and never walks the whole table. Holds at most 100 000 open
/// ceremonies (see [`with_max_ceremonies`](Self::with_max_ceremonies)), so a flood of
/// starts by many users cannot exhaust memory.
#[derive(Debug)]
pub struct MemoryPasskeyStore {
    inner: Mutex<Inner>,
    max_ceremonies: usize,
}

impl Default for MemoryPasskeyStore {
    fn default() -> Self {
        Self::with_max_ceremonies(100_000)
    }
}

impl MemoryPasskeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store holding at most `max` live ceremonies (at least 1): past it, a new
    /// ceremony is refused ([`CeremonyStored::Full`]) until expired ones make room.
    pub fn with_max_ceremonies(max: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_ceremonies: max.max(1),
        }
    }

    /// How many ceremonies are held (live or expired but not yet pruned).
    pub fn open_ceremonies(&self) -> usize {
        self.lock().ceremonies.len()
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
        limits: CeremonyLimits,
    ) -> Result<CeremonyStored, StoreError> {
        let mut inner = self.lock();
        inner.prune(now);
        // A colliding id (2^-256) replaces the old record rather than corrupting indexes.
        inner.remove_ceremony(id);
        let held = inner.by_user.get(&record.user).map_or(0, VecDeque::len);
        if held >= limits.per_user.max(1) {
            let oldest = inner
                .by_user
                .get(&record.user)
                .and_then(|list| list.front().cloned());
            if let Some(oldest) = oldest {
                inner.remove_ceremony(&oldest);
            }
        } else if inner.ceremonies.len() >= self.max_ceremonies {
            return Ok(CeremonyStored::Full);
        }
        inner.seq = inner.seq.wrapping_add(1);
        let seq = inner.seq;
        inner.by_expiry.insert((record.expires_at, seq), id.clone());
        inner
            .by_user
            .entry(record.user.clone())
            .or_default()
            .push_back(id.clone());
        inner.ceremonies.insert(id.clone(), Open { record, seq });
        Ok(CeremonyStored::Stored)
    }

    async fn take_ceremony(
        &self,
        id: &CeremonyId,
        user: &UserId,
        kind: CeremonyKind,
    ) -> Result<Option<CeremonyRecord>, StoreError> {
        let mut inner = self.lock();
        let matches = inner
            .ceremonies
            .get(id)
            .is_some_and(|open| &open.record.user == user && open.record.kind == kind);
        Ok(if matches {
            inner.remove_ceremony(id)
        } else {
            None
        })
    }

    async fn add_credential(
        &self,
        tenant: &Principal,
        passkey: StoredPasskey,
        max: usize,
    ) -> Result<CredentialAdded, StoreError> {
        let user = tenant.subject();
        let mut inner = self.lock();
        if inner.owners.contains_key(&passkey.credential_id) {
            return Ok(CredentialAdded::DuplicateId);
        }
        if inner.passkeys.get(user).map_or(0, Vec::len) >= max {
            return Ok(CredentialAdded::TooMany);
        }
        inner
            .owners
            .insert(passkey.credential_id.clone(), user.clone());
        inner
            .passkeys
            .entry(user.clone())
            .or_default()
            .push(passkey);
        Ok(CredentialAdded::Added)
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
        tenant: &Principal,
        credential_id: &[u8],
    ) -> Result<bool, StoreError> {
        let user = tenant.subject();
        let mut inner = self.lock();
        let Some(list) = inner.passkeys.get_mut(user) else {
            return Ok(false);
        };
        let before = list.len();
        list.retain(|p| p.credential_id != credential_id);
        let removed = list.len() != before;
        if list.is_empty() {
            inner.passkeys.remove(user);
        }
        if removed {
            inner.owners.remove(credential_id);
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpsec_core::SecretBytes;
    use std::time::{Duration, UNIX_EPOCH};

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_767_225_600 + s)
    }

    fn ceremony(user: &str, expires: u64) -> CeremonyRecord {
        CeremonyRecord {
            user: UserId::new(user).unwrap(),
            kind: CeremonyKind::Authentication,
            state: SecretBytes::from_slice(b"{}"),
            expires_at: t(expires),
        }
    }

    /// The memory backend's own bound: full refuses without dropping anything; an expired
    /// ceremony makes room.
    #[tokio::test]
    async fn memory_store_at_capacity_refuses_until_expiry_makes_room() {
        let store = MemoryPasskeyStore::with_max_ceremonies(2);
        let limits = CeremonyLimits::default();
        let (a, b, c) = (
            CeremonyId::generate().unwrap(),
            CeremonyId::generate().unwrap(),
            CeremonyId::generate().unwrap(),
        );
        for (id, user, expires) in [(&a, "u1", 100), (&b, "u2", 300)] {
            assert_eq!(
                store
                    .put_ceremony(id, ceremony(user, expires), t(0), limits)
                    .await
                    .unwrap(),
                CeremonyStored::Stored
            );
        }
        assert_eq!(
            store
                .put_ceremony(&c, ceremony("u3", 300), t(0), limits)
                .await
                .unwrap(),
            CeremonyStored::Full
        );
        assert_eq!(store.open_ceremonies(), 2, "a refused put drops nothing");
        assert_eq!(
            store
                .put_ceremony(&c, ceremony("u3", 400), t(100), limits)
                .await
                .unwrap(),
            CeremonyStored::Stored,
            "an expired ceremony makes room"
        );
    }
}
