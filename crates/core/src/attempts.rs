//! Counting failures, atomically, so a fleet agrees on who is throttled.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// Failures of one subject (a source address, a key id) within the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptState {
    /// Failures since the window started.
    pub count: u64,
    /// When the window started (the first failure in it).
    pub window_start: SystemTime,
    /// The most recent failure.
    pub last_failure: SystemTime,
}

/// A counter of failed attempts.
///
/// [`record_failure`](AttemptCounter::record_failure) must be an atomic increment across
/// the fleet (Redis `INCR` in a script, a conditional upsert in SQL, a lock in memory):
/// of N concurrent failures, the counter ends exactly N higher. The conformance suite in
/// `mcpsec_core::testkit` checks it with 32 concurrent failures.
///
/// Shared by every capability that counts failures (API keys per source and key id, MFA
/// per user), which is why it lives in core.
#[async_trait::async_trait]
pub trait AttemptCounter: Send + Sync + std::fmt::Debug {
    /// Counts one failure of `subject` at `now`. A window older than `window` restarts at 1.
    async fn record_failure(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<AttemptState, crate::Error>;

    /// Gives back one failure of `subject` recorded earlier in the window that is live at
    /// `now`, and returns the state after it (`None` when nothing is left to count).
    ///
    /// For the increment-first budget rule: a caller counts an attempt *before* checking a
    /// secret (so a concurrent burst cannot read the budget N times before any failure is
    /// counted), then gives the attempt back when the secret was right. Must be atomic in
    /// the same sense as [`record_failure`](AttemptCounter::record_failure); the count never
    /// goes below zero, and a window that has already ended is left alone (a late release
    /// never reaches into a new window).
    async fn release(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptState>, crate::Error>;

    /// The current state of `subject`, if it has failures in a window younger than `window`.
    async fn state(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptState>, crate::Error>;
}

/// In-memory [`AttemptCounter`] with a bound on how many subjects it tracks (oldest
/// windows dropped first), so a flood of sources cannot exhaust memory.
#[derive(Debug)]
pub struct MemoryAttemptCounter {
    max_subjects: usize,
    states: Mutex<HashMap<String, AttemptState>>,
}

impl Default for MemoryAttemptCounter {
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl MemoryAttemptCounter {
    /// A counter tracking at most `max_subjects` subjects.
    pub fn new(max_subjects: usize) -> Self {
        Self {
            max_subjects: max_subjects.max(1),
            states: Mutex::new(HashMap::new()),
        }
    }
}

fn live(state: &AttemptState, window: Duration, now: SystemTime) -> bool {
    now.duration_since(state.window_start)
        .map_or(true, |age| age < window)
}

#[async_trait::async_trait]
impl AttemptCounter for MemoryAttemptCounter {
    async fn record_failure(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<AttemptState, crate::Error> {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if !states.contains_key(subject) && states.len() >= self.max_subjects {
            states.retain(|_, s| live(s, window, now));
            if states.len() >= self.max_subjects
                && let Some(oldest) = states
                    .iter()
                    .min_by_key(|(_, s)| s.window_start)
                    .map(|(k, _)| k.clone())
            {
                states.remove(&oldest);
            }
        }
        let state = states
            .entry(subject.to_owned())
            .and_modify(|s| {
                if live(s, window, now) {
                    s.count += 1;
                } else {
                    *s = AttemptState {
                        count: 1,
                        window_start: now,
                        last_failure: now,
                    };
                }
                s.last_failure = now;
            })
            .or_insert(AttemptState {
                count: 1,
                window_start: now,
                last_failure: now,
            });
        Ok(*state)
    }

    async fn release(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptState>, crate::Error> {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(state) = states.get_mut(subject).filter(|s| live(s, window, now)) else {
            return Ok(None);
        };
        state.count = state.count.saturating_sub(1);
        if state.count == 0 {
            states.remove(subject);
            return Ok(None);
        }
        Ok(Some(*state))
    }

    async fn state(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptState>, crate::Error> {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(states
            .get(subject)
            .filter(|s| live(s, window, now))
            .copied())
    }
}
