//! Email codes: numeric, short-lived, single use, only the latest per (user, purpose,
//! flow), a few attempts, a resend cooldown, stored as a keyed hash bound to all three.
//!
//! Email is a weaker factor (NIST SP 800-63B): it does not satisfy step-up for
//! administrative actions unless the policy says so explicitly.

use crate::{Error, StoreError};
use aws_lc_rs::hmac;
use mcpsec_core::{
    Actor, EventKind, EventSink, Label, Outcome, ReasonCode, SecretBytes, SecretString,
    SecurityEvent, SharedClock, TokenId, UserId,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// An email address: at most 254 bytes, one `@`, no spaces or control characters. `Debug`
/// masks the local part (it is personal data).
#[derive(Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Validates `text` as an address (structure only; deliverability is the sender's).
    pub fn new(text: &str) -> Result<Self, Error> {
        let ok = text.len() <= 254
            && text.matches('@').count() == 1
            && text.split('@').all(|part| !part.is_empty())
            && !text.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(Error::Config("not an email address"))
        }
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let domain = self.0.split('@').nth(1).unwrap_or_default();
        write!(f, "EmailAddress(***@{domain})")
    }
}

/// Delivers codes. Hosts implement it on their mail service; [`MemoryOutbox`] is for tests.
#[async_trait::async_trait]
pub trait EmailSender: Send + Sync + std::fmt::Debug {
    /// Sends `code` for `purpose` to `to`. Must not log the code.
    async fn send_code(
        &self,
        to: &EmailAddress,
        purpose: &Label,
        code: &SecretString,
    ) -> Result<(), StoreError>;
}

/// An [`EmailSender`] that keeps messages in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    sent: Mutex<Vec<(EmailAddress, Label, SecretString)>>,
}

impl MemoryOutbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last code sent to `to`, if any.
    pub fn last_code_to(&self, to: &EmailAddress) -> Option<SecretString> {
        let sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        sent.iter()
            .rev()
            .find(|(a, _, _)| a == to)
            .map(|(_, _, c)| SecretString::new(c.expose_secret().to_owned()))
    }

    /// How many messages were sent.
    pub fn len(&self) -> usize {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing was sent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait::async_trait]
impl EmailSender for MemoryOutbox {
    async fn send_code(
        &self,
        to: &EmailAddress,
        purpose: &Label,
        code: &SecretString,
    ) -> Result<(), StoreError> {
        let copy = SecretString::new(code.expose_secret().to_owned());
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((to.clone(), purpose.clone(), copy));
        Ok(())
    }
}

/// Which challenge: the user, what the code is for (`login`, `change_email`), and the
/// flow (one login attempt) it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChallengeKey {
    /// The user.
    pub user: UserId,
    /// What the code is for.
    pub purpose: Label,
    /// Which flow.
    pub flow: TokenId,
}

/// A stored challenge: the keyed hash of the code, never the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRecord {
    /// HMAC of user, purpose, flow and code.
    pub hash: [u8; 32],
    /// When it was sent.
    pub sent_at: SystemTime,
    /// When it stops working.
    pub expires_at: SystemTime,
    /// Wrong attempts so far.
    pub attempts: u32,
}

/// The result of [`EmailCodeStore::attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The code matched; the challenge is consumed.
    Consumed,
    /// Wrong code; the attempt was counted.
    Wrong,
    /// No challenge (never sent, consumed, replaced or expired and removed).
    NotFound,
    /// The challenge expired; it is removed.
    Expired,
    /// The attempt cap was reached; it is removed.
    TooManyAttempts,
}

/// Storage for email challenges.
///
/// [`attempt`](EmailCodeStore::attempt) must be atomic across the fleet: of concurrent
/// attempts with the right code exactly one is `Consumed`, and wrong attempts are counted
/// exactly. The conformance suite in `mcpsec_mfa::testkit` checks it.
#[async_trait::async_trait]
pub trait EmailCodeStore: Send + Sync + std::fmt::Debug {
    /// Stores `record` as the only valid challenge for `key` (replacing any earlier one).
    async fn put(&self, key: &ChallengeKey, record: ChallengeRecord) -> Result<(), StoreError>;
    /// When a code for (`user`, `purpose`), in any flow, was last sent.
    async fn last_sent(
        &self,
        user: &UserId,
        purpose: &Label,
    ) -> Result<Option<SystemTime>, StoreError>;
    /// Atomically checks `candidate` against the challenge for `key` at `now` with at most
    /// `max_attempts` wrong attempts (constant-time comparison).
    async fn attempt(
        &self,
        key: &ChallengeKey,
        candidate: &[u8; 32],
        now: SystemTime,
        max_attempts: u32,
    ) -> Result<AttemptOutcome, StoreError>;
}

