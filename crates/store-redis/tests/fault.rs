//! Redis going away during a burst of guesses, through a local TCP proxy the test can
//! stall (bytes held, so commands time out) or cut (connections dropped, new ones
//! refused).
//!
//! - By default every budgeted call fails closed with a retryable store error, a right
//!   secret included (it cannot be told from a guess while the budget is unreadable), and
//!   nothing reaches Redis; once the proxy forwards again the connection manager
//!   reconnects and counting resumes from the state before the outage.
//! - With [`FallbackAttemptCounter`] the instance keeps counting locally, each failure as
//!   the fleet size, so it throttles after budget / fleet size guesses of its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
mod stack;

use mcpsec_core::testkit::Namespace;
use mcpsec_core::{AttemptCounter, Clock, FallbackAttemptCounter, UserId};
use mcpsec_mfa::{TotpConfig, TotpSecret};
use mcpsec_store_redis::RedisStores;
use redis::aio::ConnectionManagerConfig;
use stack::{Instance, Shared, instance, source, wrong_code};
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

fn ns(case: &str) -> Namespace {
    Namespace::new("redis", "fault", case)
}

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    /// Connections stay open but no byte moves (a server that stopped answering).
    Stall,
    /// Open connections are dropped and new ones closed at once (a server that is gone).
    Cut,
}

/// A TCP proxy on 127.0.0.1 in front of the test Redis.
struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    conns: Arc<Mutex<JoinSet<()>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Mode::Forward);
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let accepted = Arc::clone(&conns);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *rx.borrow() == Mode::Cut {
                    drop(client);
                    continue;
                }
                let rx = rx.clone();
                accepted.lock().unwrap().spawn(pipe(client, upstream, rx));
            }
        });
        Self { addr, mode, conns }
    }

    fn drop_connections(&self) {
        self.conns.lock().unwrap().abort_all();
    }

    fn stall(&self) {
        self.mode.send_replace(Mode::Stall);
    }

    fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
        self.drop_connections();
    }

    /// Forwards again. Connections that were stalled are dropped (the bytes they held are
    /// never delivered), as a server restart would.
    fn resume(&self) {
        self.drop_connections();
        self.mode.send_replace(Mode::Forward);
    }
}

async fn pipe(client: TcpStream, upstream: SocketAddr, rx: watch::Receiver<Mode>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = copy(client_read, server_write, rx.clone()) => {}
        () = copy(server_read, client_write, rx) => {}
    }
}

/// Copies until either side closes; bytes read while the proxy is not forwarding wait.
async fn copy(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut rx: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if rx.wait_for(|m| *m == Mode::Forward).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The test Redis's address and the same URL pointed at `proxy` instead.
fn split_url(url: &str) -> Option<(String, String, String)> {
    let rest = url.strip_prefix("redis://")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (auth, host) = match authority.rsplit_once('@') {
        Some((auth, host)) => (format!("{auth}@"), host),
        None => (String::new(), authority),
    };
    Some((auth, host.to_owned(), path.to_owned()))
}

/// A proxy in front of the test Redis, stores through it under a fresh prefix (short
/// timeouts, so a stalled command fails quickly), and stores on a direct connection
/// under the same prefix to look at what reached Redis.
async fn through_proxy(ns: &Namespace) -> Option<(Proxy, RedisStores, RedisStores)> {
    let url = common::redis_url()?;
    let Some((auth, host, path)) = split_url(&url) else {
        println!("skipped: the fault test proxies redis:// URLs only");
        return None;
    };
    let upstream = tokio::net::lookup_host(host.as_str())
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(upstream).await;
    let prefix = common::prefix(ns);
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_millis(200)))
        .set_connection_timeout(Some(Duration::from_millis(200)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(50));
    let proxied = RedisStores::connect_with(
        &format!("redis://{auth}{}/{path}", proxy.addr),
        &prefix,
        config,
    )
    .await
    .unwrap()
    .with_ttl(common::TEST_TTL);
    let direct = common::connect(&url, &prefix).await;
    Some((proxy, proxied, direct))
}

const WINDOW: Duration = Duration::from_secs(15 * 60);

fn is_retryable_key_error(
    result: &Result<mcpsec_apikeys::VerifiedKey, mcpsec_apikeys::Error>,
) -> bool {
    matches!(result, Err(mcpsec_apikeys::Error::Store(e)) if e.kind().is_transient())
}

fn is_retryable_totp_error(result: &Result<mcpsec_mfa::Verified, mcpsec_mfa::Error>) -> bool {
    matches!(result, Err(mcpsec_mfa::Error::Store(e)) if e.kind().is_transient())
}

