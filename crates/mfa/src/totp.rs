//! TOTP (RFC 6238) on totp-rs, with enrollment that must be confirmed, input
//! normalisation, ±1 step of skew, and a replay guard so each code works once.

use crate::budget::Attempt;
use crate::{AttemptBudget, EnrollmentId, Error, Factor, TotpReplayGuard, Verified};
use mcpsec_access::{Authorized, perm};
use mcpsec_core::StoreError;
use mcpsec_core::{
    Actor, AttemptCounter, AttemptState, EventKind, EventSink, MemoryAttemptCounter, Outcome,
    ReasonCode, SealContext, Sealer, SecretBytes, SecretString, SecurityEvent, Severity,
    SharedClock, UserId,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use zeroize::Zeroizing;

/// Longest code input accepted before normalisation.
const MAX_CODE_INPUT: usize = 32;

/// The HMAC behind the codes. SHA-1 is what authenticator apps support; the others exist
/// for the RFC's vectors and for apps that honour them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpAlgorithm {
    /// HMAC-SHA1 (default).
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// Code parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpConfig {
    /// The HMAC (default SHA-1).
    pub algorithm: TotpAlgorithm,
    /// Digits per code, 6 to 8 (default 6).
    pub digits: u8,
    /// Seconds per step (default 30).
    pub step: u64,
    /// Steps of clock skew accepted either side (default 1).
    pub skew: u8,
}

impl Default for TotpConfig {
    fn default() -> Self {
        Self {
            algorithm: TotpAlgorithm::Sha1,
            digits: 6,
            step: 30,
            skew: 1,
        }
    }
}

/// A TOTP shared secret: at least 160 bits when generated, 128 when imported. Store it
/// sealed ([`TotpSecret::seal`]), never in plaintext.
#[derive(Debug)]
pub struct TotpSecret(SecretBytes);

impl TotpSecret {
    /// 20 random bytes (160 bits) from the OS CSPRNG.
    pub fn generate() -> Result<Self, Error> {
        SecretBytes::random(20).map(Self).map_err(|_| Error::Random)
    }

    /// A secret from raw bytes (at least 16).
    pub fn from_bytes(bytes: SecretBytes) -> Result<Self, Error> {
        if bytes.len() < 16 || bytes.len() > 128 {
            return Err(Error::Config("TOTP secrets are 16 to 128 bytes"));
        }
        Ok(Self(bytes))
    }

    /// A secret from its base32 text (RFC 4648, padding and spaces optional, any case).
    pub fn from_base32(text: &str) -> Result<Self, Error> {
        let cleaned: Zeroizing<String> = Zeroizing::new(
            text.chars()
                .filter(|c| !c.is_whitespace() && *c != '=')
                .collect::<String>()
                .to_ascii_uppercase(),
        );
        let bytes = totp_rs::Secret::try_from_base32(cleaned.as_str())
            .map_err(|_| Error::Config("not base32"))?;
        Self::from_bytes(SecretBytes::from_slice(bytes.as_bytes()))
    }

    /// The base32 text, for showing once at enrollment.
    pub fn to_base32(&self) -> SecretString {
        SecretString::new(totp_rs::Secret::new(self.0.expose_secret().into()).to_base32())
    }

    /// Seals the secret for storage, bound to `context`.
    ///
    /// A sealer's refusal keeps its reason ([`Error::Seal`]: for example a keyset that
    /// lacks `context`'s category, by name); only a failed store behind the sealer is
    /// [`Error::Store`].
    pub async fn seal(&self, sealer: &dyn Sealer, context: &SealContext) -> Result<Vec<u8>, Error> {
        sealer
            .seal(self.0.expose_secret(), context)
            .await
            .map_err(|e| match e {
                mcpsec_core::Error::Store(inner) => Error::Store(inner),
                mcpsec_core::Error::RandomUnavailable => Error::Random,
                refused => Error::Seal(refused),
            })
    }

