//! [`EmailCodeStore`] on Redis: one hash per challenge, one key per resend cooldown,
//! each changed only by a Lua script.

use crate::RedisStores;
use crate::error::{corrupt, store_error};
use crate::units::{from_micros, micros, parse, ttl_millis};
use mcpsec_core::{Label, StoreError, UserId};
use mcpsec_mfa::{AttemptOutcome, ChallengeKey, ChallengeRecord, Cooldown, EmailCodeStore};
use redis::Script;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

/// Replaces the challenge with a new one.
///
/// KEYS[1]: the challenge's hash (`h` code hash, `s` sent µs, `e` expires µs, `a` wrong
/// attempts). ARGV: hash, sent, expires, attempts, TTL (ms).
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'h', ARGV[1], 's', ARGV[2], 'e', ARGV[3], 'a', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
",
    )
});

/// Starts a cooldown unless one runs at `now`: the conditional write of
/// [`EmailCodeStore::try_start_cooldown`]. A stored end at or before `now` has ended (the
/// caller's clock decides, as in the SQL store; the key's TTL only clears it away).
///
/// KEYS[1]: the cooldown (its end, µs). ARGV: now (µs), until (µs), TTL (ms).
/// Returns `{'started'}` or `{'running', until}`.
static COOLDOWN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v then
  local until_at = tonumber(v)
  if until_at == nil then return redis.error_reply('ERR corrupt email cooldown') end
  if until_at > tonumber(ARGV[1]) then return {'running', v} end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return {'started'}
",
    )
});

/// One attempt at a challenge, in the order of the memory store: missing, expired (then
/// removed), over the attempt cap (then removed), right (then removed), or wrong (counted;
/// the TTL stays).
///
/// The hashes are compared by OR-ing the XOR of every byte pair, all 32 of them, rather
/// than with `==`, so the time taken does not depend on where they differ (they are keyed
/// hashes of the code: even a leak would say nothing about its digits).
///
/// KEYS[1]: the challenge's hash. ARGV: now (µs), candidate (32 bytes), max attempts.
static ATTEMPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'h', 'e', 'a')
if not v[1] then return 'not_found' end
local stored, e, a = v[1], tonumber(v[2] or ''), tonumber(v[3] or '')
if e == nil or a == nil or #stored ~= 32 then
  return redis.error_reply('ERR corrupt email challenge')
end
if tonumber(ARGV[1]) >= e then
  redis.call('DEL', KEYS[1])
  return 'expired'
end
if a >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  return 'too_many'
end
local cand, diff = ARGV[2], 0
for i = 1, 32 do
  diff = bit.bor(diff, bit.bxor(string.byte(stored, i), string.byte(cand, i)))
end
if diff == 0 then
  redis.call('DEL', KEYS[1])
  return 'consumed'
end
redis.call('HINCRBY', KEYS[1], 'a', 1)
return 'wrong'
",
    )
});

/// [`EmailCodeStore`] on Redis, shared by every instance.
///
/// - A challenge is a hash under `{prefix}:{<tag>}:email-challenge` (the tag a digest of
///   user, purpose and flow) holding the keyed hash of the code as the trait gives it,
///   never the code, with its times and wrong attempts. It expires after the challenge's
///   lifetime (`expires_at - sent_at`), so nothing outlives its usefulness.
/// - An [`attempt`](EmailCodeStore::attempt) is one Lua script that reads, compares (in
///   time independent of the bytes), and deletes or counts: of concurrent attempts with
///   the right code exactly one is `Consumed`, and wrong attempts are counted exactly, so
///   the guesses a challenge allows are exactly `max_attempts` however many instances
///   share it.
/// - The resend cooldown of a user and purpose is one key under
///   `{prefix}:{<tag>}:email-cooldown` holding its end, written by one Lua script only
///   when no cooldown runs at `now` (the `SET … PX` the trait asks for, made conditional
///   on the caller's time so a cooldown ends at its end): of concurrent sends exactly one
///   is `Started`. The key expires when the cooldown ends (`until - now`).
///
/// Times are compared as the caller passes them (the service's clock); key TTLs only
/// clear away what can no longer matter.
#[derive(Debug, Clone)]
pub struct RedisEmailCodeStore {
    stores: RedisStores,
}

impl RedisEmailCodeStore {
    /// A store on `stores`' connection and prefix.
    pub fn new(stores: RedisStores) -> Self {
        Self { stores }
    }

    fn challenge_key(&self, key: &ChallengeKey) -> String {
        self.stores.keys().key(
            "email-challenge",
            &[
                key.user.as_str().as_bytes(),
                key.purpose.as_str().as_bytes(),
                key.flow.as_str().as_bytes(),
            ],
        )
    }

    fn cooldown_key(&self, user: &UserId, purpose: &Label) -> String {
        self.stores.keys().key(
            "email-cooldown",
            &[user.as_str().as_bytes(), purpose.as_str().as_bytes()],
        )
    }
}

/// How long a key for something lasting from `from` to `to` lives (at least 1 ms).
fn lifetime(from: SystemTime, to: SystemTime) -> u64 {
    ttl_millis(to.duration_since(from).unwrap_or(Duration::ZERO))
}

#[async_trait::async_trait]
impl EmailCodeStore for RedisEmailCodeStore {
    async fn put(&self, key: &ChallengeKey, record: ChallengeRecord) -> Result<(), StoreError> {
        let _: u8 = PUT
            .key(self.challenge_key(key))
            .arg(&record.hash[..])
            .arg(micros(record.sent_at)?)
            .arg(micros(record.expires_at)?)
            .arg(record.attempts)
            .arg(lifetime(record.sent_at, record.expires_at))
            .invoke_async(&mut self.stores.connection())
            .await
            .map_err(|e| store_error("store an email challenge", e))?;
        Ok(())
    }

    async fn try_start_cooldown(
        &self,
        user: &UserId,
        purpose: &Label,
        now: SystemTime,
        until: SystemTime,
    ) -> Result<Cooldown, StoreError> {
        let reply: Vec<String> = COOLDOWN
            .key(self.cooldown_key(user, purpose))
            .arg(micros(now)?)
            .arg(micros(until)?)
            .arg(lifetime(now, until))
            .invoke_async(&mut self.stores.connection())
            .await
            .map_err(|e| store_error("start an email cooldown", e))?;
        match reply.as_slice() {
            [started] if started == "started" => Ok(Cooldown::Started),
            [running, until] if running == "running" => Ok(Cooldown::Running {
                until: from_micros(parse(until)?)?,
            }),
            _ => Err(corrupt("an email cooldown reply of the wrong shape")),
        }
    }

    async fn attempt(
        &self,
        key: &ChallengeKey,
        candidate: &[u8; 32],
        now: SystemTime,
        max_attempts: u32,
    ) -> Result<AttemptOutcome, StoreError> {
        let outcome: String = ATTEMPT
            .key(self.challenge_key(key))
            .arg(micros(now)?)
            .arg(&candidate[..])
            .arg(max_attempts)
            .invoke_async(&mut self.stores.connection())
            .await
            .map_err(|e| store_error("check an email code", e))?;
        match outcome.as_str() {
            "consumed" => Ok(AttemptOutcome::Consumed),
            "wrong" => Ok(AttemptOutcome::Wrong),
            "not_found" => Ok(AttemptOutcome::NotFound),
            "expired" => Ok(AttemptOutcome::Expired),
            "too_many" => Ok(AttemptOutcome::TooManyAttempts),
            _ => Err(corrupt("an email code reply of the wrong shape")),
        }
    }
}
