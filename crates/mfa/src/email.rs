//! Email codes: numeric, short-lived, single use, only the latest per (user, purpose,
//! flow), a few attempts per challenge and a failure budget per user across challenges
//! (so resends do not bring fresh guesses), a resend cooldown claimed in one atomic store
//! write, stored as a keyed hash bound to all three.
//!
//! Email is a weaker factor (NIST SP 800-63B): it does not satisfy step-up for
//! administrative actions unless the policy says so explicitly.

use crate::budget::Attempt;
use crate::{Error, Factor, StoreError, Verified};
use mcpsec_core::hmac::{Domain, MacKey};
use mcpsec_core::{
    Actor, AttemptCounter, EventKind, EventSink, Label, MemoryAttemptCounter, Outcome, ReasonCode,
    SecretBytes, SecretString, SecurityEvent, Severity, SharedClock, TokenId, UserId,
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

/// The result of [`EmailCodeStore::try_start_cooldown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cooldown {
    /// No cooldown was running; one now runs until the given time, and the caller may send.
    Started,
    /// A cooldown started by an earlier send runs until `until`; do not send.
    Running {
        /// When it ends.
        until: SystemTime,
    },
}

/// Storage for email challenges.
///
/// [`attempt`](EmailCodeStore::attempt) must be atomic across the fleet: of concurrent
/// attempts with the right code exactly one is `Consumed`, and wrong attempts are counted
/// exactly. [`try_start_cooldown`](EmailCodeStore::try_start_cooldown) must be one atomic
/// conditional write (Redis `SET NX PX`, an `INSERT … ON CONFLICT … WHERE until <= now`):
/// of concurrent calls inside one cooldown exactly one is `Started`, so concurrent sends
/// deliver one email. The conformance suite in `mcpsec_mfa::testkit` checks both.
#[async_trait::async_trait]
pub trait EmailCodeStore: Send + Sync + std::fmt::Debug {
    /// Stores `record` as the only valid challenge for `key` (replacing any earlier one).
    async fn put(&self, key: &ChallengeKey, record: ChallengeRecord) -> Result<(), StoreError>;
    /// Starts the resend cooldown of (`user`, `purpose`), across flows, to run until
    /// `until`, unless one is running at `now` (its end is after `now`): atomically.
    async fn try_start_cooldown(
        &self,
        user: &UserId,
        purpose: &Label,
        now: SystemTime,
        until: SystemTime,
    ) -> Result<Cooldown, StoreError>;
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

/// Cooldowns the memory store keeps before it drops the ended ones.
const COOLDOWN_SWEEP: usize = 10_000;

/// In-memory [`EmailCodeStore`].
#[derive(Debug, Default)]
pub struct MemoryEmailCodeStore {
    challenges: Mutex<HashMap<ChallengeKey, ChallengeRecord>>,
    cooldowns: Mutex<HashMap<(UserId, Label), SystemTime>>,
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

