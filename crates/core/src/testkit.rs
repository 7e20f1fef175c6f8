//! Helpers for tests across the workspace (feature `testkit`; never for production).
//!
//! - [`service_url`], [`database_url`], [`redis_url`]: the one place that decides whether a
//!   test that needs PostgreSQL or Redis runs, skips, or fails.
//! - [`InsecureTestSealer`]: a [`Sealer`] with the right binding behaviour and no secrecy,
//!   so crates can test "stored sealed, opened only in its context" without field crypto.

use crate::{Error, SealContext, Sealer, SecretBytes};

/// The variable that names the PostgreSQL database for backend tests.
pub const DATABASE_URL_VAR: &str = "MCPSEC_TEST_DATABASE_URL";
/// The variable that names the Redis server for backend tests.
pub const REDIS_URL_VAR: &str = "MCPSEC_TEST_REDIS_URL";

/// The URL in `var`, for a test that needs an outside service.
///
/// - set and non-empty: `Some(url)`;
/// - unset on a laptop: prints a notice to stderr and returns `None` (the test skips);
/// - unset when `CI=true`: panics, so a CI run can never skip these tests silently.
#[expect(clippy::panic, reason = "a test helper: failing the test is its job")]
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set but CI=true: backend tests must not skip in CI")
        }
        _ => {
            eprintln!("notice: {var} is not set; skipping this test (set it to run it)");
            None
        }
    }
}

/// [`service_url`] for PostgreSQL.
pub fn database_url() -> Option<String> {
    service_url(DATABASE_URL_VAR)
}

/// [`service_url`] for Redis.
pub fn redis_url() -> Option<String> {
    service_url(REDIS_URL_VAR)
}

const MAGIC: &[u8] = b"INSECURE-TEST-SEAL:";

/// A [`Sealer`] for tests: binds the context exactly as a real one must (opening with a
/// different context, or tampered bytes, fails with [`Error::Open`]) but only masks the
/// plaintext with a fixed byte. Not encryption; only for tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct InsecureTestSealer;

const MASK: u8 = 0xA5;

#[async_trait::async_trait]
impl Sealer for InsecureTestSealer {
    async fn seal(&self, plaintext: &[u8], context: &SealContext) -> Result<Vec<u8>, Error> {
        if plaintext.len() > crate::MAX_SEAL_PLAINTEXT {
            return Err(Error::Seal("plaintext larger than MAX_SEAL_PLAINTEXT"));
        }
        let aad = context.aad();
        let aad_len = u32::try_from(aad.len()).map_err(|_| Error::Seal("context too large"))?;
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&aad_len.to_be_bytes());
        out.extend_from_slice(&aad);
        out.extend(plaintext.iter().map(|b| b ^ MASK));
        Ok(out)
    }

    async fn open(&self, sealed: &[u8], context: &SealContext) -> Result<SecretBytes, Error> {
        let rest = sealed.strip_prefix(MAGIC).ok_or(Error::Open)?;
        let (len, rest) = rest.split_first_chunk::<4>().ok_or(Error::Open)?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| Error::Open)?;
        let (aad, body) = rest.split_at_checked(len).ok_or(Error::Open)?;
        if aad != context.aad().as_slice() {
            return Err(Error::Open);
        }
        Ok(SecretBytes::new(body.iter().map(|b| b ^ MASK).collect()))
    }
}

/// Runs every [`AttemptCounter`](crate::AttemptCounter) check against counters made by `make`, including
/// `thirty_two_concurrent_failures_are_counted_exactly`. Call it from a multi-threaded
/// tokio test.
#[expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: failing loudly is its job"
)]
pub async fn attempt_counter_conformance<F>(make: F)
where
    F: Fn() -> std::sync::Arc<dyn crate::AttemptCounter>,
{
    let window = std::time::Duration::from_secs(60);
    let c = make();
    assert_eq!(c.state("s", window, at(0)).await.unwrap(), None);
    assert_eq!(c.record_failure("s", window, at(0)).await.unwrap().count, 1);
    let second = c.record_failure("s", window, at(10)).await.unwrap();
    assert_eq!(
        (second.count, second.window_start, second.last_failure),
        (2, at(0), at(10))
    );
    assert_eq!(
        c.state("s", window, at(59)).await.unwrap().map(|s| s.count),
        Some(2)
    );
    assert_eq!(
        c.state("s", window, at(60)).await.unwrap(),
        None,
        "the window ended"
    );
    assert_eq!(
        c.record_failure("s", window, at(61)).await.unwrap().count,
        1,
        "a new window restarts at 1"
    );
    assert_eq!(
        c.state("other", window, at(61)).await.unwrap(),
        None,
        "subjects are separate"
    );

    // release: gives back one failure of the live window, never below zero, never into a
    // window that has ended.
    let r = make();
    r.record_failure("r", window, at(0)).await.unwrap();
    r.record_failure("r", window, at(1)).await.unwrap();
    assert_eq!(
        r.release("r", window, at(2))
            .await
            .unwrap()
            .map(|s| s.count),
        Some(1)
    );
    assert_eq!(r.release("r", window, at(3)).await.unwrap(), None);
    assert_eq!(r.state("r", window, at(3)).await.unwrap(), None);
    assert_eq!(
        r.release("r", window, at(4)).await.unwrap(),
        None,
        "nothing to give back"
    );
    assert_eq!(
        r.record_failure("r", window, at(5)).await.unwrap().count,
        1,
        "a release never makes the count negative"
    );
    assert_eq!(r.release("r", window, at(70)).await.unwrap(), None);
    assert_eq!(
        r.record_failure("r", window, at(70)).await.unwrap().count,
        1,
        "a release after the window ended leaves the new window alone"
    );

    let shared = make();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let c = std::sync::Arc::clone(&shared);
        tasks.spawn(async move {
            c.record_failure("flood", window, at(5))
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
    assert_eq!(
        seen,
        (1..=32).collect::<Vec<u64>>(),
        "each failure saw a distinct count"
    );
    assert_eq!(
        shared
            .state("flood", window, at(5))
            .await
            .unwrap()
            .map(|s| s.count),
        Some(32)
    );

    // 32 concurrent releases against 32 concurrent failures end at zero.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let c = std::sync::Arc::clone(&shared);
        tasks.spawn(async move { c.release("flood", window, at(6)).await.map(|_| ()) });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").unwrap();
    }
    assert_eq!(shared.state("flood", window, at(6)).await.unwrap(), None);
}

fn at(secs: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600 + secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn test_sealer_binds_context_and_rejects_tampering() {
        let ctx = SealContext::new("totp_secrets", "mfa", "seed", "user-1").unwrap();
        let other = SealContext::new("totp_secrets", "mfa", "seed", "user-2").unwrap();
        let sealed = InsecureTestSealer.seal(b"seed bytes", &ctx).await.unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"seed bytes"));
        let opened = InsecureTestSealer.open(&sealed, &ctx).await.unwrap();
        assert_eq!(opened.expose_secret(), b"seed bytes");
        assert_eq!(
            InsecureTestSealer.open(&sealed, &other).await,
            Err(Error::Open)
        );
        assert_eq!(
            InsecureTestSealer.open(&sealed[..10], &ctx).await,
            Err(Error::Open)
        );
    }

    #[test]
    fn set_variable_is_returned() {
        // Only reads: never mutates the process environment, which tests share.
        if let Ok(url) = std::env::var(DATABASE_URL_VAR) {
            assert_eq!(database_url(), Some(url));
        }
    }
}
