//! The KeysetStore conformance suite per backend, and a keyset kept in a store other than
//! a file (issue 13).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly on purpose"
)]

use mcpsec_core::testkit::Namespace;
use mcpsec_core::{ManualClock, SealContext, SecretBytes, StoreError};
use mcpsec_fieldcrypt::{
    Category, Error, FieldCrypt, FileKeysetStore, KeysetStore, LocalKeyset, LocalMasterKey,
    MemoryKeysetStore, StoredKeyset,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

mcpsec_fieldcrypt::keyset_store_suite!(memory, |_: Namespace| async {
    Arc::new(MemoryKeysetStore::new()) as Arc<dyn KeysetStore>
});

mcpsec_fieldcrypt::keyset_store_suite!(file, |ns: Namespace| async move {
    // One directory per case and run: the cases run in parallel.
    let mut suffix = [0u8; 6];
    mcpsec_core::fill_random(&mut suffix).unwrap();
    let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("mcpsec-{ns}-{hex}"));
    std::fs::create_dir_all(&dir).unwrap();
    Arc::new(FileKeysetStore::new(dir.join("keyset.json"))) as Arc<dyn KeysetStore>
});

fn master(byte: u8) -> Arc<LocalMasterKey> {
    Arc::new(LocalMasterKey::from_bytes(&SecretBytes::new(vec![byte; 32])).unwrap())
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at_unix(1_764_000_000))
}

/// A store that holds the first `replace` after it is armed until the test lets it go.
#[derive(Debug, Default)]
struct GatedStore {
    inner: MemoryKeysetStore,
    armed: AtomicBool,
    held: Notify,
    release: Notify,
}

#[async_trait::async_trait]
impl KeysetStore for GatedStore {
    async fn load(&self) -> Result<Option<StoredKeyset>, StoreError> {
        self.inner.load().await
    }

    async fn replace(&self, expected: Option<u64>, next: StoredKeyset) -> Result<(), StoreError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.held.notify_one();
            self.release.notified().await;
        }
        self.inner.replace(expected, next).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_that_lands_while_another_writes_is_never_lost() {
    let store = Arc::new(GatedStore::default());
    let pii = Category::new("pii").unwrap();
    let a = Arc::new(
        LocalKeyset::create_in(
            store.clone(),
            master(1),
            std::slice::from_ref(&pii),
            clock(),
        )
        .await
        .unwrap(),
    );
    assert!(a.path().is_none());
    let b = LocalKeyset::open_in(store.clone(), master(1), clock())
        .await
        .unwrap();
    // A reads the keyset, prepares version 2 and is held at its write…
    store.armed.store(true, Ordering::SeqCst);
    let first = tokio::spawn({
        let (a, pii) = (a.clone(), pii.clone());
        async move { a.rotate(&pii, None).await.map(|(version, _)| version) }
    });
    store.held.notified().await;
    // …while B rotates to version 2 and writes it.
    assert_eq!(b.rotate(&pii, None).await.unwrap().0, 2);
    store.release.notify_one();
    // A's write was against the old generation: refused by the store, so A starts again
    // from B's document and takes version 3. Without the compare-and-swap it would
    // have overwritten B's version 2.
    assert_eq!(first.await.unwrap().unwrap(), 3);
    let reopened = Arc::new(
        LocalKeyset::open_in(store.clone(), master(1), clock())
            .await
            .unwrap(),
    );
    assert_eq!(reopened.info()[0].versions, vec![1, 2, 3]);
    let crypt = reopened
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink))
        .await
        .unwrap();
    let here = SealContext::new("pii", "t", "c", "r").unwrap();
    let sealed = crypt.encrypt(b"x", &here).unwrap();
    assert_eq!(
        crypt.decrypt(&sealed, &here).await.unwrap().expose_secret(),
        b"x"
    );
}

#[tokio::test]
async fn a_second_create_in_the_same_store_is_refused() {
    let store: Arc<dyn KeysetStore> = Arc::new(MemoryKeysetStore::new());
    let pii = Category::new("pii").unwrap();
    LocalKeyset::create_in(
        store.clone(),
        master(1),
        std::slice::from_ref(&pii),
        clock(),
    )
    .await
    .unwrap();
    let again = LocalKeyset::create_in(store, master(1), &[pii], clock()).await;
    assert!(matches!(again, Err(Error::InvalidArgument(_))), "{again:?}");
}