    async fn try_start_cooldown(
        &self,
        user: &UserId,
        purpose: &Label,
        now: SystemTime,
        until: SystemTime,
    ) -> Result<Cooldown, StoreError> {
        let mut cooldowns = self
            .cooldowns
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (user.clone(), purpose.clone());
        if let Some(&running) = cooldowns.get(&key)
            && running > now
        {
            return Ok(Cooldown::Running { until: running });
        }
        if cooldowns.len() >= COOLDOWN_SWEEP {
            cooldowns.retain(|_, end| *end > now);
        }
        cooldowns.insert(key, until);
        Ok(Cooldown::Started)
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
    /// Wrong codes allowed per user across all challenges, purposes and flows within
    /// `user_failure_window` (default 20 in 24 hours). Without it every resend brought
    /// `max_attempts` fresh guesses. NIST SP 800-63B caps failed attempts at 100 per
    /// account; 20 a day gives an attacker who can trigger sends at most 1 in 50,000 per
    /// day against 6 digits, and leaves a user with typos room. Over it,
    /// [`EmailCodes::verify`] answers [`Error::TooManyAttempts`] without checking.
    pub user_failure_budget: u64,
    /// The window of `user_failure_budget` (default 24 hours).
    pub user_failure_window: Duration,
}

impl Default for EmailCodePolicy {
    fn default() -> Self {
        Self {
            digits: 6,
            ttl: Duration::from_secs(600),
            max_attempts: 5,
            resend_cooldown: Duration::from_secs(60),
            user_failure_budget: 20,
            user_failure_window: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// Sends and checks email codes.
#[derive(Debug, Clone)]
pub struct EmailCodes {
    counter: Arc<dyn AttemptCounter>,
    store: Arc<dyn EmailCodeStore>,
    sender: Arc<dyn EmailSender>,
    key: Arc<MacKey>,
    events: Arc<dyn EventSink>,
    clock: SharedClock,
    policy: EmailCodePolicy,
}

/// The hash of a code: the user, purpose and flow, then the code, each length-framed.
const EMAIL_CODE_DOMAIN: Domain = Domain::new("mcpsec-email-code-v1");

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
        let key = MacKey::new(key.expose_secret())
            .map_err(|_| Error::Config("the email-code key is at least 32 bytes"))?;
        if !(6..=10).contains(&policy.digits)
            || policy.ttl.is_zero()
            || policy.ttl > Duration::from_secs(600)
            || policy.max_attempts == 0
            || policy.user_failure_budget == 0
            || policy.user_failure_window.is_zero()
        {
            return Err(Error::Config(
                "email codes: 6 to 10 digits, lifetime up to 10 minutes, at least one attempt \
                 per challenge and per user",
            ));
        }
        Ok(Self {
            counter: Arc::new(MemoryAttemptCounter::default()),
            store,
            sender,
            key: Arc::new(key),
            events,
            clock,
            policy,
        })
    }

    /// Counts the per-user failure budget in `counter` (share one across the fleet, as
    /// for TOTP); in memory by default.
    #[must_use]
    pub fn with_attempt_counter(mut self, counter: Arc<dyn AttemptCounter>) -> Self {
        self.counter = counter;
        self
    }

    /// Sends a fresh code for `key` to `to`, replacing any earlier code of that flow.
    /// Refused within the resend cooldown of the last code for the same user and purpose;
    /// the cooldown is claimed in one atomic store write before anything is sent, so of
    /// concurrent sends one email goes out. A send that fails after the claim still
    /// waits out the cooldown.
    pub async fn send(&self, key: &ChallengeKey, to: &EmailAddress) -> Result<(), Error> {
        let now = self.clock.now();
        let until = now.checked_add(self.policy.resend_cooldown).unwrap_or(now);
        if let Cooldown::Running { until } = self
            .store
            .try_start_cooldown(&key.user, &key.purpose, now, until)
            .await
            .map_err(Error::Store)?
        {
            let retry_after = until.duration_since(now).unwrap_or(Duration::ZERO);
            return Err(Error::Cooldown { retry_after });
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
        self.store.put(key, record).await.map_err(Error::Store)?;
        self.sender
            .send_code(to, &key.purpose, &code)
            .await
            .map_err(Error::Store)
    }

    /// Checks `code` for `key` and returns the `amr` it establishes (`email`, see
    /// [`crate::Factor`]): single use, within its lifetime, at most `max_attempts` wrong
    /// tries per challenge and `user_failure_budget` per user across challenges (counted
    /// before the code is checked, so a concurrent burst cannot overrun it); only the
    /// latest code of the flow works.
    pub async fn verify(&self, key: &ChallengeKey, code: &str) -> Result<Verified, Error> {
        let result = self.check(key, code).await;
        let (kind, outcome, reason) = match &result {
            Ok(_) => (EventKind::AuthnMfaSuccess, Outcome::Success, None),
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
            Err(Error::Malformed | Error::WrongLength { .. }) => (
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
        mcpsec_core::emit(&*self.events, event).await;
        result
    }

    async fn check(&self, key: &ChallengeKey, code: &str) -> Result<Verified, Error> {
        // Malformed input is refused before the budget: nothing is checked.
        let code = crate::normalize(code, self.policy.digits)?;
        let now = self.clock.now();
        let subject = format!("mfa:email:{}", key.user);
        let attempt = Attempt::count(
            &*self.counter,
            &subject,
            self.policy.user_failure_window,
            now,
        )
        .await?;
        let count = attempt.state.count;
        if count > self.policy.user_failure_budget {
            let retry_after = attempt.window_left();
            attempt.give_back().await;
            return Err(Error::TooManyAttempts { retry_after });
        }
        let candidate = self.hash(key, &code);
        let outcome = self
            .store
            .attempt(key, &candidate, now, self.policy.max_attempts)
            .await
            .map_err(Error::Store)?;
        match outcome {
            AttemptOutcome::Consumed => {
                attempt.give_back().await;
                Ok(Verified::new(Factor::EmailCode))
            }
            AttemptOutcome::Wrong => {
                if self.counter.crossed(count, self.policy.user_failure_budget) {
                    self.report_budget_spent(key).await;
                }
                Err(Error::WrongCode)
            }
            // Nothing was compared: no challenge (so nothing to guess), or a dead one.
            // Counting these would only let anyone spend a user's budget without a send.
            AttemptOutcome::NotFound => {
                attempt.give_back().await;
                Err(Error::WrongCode)
            }
            AttemptOutcome::Expired => {
                attempt.give_back().await;
                Err(Error::CodeExpired)
            }
            AttemptOutcome::TooManyAttempts => {
                attempt.give_back().await;
                Err(Error::TooManyAttempts {
                    retry_after: Duration::ZERO,
                })
            }
        }
    }

    /// The user's failure budget across challenges is spent: critical, for alerting.
    async fn report_budget_spent(&self, key: &ChallengeKey) {
        let event = SecurityEvent::new(
            EventKind::AuthnLoginFailMax,
            Outcome::Failure,
            self.clock.now(),
        )
        .with_actor(Actor::User {
            user: key.user.clone(),
        })
        .with_action(key.purpose.clone())
        .with_reason(ReasonCode::LockedOut)
        .with_severity(Severity::Critical);
        mcpsec_core::emit(&*self.events, event).await;
    }

    /// HMAC over a version tag, the user, purpose and flow (length-prefixed), and the code.
    fn hash(&self, key: &ChallengeKey, code: &str) -> [u8; 32] {
        self.key
            .input(EMAIL_CODE_DOMAIN)
            .part(key.user.as_str().as_bytes())
            .part(key.purpose.as_str().as_bytes())
            .part(key.flow.as_str().as_bytes())
            .part(code.as_bytes())
            .tag()
    }
}
