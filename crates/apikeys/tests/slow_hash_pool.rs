//! Slow hashes off the executor, bounded, refused at once when full (issue 12 item 12).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::*;
use mcpsec_apikeys::{ApiKeyLookup, Env, Error, SlowHashPool};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Polls `fut` exactly once: `Ready` shows it answered without waiting for anything.
fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
    let mut fut = std::pin::pin!(fut);
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

/// Holds the pool's only worker with a blocking job until the returned sender is used.
async fn hold_the_worker(
    pool: &Arc<SlowHashPool>,
) -> (
    std::sync::mpsc::Sender<()>,
    tokio::task::JoinHandle<Result<(), Error>>,
) {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel::<()>();
    let pool = Arc::clone(pool);
    let holder = tokio::spawn(async move {
        pool.run(move || {
            let _ = started.send(());
            let _ = wait.recv();
        })
        .await
    });
    running.await.unwrap();
    (release, holder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_hashes_run_on_a_bounded_pool_and_a_full_queue_is_refused_at_once() {
    for queue in [0, 1] {
        let pool = Arc::new(SlowHashPool::new(1, queue).unwrap());
        let f = fixture_with(fast_argon2(), |b| {
            b.slow_hash_pool(Arc::clone(&pool))
                .slow_hash_cache(Duration::ZERO, 0)
        });
        let (key, _) = f
            .keys
            .create(&victim_proof(), new_key(Env::Live))
            .await
            .unwrap();
        let (legacy, legacy_record) = f
            .keys
            .create(&victim_proof(), new_key(Env::Live))
            .await
            .unwrap();
        let bcrypt_hash = bcrypt::hash(legacy.expose_secret(), 4).unwrap();
        assert!(
            f.store
                .replace_hash(&legacy_record.id, &legacy_record.hash, &bcrypt_hash)
                .await
                .unwrap()
        );

        let (release, holder) = hold_the_worker(&pool).await;
        let keys = Arc::new(f.keys);
        let queued = (queue == 1).then(|| {
            let keys = Arc::clone(&keys);
            let key = key.expose_secret().to_owned();
            tokio::spawn(async move { keys.verify(&key, &ip(1)).await.map(|_| ()) })
        });
        while pool.in_flight() < 1 + queue {
            tokio::task::yield_now().await;
        }

        // Full: every slow path is refused without waiting. Argon2id, bcrypt, and the
        // dummy hash of an unknown id alike.
        for (what, presented) in [
            ("argon2id", key.expose_secret().to_owned()),
            ("bcrypt", legacy.expose_secret().to_owned()),
            ("unknown id", unknown_id_like(&key)),
        ] {
            match poll_once(keys.verify(&presented, &ip(2))) {
                Poll::Ready(Err(Error::Busy { retry_after })) => {
                    assert!(retry_after > Duration::ZERO);
                }
                Poll::Ready(other) => panic!("queue {queue}, {what}: expected Busy, got {other:?}"),
                Poll::Pending => panic!("queue {queue}, {what}: waited for a full pool"),
            }
        }
        assert_eq!(
            Error::Busy {
                retry_after: Duration::from_secs(1)
            }
            .client_message(),
            "too many requests"
        );

        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        if let Some(queued) = queued {
            queued
                .await
                .unwrap()
                .expect("the queued verification ran once the worker was free");
        }
        assert!(keys.verify(key.expose_secret(), &ip(2)).await.is_ok());
        assert!(
            keys.verify(legacy.expose_secret(), &ip(2)).await.is_ok(),
            "bcrypt verifies (and is upgraded) through the pool"
        );
        assert_eq!(pool.in_flight(), 0);
    }
}

#[tokio::test]
async fn a_pool_needs_a_worker() {
    assert!(matches!(SlowHashPool::new(0, 4), Err(Error::Config(_))));
}