    /// Opens a sealed secret.
    pub async fn open(
        sealer: &dyn Sealer,
        sealed: &[u8],
        context: &SealContext,
    ) -> Result<Self, Error> {
        let bytes = sealer.open(sealed, context).await.map_err(|e| {
            Error::Store(StoreError::corrupt("sealed secret could not be opened").with_source(e))
        })?;
        Self::from_bytes(bytes)
    }

    fn totp(
        &self,
        config: TotpConfig,
        label: Option<(&str, &str)>,
    ) -> Result<totp_rs::Totp, Error> {
        let algorithm = match config.algorithm {
            TotpAlgorithm::Sha1 => totp_rs::Algorithm::SHA1,
            TotpAlgorithm::Sha256 => totp_rs::Algorithm::SHA256,
            TotpAlgorithm::Sha512 => totp_rs::Algorithm::SHA512,
        };
        if !(6..=8).contains(&config.digits) || config.step == 0 || config.skew > 2 {
            return Err(Error::Config(
                "TOTP: 6 to 8 digits, a positive step, skew at most 2",
            ));
        }
        let mut builder = totp_rs::Builder::new()
            .with_algorithm(algorithm)
            .with_digits(config.digits)
            .with_step_duration(config.step)
            .with_skew(u16::from(config.skew))
            .with_secret(totp_rs::Secret::new(self.0.expose_secret().into()));
        if let Some((issuer, account)) = label {
            builder = builder.with_issuer(Some(issuer)).with_account_name(account);
        }
        builder
            .build()
            .map_err(|_| Error::Config("TOTP parameters refused"))
    }

    /// The `otpauth://totp/…` URI for authenticator apps. It contains the secret.
    pub fn otpauth_uri(
        &self,
        config: TotpConfig,
        issuer: &str,
        account: &str,
    ) -> Result<SecretString, Error> {
        if issuer.contains(':') || account.contains(':') {
            return Err(Error::Config("issuer and account may not contain ':'"));
        }
        let url = self
            .totp(config, Some((issuer, account)))?
            .to_url()
            .map_err(|_| Error::Config("otpauth URI"))?;
        Ok(SecretString::new(url))
    }

    /// Reads an `otpauth://totp/…` URI (as exported by another system): the secret and
    /// its parameters. At most 2 KiB; SHA-1/256/512, 6 to 8 digits, a positive step.
    pub fn from_otpauth_uri(uri: &str) -> Result<(Self, TotpConfig), Error> {
        if uri.len() > 2048 {
            return Err(Error::Config("otpauth URI longer than 2 KiB"));
        }
        let totp =
            totp_rs::Totp::from_url(uri).map_err(|_| Error::Config("not a valid otpauth URI"))?;
        let algorithm = match totp.algorithm() {
            totp_rs::Algorithm::SHA1 => TotpAlgorithm::Sha1,
            totp_rs::Algorithm::SHA256 => TotpAlgorithm::Sha256,
            totp_rs::Algorithm::SHA512 => TotpAlgorithm::Sha512,
            _ => return Err(Error::Config("unsupported otpauth algorithm")),
        };
        let config = TotpConfig {
            algorithm,
            digits: totp.digits(),
            step: totp.step(),
            skew: 1,
        };
        let secret = Self::from_bytes(SecretBytes::from_slice(totp.secret().as_bytes()))?;
        secret.totp(config, None)?;
        Ok((secret, config))
    }

