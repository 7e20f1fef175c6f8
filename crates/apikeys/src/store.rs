//! What is stored about a key, and where: the [`ApiKeyStore`] trait and its in-memory
//! backend.

use crate::format::Env;
use mcpsec_access::{Principal, ScopeSet};
use mcpsec_core::{KeyId, Label, OrgId, UserId};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// Whether a key may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Switched off by its owner or an admin; can be enabled again.
    Disabled,
    /// Revoked for good.
    Revoked,
}

/// The stored record of a key: everything but the key. `Debug` leaves out the stored hash
/// (under a leaked pepper it is what an offline guess is checked against).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// The public id (in the key itself).
    pub id: KeyId,
    /// The stored-hash string (see [`KeyHasher`](crate::KeyHasher)).
    pub hash: String,
    /// The owning user.
    pub owner: UserId,
    /// The owner's organization.
    pub org: OrgId,
    /// What the key may be used for (parsed strictly at creation).
    pub scopes: ScopeSet,
    /// Its environment.
    pub env: Env,
    /// The owner's name for it.
    pub name: Label,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it stops working, if ever.
    pub expires_at: Option<SystemTime>,
    /// When it was last used (coarse: written at most once per interval).
    pub last_used_at: Option<SystemTime>,
    /// Active, disabled or revoked.
    pub status: KeyStatus,
    /// The last four characters of the key, for recognising it in a list.
    pub hint: String,
    /// Who created it (the owner, or an admin acting for them).
    pub created_by: UserId,
}

impl std::fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("hash", &"[REDACTED]")
            .field("owner", &self.owner)
            .field("org", &self.org)
            .field("scopes", &self.scopes)
            .field("env", &self.env)
            .field("name", &self.name)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("last_used_at", &self.last_used_at)
            .field("status", &self.status)
            .field("hint", &self.hint)
            .field("created_by", &self.created_by)
            .finish()
    }
}

/// A store failure (the workspace's one store error). Carries no key material.
pub use mcpsec_core::StoreError;

/// The pre-authentication face of API key storage: what verification needs before any
/// principal exists. Every method reaches one row by its key id (public, but useless
/// without the secret), and none lists or scans, so a SQL backend can run these as a
/// narrow service role that may read a row by id and update only the hash, the last-use
/// time and, for a holder-proved leak, the status.
///
/// Backends must make [`replace_hash`](ApiKeyLookup::replace_hash) and
/// [`touch_last_used`](ApiKeyLookup::touch_last_used) conditional updates that are atomic
/// across the fleet (a `WHERE` clause in SQL, a script in Redis, a lock in memory); the
/// conformance suite in `mcpsec_apikeys::testkit` checks them.
#[async_trait::async_trait]
pub trait ApiKeyLookup: Send + Sync + std::fmt::Debug {
    /// The record with this id.
    async fn get(&self, id: &KeyId) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Replaces the hash only if it is still `expected` (so two concurrent upgrades of one
    /// key cannot undo each other); returns whether it did.
    async fn replace_hash(&self, id: &KeyId, expected: &str, new: &str)
    -> Result<bool, StoreError>;

    /// Records a use at `now` only if the last recorded use is older than `min_interval`
    /// (or absent); returns whether it wrote. Keeps the hot path from writing every time.
    async fn touch_last_used(
        &self,
        id: &KeyId,
        now: SystemTime,
        min_interval: Duration,
    ) -> Result<bool, StoreError>;

    /// Revokes `id` on the word of whoever holds its secret (the caller checked it, in
    /// constant time); returns the status it replaced (`None`: no such id). The one status
    /// change without a principal: a leaked key's finder is not its tenant.
    async fn revoke_by_holder(&self, id: &KeyId) -> Result<Option<KeyStatus>, StoreError>;
}

/// Storage for API key records: the [`ApiKeyLookup`] face, plus the tenant-scoped
/// operations a principal performs after authorization.
///
/// Each tenant-scoped method takes the acting [`Principal`] (from the `Authorized` proof),
/// so a SQL backend can run the statement as that principal under row-level security
/// (`SET LOCAL` the user, org and role, then let the policy bound the rows) in addition to
/// the library's own check. A backend never acts on a row of another organization than
/// the principal's: such rows read as absent, and inserting one is refused.
#[async_trait::async_trait]
pub trait ApiKeyStore: ApiKeyLookup {
    /// Stores a new record; refused if the id exists (Conflict) or the record is outside
    /// the principal's organization (Rejected).
    async fn insert(&self, tenant: &Principal, record: &ApiKeyRecord) -> Result<(), StoreError>;

