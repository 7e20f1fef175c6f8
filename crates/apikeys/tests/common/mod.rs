//! Fixtures shared by the integration tests: a service on a manual clock, keys an attacker
//! could build, and wrappers that count (or hold) the calls a verification makes.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests; not every test file uses every helper"
)]

use mcpsec_access::{
    AuthMethod, AuthMethods, Authentication, Authorized, Authorizer, CredentialKind,
    MemoryMemberships, Principal, Resource, Role, ScopeSet, authorize_as, perm,
};
use mcpsec_apikeys::{
    ApiKeyLookup, ApiKeyRecord, ApiKeyStore, ApiKeys, ApiKeysBuilder, Argon2Params, AttemptCounter,
    AttemptState, Env, HashMode, KeyHasher, KeyStatus, MemoryApiKeyStore, MemoryAttemptCounter,
    NewKey, Pepper, Source, StoreError,
};
use mcpsec_core::{KeyId, ManualClock, MemorySink, OrgId, SecretBytes, SecretString, UserId};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub struct Fixture {
    pub keys: ApiKeys,
    pub store: Arc<MemoryApiKeyStore>,
    pub members: Arc<MemoryMemberships>,
    pub clock: ManualClock,
    pub events: MemorySink,
}

pub fn pepper(version: u32) -> Pepper {
    Pepper::new(version, SecretBytes::from_slice(&[version as u8; 32])).unwrap()
}

pub fn fixture_with(
    mode: HashMode,
    configure: impl FnOnce(ApiKeysBuilder) -> ApiKeysBuilder,
) -> Fixture {
    let store = Arc::new(MemoryApiKeyStore::new());
    let members = members();
    let clock = ManualClock::at_unix(1_767_225_600);
    let events = MemorySink::new();
    let builder = ApiKeys::builder(
        store.clone(),
        members.clone(),
        KeyHasher::new(pepper(1), vec![], mode).unwrap(),
        Arc::new(events.clone()),
    )
    .clock(Arc::new(clock.clone()));
    Fixture {
        keys: configure(builder).build().unwrap(),
        store,
        members,
        clock,
        events,
    }
}

pub fn fast_argon2() -> HashMode {
    HashMode::Argon2id(Argon2Params {
        m_cost: 256,
        t_cost: 1,
        p_cost: 1,
    })
}

/// Both hash modes, named for assertion messages.
pub fn both_modes() -> [(&'static str, HashMode); 2] {
    [("hmac", HashMode::HmacSha256), ("argon2id", fast_argon2())]
}

pub fn new_key(env: Env) -> NewKey {
    NewKey {
        owner: UserId::new("victim").unwrap(),
        org: OrgId::new("acme").unwrap(),
        scopes: "mcp:read user:read".into(),
        env,
        name: "laptop".into(),
        expires_at: None,
    }
}

/// Memberships with `victim` a developer of `acme` and `admin` its org admin.
pub fn members() -> Arc<MemoryMemberships> {
    let members = MemoryMemberships::new();
    let acme = OrgId::new("acme").unwrap();
    members.set(
        UserId::new("victim").unwrap(),
        acme.clone(),
        Role::Developer,
    );
    members.set(UserId::new("admin").unwrap(), acme, Role::OrgAdmin);
    Arc::new(members)
}

/// A verified caller, as a token verifier would build it.
pub fn principal(user: &str, org: &str, role: Role, scopes: &str) -> Principal {
    mcpsec_access::danger::principal(
        UserId::new(user).unwrap(),
        OrgId::new(org).unwrap(),
        role,
        ScopeSet::parse_strict(scopes).unwrap(),
        CredentialKind::AccessToken,
        Authentication {
            at: None,
            methods: AuthMethods::EMPTY,
        },
    )
}

/// `user.manage_tokens` for `user` of `acme`, holding `scopes`.
pub fn proof_for(user: &str, scopes: &str) -> Authorized<perm::UserManageTokens> {
    let p = principal(user, "acme", Role::Developer, scopes);
    authorize_as(&p, &Resource::own(&p)).unwrap()
}

/// `victim` managing their own keys, with the scopes `new_key` asks for.
pub fn victim_proof() -> Authorized<perm::UserManageTokens> {
    proof_for("victim", "user:token mcp:read user:read")
}

/// `admin`'s `org.manage_members` in `org`: an administrative action, so the admin
/// stepped up with TOTP at the decision time.
pub fn admin_proof(org: &str) -> Authorized<perm::OrgManageMembers> {
    let now = std::time::UNIX_EPOCH;
    let p = mcpsec_access::danger::principal(
        UserId::new("admin").unwrap(),
        OrgId::new(org).unwrap(),
        Role::OrgAdmin,
        ScopeSet::parse_strict("org:admin mcp:admin user:write").unwrap(),
        CredentialKind::AccessToken,
        Authentication {
            at: Some(now),
            methods: AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp]),
        },
    );
    Authorizer::default()
        .authorize_as(&p, &Resource::of_org(OrgId::new(org).unwrap()), now)
        .unwrap()
}

