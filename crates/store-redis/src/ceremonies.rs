//! [`PasskeyStore`] with its ceremonies on Redis: one hash per user holding that user's
//! open ceremonies, changed only by Lua scripts; registered credentials stay in the
//! durable store the host gives (SQL).

use crate::RedisStores;
use crate::error::{corrupt, store_error};
use crate::units::{MAX_EXACT, count, from_micros, micros, parse, ttl_millis};
use mcpsec_access::Principal;
use mcpsec_core::{SecretBytes, StoreError, UserId};
use mcpsec_mfa::{
    CeremonyId, CeremonyKind, CeremonyLimits, CeremonyRecord, CeremonyStored, CredentialAdded,
    PasskeyStore, StoredPasskey,
};
use redis::Script;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::SystemTime;

/// The largest ceremony state stored (webauthn-rs's JSON is a few KiB); larger is refused.
pub const MAX_CEREMONY_STATE: usize = 64 * 1024;

/// Stores one ceremony, first dropping the user's expired ones, the one with the same id,
/// and then the oldest until the new one fits under the per-user limit.
///
/// KEYS[1]: the user's ceremony hash. Fields: `#seq` (a counter giving start order), and
/// per ceremony `<h>` (`v1 <seq> <deadline ms, server clock> <r|a> <expires µs> <user>`)
/// and `<h>.s` (the state), `<h>` being a digest of its id.
/// ARGV: h, kind (`r`/`a`), lifetime (ms), expires (µs), per-user limit, user, state.
///
/// Deadlines are the server's `TIME` plus the lifetime the caller measured on its own
/// clock (`expires_at - now`): the same span a key TTL would give, so instances whose
/// clocks disagree still agree on when a ceremony ends. The first write is `HINCRBY`,
/// which Redis refuses when over `maxmemory`: then nothing has been dropped.
/// Returns 1.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local seq = redis.call('HINCRBY', KEYS[1], '#seq', 1)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if f ~= '#seq' and not string.find(f, '.', 1, true) then
    local meta = redis.call('HGET', KEYS[1], f)
    local s, dl = string.match(meta, '^v1 (%d+) (%d+) ')
    if not s then return redis.error_reply('ERR corrupt passkey ceremony') end
    s, dl = tonumber(s), tonumber(dl)
    if dl <= now or f == ARGV[1] then
      redis.call('HDEL', KEYS[1], f, f .. '.s')
    else
      live[#live + 1] = {f, s, dl}
    end
  end
end
table.sort(live, function(a, b) return a[2] < b[2] end)
local keep = tonumber(ARGV[5]) - 1
local deadline = now + tonumber(ARGV[3])
for i, c in ipairs(live) do
  if i <= #live - keep then
    redis.call('HDEL', KEYS[1], c[1], c[1] .. '.s')
  elseif c[3] > deadline then
    deadline = c[3]
  end
end
local meta = string.format('v1 %.0f %.0f %s %s %s', seq, now + tonumber(ARGV[3]),
  ARGV[2], ARGV[4], ARGV[6])
redis.call('HSET', KEYS[1], ARGV[1], meta, ARGV[1] .. '.s', ARGV[7])
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', deadline - now))
return 1
",
    )
});

/// Takes one ceremony if it is live, of the kind and of the user named: removes it and
/// returns `{expires µs, state}`; otherwise nil, leaving a live one in place (an expired
/// one is removed). The hash goes when no ceremony is left in it.
///
/// KEYS[1]: the user's ceremony hash. ARGV: h, kind (`r`/`a`), user.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local meta = redis.call('HGET', KEYS[1], ARGV[1])
if not meta then return false end
local dl, kind, exp, user = string.match(meta, '^v1 %d+ (%d+) ([ra]) (%d+) (.+)$')
if not dl then return redis.error_reply('ERR corrupt passkey ceremony') end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = tonumber(dl) <= now
if not gone and (kind ~= ARGV[2] or user ~= ARGV[3]) then return false end
local state = redis.call('HGET', KEYS[1], ARGV[1] .. '.s')
redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. '.s')
if redis.call('HLEN', KEYS[1]) <= 1 then redis.call('DEL', KEYS[1]) end
if gone then return false end
if not state then return redis.error_reply('ERR corrupt passkey ceremony') end
return {exp, state}
",
    )
});