/// In-memory [`EmailCodeStore`].
#[derive(Debug, Default)]
pub struct MemoryEmailCodeStore {
    challenges: Mutex<HashMap<ChallengeKey, ChallengeRecord>>,
}

impl MemoryEmailCodeStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ChallengeKey, ChallengeRecord>> {
        self.challenges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl EmailCodeStore for MemoryEmailCodeStore {
    async fn put(&self, key: &ChallengeKey, record: ChallengeRecord) -> Result<(), StoreError> {
        self.lock().insert(key.clone(), record);
        Ok(())
    }

    async fn last_sent(
        &self,
        user: &UserId,
        purpose: &Label,
    ) -> Result<Option<SystemTime>, StoreError> {
        Ok(self
            .lock()
            .iter()
            .filter(|(k, _)| &k.user == user && &k.purpose == purpose)
            .map(|(_, r)| r.sent_at)
            .max())
    }

    async fn attempt(
        &self,
        key: &ChallengeKey,
        candidate: &[u8; 32],
        now: SystemTime,
        max_attempts: u32,
    ) -> Result<AttemptOutcome, StoreError> {
        let mut challenges = self.lock();
        let Some(record) = challenges.get_mut(key) else {
            return Ok(AttemptOutcome::NotFound);
        };
        if now >= record.expires_at {
            challenges.remove(key);
            return Ok(AttemptOutcome::Expired);
        }
        if record.attempts >= max_attempts {
            challenges.remove(key);
            return Ok(AttemptOutcome::TooManyAttempts);
        }
        if bool::from(subtle::ConstantTimeEq::ct_eq(
            record.hash.as_slice(),
            candidate.as_slice(),
        )) {
            challenges.remove(key);
            return Ok(AttemptOutcome::Consumed);
        }
        record.attempts += 1;
        Ok(AttemptOutcome::Wrong)
    }
}

/// Email-code policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmailCodePolicy {
    /// Digits per code, 6 to 10 (default 6).
    pub digits: u8,
    /// Lifetime, at most 10 minutes (default 10 minutes).
    pub ttl: Duration,
    /// Wrong attempts allowed (default 5).
    pub max_attempts: u32,
    /// Least time between two sends for one user and purpose (default 60 s).
    pub resend_cooldown: Duration,
}

impl Default for EmailCodePolicy {
    fn default() -> Self {
        Self {
            digits: 6,
            ttl: Duration::from_secs(600),
            max_attempts: 5,
            resend_cooldown: Duration::from_secs(60),
        }
    }
}

/// Sends and checks email codes.
#[derive(Debug, Clone)]
pub struct EmailCodes {
    store: Arc<dyn EmailCodeStore>,
    sender: Arc<dyn EmailSender>,
    key: Arc<SecretBytes>,
    events: Arc<dyn EventSink>,
    clock: SharedClock,
    policy: EmailCodePolicy,
}

impl EmailCodes {
    /// Codes kept in `store`, sent by `sender`, hashed under `key` (≥ 32 bytes).
    pub fn new(
        store: Arc<dyn EmailCodeStore>,
        sender: Arc<dyn EmailSender>,
        key: SecretBytes,
        events: Arc<dyn EventSink>,
        clock: SharedClock,
        policy: EmailCodePolicy,
    ) -> Result<Self, Error> {
        if key.len() < 32 {
            return Err(Error::Config("the email-code key is at least 32 bytes"));
        }
        if !(6..=10).contains(&policy.digits)
            || policy.ttl.is_zero()
            || policy.ttl > Duration::from_secs(600)
            || policy.max_attempts == 0
        {
            return Err(Error::Config(
                "email codes: 6 to 10 digits, lifetime up to 10 minutes, at least one attempt",
            ));
        }
        Ok(Self {
            store,
            sender,
            key: Arc::new(key),
            events,
            clock,
            policy,
        })
    }