    /// Every record of `owner` in the principal's organization.
    async fn list_by_owner(
        &self,
        tenant: &Principal,
        owner: &UserId,
    ) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Sets the status and returns the status it replaced (`None`: no such id in the
    /// principal's organization), in one atomic step, so the caller learns what its
    /// change was applied to. A revoked key stays revoked: setting any other status on it
    /// changes nothing and returns `Some(Revoked)`.
    async fn set_status(
        &self,
        tenant: &Principal,
        id: &KeyId,
        status: KeyStatus,
    ) -> Result<Option<KeyStatus>, StoreError>;

    /// Sets the expiry; returns whether the id exists in the principal's organization.
    async fn set_expiry(
        &self,
        tenant: &Principal,
        id: &KeyId,
        expires_at: Option<SystemTime>,
    ) -> Result<bool, StoreError>;
}

/// In-memory [`ApiKeyStore`]: one lock makes every operation atomic.
#[derive(Debug, Default)]
pub struct MemoryApiKeyStore {
    records: Mutex<HashMap<KeyId, ApiKeyRecord>>,
}

impl MemoryApiKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, ApiKeyRecord>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl ApiKeyLookup for MemoryApiKeyStore {
    async fn get(&self, id: &KeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self.lock().get(id).cloned())
    }

    async fn replace_hash(
        &self,
        id: &KeyId,
        expected: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        match self.lock().get_mut(id) {
            Some(r) if r.hash == expected => {
                r.hash = new.to_owned();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn touch_last_used(
        &self,
        id: &KeyId,
        now: SystemTime,
        min_interval: Duration,
    ) -> Result<bool, StoreError> {
        match self.lock().get_mut(id) {
            Some(r) => {
                let stale = r
                    .last_used_at
                    .is_none_or(|t| now.duration_since(t).is_ok_and(|d| d >= min_interval));
                if stale {
                    r.last_used_at = Some(now);
                }
                Ok(stale)
            }
            None => Ok(false),
        }
    }

    async fn revoke_by_holder(&self, id: &KeyId) -> Result<Option<KeyStatus>, StoreError> {
        Ok(self.lock().get_mut(id).map(|r| {
            let before = r.status;
            r.status = KeyStatus::Revoked;
            before
        }))
    }
}

#[async_trait::async_trait]
impl ApiKeyStore for MemoryApiKeyStore {
    async fn insert(&self, tenant: &Principal, record: &ApiKeyRecord) -> Result<(), StoreError> {
        if &record.org != tenant.org() {
            return Err(StoreError::rejected("the record is outside the tenant"));
        }
        let mut records = self.lock();
        if records.contains_key(&record.id) {
            return Err(StoreError::conflict("duplicate key id"));
        }
        records.insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn list_by_owner(
        &self,
        tenant: &Principal,
        owner: &UserId,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut out: Vec<_> = self
            .lock()
            .values()
            .filter(|r| &r.owner == owner && &r.org == tenant.org())
            .cloned()
            .collect();
        out.sort_by_key(|r| r.created_at);
        Ok(out)
    }

    async fn set_status(
        &self,
        tenant: &Principal,
        id: &KeyId,
        status: KeyStatus,
    ) -> Result<Option<KeyStatus>, StoreError> {
        Ok(self
            .lock()
            .get_mut(id)
            .filter(|r| &r.org == tenant.org())
            .map(|r| {
                let before = r.status;
                if before != KeyStatus::Revoked {
                    r.status = status;
                }
                before
            }))
    }

    async fn set_expiry(
        &self,
        tenant: &Principal,
        id: &KeyId,
        expires_at: Option<SystemTime>,
    ) -> Result<bool, StoreError> {
        match self.lock().get_mut(id).filter(|r| &r.org == tenant.org()) {
            Some(r) => {
                r.expires_at = expires_at;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
