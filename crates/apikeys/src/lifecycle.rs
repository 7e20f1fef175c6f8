//! Creating, listing, rotating, disabling and revoking keys.
//!
//! Who may do these things is the host's decision, made with
//! `mcpsec_access::authorize(principal, Action::UserManageTokens, &Resource::owned_by(record.owner, record.org))`.

use crate::format::{self, Env};
use crate::{ApiKeyRecord, ApiKeys, Error, KeyStatus};
use mcpsec_access::ScopeSet;
use mcpsec_core::{
    Actor, EventKind, KeyId, Label, OrgId, Outcome, ResourceId, SecretString, SecurityEvent, UserId,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What to create.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The owner.
    pub owner: UserId,
    /// The owner's organization.
    pub org: OrgId,
    /// Scopes, parsed strictly (`mcp:read org:read`); unknown scopes are an error.
    pub scopes: String,
    /// `live` or `test`.
    pub env: Env,
    /// The owner's name for the key (a label: letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// When it stops working, if ever.
    pub expires_at: Option<SystemTime>,
    /// Who is creating it.
    pub created_by: UserId,
}

/// A key as listed: never the key, only its hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySummary {
    /// The public id.
    pub id: KeyId,
    /// The name.
    pub name: Label,
    /// The last four characters.
    pub hint: String,
    /// Its environment.
    pub env: Env,
    /// Its scopes.
    pub scopes: ScopeSet,
    /// Created.
    pub created_at: SystemTime,
    /// Expires.
    pub expires_at: Option<SystemTime>,
    /// Last used (coarse).
    pub last_used_at: Option<SystemTime>,
    /// Status.
    pub status: KeyStatus,
}

impl ApiKeys {
    /// Creates a key. The plaintext is returned once, here, and never stored.
    ///
    /// In Argon2 mode the hash runs on the [`SlowHashPool`](crate::SlowHashPool); a full
    /// pool refuses with [`Error::Busy`] and nothing is stored.
    pub async fn create(&self, new: NewKey) -> Result<(SecretString, ApiKeyRecord), Error> {
        self.create_as(new, KeyStatus::Active).await
    }

    async fn create_as(
        &self,
        new: NewKey,
        status: KeyStatus,
    ) -> Result<(SecretString, ApiKeyRecord), Error> {
        let scopes = ScopeSet::parse_strict(&new.scopes).map_err(|_| Error::Invalid("scopes"))?;
        let name = Label::new(&new.name).map_err(|_| Error::Invalid("name"))?;
        let now = self.clock.now();
        let key = Arc::new(format::generate(new.env)?);
        let record = ApiKeyRecord {
            id: key.id().clone(),
            hash: self.new_hash(&key).await?,
            owner: new.owner,
            org: new.org,
            scopes,
            env: new.env,
            name,
            created_at: now,
            expires_at: new.expires_at,
            last_used_at: None,
            status,
            hint: key.hint(),
            created_by: new.created_by,
        };
        self.store
            .insert(&record)
            .await
            .map_err(|e| Error::Store(e.0))?;
        let by = Actor::User {
            user: record.created_by.clone(),
        };
        self.lifecycle_event(EventKind::AuthnTokenCreated, "create", &record, by, now)
            .await;
        Ok((SecretString::new(key.expose_secret().to_owned()), record))
    }

    /// The keys of `owner`, as summaries.
    pub async fn list(&self, owner: &UserId) -> Result<Vec<KeySummary>, Error> {
        let records = self
            .store
            .list_by_owner(owner)
            .await
            .map_err(|e| Error::Store(e.0))?;
        Ok(records
            .into_iter()
            .map(|r| KeySummary {
                id: r.id,
                name: r.name,
                hint: r.hint,
                env: r.env,
                scopes: r.scopes,
                created_at: r.created_at,
                expires_at: r.expires_at,
                last_used_at: r.last_used_at,
                status: r.status,
            })
            .collect())
    }

