//! The nonce ledger is asynchronous: encryption takes nonces reserved ahead and never waits
//! on the ledger; without a reservation it refuses (issue 13).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly on purpose"
)]

use mcpsec_core::{SealContext, SecretBytes, StoreError};
use mcpsec_fieldcrypt::{
    Category, Error, FieldCrypt, KeyVersion, KeyringSpec, MemoryLedger, NonceBudget, UsageLedger,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::{Notify, Semaphore};

/// A ledger that suspends every reservation until the test lets one through, or fails
/// every one while `down`.
#[derive(Debug)]
struct GatedLedger {
    inner: MemoryLedger,
    gate: Semaphore,
    entered: Notify,
    calls: AtomicUsize,
    down: AtomicBool,
}

impl GatedLedger {
    fn new() -> Self {
        Self {
            inner: MemoryLedger::new(),
            gate: Semaphore::new(0),
            entered: Notify::new(),
            calls: AtomicUsize::new(0),
            down: AtomicBool::new(false),
        }
    }
}

#[async_trait::async_trait]
impl UsageLedger for GatedLedger {
    async fn reserve(
        &self,
        category: &Category,
        version: u32,
        block: u64,
        limit: u64,
    ) -> Result<(u64, u64), Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.entered.notify_one();
        self.gate.acquire().await.unwrap().forget();
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::Store(StoreError::unavailable("ledger down")));
        }
        self.inner.reserve(category, version, block, limit).await
    }
}

fn pii() -> Category {
    Category::new("pii").unwrap()
}

fn here() -> SealContext {
    SealContext::new("pii", "users", "email", "u1").unwrap()
}

fn crypt(ledger: Arc<GatedLedger>, budget: NonceBudget) -> FieldCrypt {
    FieldCrypt::builder(mcpsec_core::NullSink)
        .keyring(KeyringSpec {
            category: pii(),
            primary: 1,
            min_decrypt: 1,
            versions: vec![KeyVersion {
                version: 1,
                key: SecretBytes::new(vec![1; 32]),
                reserved: 0,
            }],
            index_key: SecretBytes::new(vec![9; 32]),
        })
        .nonce_budget(budget)
        .ledger(ledger)
        .build()
        .unwrap()
}

const BLOCK_OF_4: NonceBudget = NonceBudget {
    warn_at: 1 << 31,
    refuse_at: 1 << 32,
    reserve_block: 4,
    first_block: 4,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encryption_never_waits_on_the_ledger_and_refills_in_the_background() {
    let ledger = Arc::new(GatedLedger::new());
    let crypt = Arc::new(crypt(ledger.clone(), BLOCK_OF_4));
    // Nothing reserved yet: the synchronous path refuses rather than wait.
    assert!(matches!(
        crypt.encrypt(b"x", &here()),
        Err(Error::NonceReservationPending { version: 1, .. })
    ));
    ledger.entered.notified().await; // that refusal started a refill, now suspended
    ledger.gate.add_permits(1);
    crypt.reserve_ahead().await.unwrap();
    assert_eq!(crypt.usage()[0].reserved, 4);

    // Half the block used: the next refill starts, and suspends in the ledger.
    crypt.encrypt(b"x", &here()).unwrap();
    crypt.encrypt(b"x", &here()).unwrap();
    ledger.entered.notified().await;
    // Encryption goes on from the allowance while the ledger is stuck…
    crypt.encrypt(b"x", &here()).unwrap();
    crypt.encrypt(b"x", &here()).unwrap();
    // …and refuses once it is spent: never past what the ledger granted.
    assert!(matches!(
        crypt.encrypt(b"x", &here()),
        Err(Error::NonceReservationPending { version: 1, .. })
    ));
    assert_eq!(crypt.usage()[0].this_process, 4);
    assert_eq!(
        ledger.calls.load(Ordering::SeqCst),
        2,
        "one refill at a time"
    );

    // The refill lands; an async caller waits for it instead of starting another.
    let waiter = tokio::spawn({
        let crypt = crypt.clone();
        async move { crypt.reserve_ahead().await }
    });
    ledger.gate.add_permits(1);
    waiter.await.unwrap().unwrap();
    crypt.encrypt(b"x", &here()).unwrap();
    let usage = &crypt.usage()[0];
    assert_eq!((usage.this_process, usage.reserved), (5, 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_ledger_fails_closed() {
    let ledger = Arc::new(GatedLedger::new());
    let crypt = Arc::new(crypt(ledger.clone(), BLOCK_OF_4));
    ledger.gate.add_permits(1);
    crypt.reserve_ahead().await.unwrap();
    ledger.down.store(true, Ordering::SeqCst);
    ledger.gate.add_permits(1000);
    let mut sealed = 0;
    for _ in 0..100 {
        if crypt.encrypt(b"x", &here()).is_ok() {
            sealed += 1;
        }
    }
    assert_eq!(sealed, 4, "only the reserved block is used");
    // The async paths report the ledger's error instead of waiting forever.
    assert!(matches!(crypt.reserve_ahead().await, Err(Error::Store(_))));
    assert!(
        mcpsec_core::Sealer::seal(&*crypt, b"x", &here())
            .await
            .is_err()
    );
    assert_eq!(crypt.usage()[0].this_process, 4);
    // Back up: encryption resumes.
    ledger.down.store(false, Ordering::SeqCst);
    crypt.reserve_ahead().await.unwrap();
    crypt.encrypt(b"x", &here()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_encryptions_never_exceed_the_grant() {
    let ledger = Arc::new(GatedLedger::new());
    let crypt = Arc::new(crypt(
        ledger.clone(),
        NonceBudget {
            first_block: 64,
            reserve_block: 64,
            ..BLOCK_OF_4
        },
    ));
    ledger.gate.add_permits(1);
    crypt.reserve_ahead().await.unwrap();
    // The ledger answers nothing more: 8 threads race for the 64 nonces granted.
    let start = Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (crypt, start) = (crypt.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                (0..100)
                    .filter(|_| crypt.encrypt(b"x", &here()).is_ok())
                    .count()
            })
        })
        .collect();
    let sealed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(sealed, 64);
    assert_eq!(crypt.usage()[0].this_process, 64);
}
