//! A JWK set fetched from the issuer over HTTPS, cached, and refetched on an unknown `kid`
//! at most once per cooldown.
//!
//! The issuer is never hammered: a fresh set is served from memory; a refetch for an
//! unknown `kid` happens at most once per cooldown however many tokens ask for it, and
//! concurrent callers share one request (single-flight). A failed fetch keeps the last good
//! set and is not retried before the cooldown. Time comes only from the [`SharedClock`].
//!
//! The fetch itself refuses plain HTTP (except to loopback, for tests), redirects, non-2xx
//! answers and bodies over [`MAX_JWKS_LEN`] (counted as they arrive, not trusted from
//! `Content-Length`), and parses the body with [`JwkSet::parse`].

use crate::Error;
use crate::VerifiedClaims;
use crate::jwk::{JwkSet, MAX_JWKS_LEN};
use crate::verify::TokenVerifier;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpsec_core::{SharedClock, SystemClock};
use reqwest::Url;
use std::collections::HashSet;
use std::net::IpAddr;
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
/// Pair one `RemoteJwks` with one [`TokenVerifier`] (and its clones, which share keys): it
/// remembers which set it last gave that verifier, so that the verifier's cache is only
/// reset when the issuer's set actually changed.
///
/// Needs a Tokio runtime with I/O and time enabled (as `#[tokio::main]` gives).
pub struct RemoteJwks {
    url: Url,
    client: reqwest::Client,
    ttl: Duration,
    cooldown: Duration,
    timeout: Duration,
    clock: SharedClock,
    state: Mutex<State>,
    /// Held across a fetch: concurrent callers wait for it, then see its result.
    fetch: tokio::sync::Mutex<()>,
    /// The generation last handed to the verifier by [`verify_with_remote`].
    applied: Mutex<Option<u64>>,
}

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
struct Good {
    set: JwkSet,
    /// The `kid`s of its verifying keys.
    kids: HashSet<String>,
    generation: u64,
}

impl std::fmt::Debug for RemoteJwks {
    /// Where the set comes from and how it is cached; never the keys, nor the URL's query.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut url = self.url.clone();
        url.set_query(None);
        url.set_fragment(None);
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("RemoteJwks")
            .field("url", &url.as_str())
            .field("ttl", &self.ttl)
            .field("cooldown", &self.cooldown)
            .field("timeout", &self.timeout)
            .field("generation", &state.generation)
            .field("keys", &state.good.as_ref().map_or(0, |g| g.kids.len()))
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
        let url = Url::parse(&self.url).map_err(|_| Error::Config("the JWKS URL is not a URL"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::Config("the JWKS URL must not carry credentials"));
        }
        let host = url
            .host_str()
            .ok_or(Error::Config("the JWKS URL has no host"))?;
        let loopback = is_loopback(host);
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(Error::Config(
                    "the JWKS URL must be https (plain http only to loopback)",
                ));
            }
        }
        if self.ttl.is_zero() || self.cooldown.is_zero() || self.timeout.is_zero() {
            return Err(Error::Config(
                "the JWKS ttl, cooldown and timeout must be positive",
            ));
        }
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .https_only(url.scheme() == "https");
        if loopback {
            // A loopback URL means this machine; an environment proxy must not reroute it.
            client = client.no_proxy();
        }
        let client = client
            .build()
            .map_err(|_| Error::Config("cannot build the HTTP client"))?;
        Ok(RemoteJwks {
            url,
            client,
            ttl: self.ttl,
            cooldown: self.cooldown,
            timeout: self.timeout,
            clock: self.clock,
            state: Mutex::new(State::default()),
            fetch: tokio::sync::Mutex::new(()),
            applied: Mutex::new(None),
        })
    }
}