pub fn ip(n: u8) -> Source {
    Source::Ip(std::net::IpAddr::from([203, 0, 113, n]))
}

/// Recomputes the checksum the way the format does, to build keys an attacker could.
pub fn with_checksum(body: &str) -> String {
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = crc32fast::hash(body.as_bytes());
    let mut sum = [b'0'; 6];
    for slot in sum.iter_mut().rev() {
        *slot = B62[(n % 62) as usize];
        n /= 62;
    }
    format!("{body}{}", std::str::from_utf8(&sum).unwrap())
}

pub fn wrong_secret_for(key: &SecretString) -> String {
    let text = key.expose_secret();
    let body = &text[..text.len() - 6];
    let (head, secret) = body.split_at(body.len() - 43);
    with_checksum(&format!("{head}{}", "Z".repeat(secret.len())))
}

/// A well-formed key (valid checksum) whose id no record has.
pub fn unknown_id_like(key: &SecretString) -> String {
    let text = key.expose_secret();
    with_checksum(&format!(
        "mcp_sk_live_{}_{}",
        "Q".repeat(16),
        &text[29..text.len() - 6]
    ))
}

/// A log of calls, by method name, shared by the counting wrappers.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<String>>>);

impl CallLog {
    pub fn push(&self, call: String) {
        self.0.lock().unwrap().push(call);
    }

    /// The calls so far, with key ids replaced by `<id>` so two paths compare equal when
    /// they do the same work for different ids.
    pub fn take(&self, ids: &[&KeyId]) -> Vec<String> {
        let mut calls = std::mem::take(&mut *self.0.lock().unwrap());
        for call in &mut calls {
            for id in ids {
                *call = call.replace(id.as_str(), "<id>");
            }
        }
        calls
    }
}

/// An [`AttemptCounter`] that logs every call (method and subject) and delegates.
#[derive(Debug)]
pub struct CountingCounter {
    pub inner: MemoryAttemptCounter,
    pub log: CallLog,
}

#[async_trait::async_trait]
impl AttemptCounter for CountingCounter {
    async fn record_failure(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<AttemptState, mcpsec_core::Error> {
        self.log.push(format!("counter.record_failure {subject}"));
        self.inner.record_failure(subject, window, now).await
    }

    async fn release(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptState>, mcpsec_core::Error> {
        self.log.push(format!("counter.release {subject}"));
        self.inner.release(subject, window, now).await
    }

    async fn state(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptState>, mcpsec_core::Error> {
        self.log.push(format!("counter.state {subject}"));
        self.inner.state(subject, window, now).await
    }
}

/// An [`ApiKeyStore`] that logs every call (method and id) and delegates.
#[derive(Debug)]
pub struct CountingStore {
    pub inner: MemoryApiKeyStore,
    pub log: CallLog,
}

#[async_trait::async_trait]
impl ApiKeyLookup for CountingStore {
    async fn get(&self, id: &KeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.log.push(format!("store.get {id}"));
        self.inner.get(id).await
    }

    async fn replace_hash(
        &self,
        id: &KeyId,
        expected: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        self.log.push(format!("store.replace_hash {id}"));
        self.inner.replace_hash(id, expected, new).await
    }

    async fn touch_last_used(
        &self,
        id: &KeyId,
        now: SystemTime,
        min_interval: Duration,
    ) -> Result<bool, StoreError> {
        self.log.push(format!("store.touch_last_used {id}"));
        self.inner.touch_last_used(id, now, min_interval).await
    }

    async fn revoke_by_holder(&self, id: &KeyId) -> Result<Option<KeyStatus>, StoreError> {
        self.log.push(format!("store.revoke_by_holder {id}"));
        self.inner.revoke_by_holder(id).await
    }
}

#[async_trait::async_trait]
impl ApiKeyStore for CountingStore {
    async fn insert(&self, tenant: &Principal, record: &ApiKeyRecord) -> Result<(), StoreError> {
        self.log.push(format!("store.insert {}", record.id));
        self.inner.insert(tenant, record).await
    }

    async fn list_by_owner(
        &self,
        tenant: &Principal,
        owner: &UserId,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.log.push(format!("store.list_by_owner {owner}"));
        self.inner.list_by_owner(tenant, owner).await
    }

    async fn set_status(
        &self,
        tenant: &Principal,
        id: &KeyId,
        status: KeyStatus,
    ) -> Result<Option<KeyStatus>, StoreError> {
        self.log.push(format!("store.set_status {id}"));
        self.inner.set_status(tenant, id, status).await
    }

    async fn set_expiry(
        &self,
        tenant: &Principal,
        id: &KeyId,
        expires_at: Option<SystemTime>,
    ) -> Result<bool, StoreError> {
        self.log.push(format!("store.set_expiry {id}"));
        self.inner.set_expiry(tenant, id, expires_at).await
    }
}
