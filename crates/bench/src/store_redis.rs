//! Benchmark rows for mcpsec-store-redis, on the Redis named by `MCPSEC_BENCH_REDIS_URL`
//! (else `MCPSEC_TEST_REDIS_URL`), under a key prefix of their own (every key they write
//! expires within minutes). Without a URL the rows are left out with a notice on stderr;
//! a URL that does not connect is an error.
//!
//! - `store.redis_attempt_incr`: `RedisAttemptCounter::record_failure` (one `EVALSHA`)
//!   against a raw `INCR` + `PEXPIRE` pipeline, on one connection manager shared by both
//!   sides, each driven by a current-thread runtime's `block_on`: the ratio is the
//!   script's work (and its richer reply) over the bare counter's.
//! - `store.redis_gcra`: `RedisRateLimiter::check` against the in-process
//!   `GovernorRateLimiter` with the same quota: what a fleet-wide limit costs over a
//!   per-instance one (a network round trip; the ratio is large by nature).

use crate::Row;
use mcpsec_apikeys::GovernorRateLimiter;
use mcpsec_core::{
    AttemptCounter, Error, RateKey, RateLimiter, RateQuota, SharedClock, SystemClock,
};
use mcpsec_store_redis::{RedisAttemptCounter, RedisRateLimiter, RedisStores};
use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::runtime::Runtime;

const ATTEMPT_INCR: &str = "store.redis_attempt_incr";
const GCRA: &str = "store.redis_gcra";
const ROWS: [&str; 2] = [ATTEMPT_INCR, GCRA];

/// The variables naming the Redis server, in order of preference.
const URL_VARS: [&str; 2] = ["MCPSEC_BENCH_REDIS_URL", "MCPSEC_TEST_REDIS_URL"];

/// The attempt window both sides of the counter row use.
const WINDOW: Duration = Duration::from_secs(60);

/// The Redis rows whose name contains `filter` (all when `None`); Redis is connected to
/// only when one is wanted and a URL is set, and a notice says when they are left out.
pub(crate) fn rows(filter: Option<&str>) -> Result<Vec<Row>, Error> {
    let wanted: Vec<&str> = ROWS
        .into_iter()
        .filter(|name| filter.is_none_or(|f| name.contains(f)))
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let Some(url) = redis_url() else {
        eprintln!(
            "notice: skipped the store.redis_* rows ({}): set MCPSEC_BENCH_REDIS_URL or \
             MCPSEC_TEST_REDIS_URL to a Redis server to run them",
            wanted.join(", ")
        );
        return Ok(Vec::new());
    };
    let runtime = Rc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|_| Error::InvalidArgument("Redis benchmark setup: runtime"))?,
    );
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!("mcpsec-bench:{:x}-{nanos:x}", std::process::id());
    let stores = runtime.block_on(RedisStores::connect(&url, &prefix))?;
    let mut rows = Vec::new();
    if wanted.contains(&ATTEMPT_INCR) {
        rows.push(attempt_row(Rc::clone(&runtime), &stores)?);
    }
    if wanted.contains(&GCRA) {
        rows.push(gcra_row(runtime, &stores)?);
    }
    Ok(rows)
}

fn redis_url() -> Option<String> {
    URL_VARS
        .into_iter()
        .find_map(|var| std::env::var(var).ok().filter(|url| !url.trim().is_empty()))
}

/// `store.redis_attempt_incr`: see the module documentation.
fn attempt_row(runtime: Rc<Runtime>, stores: &RedisStores) -> Result<Row, Error> {
    let counter = RedisAttemptCounter::new(stores.clone());
    let mut connection = stores.connection();
    let raw_key = format!("{}:raw-incr", stores.prefix());
    let window_ms = u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX);
    runtime.block_on(counter.record_failure("bench-subject", WINDOW, SystemTime::now()))?;
    let mut pipe = redis::pipe();
    pipe.cmd("INCR")
        .arg(&raw_key)
        .cmd("PEXPIRE")
        .arg(&raw_key)
        .arg(window_ms);
    let raw_ok: Result<(u64, u8), _> = runtime.block_on(pipe.query_async(&mut connection));
    if raw_ok.is_err() {
        return Err(Error::InvalidArgument(
            "Redis benchmark setup: the raw INCR pipeline fails",
        ));
    }
    let op_rt = Rc::clone(&runtime);
    Ok(Row {
        name: ATTEMPT_INCR,
        baseline: "raw_incr_pexpire_pipeline",
        op: Box::new(move || {
            let state = op_rt.block_on(counter.record_failure(
                black_box("bench-subject"),
                WINDOW,
                SystemTime::now(),
            ));
            black_box(state.is_ok());
        }),
        base: Box::new(move || {
            let reply: Result<(u64, u8), _> = runtime.block_on(pipe.query_async(&mut connection));
            black_box(reply.is_ok());
        }),
    })
}

/// `store.redis_gcra`: see the module documentation. The quota (a million a second) is
/// never exhausted by a single caller, so every check on both sides is an allowed one
/// that stores a new TAT.
fn gcra_row(runtime: Rc<Runtime>, stores: &RedisStores) -> Result<Row, Error> {
    let quota = RateQuota::per_second(1_000_000)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let redis = RedisRateLimiter::new(stores.clone(), quota, Arc::clone(&clock));
    let local = GovernorRateLimiter::new(quota, clock);
    // Many keys, cycled alike on both sides: no key's budget runs out in a run.
    let keys: Rc<[RateKey]> = (0..1024)
        .map(|i| RateKey::principal(&format!("bench-principal-{i}")))
        .collect::<Result<Vec<_>, _>>()?
        .into();
    let key = keys
        .first()
        .cloned()
        .ok_or(Error::InvalidArgument("no keys"))?;
    let allowed = |d: Result<mcpsec_core::RateDecision, mcpsec_core::StoreError>| {
        d.is_ok_and(|d| d.is_allowed())
    };
    if !(allowed(runtime.block_on(redis.check(&key)))
        && allowed(runtime.block_on(local.check(&key))))
    {
        return Err(Error::InvalidArgument(
            "Redis benchmark setup: a rate-limit check is not allowed",
        ));
    }
    let (op_rt, op_keys) = (Rc::clone(&runtime), Rc::clone(&keys));
    let (mut op_i, mut base_i) = (0usize, 0usize);
    Ok(Row {
        name: GCRA,
        baseline: "governor_in_process",
        op: Box::new(move || {
            op_i = (op_i + 1) % op_keys.len();
            if let Some(key) = op_keys.get(op_i) {
                black_box(allowed(op_rt.block_on(redis.check(black_box(key)))));
            }
        }),
        base: Box::new(move || {
            base_i = (base_i + 1) % keys.len();
            if let Some(key) = keys.get(base_i) {
                black_box(allowed(runtime.block_on(local.check(black_box(key)))));
            }
        }),
    })
}