/// `127.0.0.0/8`, `::1` or `localhost` (the URL parser has already lowercased names and
/// normalized IPv4 spellings such as `0x7f.1`).
fn is_loopback(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
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
        self.url.as_str()
    }

    /// The current set: the cached one while younger than the ttl, else a fresh fetch.
    ///
    /// When the fetch fails the last good set is returned (and the fetch is not tried again
    /// before the cooldown); with no good set yet, the fetch's error is (and is returned
    /// again, without a request, until the cooldown has passed). A fetch fails on a
    /// transport error or timeout, a non-2xx answer (redirects included), a body over
    /// [`MAX_JWKS_LEN`], a body [`JwkSet::parse`] refuses, or a set with no usable signing
    /// key; all are [`Error::InvalidKeySet`].
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
        if !self.may_refetch(self.clock.now()) {
            return Ok(false);
        }
        let _flight = self.fetch.lock().await;
        if !self.may_refetch(self.clock.now()) {
            return Ok(false);
        }
        self.fetch_and_store().await.map(|()| true)
    }

    /// The good set to use now, fetching when the cache is stale (single-flight).
    async fn current(&self) -> Result<Arc<Good>, Error> {
        if let Some(answer) = self.cached(self.clock.now()) {
            return answer;
        }
        let _flight = self.fetch.lock().await;
        if let Some(answer) = self.cached(self.clock.now()) {
            return answer;
        }
        let fetched = self.fetch_and_store().await;
        match (fetched, self.last_good()) {
            (_, Some(good)) => Ok(good),
            (Err(error), None) => Err(error),
            (Ok(()), None) => Err(Error::InvalidKeySet("no JWK set fetched")),
        }
    }

    /// The answer without a request, when there is one: a fresh set, or — within the
    /// cooldown after a failed fetch — the last good set or that failure.
    fn cached(&self, now: SystemTime) -> Option<Result<Arc<Good>, Error>> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
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
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .attempted_at
            .is_none_or(|at| age(now, at) >= self.cooldown)
    }

    fn last_good(&self) -> Option<Arc<Good>> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.good.clone()
    }

    /// One request; records its outcome. Called only with `self.fetch` held.
    async fn fetch_and_store(&self) -> Result<(), Error> {
        let result = self.fetch_once().await;
        let now = self.clock.now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.attempted_at = Some(now);
        match result {
            Ok((set, kids)) => {
                let unchanged = state.good.as_ref().is_some_and(|g| g.set == set);
                if !unchanged {
                    state.generation = state.generation.wrapping_add(1);
                    state.good = Some(Arc::new(Good {
                        set,
                        kids,
                        generation: state.generation,
                    }));
                }
                state.fetched_at = Some(now);
                state.last_error = None;
                Ok(())
            }
            Err(error) => {
                state.last_error = Some(error.clone());
                Err(error)
            }
        }
    }

    async fn fetch_once(&self) -> Result<(JwkSet, HashSet<String>), Error> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(|_| Error::InvalidKeySet("JWKS fetch failed"))?;
        if !response.status().is_success() {
            return Err(Error::InvalidKeySet("JWKS endpoint did not answer 2xx"));
        }
        let too_large = Error::InvalidKeySet("larger than 64 KiB");
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_LEN as u64)
        {
            return Err(too_large);
        }
        // Content-Length may be absent or wrong: count what actually arrives.
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| Error::InvalidKeySet("JWKS fetch failed"))?
        {
            if body.len().saturating_add(chunk.len()) > MAX_JWKS_LEN {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        let set = JwkSet::parse(&body)?;
        let kids: HashSet<String> = set
            .verifying_keys()?
            .iter()
            .map(|k| k.kid().to_string())
            .collect();
        if kids.is_empty() {
            return Err(Error::InvalidKeySet("no usable signing key"));
        }
        Ok((set, kids))
    }

    /// Gives `verifier` the current set if it changed since it was last given (or always,
    /// with `force`). Serialized, so that an older set can never overwrite a newer one.
    fn apply(&self, verifier: &TokenVerifier, force: bool) -> Result<(), Error> {
        let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(good) = self.last_good() else {
            return Ok(());
        };
        if !force && *applied == Some(good.generation) {
            return Ok(());
        }
        verifier.set_keys(&good.set)?;
        *applied = Some(good.generation);
        Ok(())
    }

    fn applied_generation(&self) -> Option<u64> {
        *self.applied.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Verifies `token` with `verifier`, keeping its keys in step with `remote`.
///
/// The verifier is given the remote set whenever it changed since the last call (its
/// verified-token cache is reset only then). A token whose `kid` the verifier does not
/// know triggers [`RemoteJwks::refresh_for_unknown_kid`]; if the set then changed or has
/// that `kid`, the verifier gets it and the token is verified once more. Otherwise the
/// answer is [`Error::UnknownKey`], also when the refetch failed (the last good set stays).
///
/// Fails with the fetch's error only when no set could ever be fetched.
pub async fn verify_with_remote(
    verifier: &TokenVerifier,
    remote: &RemoteJwks,
    token: &str,
) -> Result<VerifiedClaims, Error> {
    remote.current().await?;
    remote.apply(verifier, false)?;
    match verifier.verify(token) {
        Err(Error::UnknownKey) => {}
        other => return other,
    }
    // No `kid` at all: no set can help, so no request.
    let Some(kid) = header_kid(token) else {
        return Err(Error::UnknownKey);
    };
    // A failed refetch keeps the last good set; the token's answer stays UnknownKey.
    let _fetched = remote.refresh_for_unknown_kid().await;
    let Some(good) = remote.last_good() else {
        return Err(Error::UnknownKey);
    };
    let changed = remote.applied_generation() != Some(good.generation);
    // `has_kid` with an unchanged generation means this verifier was out of step (another
    // verifier was given the set); giving it the set once fixes that.
    let has_kid = good.kids.contains(&kid);
    if !changed && !has_kid {
        return Err(Error::UnknownKey);
    }
    remote.apply(verifier, has_kid)?;
    verifier.verify(token)
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
