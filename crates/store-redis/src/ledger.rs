//! [`UsageLedger`] on Redis: the nonce count per key version.

use crate::RedisStores;
use crate::error::{corrupt, store_error};
use crate::units::{count, parse, ttl_millis};
use mcpsec_fieldcrypt::{Category, Error, UsageLedger};
use redis::Script;
use std::sync::LazyLock;

/// Grants up to `block` more without the total passing `limit`.
///
/// KEYS[1]: the version's total. ARGV: block, limit, TTL (ms). Returns `{granted, total}`
/// as text. The TTL is renewed on every call.
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local total = 0
local v = redis.call('GET', KEYS[1])
if v then
  total = tonumber(v)
  if total == nil then return redis.error_reply('ERR corrupt nonce ledger') end
end
local block, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local grant = 0
if total < limit then grant = math.min(block, limit - total) end
total = total + grant
local text = string.format('%.0f', total)
redis.call('SET', KEYS[1], text, 'PX', ARGV[3])
return {string.format('%.0f', grant), text}
",
    )
});

/// Subtracts at most `unused`, never below zero; a missing total stays missing.
///
/// KEYS[1]: the version's total. ARGV: unused, TTL (ms).
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local total = tonumber(v)
if total == nil then return redis.error_reply('ERR corrupt nonce ledger') end
local left = total - tonumber(ARGV[1])
if left < 0 then left = 0 end
redis.call('SET', KEYS[1], string.format('%.0f', left), 'PX', ARGV[2])
return 1
",
    )
});

/// [`UsageLedger`] on Redis: one key per category and key version under
/// `{prefix}:{<tag>}:nonces`, holding the total reserved.
///
/// A reservation is one Lua script that reads the total, grants what is left under the
/// limit and writes it back, uninterrupted: concurrent reservations from any number of
/// processes never pass the limit. Counts above 2^53 are held as 2^53 (a limit that high
/// grants less, never more).
///
/// **Durability.** The trait asks for the total to be durable when `reserve` returns.
/// Redis is only as durable as its persistence: run it with `appendonly yes` and
/// `appendfsync always` for this store, or use the SQL ledger (`mcpsec-store-sql`). And
/// every key here expires ([`TtlPolicy::ledger`], renewed on each call, 400 days by
/// default): a key version idle for longer starts again from zero, so rotate keys well
/// within it.
///
/// [`TtlPolicy::ledger`]: crate::TtlPolicy::ledger
#[derive(Debug, Clone)]
pub struct RedisUsageLedger {
    stores: RedisStores,
}

impl RedisUsageLedger {
    /// A ledger on `stores`' connection and prefix.
    pub fn new(stores: RedisStores) -> Self {
        Self { stores }
    }

    fn key(&self, category: &Category, version: u32) -> String {
        self.stores.keys().key(
            "nonces",
            &[category.as_str().as_bytes(), &version.to_be_bytes()],
        )
    }
}

#[async_trait::async_trait]
impl UsageLedger for RedisUsageLedger {
    async fn reserve(
        &self,
        category: &Category,
        version: u32,
        block: u64,
        limit: u64,
    ) -> Result<(u64, u64), Error> {
        let reply: Vec<String> = RESERVE
            .key(self.key(category, version))
            .arg(count(block))
            .arg(count(limit))
            .arg(ttl_millis(self.stores.ttl().ledger))
            .invoke_async(&mut self.stores.connection())
            .await
            .map_err(|e| store_error("reserve nonces", e))?;
        let [granted, total] = <[String; 2]>::try_from(reply)
            .map_err(|_| corrupt("a nonce ledger reply of the wrong shape"))?;
        Ok((parse(&granted)?, parse(&total)?))
    }

    async fn release(&self, category: &Category, version: u32, unused: u64) -> Result<(), Error> {
        let _: u8 = RELEASE
            .key(self.key(category, version))
            .arg(count(unused))
            .arg(ttl_millis(self.stores.ttl().ledger))
            .invoke_async(&mut self.stores.connection())
            .await
            .map_err(|e| store_error("release nonces", e))?;
        Ok(())
    }
}