    /// Rotates `id`: a successor with the same owner, org, scopes, env, name and status,
    /// while the old key keeps working for `overlap` (then expires), so clients can switch
    /// without an outage.
    ///
    /// The successor of a disabled key is disabled (rotation is not a way around a
    /// disable); a revoked key cannot be rotated. A disable or revoke of the old key that
    /// lands while the successor is being made reaches the successor too.
    pub async fn rotate(
        &self,
        id: &KeyId,
        overlap: Duration,
        by: UserId,
    ) -> Result<(SecretString, ApiKeyRecord), Error> {
        let old = self.get_record(id).await?;
        if old.status == KeyStatus::Revoked {
            return Err(Error::Revoked);
        }
        let now = self.clock.now();
        let actor = Actor::User { user: by.clone() };
        let (key, mut successor) = self
            .create_as(
                NewKey {
                    owner: old.owner.clone(),
                    org: old.org.clone(),
                    scopes: old.scopes.to_string(),
                    env: old.env,
                    name: old.name.to_string(),
                    expires_at: old.expires_at,
                    created_by: by,
                },
                old.status,
            )
            .await?;
        match self.get_record(id).await.map(|r| r.status) {
            Ok(KeyStatus::Active) => {}
            Ok(KeyStatus::Disabled) if successor.status == KeyStatus::Disabled => {}
            Ok(KeyStatus::Disabled) => {
                self.set_status(&successor.id, KeyStatus::Disabled, actor)
                    .await?;
                successor.status = KeyStatus::Disabled;
            }
            Ok(KeyStatus::Revoked) | Err(Error::Unknown) => {
                self.set_status(&successor.id, KeyStatus::Revoked, actor)
                    .await?;
                return Err(Error::Revoked);
            }
            Err(error) => return Err(error),
        }
        let end = now.checked_add(overlap).unwrap_or(now);
        let expires = old.expires_at.map_or(end, |at| at.min(end));
        self.store
            .set_expiry(id, Some(expires))
            .await
            .map_err(|e| Error::Store(e.0))?;
        self.cache.forget(id);
        Ok((key, successor))
    }

    /// Disables `id` (reversible); `by` is who acted, for the audit trail. A revoked key
    /// stays revoked: [`Error::Revoked`].
    pub async fn disable(&self, id: &KeyId, by: Actor) -> Result<(), Error> {
        self.set_status(id, KeyStatus::Disabled, by).await
    }

    /// Enables a disabled key; `by` is who acted. A revoked key stays revoked:
    /// [`Error::Revoked`].
    pub async fn enable(&self, id: &KeyId, by: Actor) -> Result<(), Error> {
        self.set_status(id, KeyStatus::Active, by).await
    }

    /// Revokes `id` for good; `by` is who acted. Revoking a revoked key succeeds.
    pub async fn revoke(&self, id: &KeyId, by: Actor) -> Result<(), Error> {
        self.set_status(id, KeyStatus::Revoked, by).await
    }

    async fn get_record(&self, id: &KeyId) -> Result<ApiKeyRecord, Error> {
        self.store
            .get(id)
            .await
            .map_err(|e| Error::Store(e.0))?
            .ok_or(Error::Unknown)
    }

    async fn set_status(&self, id: &KeyId, status: KeyStatus, by: Actor) -> Result<(), Error> {
        let before = self
            .store
            .set_status(id, status)
            .await
            .map_err(|e| Error::Store(e.0))?
            .ok_or(Error::Unknown)?;
        self.cache.forget(id);
        // The store's answer is the status the change was applied to, so a revoke that
        // races an enable is seen here, not lost.
        if before == KeyStatus::Revoked && status != KeyStatus::Revoked {
            return Err(Error::Revoked);
        }
        let (kind, action) = match status {
            KeyStatus::Active => (EventKind::AuthnTokenCreated, "enable"),
            KeyStatus::Disabled => (EventKind::AuthnTokenRevoked, "disable"),
            KeyStatus::Revoked => (EventKind::AuthnTokenRevoked, "revoke"),
        };
        if let Some(record) = self.store.get(id).await.map_err(|e| Error::Store(e.0))? {
            self.lifecycle_event(kind, action, &record, by, self.clock.now())
                .await;
        }
        Ok(())
    }

    async fn lifecycle_event(
        &self,
        kind: EventKind,
        action: &str,
        record: &ApiKeyRecord,
        by: Actor,
        now: SystemTime,
    ) {
        let mut event = SecurityEvent::new(kind, Outcome::Success, now)
            .with_actor(by)
            .with_org(record.org.clone());
        if let (Ok(label), Ok(id)) = (Label::new("api_key"), ResourceId::new(record.id.as_str())) {
            event = event.with_resource(label, Some(id));
        }
        if let Ok(action) = Label::new(action) {
            event = event.with_action(action);
        }
        mcpsec_core::emit(&*self.events, event).await;
    }
}
