//! Verification: parse → checksum → throttle → lookup → constant-time compare → status →
//! quota. Clients learn only "invalid key"; events carry the real reason.

use crate::format::{self, ParsedKey};
use crate::limits::RateLimitInfo;
use crate::pool::is_slow;
use crate::{ApiKeyRecord, ApiKeys, Error, KeyStatus};
use mcpsec_access::{AuthMethods, Authentication, Credential, Principal, Role};
use mcpsec_core::StoreError;
use mcpsec_core::{Actor, EventKind, KeyId, Outcome, SecurityEvent, Severity};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
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
    /// The counter subject: an IPv4 address, the `prefix`-bit network of an IPv6 address
    /// (an IPv4-mapped one counts as its IPv4 address, or all of IPv4 would be one /64),
    /// or the client identity.
    fn subject(&self, ipv6_prefix: u8) -> String {
        match self {
            Source::Ip(IpAddr::V4(v4)) => format!("src:ip:{v4}"),
            Source::Ip(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => format!("src:ip:{v4}"),
                None => {
                    let mask = u128::MAX
                        .checked_shl(128u32.saturating_sub(u32::from(ipv6_prefix)))
                        .unwrap_or(0);
                    let network = Ipv6Addr::from(u128::from(*v6) & mask);
                    format!("src:ip:{network}/{ipv6_prefix}")
                }
            },
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

/// A key that verified: its record, its owner's current role, and the quota state for
/// response headers.
#[derive(Debug, Clone)]
pub struct VerifiedKey {
    record: ApiKeyRecord,
    role: Role,
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

    /// The owner's role in the key's organization, read from
    /// [`Memberships`](mcpsec_access::Memberships) during this verification: a key never
    /// carries a role of its own, so a demoted owner's keys lose the rights at their next
    /// use.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The [`Principal`] for this request, with the owner's current [`role`](Self::role).
    /// Its scopes are the key's; the decision intersects them with the role.
    pub fn principal(&self) -> Principal {
        // The workspace's API-key verifier: this value exists only after `verify` checked
        // the key's hash, status, expiry and the owner's membership, which is what the
        // danger path asks of its caller. The key id goes with it, so per-key rate limits
        // and `Actor::ApiKey` events keep it.
        mcpsec_access::danger::principal(
            self.record.owner.clone(),
            self.record.org.clone(),
            self.role,
            self.record.scopes,
            Credential::api_key(self.record.id.clone()),
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
    /// Under a slow hash a throttled source gets a small allowance of hashes per key id
    /// (see [`ApiKeysBuilder::throttled_slow_hash_allowance`](crate::ApiKeysBuilder::throttled_slow_hash_allowance)),
    /// so the owner behind an address shared with an attacker keeps working while the
    /// attacker cannot spend our CPU without bound.
    ///
    /// Once the key is well formed, an unknown id and a wrong secret do the same store and
    /// counter work, so neither the response nor its timing tells which ids exist.
    pub async fn verify(&self, presented: &str, source: &Source) -> Result<VerifiedKey, Error> {
        let now = self.clock.now();
        let src = source.subject(self.ipv6_prefix);
        let parsed = match format::parse(presented) {
            Ok(parsed) => Arc::new(parsed),
            Err(error) => return Err(self.failed(error, None, source, &src, now).await),
        };
        let id = Some(parsed.id());
        if !self.accepts(parsed.env()) {
            return Err(self
                .failed(Error::TestKeyRefused, id, source, &src, now)
                .await);
        }
        let throttled = self.throttled_for(&src, now).await?;
        let record = self.store.get(parsed.id()).await.map_err(Error::Store)?;
        let compared = self
            .compare(&parsed, record.as_ref(), throttled.is_some(), &src, now)
            .await;
        let record = match (compared, record) {
            (Ok(true), Some(record)) => record,
            (Ok(_), None) => {
                let error = throttled_or(throttled, Error::Unknown);
                return Err(self.failed(error, id, source, &src, now).await);
            }
            (Ok(false), Some(_)) => {
                let error = throttled_or(throttled, Error::SecretMismatch);
                return Err(self.failed(error, id, source, &src, now).await);
            }
            // A stored hash this service cannot check (corrupt, an unknown pepper version,
            // bcrypt without the feature) is refused like a wrong secret: counted and
            // reported, never a bare error that skips the failure path.
            (Err(error @ (Error::BadStoredHash | Error::Config(_))), _) => {
                let error = throttled_or(throttled, error);
                return Err(self.failed(error, id, source, &src, now).await);
            }
            (Err(error @ Error::Busy { .. }), _) => {
                // Our capacity, not the caller's failure: reported, not counted.
                self.emit(
                    EventKind::ExcessRateLimitExceeded,
                    &error,
                    id,
                    source,
                    now,
                    Severity::Warning,
                )
                .await;
                return Err(error);
            }
            (Err(error), _) => return Err(error),
        };
        if let Some(error) = status_error(&record, now) {
            return Err(self.refused(error, &record, source, now).await);
        }
        // The owner's role now, not when the key was made; unknown refuses.
        let role = match self.memberships.role(&record.owner, &record.org).await {
            Ok(Some(role)) => role,
            Ok(None) => {
                return Err(self.refused(Error::NotAMember, &record, source, now).await);
            }
            Err(error) => return Err(Error::Store(error)),
        };
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
        Ok(VerifiedKey {
            record,
            role,
            rate_limit,
        })
    }

    /// Whether `parsed` matches `record` (a dummy comparison when there is none), through
    /// the slow-hash cache and, for a throttled source, its slow-hash allowance.
    async fn compare(
        &self,
        parsed: &Arc<ParsedKey>,
        record: Option<&ApiKeyRecord>,
        throttled: bool,
        src: &str,
        now: SystemTime,
    ) -> Result<bool, Error> {
        let slow = record.map_or(self.slow_mode(), |r| is_slow(&r.hash));
        let fingerprint = slow.then(|| self.cache.fingerprint(parsed.expose_secret()));
        if let (Some(f), Some(r)) = (&fingerprint, record)
            && self.cache.hit(f, &r.id, &r.hash, now)
        {
            return Ok(true);
        }
        let allowance = if slow && throttled {
            // Counted first, then hashed: a concurrent burst cannot all read "allowed".
            let subject = format!("slow:{src}:key:{}", parsed.id());
            let state = self
                .counter
                .record_failure(&subject, self.lockout.window, now)
                .await
                .map_err(|e| Error::Store(StoreError::from_core("attempt counter", e)))?;
            if state.count > self.throttled_allowance {
                return Ok(false);
            }
            Some(subject)
        } else {
            None
        };
        let matched = match record {
            Some(record) => {
                self.check_and_upgrade(parsed, record, fingerprint, now)
                    .await
            }
            None => self.dummy_hash(parsed).await.map(|()| false),
        };
        if let Some(subject) = allowance
            && matches!(matched, Ok(true) | Err(Error::Busy { .. }))
        {
            // The owner's own successes, and attempts the pool refused before any hash
            // ran, give their slot back.
            let _ = self
                .counter
                .release(&subject, self.lockout.window, now)
                .await;
        }
        matched
    }

    /// Constant-time check, upgrading the stored hash when it matched under an old mode or
    /// pepper, and remembering a slow-hash success in the cache.
    async fn check_and_upgrade(
        &self,
        parsed: &Arc<ParsedKey>,
        record: &ApiKeyRecord,
        fingerprint: Option<[u8; 32]>,
        now: SystemTime,
    ) -> Result<bool, Error> {
        let check = self.check_hash(parsed, &record.hash).await?;
        if !check.matched {
            return Ok(false);
        }
        let mut stored = record.hash.clone();
        if check.needs_rehash {
            match self.new_hash(parsed).await {
                Ok(new) => {
                    if self
                        .store
                        .replace_hash(&record.id, &record.hash, &new)
                        .await
                        .map_err(Error::Store)?
                    {
                        stored = new;
                    }
                }
                // A full pool postpones the upgrade to a later use; the key was right.
                Err(Error::Busy { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        if let Some(f) = fingerprint {
            self.cache.insert(f, record.id.clone(), stored, now);
        }
        Ok(true)
    }

    /// The remaining throttle time of `source`, if it is throttled.
    async fn throttled_for(&self, src: &str, now: SystemTime) -> Result<Option<Duration>, Error> {
        let state = self
            .counter
            .state(src, self.lockout.window, now)
            .await
            .map_err(|e| Error::Store(StoreError::from_core("attempt counter", e)))?;
        Ok(state.and_then(|s| {
            let until = s.last_failure.checked_add(self.lockout.backoff(s.count))?;
            until.duration_since(now).ok().filter(|d| !d.is_zero())
        }))
    }

    /// Counts a failure against the source (and against the key id once the key reached
    /// the lookup, whether or not the id exists), records the events, and returns the error
    /// to give back.
    async fn failed(
        &self,
        error: Error,
        id: Option<&KeyId>,
        source: &Source,
        src: &str,
        now: SystemTime,
    ) -> Error {
        let window = self.lockout.window;
        if let Ok(state) = self.counter.record_failure(src, window, now).await
            && self
                .counter
                .crossed(state.count, self.lockout.source_threshold)
        {
            self.emit(
                EventKind::AuthnLoginLock,
                &error,
                id,
                source,
                now,
                Severity::Critical,
            )
            .await;
        }
        if !matches!(error, Error::TestKeyRefused)
            && let Some(id) = id
            && let Ok(state) = self
                .counter
                .record_failure(&format!("key:{id}"), window, now)
                .await
            && self
                .counter
                .crossed(state.count, self.lockout.key_alert_threshold)
        {
            // Someone holds this id and is guessing its secret: alert, but never lock it.
            self.emit(
                EventKind::AuthnLoginFailMax,
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
            &error,
            Some(&record.id),
            source,
            now,
            Severity::Warning,
        )
        .await;
        error
    }

    /// Records a failure event (never with key material: the id is public).
    async fn emit(
        &self,
        kind: EventKind,
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
        let mut event = SecurityEvent::new(kind, Outcome::Failure, now)
            .with_actor(actor)
            .with_reason(error.reason_code())
            .with_severity(severity);
        if let Some(ip) = source.ip() {
            event = event.with_source(ip);
        }
        mcpsec_core::emit(&*self.events, event).await;
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
