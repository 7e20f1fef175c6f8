//! A JWK set fetched from the issuer over HTTPS, cached, and refetched on an unknown `kid`
//! at most once per cooldown.
//!
//! The issuer is never hammered: a fresh set is served from memory; a refetch for an
//! unknown `kid` happens at most once per cooldown however many tokens ask for it, and
//! concurrent callers share one request (single-flight). A failed fetch keeps the last good
//! set and is not retried before the cooldown. Time comes only from the [`SharedClock`].
//!
//! A slow issuer never stalls known keys: once the set is older than the ttl,
//! [`verify_with_remote`] keeps answering from the last good set while one refresh runs in
//! the background. Only a token whose `kid` is unknown waits for a fetch.
//!
//! The fetch goes through the workspace's outbound HTTPS policy
//! ([`mcpsec_core::https::HttpsEndpoint`]): it refuses plain HTTP (except to loopback, for
//! tests), redirects, non-2xx answers and bodies over [`MAX_JWKS_LEN`] (counted as they
//! arrive, not trusted from `Content-Length`), and parses the body with [`JwkSet::parse`].

use crate::Error;
use crate::VerifiedClaims;
use crate::jwk::{JwkSet, MAX_JWKS_LEN};
use crate::verify::{Checked, TokenVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpsec_core::https::{HttpsEndpoint, HttpsError};
use mcpsec_core::{SharedClock, SystemClock};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// How long a fetched JWK set is served before it is refetched (10 minutes).
pub const DEFAULT_JWKS_TTL: Duration = Duration::from_secs(10 * 60);
/// The least time between two fetch attempts triggered by an unknown `kid` or following a
/// failed fetch (30 seconds).
pub const DEFAULT_JWKS_COOLDOWN: Duration = Duration::from_secs(30);
/// The whole-request deadline of one fetch, connect to last body byte (5 seconds).
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// A JWK set kept in step with the issuer's JWKS endpoint. Build with
/// [`RemoteJwks::builder`]; verify tokens with [`verify_with_remote`].
///
/// Any number of [`TokenVerifier`]s (one per audience, say) may share one `RemoteJwks`:
/// each verifier remembers which generation of the set it last took, so every one of them
/// learns of a removed key, and a verifier's cache is reset only when the issuer's set
/// actually changed. Build verifiers with [`KeySource::Remote`](crate::KeySource::Remote)
/// so that [`TokenVerifier::reload`] refetches.
///
/// Needs a Tokio runtime with I/O and time enabled (as `#[tokio::main]` gives).
pub struct RemoteJwks {
    /// Tells this remote's sets apart from another remote's in a verifier.
    id: u64,
    ttl: Duration,
    cooldown: Duration,
    timeout: Duration,
    fetcher: Arc<Fetcher>,
}

/// What a background refresh needs, shared with it.
struct Fetcher {
    endpoint: HttpsEndpoint,
    clock: SharedClock,
    state: Mutex<State>,
    /// Held across a fetch: concurrent callers wait for it, then see its result.
    fetch: Arc<tokio::sync::Mutex<()>>,
}

static NEXT_REMOTE_ID: AtomicU64 = AtomicU64::new(1);

/// What is known of the remote set. Never held across an `.await`.
#[derive(Default)]
struct State {
    good: Option<Arc<Good>>,
    /// When the last good set was fetched.
    fetched_at: Option<SystemTime>,
    /// When the last fetch, good or failed, finished.
    attempted_at: Option<SystemTime>,
    /// Why the last fetch failed; `None` when it succeeded.
    last_error: Option<Error>,
    /// Bumped whenever a fetch returns a set different from the previous one.
    generation: u64,
}

/// A set that parsed and has at least one usable signing key.
pub(crate) struct Good {
    pub(crate) set: JwkSet,
    /// The `kid`s of its verifying keys.
    kids: HashSet<String>,
    /// Signing keys of the set a verifier cannot use.
    skipped: usize,
    pub(crate) generation: u64,
}

impl std::fmt::Debug for RemoteJwks {
    /// Where the set comes from and how it is cached; never the keys, nor the URL's query.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.fetcher.endpoint.redacted_url();
        let state = self.fetcher.lock();
        f.debug_struct("RemoteJwks")
            .field("url", &url)
            .field("ttl", &self.ttl)
            .field("cooldown", &self.cooldown)
            .field("timeout", &self.timeout)
            .field("generation", &state.generation)
            .field("keys", &state.good.as_ref().map_or(0, |g| g.kids.len()))
            .field(
                "skipped_keys",
                &state.good.as_ref().map_or(0, |g| g.skipped),
            )
            .field("last_fetch_failed", &state.last_error.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds a [`RemoteJwks`]; [`build`](RemoteJwksBuilder::build) checks the URL.
#[derive(Debug)]
pub struct RemoteJwksBuilder {
    url: String,
    ttl: Duration,
    cooldown: Duration,
    timeout: Duration,
    clock: SharedClock,
}

impl RemoteJwksBuilder {
    /// How long a fetched set is served before it is refetched (default 10 minutes).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The least time between two fetch attempts caused by unknown `kid`s, and before a
    /// failed fetch is retried (default 30 seconds).
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The deadline of one fetch, from connecting to the last body byte (default 5 seconds).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The clock for the ttl and the cooldown (default the system clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the settings and builds the HTTP client; fetches nothing yet.
    ///
    /// Fails with [`Error::Config`] when the URL is not `https://` (plain `http://` is
    /// accepted only for a loopback host: `127.0.0.0/8`, `[::1]` or `localhost`), carries
    /// a user name or password, or when the ttl, cooldown or timeout is zero.
    pub fn build(self) -> Result<RemoteJwks, Error> {
        if self.ttl.is_zero() || self.cooldown.is_zero() || self.timeout.is_zero() {
            return Err(Error::Config(
                "the JWKS ttl, cooldown and timeout must be positive",
            ));
        }
        // The workspace's one outbound policy: https (http only to loopback, never through
        // a proxy), no credentials in the URL, no redirects, a whole-exchange deadline and
        // a body cap counted as the bytes arrive.
        let endpoint = HttpsEndpoint::builder(&self.url)
            .timeout(self.timeout)
            .max_body(MAX_JWKS_LEN)
            .build()
            .map_err(|e| match e {
                HttpsError::Config(reason) => Error::Config(reason),
                _ => Error::Config("cannot build the HTTP client"),
            })?;
        Ok(RemoteJwks {
            id: NEXT_REMOTE_ID.fetch_add(1, Ordering::Relaxed),
            ttl: self.ttl,
            cooldown: self.cooldown,
            timeout: self.timeout,
            fetcher: Arc::new(Fetcher {
                endpoint,
                clock: self.clock,
                state: Mutex::new(State::default()),
                fetch: Arc::new(tokio::sync::Mutex::new(())),
            }),
        })
    }
}

/// Time from `since` to `now`; a clock that went backwards counts as "long ago", so that a
/// clock step can cost one early refetch but never a set that is never refreshed.
fn age(now: SystemTime, since: SystemTime) -> Duration {
    now.duration_since(since).unwrap_or(Duration::MAX)
}

impl RemoteJwks {
    /// Starts a builder for the JWKS at `url` (checked by
    /// [`build`](RemoteJwksBuilder::build)).
    pub fn builder(url: &str) -> RemoteJwksBuilder {
        RemoteJwksBuilder {
            url: url.to_owned(),
            ttl: DEFAULT_JWKS_TTL,
            cooldown: DEFAULT_JWKS_COOLDOWN,
            timeout: DEFAULT_JWKS_TIMEOUT,
            clock: Arc::new(SystemClock),
        }
    }

    /// The JWKS URL.
    pub fn url(&self) -> &str {
        self.fetcher.endpoint.url()
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn now(&self) -> SystemTime {
        self.fetcher.clock.now()
    }

    /// The current set: the cached one while younger than the ttl, else a fresh fetch.
    ///
    /// When the fetch fails the last good set is returned (and the fetch is not tried again
    /// before the cooldown); with no good set yet, the fetch's error is (and is returned
    /// again, without a request, until the cooldown has passed). A fetch fails on a
    /// transport error or timeout, a non-2xx answer (redirects included), a body over
    /// [`MAX_JWKS_LEN`], a body [`JwkSet::parse`] refuses, or a set with no usable signing
    /// key; all are [`KeyError::InvalidSet`](crate::KeyError::InvalidSet).
    pub async fn keys(&self) -> Result<JwkSet, Error> {
        Ok(self.current().await?.set.clone())
    }

    /// Refetches the set because a token named a `kid` it does not have, unless a fetch
    /// was attempted less than the cooldown ago. Returns whether this call fetched.
    ///
    /// Single-flight: concurrent callers wait for the one fetch in progress and then find
    /// it recent, so a burst of unknown `kid`s makes one request. A failed fetch keeps the
    /// last good set and returns its error.
    pub async fn refresh_for_unknown_kid(&self) -> Result<bool, Error> {
        if !self.may_refetch(self.now()) {
            return Ok(false);
        }
        let _flight = self.fetcher.fetch.lock().await;
        if !self.may_refetch(self.now()) {
            return Ok(false);
        }
        self.fetcher.fetch_and_store().await.map(|()| true)
    }

    /// Fetches the set now, whatever its age (waiting for a fetch in flight first), for
    /// [`TokenVerifier::reload`]. A failed fetch keeps the last good set.
    pub(crate) async fn refetch(&self) -> Result<(), Error> {
        let _flight = self.fetcher.fetch.lock().await;
        self.fetcher.fetch_and_store().await
    }

    /// The good set to use now, fetching when the cache is stale (single-flight).
    async fn current(&self) -> Result<Arc<Good>, Error> {
        if let Some(answer) = self.cached(self.now()) {
            return answer;
        }
        let _flight = self.fetcher.fetch.lock().await;
        if let Some(answer) = self.cached(self.now()) {
            return answer;
        }
        let fetched = self.fetcher.fetch_and_store().await;
        match (fetched, self.last_good()) {
            (_, Some(good)) => Ok(good),
            (Err(error), None) => Err(error),
            (Ok(()), None) => Err(Error::Key(crate::KeyError::InvalidSet(
                "no JWK set fetched",
            ))),
        }
    }

    /// The set to verify with now, without waiting on the issuer when there is a good set:
    /// a stale one is served while one refresh runs in the background (none is started
    /// while a fetch is in flight). Waits only when no set was ever fetched.
    async fn serve(&self) -> Result<Arc<Good>, Error> {
        if let Some(answer) = self.cached(self.now()) {
            return answer;
        }
        if let (Some(good), Ok(runtime)) = (self.last_good(), tokio::runtime::Handle::try_current())
        {
            if let Ok(flight) = Arc::clone(&self.fetcher.fetch).try_lock_owned() {
                let fetcher = Arc::clone(&self.fetcher);
                runtime.spawn(async move {
                    let _flight = flight;
                    // Recorded in the state (and logged); the next stale call tries again
                    // after the cooldown.
                    let _ = fetcher.fetch_and_store().await;
                });
            }
            return Ok(good);
        }
        self.current().await
    }

    /// The answer without a request, when there is one: a fresh set, or — within the
    /// cooldown after a failed fetch — the last good set or that failure.
    fn cached(&self, now: SystemTime) -> Option<Result<Arc<Good>, Error>> {
        let state = self.fetcher.lock();
        if let (Some(good), Some(at)) = (&state.good, state.fetched_at)
            && age(now, at) < self.ttl
        {
            return Some(Ok(Arc::clone(good)));
        }
        let failed_recently = state
            .attempted_at
            .is_some_and(|at| age(now, at) < self.cooldown);
        match (&state.last_error, &state.good) {
            (Some(_), Some(good)) if failed_recently => Some(Ok(Arc::clone(good))),
            (Some(error), None) if failed_recently => Some(Err(error.clone())),
            _ => None,
        }
    }

    fn may_refetch(&self, now: SystemTime) -> bool {
        self.fetcher
            .lock()
            .attempted_at
            .is_none_or(|at| age(now, at) >= self.cooldown)
    }

    pub(crate) fn last_good(&self) -> Option<Arc<Good>> {
        self.fetcher.lock().good.clone()
    }
}

impl Fetcher {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One request; records its outcome. Called only with `self.fetch` held.
    async fn fetch_and_store(&self) -> Result<(), Error> {
        let result = self.fetch_once().await;
        let now = self.clock.now();
        let mut state = self.lock();
        state.attempted_at = Some(now);
        match result {
            Ok(good) => {
                let unchanged = state.good.as_ref().is_some_and(|g| g.set == good.set);
                if !unchanged {
                    state.generation = state.generation.saturating_add(1);
                    state.good = Some(Arc::new(Good {
                        generation: state.generation,
                        ..good
                    }));
                }
                state.fetched_at = Some(now);
                state.last_error = None;
                Ok(())
            }
            Err(error) => {
                tracing::warn!(
                    target: "mcpsec::tokens",
                    %error,
                    "JWKS fetch failed; the last good set stays in use"
                );
                state.last_error = Some(error.clone());
                Err(error)
            }
        }
    }

    async fn fetch_once(&self) -> Result<Good, Error> {
        let body = self
            .endpoint
            .get("application/jwk-set+json, application/json")
            .await
            .map_err(|e| match e {
                HttpsError::TooLarge => {
                    Error::Key(crate::KeyError::InvalidSet("larger than 64 KiB"))
                }
                HttpsError::Status(_) => Error::Key(crate::KeyError::InvalidSet(
                    "JWKS endpoint did not answer 2xx",
                )),
                _ => Error::Key(crate::KeyError::InvalidSet("JWKS fetch failed")),
            })?;
        let set = JwkSet::parse(&body)?;
        // Keys this verifier cannot use (another algorithm or curve) are skipped, not a
        // reason to refuse the issuer's whole set; each verifier logs them as it loads.
        let usable = set.usable_keys();
        let kids: HashSet<String> = usable.keys.iter().map(|k| k.kid().to_string()).collect();
        if kids.is_empty() {
            return Err(Error::Key(crate::KeyError::InvalidSet(
                "no usable signing key",
            )));
        }
        Ok(Good {
            set,
            kids,
            skipped: usable.skipped.len(),
            generation: 0,
        })
    }
}

/// Verifies `token` with `verifier`, keeping its keys in step with `remote`.
///
/// The verifier is given the remote set whenever it changed since this verifier last took
/// it (its verified-token cache is reset only then), so every verifier sharing `remote`
/// drops a removed key at its next call after the refresh. Once the set is older than the
/// ttl, the last good set answers while one refresh runs in the background: a slow
/// issuer does not hold up tokens of known keys. A token whose `kid` the verifier does not
/// know triggers [`RemoteJwks::refresh_for_unknown_kid`] and waits for it; if the set then
/// changed, the verifier gets it and the token is verified once more. Otherwise the answer
/// is [`Error::UnknownKey`], also when the refetch failed (the last good set stays).
///
/// Fails with the fetch's error only when no set could ever be fetched.
pub async fn verify_with_remote(
    verifier: &TokenVerifier,
    remote: &RemoteJwks,
    token: &str,
) -> Result<VerifiedClaims, Error> {
    // One event for the final answer, as `TokenVerifier::verify` records.
    let checked = check_with_remote(verifier, remote, token).await;
    verifier.report(&checked).await;
    checked.into_result()
}

async fn check_with_remote(verifier: &TokenVerifier, remote: &RemoteJwks, token: &str) -> Checked {
    let good = match remote.serve().await {
        Ok(good) => good,
        Err(error) => return Checked::failed(error),
    };
    if let Err(error) = verifier.apply_remote(remote.id(), &good) {
        return Checked::failed(error);
    }
    let first = verifier.check(token).await;
    if first.error() != Some(&Error::UnknownKey) {
        return first;
    }
    // No `kid` at all: no set can help, so no request.
    let Some(kid) = header_kid(token) else {
        return first;
    };
    // A failed refetch keeps the last good set; the token's answer stays UnknownKey.
    let _fetched = remote.refresh_for_unknown_kid().await;
    let Some(good) = remote.last_good() else {
        return first;
    };
    // Take the newest set either way (it may drop keys); verify again only if it has the kid.
    if let Err(error) = verifier.apply_remote(remote.id(), &good) {
        return Checked::failed(error);
    }
    if !good.kids.contains(&kid) {
        return first;
    }
    verifier.check(token).await
}

/// The header's `kid`, read leniently: the verifier has already parsed this header
/// strictly before answering [`Error::UnknownKey`].
fn header_kid(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Header {
        kid: Option<String>,
    }
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    serde_json::from_slice::<Header>(&bytes).ok()?.kid
}
