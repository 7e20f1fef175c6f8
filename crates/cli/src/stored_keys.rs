//! `mcpsec apikey create|list|revoke`: API keys kept in the database (mcpsec-store-sql).
//!
//! `create` goes through [`ApiKeys`] like a service would, so the same rules hold: the
//! plaintext is returned once, only its peppered hash is stored, scopes parse strictly.
//! The operator holds the database's credentials, which already reach every row; the CLI
//! states that with an operator principal — an org admin of the key's organization named
//! [`OPERATOR`], made through `mcpsec_access::danger` — and authorizes the creation as
//! `org.manage_members` without step-up (there is no interactive session to step up). The
//! principal holds exactly the scopes of the key it creates plus `org:admin`, so the
//! library's "a credential only mints narrower ones" check passes and nothing else widens.
//! The key is then stored as the pool's own role, outside row-level security, since the
//! operator principal is in no organization's `memberships` (see `OperatorInsert`).
//!
//! Listing and revoking act as the operator, not as a tenant: on PostgreSQL the tenant
//! face of the store runs under row-level security, whose policies let no one but a key's
//! owner see or change it. `list` reads the public columns itself ([`Database::list_keys`]);
//! `revoke` uses the store's lookup face. Neither needs the pepper.

use crate::db::{Database, DatabaseUrl, org_id, runtime, user_id};
use crate::tokens::CliError;
use mcpsec_access::Principal;
use mcpsec_access::{
    Action, AuthMethods, Authentication, Authorized, Authorizer, CredentialKind, Resource, Role,
    Scope, ScopeSet, StepUpPolicy, perm,
};
use mcpsec_apikeys::{
    ApiKeyLookup, ApiKeyRecord, ApiKeyStore, ApiKeys, Env, HashMode, KeyHasher, KeyStatus, NewKey,
    Pepper, StoreError,
};
use mcpsec_core::{Clock, KeyId, NullSink, OrgId, SecretString, SystemClock, UserId};
use mcpsec_store_sql::SqlApiKeyStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The environment variable naming the pepper file when `--pepper-file` is not given.
pub const PEPPER_FILE_VAR: &str = "MCPSEC_APIKEY_PEPPER_FILE";
/// The subject of the operator principal: recorded as `created_by` of keys made here.
pub const OPERATOR: &str = "mcpsec-cli";

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

fn api_error(what: &str, e: &mcpsec_apikeys::Error) -> CliError {
    match e {
        mcpsec_apikeys::Error::Store(store) => crate::db::store_failure(store),
        other => usage(format!("{what}: {other}")),
    }
}

/// The pepper file: `--pepper-file`, else the file named by [`PEPPER_FILE_VAR`]; neither
/// is an error saying how to give one.
pub fn pepper_path(flag: Option<PathBuf>) -> Result<PathBuf, CliError> {
    if let Some(path) = flag {
        return Ok(path);
    }
    match std::env::var_os(PEPPER_FILE_VAR) {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Err(usage(format!(
            "no pepper: give --pepper-file FILE or set {PEPPER_FILE_VAR} (make one with `mcpsec apikey new-pepper --out FILE`)"
        ))),
    }
}

/// An org admin of `org` holding `scopes` and `org:admin`, allowed to manage the org's
/// members' keys. See the module docs for why the CLI may say so.
fn operator_proof(
    org: &OrgId,
    scopes: ScopeSet,
    now: SystemTime,
) -> Result<Authorized<perm::OrgManageMembers>, CliError> {
    let subject = UserId::new(OPERATOR).map_err(|e| usage(e.to_string()))?;
    // The operator's word, not a verified credential: it holds the database credentials.
    let principal = mcpsec_access::danger::principal(
        subject,
        org.clone(),
        Role::OrgAdmin,
        scopes.with(Scope::OrgAdmin),
        CredentialKind::Session,
        Authentication {
            at: None,
            methods: AuthMethods::EMPTY,
        },
    );
    let policy = StepUpPolicy::new().require(Action::OrgManageMembers, None);
    Authorizer::new(policy)
        .authorize_as::<perm::OrgManageMembers>(&principal, &Resource::of_org(org.clone()), now)
        .map_err(|e| usage(format!("operator not allowed: {e}")))
}

