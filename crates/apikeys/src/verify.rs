//! Verification: parse → checksum → throttle → lookup → constant-time compare → status →
//! quota. Clients learn only "invalid key"; events carry the real reason.

use crate::format::{self, ParsedKey};
use crate::hash::HashMode;
use crate::limits::RateLimitInfo;
use crate::{ApiKeyRecord, ApiKeys, Error, KeyStatus};
use mcpsec_access::{AuthMethods, Authentication, CredentialKind, Principal, Role};
use mcpsec_core::{Actor, EventKind, KeyId, Outcome, SecurityEvent, Severity};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// Who presented a key, for counting failures: the client address, or a client identity
/// the host trusts more (an mTLS name, a gateway's client id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A network address.
    Ip(IpAddr),
    /// A client identity.
    Client(mcpsec_core::Label),
}

impl Source {
    fn subject(&self) -> String {
        match self {
            Source::Ip(ip) => format!("src:ip:{ip}"),
            Source::Client(client) => format!("src:client:{client}"),
        }
    }

    fn ip(&self) -> Option<IpAddr> {
        match self {
            Source::Ip(ip) => Some(*ip),
            Source::Client(_) => None,
        }
    }
}

/// A key that verified: its record and the quota state for response headers.
#[derive(Debug, Clone)]
pub struct VerifiedKey {
    record: ApiKeyRecord,
    rate_limit: RateLimitInfo,
}

impl VerifiedKey {
    /// The key's record (no secret in it).
    pub fn record(&self) -> &ApiKeyRecord {
        &self.record
    }

    /// The quota state after this use.
    pub fn rate_limit(&self) -> RateLimitInfo {
        self.rate_limit
    }

    /// The [`Principal`] for this request, with the owner's current `role` (which the host
    /// looks up: a key never carries a role of its own). Its scopes are the key's; the
    /// decision intersects them with the role.
    pub fn principal(&self, role: Role) -> Principal {
        Principal::new(
            self.record.owner.clone(),
            self.record.org.clone(),
            role,
            self.record.scopes,
            CredentialKind::ApiKey,
            Authentication {
                // An API key is not an authentication event: when its owner last authenticated is
                // unknown, so no recency check (step-up) can pass with one.
                at: None,
                methods: AuthMethods::EMPTY,
            },
        )
    }
}

impl ApiKeys {
    /// Verifies `presented` from `source`.
    ///
    /// A source over the failure threshold is throttled, but a correct key still verifies
    /// from it: lockout applies to the failing path, never to the holder of the secret.
    pub async fn verify(&self, presented: &str, source: &Source) -> Result<VerifiedKey, Error> {
        let now = self.clock.now();
        let parsed = match format::parse(presented) {
            Ok(parsed) => parsed,
            Err(error) => return Err(self.failed(error, None, source, now).await),
        };
        if !self.envs.contains(&parsed.env()) {
            return Err(self
                .failed(Error::WrongEnv, Some(parsed.id()), source, now)
                .await);
        }
        let throttled = self.throttled_for(source, now).await?;
        let Some(record) = self
            .store
            .get(parsed.id())
            .await
            .map_err(|e| Error::Store(e.0))?
        else {
            // Same work as a real comparison, so timing does not tell which ids exist.
            if throttled.is_none() || self.hasher.mode() == HashMode::HmacSha256 {
                self.hasher.dummy_check(&parsed);
            }
            return Err(self
                .failed(
                    throttled_or(throttled, Error::Unknown),
                    Some(parsed.id()),
                    source,
                    now,
                )
                .await);
        };
        if !self
            .secret_matches(&parsed, &record, throttled.is_some(), now)
            .await?
        {
            let error = throttled_or(throttled, Error::SecretMismatch);
            return Err(self.failed(error, Some(parsed.id()), source, now).await);
        }
        if let Some(error) = status_error(&record, now) {
            return Err(self.refused(error, &record, source, now).await);
        }
        let rate_limit = match self.quota.check(&record.id) {
            Ok(info) => info,
            Err(retry_after) => {
                return Err(self
                    .refused(Error::RateLimited { retry_after }, &record, source, now)
                    .await);
            }
        };
        // Coarse last-used, written at most once per interval; a failed write loses a
        // timestamp, not a request.
        let _ = self
            .store
            .touch_last_used(&record.id, now, self.last_used_interval)
            .await;
        Ok(VerifiedKey { record, rate_limit })
    }

