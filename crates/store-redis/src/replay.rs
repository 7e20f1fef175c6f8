//! [`TotpReplayGuard`] on Redis: the last accepted step per user and enrollment.

use crate::RedisStores;
use crate::error::store_error;
use crate::units::{MAX_EXACT, ttl_millis};
use mcpsec_core::{StoreError, UserId};
use mcpsec_mfa::{EnrollmentId, TotpReplayGuard};
use redis::Script;
use std::sync::LazyLock;

/// Records a step if it is newer than the one stored.
///
/// KEYS[1]: the enrollment's last accepted step. ARGV: step, TTL (ms). Returns 1 when the
/// step was recorded, 0 when it was not newer.
static RECORD_STEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local last = redis.call('GET', KEYS[1])
if last then
  local n = tonumber(last)
  if n == nil then return redis.error_reply('ERR corrupt TOTP replay state') end
  if n >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
",
    )
});

/// [`TotpReplayGuard`] on Redis: one key per user and enrollment under
/// `{prefix}:{<tag>}:totp-step`, holding the last accepted step.
///
/// [`record_step_if_newer`](TotpReplayGuard::record_step_if_newer) is one Lua script that
/// compares and sets: of concurrent uses of one code on any number of instances, exactly
/// one is accepted. The key expires [`TtlPolicy::replay`] after the last accepted step;
/// that must be longer than a code stays valid (see there).
///
/// [`TtlPolicy::replay`]: crate::TtlPolicy::replay
#[derive(Debug, Clone)]
pub struct RedisReplayGuard {
    stores: RedisStores,
}

impl RedisReplayGuard {
    /// A guard on `stores`' connection and prefix.
    pub fn new(stores: RedisStores) -> Self {
        Self { stores }
    }
}

#[async_trait::async_trait]
impl TotpReplayGuard for RedisReplayGuard {
    async fn record_step_if_newer(
        &self,
        user: &UserId,
        enrollment: &EnrollmentId,
        step: u64,
    ) -> Result<bool, StoreError> {
        if step > MAX_EXACT {
            return Err(StoreError::rejected("a TOTP step the store cannot hold"));
        }
        let key = self
            .stores
            .keys()
            .key("totp-step", &[user.as_str().as_bytes(), &enrollment.0]);
        let won: u8 = RECORD_STEP
            .key(key)
            .arg(step)
            .arg(ttl_millis(self.stores.ttl().replay))
            .invoke_async(&mut self.stores.connection())
            .await
            .map_err(|e| store_error("record a TOTP step", e))?;
        Ok(won == 1)
    }
}
