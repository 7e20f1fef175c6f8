//! Helpers for tests across the workspace (feature `testkit`; never for production).
//!
//! - [`service_url`], [`database_url`], [`redis_url`]: the one place that decides whether a
//!   test that needs PostgreSQL or Redis runs, skips, or fails.
//! - [`InsecureTestSealer`]: a [`Sealer`] with the right binding behaviour and no secrecy,
//!   so crates can test "stored sealed, opened only in its context" without field crypto.
//! - [`Namespace`] and [`conformance_suite!`](crate::conformance_suite): the one convention
//!   every store conformance suite follows (see [`suite`]), and [`attempt_counter`], the
//!   [`AttemptCounter`](crate::AttemptCounter) suite written with it.

use crate::{Error, SealContext, Sealer, SecretBytes};

pub mod attempt_counter;
pub mod rate_limiter;
pub mod suite;

/// Re-exported so suite macros of other crates can name it as
/// `$crate::testkit::__conformance_suite!` without their callers depending on mcpsec-core.
#[doc(hidden)]
pub use crate::conformance_suite as __conformance_suite;
pub use suite::Namespace;

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
