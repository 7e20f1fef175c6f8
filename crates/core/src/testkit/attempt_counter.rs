//! The [`AttemptCounter`] conformance suite: one public async function per case, each
//! taking a fresh counter, and [`attempt_counter_suite!`](crate::attempt_counter_suite) to
//! expand them into named tests for a backend.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: failing loudly is its job"
)]

use crate::AttemptCounter;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WINDOW: Duration = Duration::from_secs(60);

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600 + secs)
}

/// Failures count up within a window; a window that ended reads as nothing and a new one
/// restarts at 1; subjects are separate.
pub async fn failures_count_within_a_window(c: Arc<dyn AttemptCounter>) {
    assert_eq!(c.state("s", WINDOW, at(0)).await.unwrap(), None);
    assert_eq!(c.record_failure("s", WINDOW, at(0)).await.unwrap().count, 1);
    let second = c.record_failure("s", WINDOW, at(10)).await.unwrap();
    assert_eq!(
        (second.count, second.window_start, second.last_failure),
        (2, at(0), at(10))
    );
    assert_eq!(
        c.state("s", WINDOW, at(59)).await.unwrap().map(|s| s.count),
        Some(2)
    );
    assert_eq!(
        c.state("s", WINDOW, at(60)).await.unwrap(),
        None,
        "the window ended"
    );
    assert_eq!(
        c.record_failure("s", WINDOW, at(61)).await.unwrap().count,
        1,
        "a new window restarts at 1"
    );
    assert_eq!(
        c.state("other", WINDOW, at(61)).await.unwrap(),
        None,
        "subjects are separate"
    );
}

/// A release gives back one failure of the live window and never goes below zero.
pub async fn release_gives_back_one_and_never_goes_negative(r: Arc<dyn AttemptCounter>) {
    r.record_failure("r", WINDOW, at(0)).await.unwrap();
    r.record_failure("r", WINDOW, at(1)).await.unwrap();
    assert_eq!(
        r.release("r", WINDOW, at(2))
            .await
            .unwrap()
            .map(|s| s.count),
        Some(1)
    );
    assert_eq!(r.release("r", WINDOW, at(3)).await.unwrap(), None);
    assert_eq!(r.state("r", WINDOW, at(3)).await.unwrap(), None);
    assert_eq!(
        r.release("r", WINDOW, at(4)).await.unwrap(),
        None,
        "nothing to give back"
    );
    assert_eq!(
        r.record_failure("r", WINDOW, at(5)).await.unwrap().count,
        1,
        "a release never makes the count negative"
    );
}

/// A release after the window ended never reaches into the next window.
pub async fn late_release_leaves_the_next_window_alone(r: Arc<dyn AttemptCounter>) {
    r.record_failure("r", WINDOW, at(5)).await.unwrap();
    assert_eq!(r.release("r", WINDOW, at(70)).await.unwrap(), None);
    assert_eq!(
        r.record_failure("r", WINDOW, at(70)).await.unwrap().count,
        1,
        "a release after the window ended leaves the new window alone"
    );
}

/// 32 concurrent failures each see a distinct count and the counter ends at exactly 32.
pub async fn thirty_two_concurrent_failures_are_counted_exactly(c: Arc<dyn AttemptCounter>) {
    let seen = flood(&c).await;
    assert_eq!(
        seen,
        (1..=32).collect::<Vec<u64>>(),
        "each failure saw a distinct count"
    );
    assert_eq!(
        c.state("flood", WINDOW, at(5))
            .await
            .unwrap()
            .map(|s| s.count),
        Some(32)
    );
}

/// 32 concurrent releases against 32 counted failures end at zero.
pub async fn thirty_two_concurrent_releases_end_at_zero(c: Arc<dyn AttemptCounter>) {
    flood(&c).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let c = Arc::clone(&c);
        tasks.spawn(async move { c.release("flood", WINDOW, at(6)).await.map(|_| ()) });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").unwrap();
    }
    assert_eq!(c.state("flood", WINDOW, at(6)).await.unwrap(), None);
}

async fn flood(c: &Arc<dyn AttemptCounter>) -> Vec<u64> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let c = Arc::clone(c);
        tasks.spawn(async move {
            c.record_failure("flood", WINDOW, at(5))
                .await
                .unwrap()
                .count
        });
    }
    let mut seen = Vec::new();
    while let Some(count) = tasks.join_next().await {
        seen.push(count.expect("task"));
    }
    seen.sort_unstable();
    seen
}

/// Expands the [`AttemptCounter`] suite into named tests in a module named after the
/// backend: `attempt_counter_suite!(memory, |_ns| async { Arc::new(MyCounter::new()) as
/// Arc<dyn AttemptCounter> })` gives `memory::thirty_two_concurrent_failures_are_counted_exactly`
/// and so on. The factory is called once per test with that test's
/// [`Namespace`](crate::testkit::Namespace).
#[macro_export]
macro_rules! attempt_counter_suite {
    ($backend:ident, $factory:expr $(,)?) => {
        $crate::conformance_suite!(
            suite = "attempt_counter",
            cases = [$crate::testkit::attempt_counter],
            backend = $backend,
            factory = $factory,
            tests = [
                failures_count_within_a_window,
                release_gives_back_one_and_never_goes_negative,
                late_release_leaves_the_next_window_alone,
                thirty_two_concurrent_failures_are_counted_exactly,
                thirty_two_concurrent_releases_end_at_zero,
            ],
        );
    };
}

#[cfg(test)]
mod tests {
    use crate::testkit::Namespace;
    use crate::{AttemptCounter, MemoryAttemptCounter};
    use std::sync::Arc;

    crate::attempt_counter_suite!(memory, |_: Namespace| async {
        Arc::new(MemoryAttemptCounter::default()) as Arc<dyn AttemptCounter>
    });
}