/// [`PasskeyStore`] whose ceremonies live in Redis, shared by every instance, and whose
/// registered credentials live in `S` (a durable store such as the SQL one: a passkey
/// must survive a Redis restart, a ceremony need not).
///
/// **Ceremonies.** One hash per user under `{prefix}:{<tag>}:passkey-ceremonies` (the
/// tag a digest of the user id) holds that user's open ceremonies; a ceremony's id
/// appears only as a digest, never in a key or field name.
///
/// - [`put_ceremony`](PasskeyStore::put_ceremony) is one Lua script: it drops the user's
///   expired ceremonies and, past [`CeremonyLimits::per_user`], the oldest, then stores
///   the new one: of concurrent starts by one user, the user never ends with more than
///   the limit. Never [`CeremonyStored::Full`] but when Redis is over its `maxmemory`
///   (the script is refused before it drops anything); the total is bounded by the
///   per-user limit and expiry.
/// - [`take_ceremony`](PasskeyStore::take_ceremony) is one Lua script that returns and
///   removes the record only when it is live and names the user and kind asked for: of
///   concurrent finishes exactly one gets it, and a finish by another user or of the
///   other kind leaves it in place (another user's finish does not even reach it: the
///   key is the caller's user's).
/// - Expiry: a ceremony ends `expires_at - now` after it was stored (`now` as passed to
///   `put_ceremony`), measured by the Redis server's clock, the way a key TTL is; an
///   ended one is never returned and is removed by the next call that meets it. The
///   hash's TTL is the latest deadline in it, so an abandoned user's hash goes by
///   itself. A ceremony already expired at `now` is not stored (the call answers
///   `Stored`: a finish of it fails as unknown, as it would once expired).
///
/// **Secrets.** The state holds the WebAuthn challenge. Like the SQL store, Redis holds it
/// as given, unsealed (and writes it to disk with RDB/AOF persistence): it is of use only
/// with the user's session and authenticator, for at most the ceremony's lifetime.
/// At most [`MAX_CEREMONY_STATE`] bytes per ceremony.
///
/// **Credentials.** [`add_credential`](PasskeyStore::add_credential),
/// [`credentials`](PasskeyStore::credentials),
/// [`update_credential`](PasskeyStore::update_credential) and
/// [`remove_credential`](PasskeyStore::remove_credential) go to `S` unchanged, with its
/// atomicity; `S`'s own ceremony methods are not used.
#[derive(Debug, Clone)]
pub struct RedisPasskeyStore<S> {
    stores: RedisStores,
    credentials: S,
}

impl<S: PasskeyStore> RedisPasskeyStore<S> {
    /// Ceremonies on `stores`' connection and prefix, credentials in `credentials`.
    pub fn new(stores: RedisStores, credentials: S) -> Self {
        Self {
            stores,
            credentials,
        }
    }

    /// The store holding registered credentials.
    pub fn credential_store(&self) -> &S {
        &self.credentials
    }

    fn key(&self, user: &UserId) -> String {
        self.stores
            .keys()
            .key("passkey-ceremonies", &[user.as_str().as_bytes()])
    }
}

