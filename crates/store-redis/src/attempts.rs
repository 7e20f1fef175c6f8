//! [`AttemptCounter`] on Redis: one hash per subject, changed only by Lua scripts.

use crate::RedisStores;
use crate::error::{corrupt, store_error};
use crate::units::{duration_micros, from_micros, micros, parse};
use mcpsec_core::{AttemptCounter, AttemptState, StoreError};
use redis::Script;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

/// Counts one failure. A live window (count above zero, `now - start < window`) counts
/// up; otherwise a new one starts at 1. The key expires `grace` after the window's end.
///
/// KEYS[1]: the subject's hash (`c` count, `s` window start, `l` last failure; µs).
/// ARGV: now (µs), window (µs), grace (µs). Returns `{count, start, last}` as text.
static RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now, window, grace = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'c', 's')
local c, s = tonumber(v[1] or '0'), tonumber(v[2] or '0')
if c == nil or s == nil then return redis.error_reply('ERR corrupt attempt counter') end
local start = ARGV[1]
if c > 0 and now - s < window then
  c = c + 1
  start = v[2]
  s = tonumber(start)
else
  c = 1
  s = now
end
local count = string.format('%.0f', c)
redis.call('HSET', KEYS[1], 'c', count, 's', start, 'l', ARGV[1])
local ttl = math.ceil((s + window - now + grace) / 1000)
if ttl < 1 then ttl = 1 end
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl))
return {count, start, ARGV[1]}
",
    )
});

/// Gives back one failure of a live window; at zero the key goes. Never creates a key.
///
/// KEYS[1]: the subject's hash. ARGV: now (µs), window (µs). Returns `{count, start,
/// last}` as text, or nil when nothing is left (or nothing was live).
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'c', 's', 'l')
if not v[1] then return false end
local c, s = tonumber(v[1]), tonumber(v[2] or '')
if c == nil or s == nil or not v[3] then
  return redis.error_reply('ERR corrupt attempt counter')
end
if c <= 0 or now - s >= window then return false end
c = c - 1
if c <= 0 then
  redis.call('DEL', KEYS[1])
  return false
end
local count = string.format('%.0f', c)
redis.call('HSET', KEYS[1], 'c', count)
return {count, v[2], v[3]}
",
    )
});

/// [`AttemptCounter`] on Redis: one hash per subject under
/// `{prefix}:{<tag>}:attempts`.
///
/// Every call is one Lua script (`EVALSHA`, falling back to `EVAL` when the server does
/// not have it cached), which Redis runs without interleaving any other command: N
/// concurrent failures from any number of instances leave the count exactly N higher.
/// A failure sets the key to expire a grace period ([`TtlPolicy::attempt_grace`]) after
/// its window ends; a release that brings the count to zero deletes it.
///
/// [`TtlPolicy::attempt_grace`]: crate::TtlPolicy::attempt_grace
#[derive(Debug, Clone)]
pub struct RedisAttemptCounter {
    stores: RedisStores,
}

impl RedisAttemptCounter {
    /// A counter on `stores`' connection and prefix.
    pub fn new(stores: RedisStores) -> Self {
        Self { stores }
    }

    fn key(&self, subject: &str) -> String {
        self.stores.keys().key("attempts", &[subject.as_bytes()])
    }
}

/// The state a script returned as `{count, start, last}`.
fn state(fields: Vec<String>) -> Result<AttemptState, StoreError> {
    let [count, start, last] = <[String; 3]>::try_from(fields)
        .map_err(|_| corrupt("an attempt counter reply of the wrong shape"))?;
    Ok(AttemptState {
        count: parse(&count)?,
        window_start: from_micros(parse(&start)?)?,
        last_failure: from_micros(parse(&last)?)?,
    })
}

fn live(state: &AttemptState, window: Duration, now: SystemTime) -> bool {
    now.duration_since(state.window_start)
        .map_or(true, |age| age < window)
}

#[async_trait::async_trait]
impl AttemptCounter for RedisAttemptCounter {
    async fn record_failure(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<AttemptState, mcpsec_core::Error> {
        let grace = duration_micros(self.stores.ttl().attempt_grace);
        let fields: Vec<String> = RECORD
            .key(self.key(subject))
            .arg(micros(now)?)
            .arg(duration_micros(window))
            .arg(grace)
            .invoke_async(&mut self.stores.connection())
            .await
            .map_err(|e| store_error("count a failure", e))?;
        Ok(state(fields)?)
    }

    async fn release(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptState>, mcpsec_core::Error> {
        let fields: Option<Vec<String>> = RELEASE
            .key(self.key(subject))
            .arg(micros(now)?)
            .arg(duration_micros(window))
            .invoke_async(&mut self.stores.connection())
            .await
            .map_err(|e| store_error("release a failure", e))?;
        Ok(fields.map(state).transpose()?)
    }

    async fn state(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptState>, mcpsec_core::Error> {
        // One read-only command; nothing is written back.
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.key(subject))
            .arg(&["c", "s", "l"])
            .query_async(&mut self.stores.connection())
            .await
            .map_err(|e| store_error("read a failure count", e))?;
        let Some(fields) = fields.into_iter().collect::<Option<Vec<String>>>() else {
            return Ok(None);
        };
        let state = state(fields)?;
        Ok(Some(state).filter(|s| s.count > 0 && live(s, window, now)))
    }
}
