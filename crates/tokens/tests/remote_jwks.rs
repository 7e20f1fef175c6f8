//! Remote JWKS against a tiny HTTP/1.1 server on 127.0.0.1: caching within the ttl, at
//! most one refetch per cooldown for unknown `kid`s, single-flight, rotation, failures that
//! keep the last good set, and the fetch's refusals (plain HTTP, size, redirects). Time is
//! a `ManualClock`; nothing sleeps.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpsec_core::{KeyId, ManualClock};
use mcpsec_tokens::{
    Algorithm, DEFAULT_JWKS_COOLDOWN, DEFAULT_JWKS_TTL, Error, JwkSet, KeySource, MAX_JWKS_LEN,
    RemoteJwks, SigningKey, TokenVerifier, verify_with_remote,
};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

const ISS: &str = "https://auth.example";
const AUD: &str = "mcp-server";
const NOW: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

// ---------------------------------------------------------------------------------------
// A tiny HTTP/1.1 server: one request per connection, `Connection: close`.

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Send `Content-Length`; without it the body runs to the end of the connection.
    content_length: bool,
    /// The body is sent this many times over (a long stream from a short buffer).
    repeat: usize,
}

impl Reply {
    fn ok(body: Vec<u8>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type", "application/json".to_owned())],
            body,
            content_length: true,
            repeat: 1,
        }
    }

    fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            ..Reply::ok(body.as_bytes().to_vec())
        }
    }

    fn without_length(self) -> Reply {
        Reply {
            content_length: false,
            ..self
        }
    }

    /// `chunk` sent `repeat` times with no `Content-Length`.
    fn stream(chunk: Vec<u8>, repeat: usize) -> Reply {
        Reply {
            repeat,
            ..Reply::ok(chunk).without_length()
        }
    }

    fn redirect(status: u16, to: &str) -> Reply {
        Reply {
            status,
            headers: vec![("Location", to.to_owned())],
            body: Vec::new(),
            content_length: true,
            repeat: 1,
        }
    }
}

struct Shared {
    /// Replies by request path; `"*"` answers any other path.
    routes: Mutex<HashMap<String, Reply>>,
    hits: Arc<AtomicUsize>,
    paths: Mutex<Vec<String>>,
    /// Requests wait here until it is `true` (lets a test hold a fetch in flight).
    gate: watch::Sender<bool>,
    /// Notified on every request received.
    arrived: Notify,
    /// Per answered request, whether the whole body was written (false: the client hung up).
    written: Mutex<Vec<bool>>,
    /// Notified when a request has been answered.
    answered: Notify,
}

struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Server {
    async fn start(reply: Reply) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (gate, _) = watch::channel(true);
        let shared = Arc::new(Shared {
            routes: Mutex::new(HashMap::from([("*".to_owned(), reply)])),
            hits: Arc::new(AtomicUsize::new(0)),
            paths: Mutex::new(Vec::new()),
            gate,
            arrived: Notify::new(),
            written: Mutex::new(Vec::new()),
            answered: Notify::new(),
        });
        let accept = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&accept)));
            }
        });
        Server { addr, shared }
    }

    fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    fn paths(&self) -> Vec<String> {
        self.shared.paths.lock().unwrap().clone()
    }

    fn reply(&self, reply: Reply) {
        self.route("*", reply);
    }

    fn route(&self, path: &str, reply: Reply) {
        self.shared
            .routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), reply);
    }

    /// Waits for the `n`th request to be answered; whether its whole body was written.
    async fn written(&self, n: usize) -> bool {
        loop {
            if let Some(whole) = self.shared.written.lock().unwrap().get(n - 1) {
                return *whole;
            }
            self.shared.answered.notified().await;
        }
    }

    fn hold(&self) {
        self.shared.gate.send_replace(false);
    }

    fn release(&self) {
        self.shared.gate.send_replace(true);
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
        if request.len() > 16 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&request);
    let path = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("")
        .to_owned();
    shared.paths.lock().unwrap().push(path.clone());
    shared.hits.fetch_add(1, Ordering::SeqCst);
    shared.arrived.notify_one();
    let mut gate = shared.gate.subscribe();
    if gate.wait_for(|open| *open).await.is_err() {
        return;
    }
    let reply = {
        let routes = shared.routes.lock().unwrap();
        routes
            .get(&path)
            .or_else(|| routes.get("*"))
            .unwrap()
            .clone()
    };
    let mut head = format!(
        "HTTP/1.1 {} Whatever\r\nConnection: close\r\n",
        reply.status
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if reply.content_length {
        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    head.push_str("\r\n");
    // The client may hang up early (an oversized body): write errors are expected.
    let mut whole = stream.write_all(head.as_bytes()).await.is_ok();
    for _ in 0..reply.repeat {
        whole = whole && stream.write_all(&reply.body).await.is_ok();
    }
    let _ = stream.shutdown().await;
    shared.written.lock().unwrap().push(whole);
    shared.answered.notify_one();
}

// ---------------------------------------------------------------------------------------
// Keys, tokens, and a verifier fed by a RemoteJwks.

fn key(kid: &str) -> SigningKey {
    SigningKey::generate(KeyId::new(kid).unwrap(), Algorithm::EdDSA).unwrap()
}

fn jwks(keys: &[&SigningKey]) -> Vec<u8> {
    JwkSet {
        keys: keys.iter().map(|k| k.public_jwk()).collect(),
    }
    .to_json()
    .into_bytes()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A valid access token signed by `key` whose header names `kid` (normally `key`'s own).
fn token_with_kid(key: &SigningKey, kid: &str, jti: &str) -> String {
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
    let claims = json!({
        "iss": ISS, "sub": "alice", "aud": AUD, "exp": NOW + 86_400, "iat": NOW,
        "jti": jti, "scope": "mcp:read",
    });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&signature))
}

fn token(key: &SigningKey, jti: &str) -> String {
    token_with_kid(key, key.kid().as_str(), jti)
}

struct Fixture {
    server: Server,
    clock: ManualClock,
    remote: Arc<RemoteJwks>,
    verifier: TokenVerifier,
}

impl Fixture {
    /// A server publishing `keys`, and a verifier built from its first fetch (1 request).
    async fn new(keys: &[&SigningKey]) -> Fixture {
        let server = Server::start(Reply::ok(jwks(keys))).await;
        let clock = ManualClock::at_unix(NOW);
        let remote = Arc::new(remote(&server.url(), &clock));
        let verifier = verifier(&remote, &clock).await;
        assert_eq!(server.hits(), 1, "the verifier is built from one fetch");
        Fixture {
            server,
            clock,
            remote,
            verifier,
        }
    }

    async fn verify(&self, token: &str) -> Result<(), Error> {
        verify_with_remote(&self.verifier, &self.remote, token)
            .await
            .map(|_| ())
    }
}

fn remote(url: &str, clock: &ManualClock) -> RemoteJwks {
    RemoteJwks::builder(url)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

async fn verifier(remote: &RemoteJwks, clock: &ManualClock) -> TokenVerifier {
    TokenVerifier::builder(
        KeySource::Static(remote.keys().await.unwrap()),
        mcpsec_core::NullSink,
    )
    .issuer(ISS)
    .audience(AUD)
    .clock(Arc::new(clock.clone()))
    .build()
    .unwrap()
}

fn kids(set: &JwkSet) -> Vec<String> {
    set.keys.iter().filter_map(|k| k.kid.clone()).collect()
}

// ---------------------------------------------------------------------------------------

#[test]
fn refuses_plain_http_to_a_non_loopback_host() {
    for url in [
        "http://auth.example/jwks",
        "http://10.0.0.1/jwks",
        "http://192.168.1.10:8080/jwks",
        "http://[fe80::1]/jwks",
        "http://[::ffff:127.0.0.1]/jwks",
        "http://localhost.example/jwks",
        "http://127.0.0.1.example/jwks",
        "ftp://127.0.0.1/jwks",
        "file:///etc/jwks.json",
        "https://user:secret@auth.example/jwks",
        "auth.example/jwks",
        "",
    ] {
        let err = RemoteJwks::builder(url).build().unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{url}: {err:?}");
    }
    for url in [
        "https://auth.example/.well-known/jwks.json",
        "https://10.0.0.1/jwks",
        "http://127.0.0.1:8080/jwks",
        "http://127.200.3.4/jwks",
        "http://[::1]:8080/jwks",
        "http://localhost:8080/jwks",
        "http://LOCALHOST/jwks",
    ] {
        assert!(RemoteJwks::builder(url).build().is_ok(), "{url}");
    }
    for builder in [
        RemoteJwks::builder("https://auth.example/jwks").ttl(Duration::ZERO),
        RemoteJwks::builder("https://auth.example/jwks").cooldown(Duration::ZERO),
        RemoteJwks::builder("https://auth.example/jwks").timeout(Duration::ZERO),
    ] {
        assert!(matches!(builder.build().unwrap_err(), Error::Config(_)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_once_and_serves_from_cache_within_ttl() {
    let k1 = key("k1");
    let f = Fixture::new(&[&k1]).await;
    for i in 0..5 {
        f.verify(&token(&k1, &format!("t-{i}"))).await.unwrap();
        assert_eq!(kids(&f.remote.keys().await.unwrap()), ["k1"]);
    }
    f.clock.advance(DEFAULT_JWKS_TTL - Duration::from_secs(1));
    f.verify(&token(&k1, "t-late")).await.unwrap();
    f.remote.keys().await.unwrap();
    assert_eq!(f.server.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refetches_after_ttl() {
    let (k1, k2) = (key("k1"), key("k2"));
    let f = Fixture::new(&[&k1]).await;
    f.server.reply(Reply::ok(jwks(&[&k1, &k2])));
    f.clock.advance(DEFAULT_JWKS_TTL);
    assert_eq!(kids(&f.remote.keys().await.unwrap()), ["k1", "k2"]);
    assert_eq!(f.server.hits(), 2);
    // The new set reaches the verifier without another request.
    f.verify(&token(&k2, "t-1")).await.unwrap();
    f.verify(&token(&k1, "t-2")).await.unwrap();
    assert_eq!(f.server.hits(), 2);

    // A shorter ttl is honoured too.
    let clock = ManualClock::at_unix(NOW);
    let short = RemoteJwks::builder(&f.server.url())
        .ttl(Duration::from_secs(60))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    short.keys().await.unwrap();
    clock.advance(Duration::from_secs(59));
    short.keys().await.unwrap();
    assert_eq!(f.server.hits(), 3);
    clock.advance(Duration::from_secs(1));
    short.keys().await.unwrap();
    assert_eq!(f.server.hits(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_refetches_at_most_once_per_cooldown() {
    let k1 = key("k1");
    let f = Fixture::new(&[&k1]).await;
    let bogus = |i: u32| token_with_kid(&k1, &format!("nope-{i}"), "t");

    // Within the cooldown of the first fetch: no request.
    assert_eq!(f.verify(&bogus(0)).await.unwrap_err(), Error::UnknownKey);
    assert_eq!(f.server.hits(), 1);

    f.clock.advance(DEFAULT_JWKS_COOLDOWN);
    assert_eq!(f.verify(&bogus(1)).await.unwrap_err(), Error::UnknownKey);
    assert_eq!(f.server.hits(), 2, "one refetch");
    for i in 2..20 {
        assert_eq!(f.verify(&bogus(i)).await.unwrap_err(), Error::UnknownKey);
    }
    assert!(!f.remote.refresh_for_unknown_kid().await.unwrap());
    f.clock
        .advance(DEFAULT_JWKS_COOLDOWN - Duration::from_secs(1));
    assert_eq!(f.verify(&bogus(20)).await.unwrap_err(), Error::UnknownKey);
    assert_eq!(f.server.hits(), 2, "still within the cooldown");

    f.clock.advance(Duration::from_secs(1));
    assert!(f.remote.refresh_for_unknown_kid().await.unwrap());
    assert!(!f.remote.refresh_for_unknown_kid().await.unwrap());
    assert_eq!(f.server.hits(), 3);

    // A token with no `kid` at all never causes a request.
    f.clock.advance(DEFAULT_JWKS_COOLDOWN);
    let header = b64(json!({"alg": "EdDSA", "typ": "at+jwt"})
        .to_string()
        .as_bytes());
    let no_kid = format!("{header}.{}", token(&k1, "t").split_once('.').unwrap().1);
    assert_eq!(f.verify(&no_kid).await.unwrap_err(), Error::UnknownKey);
    assert_eq!(f.server.hits(), 3);
    // The known key kept working throughout.
    f.verify(&token(&k1, "t-ok")).await.unwrap();
    assert_eq!(f.server.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn burst_of_unknown_kids_makes_one_request() {
    let k1 = key("k1");
    let f = Arc::new(Fixture::new(&[&k1]).await);
    f.clock.advance(DEFAULT_JWKS_COOLDOWN);

    // Hold the refetch in flight until every caller has been started.
    f.server.hold();
    let started = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (f, started) = (Arc::clone(&f), Arc::clone(&started));
        let bogus = token_with_kid(&k1, &format!("bogus-{i}"), &format!("t-{i}"));
        tasks.push(tokio::spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            f.verify(&bogus).await
        }));
    }
    // The refetch has reached the server (a notification left over from the first fetch
    // only makes this loop look once more) ...
    while f.server.hits() < 2 {
        f.server.shared.arrived.notified().await;
    }
    // ... and every caller is running, so all of them overlap the one fetch.
    for _ in 0..10_000_000 {
        if started.load(Ordering::SeqCst) == 100 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(started.load(Ordering::SeqCst), 100);
    f.server.release();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap_err(), Error::UnknownKey);
    }
    assert_eq!(f.server.hits(), 2, "exactly one extra request");
    f.verify(&token(&k1, "t-ok")).await.unwrap();
    assert_eq!(f.server.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_picked_up_through_unknown_kid() {
    let (k1, k2) = (key("k1"), key("k2"));
    let f = Fixture::new(&[&k1]).await;
    f.verify(&token(&k1, "t-1")).await.unwrap();

    f.server.reply(Reply::ok(jwks(&[&k2, &k1])));
    // Within the cooldown of the last fetch the new key is not known yet.
    f.clock.advance(Duration::from_secs(10));
    assert_eq!(
        f.verify(&token(&k2, "t-2")).await.unwrap_err(),
        Error::UnknownKey
    );
    assert_eq!(f.server.hits(), 1);

    f.clock.advance(DEFAULT_JWKS_COOLDOWN);
    f.verify(&token(&k2, "t-3")).await.unwrap();
    assert_eq!(f.server.hits(), 2, "one refetch picked up the new key");
    f.verify(&token(&k2, "t-4")).await.unwrap();
    f.verify(&token(&k1, "t-5")).await.unwrap();
    assert_eq!(f.server.hits(), 2);
    assert_eq!(kids(&f.remote.keys().await.unwrap()), ["k2", "k1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_failure_keeps_the_last_good_set() {
    let (k1, k2) = (key("k1"), key("k2"));
    let f = Fixture::new(&[&k1]).await;
    f.verify(&token(&k1, "t-0")).await.unwrap();

    let failures = [
        Reply::status(500, "oops"),
        Reply::status(503, ""),
        Reply::ok(b"<html>not json</html>".to_vec()),
        Reply::ok(b"{\"keys\": []}".to_vec()),
        Reply::ok(b"{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}".to_vec()),
        Reply::ok(vec![b' '; MAX_JWKS_LEN + 1]),
    ];
    let mut hits = 1;
    for (i, failure) in failures.into_iter().enumerate() {
        f.server.reply(failure);
        f.clock.advance(DEFAULT_JWKS_TTL);
        assert_eq!(kids(&f.remote.keys().await.unwrap()), ["k1"], "failure {i}");
        hits += 1;
        assert_eq!(f.server.hits(), hits);
        // Not retried on every call: the failure holds until the cooldown.
        f.remote.keys().await.unwrap();
        f.verify(&token(&k1, &format!("t-{i}-a"))).await.unwrap();
        f.clock
            .advance(DEFAULT_JWKS_COOLDOWN - Duration::from_secs(1));
        f.verify(&token(&k1, &format!("t-{i}-b"))).await.unwrap();
        assert_eq!(f.server.hits(), hits);
        // An unknown kid after the cooldown tries once, fails, and changes nothing.
        f.clock.advance(Duration::from_secs(1));
        assert_eq!(
            f.verify(&token(&k2, &format!("t-{i}-c")))
                .await
                .unwrap_err(),
            Error::UnknownKey
        );
        hits += 1;
        assert_eq!(f.server.hits(), hits);
        assert!(f.remote.refresh_for_unknown_kid().await.is_ok_and(|f| !f));
        f.verify(&token(&k1, &format!("t-{i}-d"))).await.unwrap();
    }

    // The issuer recovers: the next attempt after the cooldown takes its set.
    f.server.reply(Reply::ok(jwks(&[&k1, &k2])));
    f.clock.advance(DEFAULT_JWKS_COOLDOWN);
    f.verify(&token(&k2, "t-back")).await.unwrap();
    assert_eq!(f.server.hits(), hits + 1);

    // With no good set yet, the error is returned, also without a request until the cooldown.
    let down = Server::start(Reply::status(500, "")).await;
    let clock = ManualClock::at_unix(NOW);
    let fresh = remote(&down.url(), &clock);
    assert!(matches!(
        fresh.keys().await.unwrap_err(),
        Error::Key(mcpsec_tokens::KeyError::InvalidSet(_))
    ));
    assert!(matches!(
        fresh.keys().await.unwrap_err(),
        Error::Key(mcpsec_tokens::KeyError::InvalidSet(_))
    ));
    assert_eq!(down.hits(), 1);
    down.reply(Reply::ok(jwks(&[&k1])));
    clock.advance(DEFAULT_JWKS_COOLDOWN);
    assert_eq!(kids(&fresh.keys().await.unwrap()), ["k1"]);
    assert_eq!(down.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_refused() {
    let k1 = key("k1");
    let mut exact = jwks(&[&k1]);
    exact.resize(MAX_JWKS_LEN, b' ');
    let mut over = exact.clone();
    over.push(b' ');
    let server = Server::start(Reply::ok(exact.clone())).await;
    let clock = ManualClock::at_unix(NOW);

    // Exactly the cap is fine, with or without Content-Length.
    for reply in [Reply::ok(exact.clone()), Reply::ok(exact).without_length()] {
        server.reply(reply);
        let remote = remote(&server.url(), &clock);
        assert_eq!(kids(&remote.keys().await.unwrap()), ["k1"]);
    }
    // One byte over is refused, whether announced by Content-Length or only counted as it
    // arrives.
    for reply in [Reply::ok(over.clone()), Reply::ok(over).without_length()] {
        server.reply(reply);
        let remote = remote(&server.url(), &clock);
        let err = remote.keys().await.unwrap_err();
        assert_eq!(
            err,
            Error::Key(mcpsec_tokens::KeyError::InvalidSet("larger than 64 KiB"))
        );
    }
    // A 256 MiB stream is cut off at the cap: the client hangs up instead of reading on.
    server.reply(Reply::stream(vec![b' '; 64 * 1024], 4 * 1024));
    let remote = remote(&server.url(), &clock);
    let err = remote.keys().await.unwrap_err();
    assert_eq!(
        err,
        Error::Key(mcpsec_tokens::KeyError::InvalidSet("larger than 64 KiB"))
    );
    drop(remote);
    assert_eq!(server.hits(), 5);
    assert!(!server.written(5).await, "the client stopped reading");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let k1 = key("k1");
    let server = Server::start(Reply::ok(jwks(&[&k1]))).await;
    let clock = ManualClock::at_unix(NOW);
    let elsewhere = format!("http://{}/elsewhere", server.addr);
    for status in [301, 302, 303, 307, 308] {
        server.route("/jwks", Reply::redirect(status, &elsewhere));
        let remote = remote(&server.url(), &clock);
        assert!(
            matches!(
                remote.keys().await.unwrap_err(),
                Error::Key(mcpsec_tokens::KeyError::InvalidSet(_))
            ),
            "{status}"
        );
    }
    assert_eq!(server.paths(), ["/jwks"; 5], "the target was never asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_verifiers_sharing_one_remote_both_get_its_keys() {
    let (k1, k2) = (key("k1"), key("k2"));
    let f = Fixture::new(&[&k1, &k2]).await;
    // A second verifier that started with only k1.
    let other = TokenVerifier::builder(
        KeySource::Static(JwkSet {
            keys: vec![k1.public_jwk()],
        }),
        mcpsec_core::NullSink,
    )
    .issuer(ISS)
    .audience(AUD)
    .clock(Arc::new(f.clock.clone()))
    .build()
    .unwrap();
    f.verify(&token(&k2, "t-1")).await.unwrap();
    verify_with_remote(&other, &f.remote, &token(&k2, "t-2"))
        .await
        .unwrap();
    assert_eq!(f.server.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_output_has_no_key_material() {
    let k1 = key("k1");
    let f = Fixture::new(&[&k1]).await;
    let x = k1.public_jwk().x.unwrap();
    let debug = format!("{:?}", f.remote);
    assert!(debug.contains("RemoteJwks"), "{debug}");
    assert!(!debug.contains(&x), "{debug}");
    let with_query = RemoteJwks::builder("https://auth.example/jwks?api_key=hunter2")
        .build()
        .unwrap();
    assert!(!format!("{with_query:?}").contains("hunter2"));
}

/// Item 2 of issue 12: the issuer drops a key; after one refresh, every verifier sharing
/// the remote refuses it, not only the first one to see the new set.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removed_key_reaches_every_verifier_sharing_the_remote() {
    let (k1, k2) = (key("k1"), key("k2"));
    let f = Fixture::new(&[&k1, &k2]).await;
    let other = verifier(&f.remote, &f.clock).await;
    let leaked = token(&k2, "t-leaked");
    f.verify(&leaked).await.unwrap();
    verify_with_remote(&other, &f.remote, &leaked)
        .await
        .unwrap();

    f.server.reply(Reply::ok(jwks(&[&k1])));
    f.clock.advance(DEFAULT_JWKS_TTL);
    assert_eq!(kids(&f.remote.keys().await.unwrap()), ["k1"], "one refresh");
    for (name, verifier) in [("first", &f.verifier), ("second", &other)] {
        assert_eq!(
            verify_with_remote(verifier, &f.remote, &leaked)
                .await
                .map(|_| ()),
            Err(Error::UnknownKey),
            "the {name} verifier still accepts the removed key"
        );
    }
    assert_eq!(f.server.hits(), 2);
}

/// Item 4 of issue 12: once the set is stale, a token with a known `kid` is answered from
/// the last good set while one refresh runs in the background. The issuer holds its answer:
/// the verification must complete in one poll, without waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn known_kid_does_not_wait_on_a_slow_issuer() {
    let k1 = key("k1");
    let f = Fixture::new(&[&k1]).await;
    f.clock.advance(DEFAULT_JWKS_TTL);
    f.server.hold();
    for i in 0..3 {
        let jti = format!("t-{i}");
        let tok = token(&k1, &jti);
        let verify = std::pin::pin!(f.verify(&tok));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(
            matches!(verify.poll(&mut cx), std::task::Poll::Ready(Ok(()))),
            "call {i} waited for the slow issuer"
        );
    }
    f.server.release();
    // `keys()` waits for the one background refresh, which leaves the set fresh.
    assert_eq!(kids(&f.remote.keys().await.unwrap()), ["k1"]);
    assert_eq!(f.server.hits(), 2, "one background refresh for three calls");
}

/// Item 3 of issue 12: a key the verifier cannot use (P-384, PS256) is skipped; the rest
/// of the issuer's set is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unsupported_key_does_not_refuse_the_remote_set() {
    let (k1, k2) = (key("k1"), key("k2"));
    let f = Fixture::new(&[&k1]).await;
    let mut set = serde_json::from_slice::<serde_json::Value>(&jwks(&[&k2])).unwrap();
    set["keys"].as_array_mut().unwrap().push(json!({
        "kty": "EC", "crv": "P-384", "kid": "p384", "alg": "ES384", "use": "sig",
        "x": b64(&[7u8; 48]), "y": b64(&[9u8; 48]),
    }));
    f.server.reply(Reply::ok(set.to_string().into_bytes()));
    f.clock.advance(DEFAULT_JWKS_TTL);
    assert_eq!(kids(&f.remote.keys().await.unwrap()), ["k2", "p384"]);
    f.verify(&token(&k2, "t-new")).await.unwrap();
    assert_eq!(
        f.verify(&token(&k1, "t-old")).await.unwrap_err(),
        Error::UnknownKey
    );
}

/// Item 2 of issue 12: `reload()` of a verifier built on a remote refetches the issuer's
/// set; it never restores the keys of build time (a removed key among them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_of_a_remote_verifier_refetches() {
    let (k1, k2) = (key("k1"), key("k2"));
    let f = Fixture::new(&[&k1, &k2]).await;
    let verifier = TokenVerifier::builder(
        KeySource::Remote(Arc::clone(&f.remote)),
        mcpsec_core::NullSink,
    )
    .issuer(ISS)
    .audience(AUD)
    .clock(Arc::new(f.clock.clone()))
    .build()
    .unwrap();
    let leaked = token(&k2, "t-leaked");
    verifier.verify(&leaked).await.unwrap();

    f.server.reply(Reply::ok(jwks(&[&k1])));
    verifier.reload().await.unwrap();
    assert_eq!(
        f.server.hits(),
        2,
        "reload fetched, though the set was fresh"
    );
    assert_eq!(
        verifier.verify(&leaked).await.unwrap_err(),
        Error::UnknownKey
    );
    verifier.verify(&token(&k1, "t-ok")).await.unwrap();
    // A failed reload keeps the keys it had.
    f.server.reply(Reply::status(500, ""));
    assert!(verifier.reload().await.is_err());
    verifier.verify(&token(&k1, "t-still")).await.unwrap();
    assert_eq!(
        verifier.verify(&leaked).await.unwrap_err(),
        Error::UnknownKey
    );

    // A remote that has fetched nothing yet cannot build a verifier.
    let unfetched = Arc::new(remote(&f.server.url(), &f.clock));
    assert!(matches!(
        TokenVerifier::builder(KeySource::Remote(unfetched), mcpsec_core::NullSink)
            .issuer(ISS)
            .audience(AUD)
            .build()
            .unwrap_err(),
        Error::Key(mcpsec_tokens::KeyError::InvalidSet(_))
    ));
}