/// Fleet-wide failures of `subject`, read straight from Redis.
async fn count(direct: &RedisStores, subject: &str, shared: &Shared) -> u64 {
    direct
        .attempt_counter()
        .state(subject, WINDOW, shared.clock.now())
        .await
        .unwrap()
        .map_or(0, |s| s.count)
}

/// Polls until the right key verifies again (the manager reconnected), at most 100 tries.
async fn wait_for_recovery(on: &Instance, key: &mcpsec_core::SecretString) {
    for _ in 0..100 {
        if on.keys.verify(key.expose_secret(), &source()).await.is_ok() {
            return;
        }
    }
    panic!("the stack did not recover within 100 tries");
}

const SRC: &str = "src:ip:203.0.113.9";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_during_a_burst_fails_closed_and_counting_resumes() {
    let (proxy, proxied, direct) = skip_without_redis!(through_proxy(&ns("fail-closed")).await);
    let shared = Shared::new();
    let on = Arc::new(instance(
        &shared,
        Arc::new(proxied.attempt_counter()),
        Arc::new(proxied.replay_guard()),
    ));
    let right_key = stack::victim_key(&on).await;
    let attacker = stack::attacker_key().await;
    let user = UserId::new("bob").unwrap();
    let secret = Arc::new(TotpSecret::generate().unwrap());
    let totp_subject = format!("mfa:totp:{user}");

    // Before: two wrong keys and one wrong code, counted.
    for _ in 0..2 {
        let r = on.keys.verify(attacker.expose_secret(), &source()).await;
        assert!(matches!(r, Err(mcpsec_apikeys::Error::Unknown)), "{r:?}");
    }
    let code = wrong_code(&secret, shared.unix());
    let r = on.totp.verify(&user, &secret, &code).await;
    assert!(matches!(r, Err(mcpsec_mfa::Error::WrongCode)), "{r:?}");
    assert_eq!(count(&direct, SRC, &shared).await, 2);
    assert_eq!(count(&direct, &totp_subject, &shared).await, 1);

    for (outage, mode) in [("stalled", Mode::Stall), ("cut", Mode::Cut)] {
        match mode {
            Mode::Stall => proxy.stall(),
            _ => proxy.cut(),
        }
        // A burst of 8 concurrent clients, each sending a wrong key, a wrong code, the
        // right key and the right code: every call is refused with a retryable error.
        let mut burst = JoinSet::new();
        for _ in 0..8 {
            let (on, attacker, right_key) = (
                Arc::clone(&on),
                attacker.expose_secret().to_owned(),
                right_key.expose_secret().to_owned(),
            );
            let (user, secret, unix) = (user.clone(), Arc::clone(&secret), shared.unix());
            burst.spawn(async move {
                let wrong = on.keys.verify(&attacker, &source()).await;
                let right = on.keys.verify(&right_key, &source()).await;
                let code = wrong_code(&secret, unix);
                let wrong_totp = on.totp.verify(&user, &secret, &code).await;
                let good = secret.code_at(TotpConfig::default(), unix).unwrap();
                let right_totp = on.totp.verify(&user, &secret, good.expose_secret()).await;
                (wrong, right, wrong_totp, right_totp)
            });
        }
        while let Some(outcome) = burst.join_next().await {
            let (wrong, right, wrong_totp, right_totp) = outcome.unwrap();
            assert!(is_retryable_key_error(&wrong), "{outage}: {wrong:?}");
            assert!(
                is_retryable_key_error(&right),
                "{outage}: the right key too: {right:?}"
            );
            assert!(
                is_retryable_totp_error(&wrong_totp),
                "{outage}: {wrong_totp:?}"
            );
            assert!(
                is_retryable_totp_error(&right_totp),
                "{outage}: {right_totp:?}"
            );
        }
        // Nothing reached Redis.
        assert_eq!(count(&direct, SRC, &shared).await, 2, "{outage}");
        assert_eq!(count(&direct, &totp_subject, &shared).await, 1, "{outage}");

        proxy.resume();
        wait_for_recovery(&on, &right_key).await;
    }

    // Counting resumes where it was: the source's 3rd and 4th failures, the user's 2nd,
    // and the threshold (4) throttles as if there had been no outage.
    for expected in [3, 4] {
        let r = on.keys.verify(attacker.expose_secret(), &source()).await;
        assert!(matches!(r, Err(mcpsec_apikeys::Error::Unknown)), "{r:?}");
        assert_eq!(count(&direct, SRC, &shared).await, expected);
    }
    let r = on.keys.verify(attacker.expose_secret(), &source()).await;
    assert!(
        matches!(r, Err(mcpsec_apikeys::Error::Throttled { .. })),
        "{r:?}"
    );
    let code = wrong_code(&secret, shared.unix());
    let r = on.totp.verify(&user, &secret, &code).await;
    assert!(matches!(r, Err(mcpsec_mfa::Error::WrongCode)), "{r:?}");
    assert_eq!(count(&direct, &totp_subject, &shared).await, 2);
    // The right code was never checked during the outage, so it is still unspent.
    let good = secret
        .code_at(TotpConfig::default(), shared.unix())
        .unwrap();
    let r = on.totp.verify(&user, &secret, good.expose_secret()).await;
    assert!(r.is_ok(), "{r:?}");

    assert_every_key_expires(&direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opt_in_fallback_enforces_the_budget_over_the_fleet_size_locally() {
    let (proxy, proxied, direct) = skip_without_redis!(through_proxy(&ns("fallback")).await);
    let shared = Shared::new();
    let fleet = NonZeroU64::new(2).unwrap();
    let counter = Arc::new(FallbackAttemptCounter::new(
        proxied.attempt_counter(),
        fleet,
    ));
    let on = instance(
        &shared,
        Arc::clone(&counter) as Arc<dyn AttemptCounter>,
        Arc::new(proxied.replay_guard()),
    );
    let right_key = stack::victim_key(&on).await;
    let attacker = stack::attacker_key().await;
    let user = UserId::new("carol").unwrap();
    let secret = TotpSecret::generate().unwrap();

    proxy.stall();
    // Threshold 4 over a fleet of 2: two wrong keys are checked here, then the source is
    // throttled (each local failure counts as 2).
    let mut keys = Vec::new();
    for _ in 0..3 {
        let r = on.keys.verify(attacker.expose_secret(), &source()).await;
        keys.push(match r {
            Err(mcpsec_apikeys::Error::Unknown) => "unknown",
            Err(mcpsec_apikeys::Error::Throttled { .. }) => "throttled",
            other => panic!("{other:?}"),
        });
    }
    assert_eq!(keys, ["unknown", "unknown", "throttled"]);
    assert!(counter.is_degraded());
    // TOTP budget 3 over 2 instances: one wrong code is checked, the next is refused.
    let code = wrong_code(&secret, shared.unix());
    let r = on.totp.verify(&user, &secret, &code).await;
    assert!(matches!(r, Err(mcpsec_mfa::Error::WrongCode)), "{r:?}");
    let r = on.totp.verify(&user, &secret, &code).await;
    assert!(
        matches!(r, Err(mcpsec_mfa::Error::TooManyAttempts { .. })),
        "{r:?}"
    );
    // The replay guard has no fallback: a right code (of a user within budget) still
    // fails closed.
    let other = UserId::new("dave").unwrap();
    let good = secret
        .code_at(TotpConfig::default(), shared.unix())
        .unwrap();
    let r = on.totp.verify(&other, &secret, good.expose_secret()).await;
    assert!(is_retryable_totp_error(&r), "{r:?}");
    // Nothing reached Redis.
    assert_eq!(count(&direct, SRC, &shared).await, 0);
    let degraded = counter.degraded_calls();
    assert!(degraded > 0);

    proxy.resume();
    // The fallback hides the outage from the service, so wait on the counter itself.
    let mut tries = 0;
    while proxied
        .attempt_counter()
        .state(SRC, WINDOW, shared.clock.now())
        .await
        .is_err()
    {
        tries += 1;
        assert!(tries < 100, "the stack did not recover within 100 tries");
    }
    let r = on.keys.verify(right_key.expose_secret(), &source()).await;
    assert!(r.is_ok(), "{r:?}");
    assert!(!counter.is_degraded());
    // Back on Redis: a new failure is counted there, and the outage's failures still
    // hold the source throttled until their back-off ends.
    let r = on.keys.verify(attacker.expose_secret(), &source()).await;
    assert!(
        matches!(r, Err(mcpsec_apikeys::Error::Throttled { .. })),
        "{r:?}"
    );
    assert_eq!(count(&direct, SRC, &shared).await, 1);
    assert_every_key_expires(&direct).await;
}

/// Every key written under the test's prefix has a TTL.
async fn assert_every_key_expires(stores: &RedisStores) {
    let keys = common::keys_with_ttl(stores, &format!("{}:*", stores.prefix())).await;
    assert!(!keys.is_empty());
    for (key, ttl) in keys {
        assert!(ttl > 0, "{key} has PTTL {ttl}");
    }
}
