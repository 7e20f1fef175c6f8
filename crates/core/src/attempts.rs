//! Counting failures, atomically, so a fleet agrees on who is throttled.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
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
    /// How far one recorded failure moves the count now: 1 for a counter that counts each
    /// failure once (the default); a [`FallbackAttemptCounter`](crate::FallbackAttemptCounter)
    /// answering locally counts each as the fleet size.
    fn count_step(&self) -> u64 {
        1
    }

    /// Whether the failure that produced `count` is the one that took the count to
    /// `threshold` or past it (`count - step < threshold ≤ count`). Alerts fire on this,
    /// not on `count == threshold`, which a count moving in steps larger than one can skip.
    fn crossed(&self, count: u64, threshold: u64) -> bool {
        count >= threshold && count.saturating_sub(self.count_step().max(1)) < threshold
    }

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

/// In-memory [`AttemptCounter`] with a bound on how many subjects it tracks, so a flood of
/// sources cannot exhaust memory.
///
/// When full, the subject whose last failure is oldest is dropped to make room (windows
/// that have ended go first, being older still). That order means a source that keeps
/// failing cannot flush its own count by flooding the counter with new subjects: every
/// failure makes it the newest. Admitting a subject costs O(1) amortised: failures are
/// queued in the order they happen, and eviction pops the front, skipping entries a later
/// failure of the same subject has superseded.
#[derive(Debug)]
pub struct MemoryAttemptCounter {
    max_subjects: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    states: HashMap<Arc<str>, Slot>,
    /// `(seq, subject)` per failure, oldest first; an entry is current only while the
    /// subject's slot still carries its `seq`.
    order: VecDeque<(u64, Arc<str>)>,
    next_seq: u64,
    /// Queue entries examined by eviction and compaction, for the O(1) regression test.
    #[cfg(test)]
    scanned: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    state: AttemptState,
    seq: u64,
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
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Drops the subject whose last failure is oldest.
    fn evict_one(&mut self) {
        while let Some((seq, subject)) = self.order.pop_front() {
            #[cfg(test)]
            {
                self.scanned += 1;
            }
            if self
                .states
                .get(&subject)
                .is_some_and(|slot| slot.seq == seq)
            {
                self.states.remove(&subject);
                return;
            }
        }
    }

    /// Queues `subject` as the newest failure and returns the sequence number its slot
    /// must carry.
    fn touch(&mut self, subject: &Arc<str>) -> u64 {
        // Superseded entries pile up while the same subjects keep failing; rebuilding once
        // they outnumber the current ones keeps the queue's memory bounded, and costs O(1)
        // amortised per failure (a rebuild follows at least `states.len() + 64` pushes).
        if self.order.len() > self.states.len().saturating_mul(2).saturating_add(64) {
            #[cfg(test)]
            {
                self.scanned += self.order.len() as u64;
            }
            let states = &self.states;
            self.order
                .retain(|(seq, subject)| states.get(subject).is_some_and(|slot| slot.seq == *seq));
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.order.push_back((seq, Arc::clone(subject)));
        seq
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
        let mut inner = self.lock();
        let key: Arc<str> = match inner.states.get_key_value(subject) {
            Some((key, _)) => Arc::clone(key),
            None => {
                if inner.states.len() >= self.max_subjects {
                    inner.evict_one();
                }
                Arc::from(subject)
            }
        };
        let state = match inner.states.get(&key) {
            Some(slot) if live(&slot.state, window, now) => AttemptState {
                count: slot.state.count.saturating_add(1),
                window_start: slot.state.window_start,
                last_failure: now,
            },
            _ => AttemptState {
                count: 1,
                window_start: now,
                last_failure: now,
            },
        };
        let seq = inner.touch(&key);
        inner.states.insert(key, Slot { state, seq });
        Ok(state)
    }

    async fn release(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptState>, crate::Error> {
        let mut inner = self.lock();
        let Some(slot) = inner
            .states
            .get_mut(subject)
            .filter(|slot| live(&slot.state, window, now))
        else {
            return Ok(None);
        };
        slot.state.count = slot.state.count.saturating_sub(1);
        if slot.state.count == 0 {
            // Its queue entry is now superseded and is skipped or compacted away.
            inner.states.remove(subject);
            return Ok(None);
        }
        Ok(Some(slot.state))
    }

    async fn state(
        &self,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptState>, crate::Error> {
        Ok(self
            .lock()
            .states
            .get(subject)
            .map(|slot| slot.state)
            .filter(|s| live(s, window, now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + secs)
    }

    /// Item 13: once full, each new subject costs O(1) amortised entries examined, not a
    /// scan of every subject under the lock (2.26 ms per new source at 100k entries).
    #[tokio::test]
    async fn memory_attempt_counter_eviction_is_constant_time_amortised() {
        let window = Duration::from_secs(15 * 60);
        let counter = MemoryAttemptCounter::new(1_000);
        for i in 0..1_000 {
            counter
                .record_failure(&format!("fill-{i}"), window, at(i))
                .await
                .unwrap();
        }
        let before = counter.lock().scanned;
        let inserts = 10_000u64;
        for i in 0..inserts {
            counter
                .record_failure(&format!("new-{i}"), window, at(1_000 + i / 100))
                .await
                .unwrap();
        }
        let scanned = counter.lock().scanned - before;
        assert!(
            scanned <= 4 * inserts,
            "{scanned} entries examined to admit {inserts} new subjects into a full counter"
        );
        assert_eq!(counter.lock().states.len(), 1_000, "the bound holds");
    }

    /// Item 13: the subject dropped first is the one whose last failure is oldest, so a
    /// source that keeps failing cannot flush its own throttle by flooding new subjects.
    #[tokio::test]
    async fn eviction_drops_the_least_recently_failing_subject_first() {
        let window = Duration::from_secs(15 * 60);
        let counter = MemoryAttemptCounter::new(3);
        counter
            .record_failure("attacker", window, at(0))
            .await
            .unwrap();
        counter.record_failure("b", window, at(1)).await.unwrap();
        counter.record_failure("c", window, at(2)).await.unwrap();
        counter
            .record_failure("attacker", window, at(3))
            .await
            .unwrap();
        counter.record_failure("d", window, at(4)).await.unwrap();
        assert_eq!(
            counter
                .state("attacker", window, at(4))
                .await
                .unwrap()
                .map(|s| s.count),
            Some(2),
            "the subject that failed most recently is kept"
        );
        assert_eq!(
            counter.state("b", window, at(4)).await.unwrap(),
            None,
            "b went first"
        );
        for i in 0..100 {
            counter
                .record_failure(&format!("flood-{i}"), window, at(5 + i))
                .await
                .unwrap();
            counter
                .record_failure("attacker", window, at(5 + i))
                .await
                .unwrap();
        }
        assert_eq!(
            counter
                .state("attacker", window, at(200))
                .await
                .unwrap()
                .map(|s| s.count),
            Some(102),
            "a flood of new subjects does not reset the flooder's own count"
        );
    }
}
