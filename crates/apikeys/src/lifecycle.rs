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
    pub async fn create(&self, new: NewKey) -> Result<(SecretString, ApiKeyRecord), Error> {
        let scopes = ScopeSet::parse_strict(&new.scopes).map_err(|_| Error::Invalid("scopes"))?;
        let name = Label::new(&new.name).map_err(|_| Error::Invalid("name"))?;
        let now = self.clock.now();
        let key = format::generate(new.env)?;
        let record = ApiKeyRecord {
            id: key.id().clone(),
            hash: self.hasher.hash(&key)?,
            owner: new.owner,
            org: new.org,
            scopes,
            env: new.env,
            name,
            created_at: now,
            expires_at: new.expires_at,
            last_used_at: None,
            status: KeyStatus::Active,
            hint: key.hint(),
            created_by: new.created_by,
        };
        self.store
            .insert(&record)
            .await
            .map_err(|e| Error::Store(e.0))?;
        self.lifecycle_event(EventKind::AuthnTokenCreated, &record, now)
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

    /// Rotates `id`: a successor with the same owner, org, scopes, env and name, while the
    /// old key keeps working for `overlap` (then expires), so clients can switch without
    /// an outage.
    pub async fn rotate(
        &self,
        id: &KeyId,
        overlap: Duration,
        by: UserId,
    ) -> Result<(SecretString, ApiKeyRecord), Error> {
        let old = self
            .store
            .get(id)
            .await
            .map_err(|e| Error::Store(e.0))?
            .ok_or(Error::Unknown)?;
        if old.status == KeyStatus::Revoked {
            return Err(Error::Revoked);
        }
        let now = self.clock.now();
        let successor = self
            .create(NewKey {
                owner: old.owner.clone(),
                org: old.org.clone(),
                scopes: old.scopes.to_string(),
                env: old.env,
                name: old.name.to_string(),
                expires_at: old.expires_at,
                created_by: by,
            })
            .await?;
        let end = now.checked_add(overlap).unwrap_or(now);
        let expires = old.expires_at.map_or(end, |at| at.min(end));
        self.store
            .set_expiry(id, Some(expires))
            .await
            .map_err(|e| Error::Store(e.0))?;
        self.cache.forget(id);
        Ok(successor)
    }

    /// Disables `id` (reversible).
    pub async fn disable(&self, id: &KeyId) -> Result<(), Error> {
        self.set_status(id, KeyStatus::Disabled, EventKind::AuthnTokenRevoked)
            .await
    }

    /// Enables a disabled key (a revoked key stays revoked).
    pub async fn enable(&self, id: &KeyId) -> Result<(), Error> {
        self.set_status(id, KeyStatus::Active, EventKind::AuthnTokenCreated)
            .await
    }

    /// Revokes `id` for good.
    pub async fn revoke(&self, id: &KeyId) -> Result<(), Error> {
        self.set_status(id, KeyStatus::Revoked, EventKind::AuthnTokenRevoked)
            .await
    }

    async fn set_status(
        &self,
        id: &KeyId,
        status: KeyStatus,
        kind: EventKind,
    ) -> Result<(), Error> {
        if !self
            .store
            .set_status(id, status)
            .await
            .map_err(|e| Error::Store(e.0))?
        {
            return Err(Error::Unknown);
        }
        self.cache.forget(id);
        if let Some(record) = self.store.get(id).await.map_err(|e| Error::Store(e.0))? {
            self.lifecycle_event(kind, &record, self.clock.now()).await;
        }
        Ok(())
    }

    async fn lifecycle_event(&self, kind: EventKind, record: &ApiKeyRecord, now: SystemTime) {
        let mut event = SecurityEvent::new(kind, Outcome::Success, now)
            .with_actor(Actor::User {
                user: record.created_by.clone(),
            })
            .with_org(record.org.clone());
        if let (Ok(label), Ok(id)) = (Label::new("api_key"), ResourceId::new(record.id.as_str())) {
            event = event.with_resource(label, Some(id));
        }
        let _ = self.events.record(event).await;
    }
}