/// The field naming ceremony `id`: 128 bits of SHA-256, hex (no `.`, never the id).
fn field(id: &CeremonyId) -> String {
    let digest = Sha256::new()
        .chain_update(b"mcpsec-passkey-ceremony\0")
        .chain_update(id.as_str().as_bytes())
        .finalize();
    let mut hex = String::with_capacity(32);
    for byte in digest.iter().take(16) {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn kind_code(kind: CeremonyKind) -> &'static str {
    match kind {
        CeremonyKind::Registration => "r",
        CeremonyKind::Authentication => "a",
    }
}

#[async_trait::async_trait]
impl<S: PasskeyStore> PasskeyStore for RedisPasskeyStore<S> {
    async fn put_ceremony(
        &self,
        id: &CeremonyId,
        record: CeremonyRecord,
        now: SystemTime,
        limits: CeremonyLimits,
    ) -> Result<CeremonyStored, StoreError> {
        if record.state.len() > MAX_CEREMONY_STATE {
            return Err(StoreError::rejected(
                "a passkey ceremony state larger than the store holds",
            ));
        }
        let expires = micros(record.expires_at)?;
        let Some(lifetime) = record
            .expires_at
            .duration_since(now)
            .ok()
            .filter(|d| !d.is_zero())
        else {
            // Already over: stored, it would be gone at once.
            return Ok(CeremonyStored::Stored);
        };
        let per_user = count(u64::try_from(limits.per_user).unwrap_or(MAX_EXACT)).max(1);
        let stored: redis::RedisResult<u8> = PUT
            .key(self.key(&record.user))
            .arg(field(id))
            .arg(kind_code(record.kind))
            .arg(ttl_millis(lifetime))
            .arg(expires)
            .arg(per_user)
            .arg(record.user.as_str())
            .arg(record.state.expose_secret())
            .invoke_async(&mut self.stores.connection())
            .await;
        match stored {
            Ok(_) => Ok(CeremonyStored::Stored),
            // Over `maxmemory`: the script's first write was refused, nothing changed.
            Err(e) if e.code() == Some("OOM") => Ok(CeremonyStored::Full),
            Err(e) => Err(store_error("store a passkey ceremony", e)),
        }
    }

    async fn take_ceremony(
        &self,
        id: &CeremonyId,
        user: &UserId,
        kind: CeremonyKind,
    ) -> Result<Option<CeremonyRecord>, StoreError> {
        let taken: Option<(String, Vec<u8>)> = TAKE
            .key(self.key(user))
            .arg(field(id))
            .arg(kind_code(kind))
            .arg(user.as_str())
            .invoke_async(&mut self.stores.connection())
            .await
            .map_err(|e| store_error("take a passkey ceremony", e))?;
        let Some((expires, state)) = taken else {
            return Ok(None);
        };
        if state.len() > MAX_CEREMONY_STATE {
            return Err(corrupt(
                "a passkey ceremony state larger than the store holds",
            ));
        }
        Ok(Some(CeremonyRecord {
            user: user.clone(),
            kind,
            state: SecretBytes::new(state),
            expires_at: from_micros(parse(&expires)?)?,
        }))
    }

    async fn add_credential(
        &self,
        tenant: &Principal,
        passkey: StoredPasskey,
        max: usize,
    ) -> Result<CredentialAdded, StoreError> {
        self.credentials.add_credential(tenant, passkey, max).await
    }

    async fn credentials(&self, user: &UserId) -> Result<Vec<StoredPasskey>, StoreError> {
        self.credentials.credentials(user).await
    }

    async fn update_credential(
        &self,
        user: &UserId,
        updated: StoredPasskey,
    ) -> Result<bool, StoreError> {
        self.credentials.update_credential(user, updated).await
    }

    async fn remove_credential(
        &self,
        tenant: &Principal,
        credential_id: &[u8],
    ) -> Result<bool, StoreError> {
        self.credentials
            .remove_credential(tenant, credential_id)
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fields_are_digests_without_dots() {
        let id = CeremonyId::parse("abc-DEF_123").unwrap();
        let f = field(&id);
        assert_eq!(f.len(), 32);
        assert!(f.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!f.contains("abc"));
        assert_ne!(f, field(&CeremonyId::parse("abc-DEF_124").unwrap()));
    }
}