    /// Sends a fresh code for `key` to `to`, replacing any earlier code of that flow.
    /// Refused within the resend cooldown of the last code for the same user and purpose.
    pub async fn send(&self, key: &ChallengeKey, to: &EmailAddress) -> Result<(), Error> {
        let now = self.clock.now();
        if let Some(last) = self
            .store
            .last_sent(&key.user, &key.purpose)
            .await
            .map_err(|e| Error::Store(e.0))?
            && let Some(wait) = last
                .checked_add(self.policy.resend_cooldown)
                .and_then(|until| until.duration_since(now).ok())
            && !wait.is_zero()
        {
            return Err(Error::Cooldown { retry_after: wait });
        }
        let code =
            SecretString::random_from_alphabet(usize::from(self.policy.digits), "0123456789")
                .map_err(|_| Error::Random)?;
        let record = ChallengeRecord {
            hash: self.hash(key, code.expose_secret()),
            sent_at: now,
            expires_at: now.checked_add(self.policy.ttl).unwrap_or(now),
            attempts: 0,
        };
        self.store
            .put(key, record)
            .await
            .map_err(|e| Error::Store(e.0))?;
        self.sender
            .send_code(to, &key.purpose, &code)
            .await
            .map_err(|e| Error::Store(e.0))
    }

    /// Checks `code` for `key`: single use, within its lifetime, at most `max_attempts`
    /// wrong tries; only the latest code of the flow works.
    pub async fn verify(&self, key: &ChallengeKey, code: &str) -> Result<(), Error> {
        let result = self.check(key, code).await;
        let (kind, outcome, reason) = match &result {
            Ok(()) => (EventKind::AuthnMfaSuccess, Outcome::Success, None),
            Err(Error::CodeExpired) => (
                EventKind::AuthnMfaFail,
                Outcome::Failure,
                Some(ReasonCode::Expired),
            ),
            Err(Error::TooManyAttempts { .. }) => (
                EventKind::AuthnMfaFail,
                Outcome::Failure,
                Some(ReasonCode::LockedOut),
            ),
            Err(Error::Malformed) => (
                EventKind::AuthnMfaFail,
                Outcome::Failure,
                Some(ReasonCode::Malformed),
            ),
            Err(_) => (
                EventKind::AuthnMfaFail,
                Outcome::Failure,
                Some(ReasonCode::WrongCode),
            ),
        };
        let mut event = SecurityEvent::new(kind, outcome, self.clock.now())
            .with_actor(Actor::User {
                user: key.user.clone(),
            })
            .with_action(key.purpose.clone());
        if let Some(reason) = reason {
            event = event.with_reason(reason);
        }
        let _ = self.events.record(event).await;
        result
    }

    async fn check(&self, key: &ChallengeKey, code: &str) -> Result<(), Error> {
        let code = crate::normalize(code, self.policy.digits)?;
        let candidate = self.hash(key, &code);
        let outcome = self
            .store
            .attempt(key, &candidate, self.clock.now(), self.policy.max_attempts)
            .await
            .map_err(|e| Error::Store(e.0))?;
        match outcome {
            AttemptOutcome::Consumed => Ok(()),
            AttemptOutcome::Wrong | AttemptOutcome::NotFound => Err(Error::WrongCode),
            AttemptOutcome::Expired => Err(Error::CodeExpired),
            AttemptOutcome::TooManyAttempts => Err(Error::TooManyAttempts {
                retry_after: Duration::ZERO,
            }),
        }
    }

    /// HMAC over a version tag, the user, purpose and flow (length-prefixed), and the code.
    fn hash(&self, key: &ChallengeKey, code: &str) -> [u8; 32] {
        let mac_key = hmac::Key::new(hmac::HMAC_SHA256, self.key.expose_secret());
        let mut ctx = hmac::Context::with_key(&mac_key);
        ctx.update(b"mcpsec-email-code-v1");
        for part in [
            key.user.as_str(),
            key.purpose.as_str(),
            key.flow.as_str(),
            code,
        ] {
            ctx.update(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}
