//! Creating, listing, rotating, disabling and revoking keys.
//!
//! Each call takes the proof of the action that allows it: an
//! `Authorized<perm::UserManageTokens>` for one's own keys, or an org admin's
//! `Authorized<perm::OrgManageMembers>` for a member's (revoking a departed member's keys).
//! The proof names who acted, for the audit trail. The one call without a proof is
//! [`ApiKeys::revoke_leaked`], where holding the key is the proof.

use crate::format::{self, Env};
use crate::{ApiKeyRecord, ApiKeys, Error, KeyStatus};
use mcpsec_access::{Authorized, ManagesCredentials, Principal, ScopeSet};
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
    /// Creates a key for `new.owner` under `proof`. The plaintext is returned once, here,
    /// and never stored.
    ///
    /// Refused with [`Error::NotAllowed`] when the proof does not reach the owner, and with
    /// [`Error::ScopesExceedCreator`] when the key would grant a scope the proof's
    /// principal does not hold (through the hierarchy): a credential can only mint
    /// narrower ones. The proof's subject is recorded as `created_by`.
    ///
    /// In Argon2 mode the hash runs on the [`SlowHashPool`](crate::SlowHashPool); a full
    /// pool refuses with [`Error::Busy`] and nothing is stored.
    pub async fn create<P: ManagesCredentials>(
        &self,
        proof: &Authorized<P>,
        new: NewKey,
    ) -> Result<(SecretString, ApiKeyRecord), Error> {
        allowed(proof, &new.owner, &new.org)?;
        let scopes = ScopeSet::parse_strict(&new.scopes).map_err(|_| Error::Invalid("scopes"))?;
        if !proof.grants(scopes) {
            return Err(Error::ScopesExceedCreator);
        }
        self.create_as(proof.principal(), new, scopes, KeyStatus::Active)
            .await
    }

    async fn create_as(
        &self,
        tenant: &Principal,
        new: NewKey,
        scopes: ScopeSet,
        status: KeyStatus,
    ) -> Result<(SecretString, ApiKeyRecord), Error> {
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
            created_by: tenant.subject().clone(),
        };
        self.store
            .insert(tenant, &record)
            .await
            .map_err(Error::Store)?;
        let by = Actor::User {
            user: record.created_by.clone(),
        };
        self.lifecycle_event(EventKind::AuthnTokenCreated, "create", &record, by, now)
            .await;
        Ok((SecretString::new(key.expose_secret().to_owned()), record))
    }

    /// The keys of `owner` in the proof's organization, as summaries; refused with
    /// [`Error::NotAllowed`] when the proof does not reach `owner`.
    pub async fn list<P: ManagesCredentials>(
        &self,
        proof: &Authorized<P>,
        owner: &UserId,
    ) -> Result<Vec<KeySummary>, Error> {
        allowed(proof, owner, proof.org())?;
        let records = self
            .store
            .list_by_owner(proof.principal(), owner)
            .await
            .map_err(Error::Store)?;
        Ok(records
            .into_iter()
            .filter(|r| &r.org == proof.org())
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
    /// without an outage. The proof must reach the key's owner ([`Error::NotAllowed`]); the
    /// successor keeps the old key's scopes, so rotation never widens a key.
    ///
    /// The successor of a disabled key is disabled (rotation is not a way around a
    /// disable); a revoked key cannot be rotated. A disable or revoke of the old key that
    /// lands while the successor is being made reaches the successor too.
    pub async fn rotate<P: ManagesCredentials>(
        &self,
        proof: &Authorized<P>,
        id: &KeyId,
        overlap: Duration,
    ) -> Result<(SecretString, ApiKeyRecord), Error> {
        let old = self.managed_record(proof, id).await?;
        if old.status == KeyStatus::Revoked {
            return Err(Error::Revoked);
        }
        let now = self.clock.now();
        let actor = proof.actor();
        let (key, mut successor) = self
            .create_as(
                proof.principal(),
                NewKey {
                    owner: old.owner.clone(),
                    org: old.org.clone(),
                    scopes: old.scopes.to_string(),
                    env: old.env,
                    name: old.name.to_string(),
                    expires_at: old.expires_at,
                },
                old.scopes,
                old.status,
            )
            .await?;
        match self.get_record(id).await.map(|r| r.status) {
            Ok(KeyStatus::Active) => {}
            Ok(KeyStatus::Disabled) if successor.status == KeyStatus::Disabled => {}
            Ok(KeyStatus::Disabled) => {
                self.set_status(
                    Some(proof.principal()),
                    &successor.id,
                    KeyStatus::Disabled,
                    actor,
                )
                .await?;
                successor.status = KeyStatus::Disabled;
            }
            Ok(KeyStatus::Revoked) | Err(Error::Unknown) => {
                self.set_status(
                    Some(proof.principal()),
                    &successor.id,
                    KeyStatus::Revoked,
                    actor,
                )
                .await?;
                return Err(Error::Revoked);
            }
            Err(error) => return Err(error),
        }
        let end = now.checked_add(overlap).unwrap_or(now);
        let expires = old.expires_at.map_or(end, |at| at.min(end));
        self.store
            .set_expiry(proof.principal(), id, Some(expires))
            .await
            .map_err(Error::Store)?;
        self.cache.forget(id);
        Ok((key, successor))
    }

    /// Disables `id` (reversible) under `proof`, which also names who acted for the audit
    /// trail. A revoked key stays revoked: [`Error::Revoked`]. A key the proof does not
    /// reach is [`Error::NotAllowed`] and is left as it was.
    pub async fn disable<P: ManagesCredentials>(
        &self,
        proof: &Authorized<P>,
        id: &KeyId,
    ) -> Result<(), Error> {
        self.managed_record(proof, id).await?;
        self.set_status(
            Some(proof.principal()),
            id,
            KeyStatus::Disabled,
            proof.actor(),
        )
        .await
    }

    /// Enables a disabled key under `proof`. A revoked key stays revoked:
    /// [`Error::Revoked`].
    pub async fn enable<P: ManagesCredentials>(
        &self,
        proof: &Authorized<P>,
        id: &KeyId,
    ) -> Result<(), Error> {
        self.managed_record(proof, id).await?;
        self.set_status(
            Some(proof.principal()),
            id,
            KeyStatus::Active,
            proof.actor(),
        )
        .await
    }

    /// Revokes `id` for good under `proof`. Revoking a revoked key succeeds.
    pub async fn revoke<P: ManagesCredentials>(
        &self,
        proof: &Authorized<P>,
        id: &KeyId,
    ) -> Result<(), Error> {
        self.managed_record(proof, id).await?;
        self.set_status(
            Some(proof.principal()),
            id,
            KeyStatus::Revoked,
            proof.actor(),
        )
        .await
    }

    /// Revokes the key `presented` for good, on the word of whoever found it (a secret
    /// scanner, a support engineer handed a pasted key): holding the key is the proof, so
    /// no principal is needed. `by` is who reported it, for the audit trail.
    ///
    /// The secret is checked in constant time, with a dummy comparison for unknown ids, so
    /// the call does not say which ids exist; a wrong secret is [`Error::SecretMismatch`]
    /// and changes nothing.
    pub async fn revoke_leaked(&self, presented: &str, by: Actor) -> Result<(), Error> {
        let parsed = Arc::new(format::parse(presented)?);
        let record = self.store.get(parsed.id()).await.map_err(Error::Store)?;
        let Some(record) = record else {
            self.dummy_hash(&parsed).await?;
            return Err(Error::Unknown);
        };
        if !self.check_hash(&parsed, &record.hash).await?.matched {
            return Err(Error::SecretMismatch);
        }
        self.set_status(None, &record.id, KeyStatus::Revoked, by)
            .await
    }

    /// The record of `id` if `proof` reaches its owner. An unknown id and another
    /// organization's key both answer [`Error::Unknown`], so a proof cannot probe which
    /// ids exist elsewhere.
    async fn managed_record<P: ManagesCredentials>(
        &self,
        proof: &Authorized<P>,
        id: &KeyId,
    ) -> Result<ApiKeyRecord, Error> {
        let record = self.get_record(id).await?;
        if &record.org != proof.org() {
            return Err(Error::Unknown);
        }
        allowed(proof, &record.owner, &record.org)?;
        Ok(record)
    }

    async fn get_record(&self, id: &KeyId) -> Result<ApiKeyRecord, Error> {
        self.store
            .get(id)
            .await
            .map_err(Error::Store)?
            .ok_or(Error::Unknown)
    }

    /// Applies `status` as `tenant` (the tenant face), or, with no principal, revokes on
    /// the word of the key's holder (the lookup face; `revoke_leaked` checked the secret).
    async fn set_status(
        &self,
        tenant: Option<&Principal>,
        id: &KeyId,
        status: KeyStatus,
        by: Actor,
    ) -> Result<(), Error> {
        let applied = match tenant {
            Some(tenant) => self.store.set_status(tenant, id, status).await,
            None if status == KeyStatus::Revoked => self.store.revoke_by_holder(id).await,
            None => return Err(Error::NotAllowed),
        };
        let before = applied.map_err(Error::Store)?.ok_or(Error::Unknown)?;
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
        if let Some(record) = self.store.get(id).await.map_err(Error::Store)? {
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

fn allowed<P: ManagesCredentials>(
    proof: &Authorized<P>,
    owner: &UserId,
    org: &OrgId,
) -> Result<(), Error> {
    if proof.may_manage(owner, org) {
        Ok(())
    } else {
        Err(Error::NotAllowed)
    }
}