    /// The fingerprint of this enrollment for `user`, under which the replay guard keeps
    /// its last accepted step: SHA-256 over a domain tag, the user and the secret,
    /// truncated to 128 bits. A new secret is a new enrollment.
    pub fn enrollment_id(&self, user: &UserId) -> EnrollmentId {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(b"mcpsec-totp-enrollment-v1");
        for part in [user.as_str().as_bytes(), self.0.expose_secret()] {
            ctx.update(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            ctx.update(part);
        }
        let mut id = [0u8; 16];
        for (out, byte) in id.iter_mut().zip(ctx.finish().as_ref()) {
            *out = *byte;
        }
        EnrollmentId(id)
    }

    /// The code for the step containing `unix_seconds` (for tools and tests).
    pub fn code_at(&self, config: TotpConfig, unix_seconds: u64) -> Result<SecretString, Error> {
        Ok(SecretString::new(
            self.totp(config, None)?.generate(unix_seconds).to_string(),
        ))
    }

    /// Checks `code` at `unix_seconds` within the skew; returns the matched step. Pure: no
    /// replay protection (use [`TotpVerifier`] for that). The current step is tried first
    /// (the common case costs one HMAC); each comparison is constant-time.
    pub fn check_at(
        &self,
        config: TotpConfig,
        code: &str,
        unix_seconds: u64,
    ) -> Result<u64, Error> {
        let code = normalize(code, config.digits)?;
        let totp = self.totp(config, None)?;
        let current = unix_seconds / config.step;
        let skew = u64::from(config.skew);
        let candidates = std::iter::once(current).chain(
            (1..=skew)
                .flat_map(|d| [current.checked_sub(d), current.checked_add(d)])
                .flatten(),
        );
        for step in candidates {
            let expected =
                Zeroizing::new(totp.generate(step.saturating_mul(config.step)).to_string());
            if bool::from(subtle::ConstantTimeEq::ct_eq(
                expected.as_bytes(),
                code.as_bytes(),
            )) {
                return Ok(step);
            }
        }
        Err(Error::WrongCode)
    }
}

/// Removes spaces and dashes, then requires exactly `digits` ASCII digits.
///
/// Input over 32 characters, empty, or with anything but digits is [`Error::Malformed`];
/// digits of another length is [`Error::WrongLength`], which names `digits` (the length
/// is configuration, not a secret) so an 8-digit code sent to a 6-digit verifier is told
/// what was expected.
pub fn normalize(input: &str, digits: u8) -> Result<Zeroizing<String>, Error> {
    if input.len() > MAX_CODE_INPUT {
        return Err(Error::Malformed);
    }
    let code: Zeroizing<String> = Zeroizing::new(
        input
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '\t'))
            .collect(),
    );
    if code.is_empty() || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Malformed);
    }
    if code.len() != usize::from(digits) {
        return Err(Error::WrongLength { expected: digits });
    }
    Ok(code)
}

/// Verifies TOTP codes once each: a code is accepted only if its step is newer than the
/// last accepted step for that user's enrollment, recorded atomically by the
/// [`TotpReplayGuard`]; and
/// a user who sends too many wrong codes is paused (an [`AttemptBudget`] counted in an
/// [`AttemptCounter`], in memory by default: share one across a fleet).
#[derive(Debug, Clone)]
pub struct TotpVerifier {
    guard: Arc<dyn TotpReplayGuard>,
    events: Arc<dyn EventSink>,
    clock: SharedClock,
    config: TotpConfig,
    counter: Arc<dyn AttemptCounter>,
    budget: AttemptBudget,
}

impl TotpVerifier {
    /// A verifier with `config`, recording steps in `guard` and reporting to `events`,
    /// with the default attempt budget counted in memory.
    pub fn new(
        guard: Arc<dyn TotpReplayGuard>,
        events: Arc<dyn EventSink>,
        clock: SharedClock,
        config: TotpConfig,
    ) -> Self {
        Self {
            guard,
            events,
            clock,
            config,
            counter: Arc::new(MemoryAttemptCounter::default()),
            budget: AttemptBudget::default(),
        }
    }

    /// Counts failures in `counter` (share one across the fleet) under `budget`.
    #[must_use]
    pub fn with_attempt_budget(
        mut self,
        counter: Arc<dyn AttemptCounter>,
        budget: AttemptBudget,
    ) -> Self {
        self.counter = counter;
        self.budget = budget;
        self
    }