fn service(db: &Database, hasher: KeyHasher) -> Result<ApiKeys, CliError> {
    let store = Arc::new(OperatorInsert {
        db: db.clone(),
        store: db.api_keys(),
    });
    // No event sink is configured for the CLI: operators' actions are theirs to log.
    ApiKeys::builder(store, db.memberships(), hasher, NullSink)
        .build()
        .map_err(|e| api_error("cannot set up API keys", &e))
}

/// What `apikey create` is asked for. `Debug` prints the database URL without its
/// password.
#[derive(Clone)]
pub struct CreateRequest {
    /// `--database-url`.
    pub database_url: String,
    /// `--owner`.
    pub owner: String,
    /// `--org`.
    pub org: String,
    /// `--scopes`.
    pub scopes: ScopeSet,
    /// `--name`.
    pub name: String,
    /// `--env`.
    pub env: Env,
    /// `--expires`: lifetime from now.
    pub expires: Option<Duration>,
    /// The pepper file (see [`pepper_path`]).
    pub pepper_file: PathBuf,
    /// `--pepper-version`.
    pub pepper_version: u32,
}

impl std::fmt::Debug for CreateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateRequest")
            .field("database_url", &crate::db::redact_url(&self.database_url))
            .field("owner", &self.owner)
            .field("org", &self.org)
            .field("scopes", &self.scopes)
            .field("name", &self.name)
            .field("env", &self.env)
            .field("expires", &self.expires)
            .field("pepper_file", &self.pepper_file)
            .field("pepper_version", &self.pepper_version)
            .finish()
    }
}

/// The store `create` goes through: the database's own, except that a new key is stored
/// as the pool's role ([`SqlApiKeyStore::insert_as_owner`]), outside row-level security.
///
/// Why not the tenant face: on PostgreSQL its policies let a principal insert a key only
/// for itself, or as an org admin per `memberships` for a member, and the operator
/// principal ([`OPERATOR`]) is in no organization's `memberships`. Acting as the owner
/// instead would fail for an owner whose role may not mint keys (a viewer) and would record
/// the owner as `created_by`. The CLI is the operator's bootstrap tool: it runs as the
/// role that owns the schema, which reaches every row anyway, and has already checked the
/// owner's membership and authorized the creation above; the store's insert keeps the
/// organization check.
#[derive(Debug)]
struct OperatorInsert {
    db: Database,
    store: Arc<dyn ApiKeyStore>,
}

#[async_trait::async_trait]
impl ApiKeyLookup for OperatorInsert {
    async fn get(&self, id: &KeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.store.get(id).await
    }

    async fn replace_hash(
        &self,
        id: &KeyId,
        expected: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        self.store.replace_hash(id, expected, new).await
    }

    async fn touch_last_used(
        &self,
        id: &KeyId,
        now: SystemTime,
        min_interval: Duration,
    ) -> Result<bool, StoreError> {
        self.store.touch_last_used(id, now, min_interval).await
    }

    async fn revoke_by_holder(&self, id: &KeyId) -> Result<Option<KeyStatus>, StoreError> {
        self.store.revoke_by_holder(id).await
    }
}

#[async_trait::async_trait]
impl ApiKeyStore for OperatorInsert {
    async fn insert(&self, tenant: &Principal, record: &ApiKeyRecord) -> Result<(), StoreError> {
        if &record.org != tenant.org() {
            return Err(StoreError::rejected("the record is outside the tenant"));
        }
        match &self.db {
            Database::Sqlite(pool) => {
                SqlApiKeyStore::new(pool.clone())
                    .insert_as_owner(record)
                    .await
            }
            Database::Postgres(pool) => {
                SqlApiKeyStore::new(pool.clone())
                    .insert_as_owner(record)
                    .await
            }
        }
    }

