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
use mcpsec_core::{ManualClock, SealContext, SecretBytes};
use mcpsec_fieldcrypt::{
    Category, Error, FieldCrypt, FileKeysetStore, KeysetStore, LocalKeyset, LocalMasterKey,
    MemoryKeysetStore,
};
use std::sync::Arc;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keyset_in_another_store_rotates_and_two_handles_never_lose_a_write() {
    let store: Arc<dyn KeysetStore> = Arc::new(MemoryKeysetStore::new());
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
    let b = Arc::new(
        LocalKeyset::open_in(store.clone(), master(1), clock())
            .await
            .unwrap(),
    );
    // Both handles rotate at once: the store's compare-and-swap makes one of them start
    // again from the other's document, so both versions are kept.
    let (ra, rb) = tokio::join!(a.rotate(&pii, None), b.rotate(&pii, None));
    let mut versions = vec![ra.unwrap().0, rb.unwrap().0];
    versions.sort_unstable();
    assert_eq!(versions, vec![2, 3]);
    let reopened = Arc::new(
        LocalKeyset::open_in(store, master(1), clock())
            .await
            .unwrap(),
    );
    assert_eq!(reopened.info()[0].versions, vec![1, 2, 3]);
    let crypt = reopened.field_crypt(FieldCrypt::builder()).await.unwrap();
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