    /// Constant-time check (through the slow-hash cache when it applies), upgrading the
    /// stored hash when it matched under an old mode or pepper.
    async fn secret_matches(
        &self,
        parsed: &ParsedKey,
        record: &ApiKeyRecord,
        throttled: bool,
        now: SystemTime,
    ) -> Result<bool, Error> {
        let slow = !record.hash.starts_with("hmac-sha256$");
        let fingerprint = slow.then(|| self.cache.fingerprint(parsed.expose_secret()));
        if let Some(f) = &fingerprint
            && self.cache.hit(f, &record.id, &record.hash, now)
        {
            return Ok(true);
        }
        if slow && throttled {
            // A throttled source does not get to spend our CPU on slow hashes; a correct
            // key verified recently still passes through the cache above.
            return Ok(false);
        }
        let check = self.hasher.check(parsed, &record.hash)?;
        if !check.matched {
            return Ok(false);
        }
        let mut stored = record.hash.clone();
        if check.needs_rehash {
            let new = self.hasher.hash(parsed)?;
            if self
                .store
                .replace_hash(&record.id, &record.hash, &new)
                .await
                .map_err(|e| Error::Store(e.0))?
            {
                stored = new;
            }
        }
        if let Some(f) = fingerprint {
            self.cache.insert(f, record.id.clone(), stored, now);
        }
        Ok(true)
    }

    /// The remaining throttle time of `source`, if it is throttled.
    async fn throttled_for(
        &self,
        source: &Source,
        now: SystemTime,
    ) -> Result<Option<Duration>, Error> {
        let state = self
            .counter
            .state(&source.subject(), self.lockout.window, now)
            .await
            .map_err(|_| Error::Store("attempt counter"))?;
        Ok(state.and_then(|s| {
            let until = s.last_failure.checked_add(self.lockout.backoff(s.count))?;
            until.duration_since(now).ok().filter(|d| !d.is_zero())
        }))
    }

    /// Counts a failure against the source (and the key id, for a wrong secret), records
    /// the events, and returns the error to give back.
    async fn failed(
        &self,
        error: Error,
        id: Option<&KeyId>,
        source: &Source,
        now: SystemTime,
    ) -> Error {
        let window = self.lockout.window;
        if let Ok(state) = self
            .counter
            .record_failure(&source.subject(), window, now)
            .await
            && state.count == self.lockout.source_threshold
        {
            self.emit(
                EventKind::AuthnLoginLock,
                Outcome::Failure,
                &error,
                id,
                source,
                now,
                Severity::Critical,
            )
            .await;
        }
        if matches!(error, Error::SecretMismatch | Error::Throttled { .. })
            && let Some(id) = id
            && let Ok(state) = self
                .counter
                .record_failure(&format!("key:{id}"), window, now)
                .await
            && state.count == self.lockout.key_alert_threshold
        {
            // Someone holds this id and is guessing its secret: alert, but never lock it.
            self.emit(
                EventKind::AuthnLoginFailMax,
                Outcome::Failure,
                &error,
                Some(id),
                source,
                now,
                Severity::Critical,
            )
            .await;
        }
        self.emit(
            EventKind::AuthnLoginFail,
            Outcome::Failure,
            &error,
            id,
            source,
            now,
            Severity::Warning,
        )
        .await;
        error
    }

    /// A correct secret refused for its status or quota: reported, not counted as guessing.
    async fn refused(
        &self,
        error: Error,
        record: &ApiKeyRecord,
        source: &Source,
        now: SystemTime,
    ) -> Error {
        let kind = match error {
            Error::RateLimited { .. } => EventKind::ExcessRateLimitExceeded,
            _ => EventKind::AuthnLoginFail,
        };
        self.emit(
            kind,
            Outcome::Failure,
            &error,
            Some(&record.id),
            source,
            now,
            Severity::Warning,
        )
        .await;
        error
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one private helper that assembles an event"
    )]
    async fn emit(
        &self,
        kind: EventKind,
        outcome: Outcome,
        error: &Error,
        id: Option<&KeyId>,
        source: &Source,
        now: SystemTime,
        severity: Severity,
    ) {
        let actor = id.map_or(Actor::Anonymous, |key| Actor::ApiKey {
            key: key.clone(),
            owner: None,
        });
        let mut event = SecurityEvent::new(kind, outcome, now)
            .with_actor(actor)
            .with_reason(error.reason_code())
            .with_severity(severity);
        if let Some(ip) = source.ip() {
            event = event.with_source(ip);
        }
        let _ = self.events.record(event).await;
    }
}

fn throttled_or(throttled: Option<Duration>, error: Error) -> Error {
    throttled.map_or(error, |retry_after| Error::Throttled { retry_after })
}

fn status_error(record: &ApiKeyRecord, now: SystemTime) -> Option<Error> {
    match record.status {
        KeyStatus::Revoked => Some(Error::Revoked),
        KeyStatus::Disabled => Some(Error::Disabled),
        KeyStatus::Active if record.expires_at.is_some_and(|at| now >= at) => Some(Error::Expired),
        KeyStatus::Active => None,
    }
}