    async fn list_by_owner(
        &self,
        tenant: &Principal,
        owner: &UserId,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.store.list_by_owner(tenant, owner).await
    }

    async fn set_status(
        &self,
        tenant: &Principal,
        id: &KeyId,
        status: KeyStatus,
    ) -> Result<Option<KeyStatus>, StoreError> {
        self.store.set_status(tenant, id, status).await
    }

    async fn set_expiry(
        &self,
        tenant: &Principal,
        id: &KeyId,
        expires_at: Option<SystemTime>,
    ) -> Result<bool, StoreError> {
        self.store.set_expiry(tenant, id, expires_at).await
    }
}

/// `apikey create`: a key for a member of the organization, hashed under the pepper and
/// stored; returns the key (shown once) and its record. The owner must be a member of the
/// organization (checked first; a removal that lands after it leaves a key that never
/// verifies, since verification reads the membership every time).
pub fn create(request: &CreateRequest) -> Result<(SecretString, ApiKeyRecord), CliError> {
    let pepper = read_pepper(&request.pepper_file, request.pepper_version)?;
    let url = DatabaseUrl::parse(&request.database_url)?;
    let owner = user_id("--owner", &request.owner)?;
    let org = org_id("--org", &request.org)?;
    let hasher =
        KeyHasher::new(pepper, vec![], HashMode::HmacSha256).map_err(|e| usage(e.to_string()))?;
    let now = SystemClock.now();
    let expires_at = request
        .expires
        .map(|d| {
            now.checked_add(d)
                .ok_or_else(|| usage("--expires: too far in the future"))
        })
        .transpose()?;
    runtime()?.block_on(async {
        let db = Database::open(&url, false).await?;
        let member = db
            .memberships()
            .role(&owner, &org)
            .await
            .map_err(|e| crate::db::store_failure(&e))?;
        if member.is_none() {
            return Err(usage(format!(
                "user {owner} is not a member of organization {org}; add them with `mcpsec user add --org {org} --role ROLE {owner}`"
            )));
        }
        let keys = service(&db, hasher)?;
        let proof = operator_proof(&org, request.scopes, now)?;
        keys.create(
            &proof,
            NewKey {
                owner,
                org,
                scopes: request.scopes.to_string(),
                env: request.env,
                name: request.name.clone(),
                expires_at,
            },
        )
        .await
        .map_err(|e| api_error("cannot create the key", &e))
    })
}

/// The pepper file, read with the `apikey hash` rules (size cap, base64, at least 32
/// bytes); errors name the file, never its contents.
fn read_pepper(path: &Path, version: u32) -> Result<Pepper, CliError> {
    crate::apikeys::read_pepper(path, version)
}

/// What `create --json` prints: the key once, and its public parts.
#[derive(serde::Serialize)]
struct CreatedJson<'a> {
    key: &'a str,
    id: &'a str,
    env: &'a str,
    hint: &'a str,
    owner: &'a str,
    org: &'a str,
    name: &'a str,
    scopes: String,
    expires_at: Option<String>,
}

/// Writes the new key: alone on one line, or as one JSON object with its public parts.
pub fn write_created(
    key: &SecretString,
    record: &ApiKeyRecord,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let io = |e: std::io::Error| usage(format!("cannot write the key: {e}"));
    if !json {
        return writeln!(out, "{}", key.expose_secret()).map_err(io);
    }
    let created = CreatedJson {
        key: key.expose_secret(),
        id: record.id.as_str(),
        env: record.env.as_str(),
        hint: &record.hint,
        owner: record.owner.as_str(),
        org: record.org.as_str(),
        name: record.name.as_str(),
        scopes: record.scopes.to_string(),
        expires_at: record.expires_at.map(rfc3339),
    };
    serde_json::to_writer(&mut *out, &created)
        .map_err(|e| usage(format!("cannot write the key: {e}")))?;
    writeln!(out).map_err(io)
}