    /// Verifies `code` for `user` and returns the `amr` it establishes (`otp`, see
    /// [`crate::Factor`]). Each failure and each success is a security event.
    ///
    /// Guarantees: a well-formed code is counted against the [`AttemptBudget`] *before*
    /// it is checked, so however many requests race, at most `max_failures` wrong codes
    /// are checked before the pause (plus one per expired pause); a right code gives its
    /// attempt back. A paused user is refused without the code being checked. Malformed
    /// input ([`Error::Malformed`], and [`Error::WrongLength`] for digits of another
    /// length) is counted apart (`max_malformed`) and never pauses well-formed codes.
    ///
    /// A right code whose step was already used is refused: [`Error::Replayed`], or
    /// [`Error::WaitForNextCode`] while it is still the code the authenticator shows (for
    /// example right after [`PendingEnrollment::confirm`], which spends the current
    /// step). Both are failures with reason `replayed` and count against the budget.
    pub async fn verify(
        &self,
        user: &UserId,
        secret: &TotpSecret,
        code: &str,
    ) -> Result<Verified, Error> {
        let now = self.clock.now();
        let result = match normalize(code, self.config.digits) {
            Ok(code) => self.budgeted(user, secret, &code, now).await,
            Err(refused) => self.malformed(user, now, refused).await,
        };
        let reason = match &result {
            Ok(_) => None,
            Err(Error::Replayed | Error::WaitForNextCode { .. }) => Some(ReasonCode::Replayed),
            Err(Error::Malformed | Error::WrongLength { .. }) => Some(ReasonCode::Malformed),
            Err(Error::TooManyAttempts { .. }) => Some(ReasonCode::RateLimited),
            Err(_) => Some(ReasonCode::WrongCode),
        };
        let (kind, outcome) = match reason {
            None => (EventKind::AuthnMfaSuccess, Outcome::Success),
            Some(_) => (EventKind::AuthnMfaFail, Outcome::Failure),
        };
        self.report(kind, outcome, user, reason, kind.default_severity())
            .await;
        result
    }

    /// Counts the attempt, refuses it over budget, then checks the code.
    async fn budgeted(
        &self,
        user: &UserId,
        secret: &TotpSecret,
        code: &str,
        now: SystemTime,
    ) -> Result<Verified, Error> {
        let subject = format!("mfa:totp:{user}");
        // A paused user is refused without counting: waiting out a pause stays possible.
        let before = self
            .counter
            .state(&subject, self.budget.window, now)
            .await
            .map_err(|e| Error::Store(StoreError::from_core("attempt counter", e)))?;
        let failures_before = before.map_or(0, |s| s.count);
        if let Some(retry_after) = before.and_then(|s| self.pause_left(&s, now)) {
            return Err(Error::TooManyAttempts { retry_after });
        }
        let attempt = Attempt::count(&*self.counter, &subject, self.budget.window, now).await?;
        let count = attempt.state.count;
        // Within the budget, or the one attempt an expired pause allows: the attempt that
        // took the count from what this request read to one more. Every other racer lost.
        if count > self.budget.max_failures && count != failures_before.saturating_add(1) {
            attempt.give_back().await;
            let failures = failures_before
                .saturating_add(1)
                .max(self.budget.max_failures);
            return Err(Error::TooManyAttempts {
                retry_after: self.budget.pause(failures),
            });
        }
        let unix = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let result = self.check(user, secret, code, unix).await;
        match &result {
            Err(Error::WrongCode | Error::Replayed | Error::WaitForNextCode { .. }) => {
                if self.counter.crossed(count, self.budget.max_failures) {
                    self.report(
                        EventKind::AuthnLoginFailMax,
                        Outcome::Failure,
                        user,
                        Some(ReasonCode::LockedOut),
                        Severity::Critical,
                    )
                    .await;
                }
            }
            _ => attempt.give_back().await,
        }
        result
    }

    /// Malformed input (`refused`, as [`normalize`] said): counted under its own budget,
    /// never against wrong codes.
    async fn malformed(
        &self,
        user: &UserId,
        now: SystemTime,
        refused: Error,
    ) -> Result<Verified, Error> {
        let subject = format!("mfa:totp-malformed:{user}");
        let attempt = Attempt::count(&*self.counter, &subject, self.budget.window, now).await?;
        if attempt.state.count > self.budget.max_malformed {
            return Err(Error::TooManyAttempts {
                retry_after: attempt.window_left(),
            });
        }
        Err(refused)
    }

