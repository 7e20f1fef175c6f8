//! Attempt budgets that count an attempt *before* its code is checked.
//!
//! Reading the budget, checking the code and only then counting a failure lets a
//! concurrent burst read "not over budget" many times before any failure lands (999 of
//! 1,000 concurrent guesses were checked that way, issue 12 item 15). So every attempt is
//! counted first ([`AttemptCounter::record_failure`], atomic across the fleet), refused
//! when its count is over the budget, and only then checked; an attempt that turns out
//! right, or that was never checked, is given back ([`AttemptCounter::release`]).

use crate::Error;
use mcpsec_core::StoreError;
use mcpsec_core::{AttemptCounter, AttemptState};
use std::time::{Duration, SystemTime};

/// How many wrong TOTP codes a user may send before verification pauses, and how much
/// malformed input is tolerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptBudget {
    /// Wrong codes allowed in the window before pausing (default 5).
    pub max_failures: u64,
    /// The counting window (default 15 minutes).
    pub window: Duration,
    /// The first pause; doubles with each further failure (default 30 s).
    pub base_backoff: Duration,
    /// The longest pause (default 15 minutes).
    pub max_backoff: Duration,
    /// Malformed inputs (not 6–8 digits after normalisation) allowed in the window
    /// (default 20). They are counted apart from wrong codes: garbage proves nothing about
    /// the secret, so it must not pause a user's TOTP (five stray pastes would), but it
    /// is not free either. Over this budget malformed input answers
    /// [`Error::TooManyAttempts`]; well-formed codes are unaffected.
    pub max_malformed: u64,
}

impl Default for AttemptBudget {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            base_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(15 * 60),
            max_malformed: 20,
        }
    }
}

impl AttemptBudget {
    /// The pause after `failures` wrong codes.
    pub(crate) fn pause(&self, failures: u64) -> Duration {
        if failures < self.max_failures {
            return Duration::ZERO;
        }
        let doublings = u32::try_from(failures - self.max_failures)
            .unwrap_or(u32::MAX)
            .min(30);
        self.base_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

/// One attempt already counted against a budget. Keep it (drop it) when the code was
/// wrong; [`give_back`](Attempt::give_back) when the code was right or never checked.
pub(crate) struct Attempt<'a> {
    counter: &'a dyn AttemptCounter,
    subject: &'a str,
    window: Duration,
    now: SystemTime,
    /// The state right after this attempt was counted.
    pub(crate) state: AttemptState,
}

impl<'a> Attempt<'a> {
    /// Counts one attempt of `subject` at `now`.
    pub(crate) async fn count(
        counter: &'a dyn AttemptCounter,
        subject: &'a str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Self, Error> {
        let state = counter
            .record_failure(subject, window, now)
            .await
            .map_err(|e| Error::Store(StoreError::from_core("attempt counter", e)))?;
        Ok(Self {
            counter,
            subject,
            window,
            now,
            state,
        })
    }

    /// Gives the attempt back. If the counter fails, the attempt stays counted: the user
    /// may be paused a little early, never late.
    pub(crate) async fn give_back(self) {
        if let Err(error) = self
            .counter
            .release(self.subject, self.window, self.now)
            .await
        {
            tracing::warn!(
                target: "mcpsec::mfa",
                %error,
                "attempt counter release failed; the attempt stays counted"
            );
        }
    }

    /// How long until the window of this attempt ends.
    pub(crate) fn window_left(&self) -> Duration {
        self.state
            .window_start
            .checked_add(self.window)
            .and_then(|end| end.duration_since(self.now).ok())
            .unwrap_or(Duration::ZERO)
    }
}