/// A listed key: public parts only (never the key, never its hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListedKey {
    /// The public id.
    pub id: String,
    /// The organization.
    pub org: String,
    /// The name.
    pub name: String,
    /// The last four characters of the key.
    pub hint: String,
    /// `live` or `test`.
    pub env: String,
    /// Space-separated scopes.
    pub scopes: String,
    /// `active`, `disabled`, `revoked`, or `expired` (an active key past its expiry).
    pub status: String,
    /// RFC 3339, UTC, seconds.
    pub created_at: String,
    /// RFC 3339, or null when it never expires.
    pub expires_at: Option<String>,
    /// RFC 3339 (coarse), or null when never used.
    pub last_used_at: Option<String>,
}

/// RFC 3339 in UTC, whole seconds.
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `apikey list`: the keys of `owner`, in `org` or in every organization, by
/// organization and then oldest first. An owner with no keys who was never added is an
/// error (a mistyped name); one who was is an empty list.
pub fn list(
    database_url: &str,
    owner: &str,
    org: Option<&str>,
) -> Result<Vec<ListedKey>, CliError> {
    let url = DatabaseUrl::parse(database_url)?;
    let owner = user_id("--owner", owner)?;
    let org = org.map(|o| org_id("--org", o)).transpose()?;
    let now = SystemClock.now();
    runtime()?.block_on(async {
        let db = Database::open(&url, false).await?;
        let keys = db.list_keys(&owner, org.as_ref(), now).await?;
        if keys.is_empty() && !db.user_exists(&owner).await? {
            return Err(usage(format!("unknown user {owner}")));
        }
        Ok(keys)
    })
}

/// Writes the listing: a header and one line per key, or one JSON array.
pub fn write_list(
    keys: &[ListedKey],
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let io = |e: std::io::Error| usage(format!("writing the list: {e}"));
    if json {
        serde_json::to_writer(&mut *out, keys)
            .map_err(|e| usage(format!("cannot encode the list: {e}")))?;
        return writeln!(out).map_err(io);
    }
    writeln!(
        out,
        "{:<24} {:<16} {:<16} {:<6} {:<9} {:<20} {:<20} scopes",
        "id", "org", "name", "hint", "status", "created", "expires"
    )
    .map_err(io)?;
    for key in keys {
        writeln!(
            out,
            "{:<24} {:<16} {:<16} {:<6} {:<9} {:<20} {:<20} {}",
            key.id,
            key.org,
            key.name,
            key.hint,
            key.status,
            key.created_at,
            key.expires_at.as_deref().unwrap_or("never"),
            key.scopes
        )
        .map_err(io)?;
    }
    Ok(())
}

/// What `apikey revoke` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The key's owner and organization (`None` if the row is gone by the time they are
    /// read back).
    pub owner: Option<(UserId, OrgId)>,
    /// Whether it was revoked already.
    pub already: bool,
}

/// `apikey revoke`: revokes the key `id` for good, whoever owns it. An unknown id is an
/// error; revoking a revoked key succeeds and says so.
///
/// It uses the store's lookup face (`revoke_by_holder`: one `UPDATE … RETURNING`, not
/// scoped to a tenant), the face a leaked key's finder uses: the operator's database
/// credentials reach every row, and on PostgreSQL the tenant face runs under row-level
/// security, where an organization's admin does not reach a member's keys.
pub fn revoke(database_url: &str, id: &str) -> Result<Revoked, CliError> {
    let url = DatabaseUrl::parse(database_url)?;
    let id = KeyId::new(id.trim()).map_err(|e| usage(format!("ID: {e}")))?;
    runtime()?.block_on(async {
        let db = Database::open(&url, false).await?;
        let store = db.api_keys();
        let previous = store
            .revoke_by_holder(&id)
            .await
            .map_err(|e| crate::db::store_failure(&e))?
            .ok_or_else(|| usage(format!("no API key with id {id}")))?;
        // Read back for the message only; the revocation above is already committed.
        let owner = store
            .get(&id)
            .await
            .map_err(|e| crate::db::store_failure(&e))?
            .map(|record| (record.owner, record.org));
        Ok(Revoked {
            owner,
            already: previous == KeyStatus::Revoked,
        })
    })
}