    fn pause_left(&self, state: &AttemptState, now: SystemTime) -> Option<Duration> {
        let until = state
            .last_failure
            .checked_add(self.budget.pause(state.count))?;
        until.duration_since(now).ok().filter(|d| !d.is_zero())
    }

    async fn report(
        &self,
        kind: EventKind,
        outcome: Outcome,
        user: &UserId,
        reason: Option<ReasonCode>,
        severity: Severity,
    ) {
        let mut event = SecurityEvent::new(kind, outcome, self.clock.now())
            .with_actor(Actor::User { user: user.clone() })
            .with_severity(severity);
        if let Some(reason) = reason {
            event = event.with_reason(reason);
        }
        mcpsec_core::emit(&*self.events, event).await;
    }

    async fn check(
        &self,
        user: &UserId,
        secret: &TotpSecret,
        code: &str,
        unix_seconds: u64,
    ) -> Result<Verified, Error> {
        let step = secret.check_at(self.config, code, unix_seconds)?;
        if self
            .guard
            .record_step_if_newer(user, &secret.enrollment_id(user), step)
            .await
            .map_err(Error::Store)?
        {
            return Ok(Verified::new(Factor::Totp));
        }
        // Spent. While the authenticator still shows this code (its step is the current
        // one, or ahead within the skew), "wait for the next code" is the useful answer;
        // the guard cannot tell a confirmation's step from a login's, so it is a replay
        // either way (same event, same budget), only the message differs.
        if step >= unix_seconds / self.config.step {
            let next = step.saturating_add(1).saturating_mul(self.config.step);
            return Err(Error::WaitForNextCode {
                retry_after: Duration::from_secs(next.saturating_sub(unix_seconds)),
            });
        }
        Err(Error::Replayed)
    }
}

/// An enrollment waiting for the user to prove their app works with one valid code.
#[derive(Debug)]
pub struct PendingEnrollment {
    secret: TotpSecret,
    uri: SecretString,
}

impl PendingEnrollment {
    /// Starts enrollment: a fresh 160-bit secret and its `otpauth://` URI.
    pub fn begin(config: TotpConfig, issuer: &str, account: &str) -> Result<Self, Error> {
        let secret = TotpSecret::generate()?;
        let uri = secret.otpauth_uri(config, issuer, account)?;
        Ok(Self { secret, uri })
    }

    /// The URI to show (as text or a QR code), once.
    pub fn uri(&self) -> &SecretString {
        &self.uri
    }

    /// The base32 secret, for manual entry.
    pub fn secret_base32(&self) -> SecretString {
        self.secret.to_base32()
    }

    /// Completes enrollment with a first valid code; returns the secret to seal and store
    /// for the proof's subject.
    ///
    /// **The confirming code is spent**: its time step is recorded in the verifier's
    /// replay guard exactly as a login would record it, so the code that confirmed the
    /// enrollment can never also log in. A login in the same 30 s step (the authenticator
    /// still shows that code) is refused with [`Error::WaitForNextCode`] and its
    /// `retry_after`, which a host shows as "wait for the next code (N s)" rather than
    /// as a failed login; the next step's code logs in. Nothing is weakened: one code,
    /// one use, whichever of confirmation and login used it.
    ///
    /// The user is the one the proof was issued to (`user.update_profile` on their own
    /// profile), never an id from the request: nobody enrolls a factor for someone else.
    pub async fn confirm(
        self,
        verifier: &TotpVerifier,
        proof: &Authorized<perm::UserUpdateProfile>,
        code: &str,
    ) -> Result<TotpSecret, (Self, Error)> {
        match verifier.verify(proof.subject(), &self.secret, code).await {
            Ok(_) => Ok(self.secret),
            Err(e) => Err((self, e)),
        }
    }
}
