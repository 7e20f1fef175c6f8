//! The keyset file under concurrent writers, rollback and key destruction (issue 12,
//! items 19 to 21).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly on purpose"
)]

use mcpsec_core::{EventKind, ManualClock, MemorySink, SealContext, SecretBytes};
use mcpsec_fieldcrypt::{
    Category, Error, FieldCrypt, KeyProvider, KeyVersion, KeyringSpec, LocalKeyset, LocalMasterKey,
    WrapContext,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// Decryption from synchronous tests and property tests: the sinks used here answer at
/// once, so the future is ready on its first poll.
trait DecryptNow {
    fn decrypt_now(&self, ciphertext: &[u8], context: &SealContext) -> Result<SecretBytes, Error>;
}

fn ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the event sink waited"),
    }
}

impl DecryptNow for FieldCrypt {
    fn decrypt_now(&self, ciphertext: &[u8], context: &SealContext) -> Result<SecretBytes, Error> {
        ready(self.decrypt(ciphertext, context))
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at_unix(1_764_000_000))
}

fn master(byte: u8) -> Arc<LocalMasterKey> {
    Arc::new(LocalMasterKey::from_bytes(&SecretBytes::new(vec![byte; 32])).unwrap())
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let mut suffix = [0u8; 6];
    mcpsec_core::fill_random(&mut suffix).unwrap();
    let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("mcpsec-fieldcrypt-{name}-{hex}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn pii() -> Category {
    Category::new("pii").unwrap()
}

/// A provider whose first `wrap` stops until the test releases it: the deterministic hook
/// between a rekey's snapshot of the file and its write.
#[derive(Debug)]
struct GatedProvider {
    inner: Arc<LocalMasterKey>,
    gated: AtomicBool,
    entered: Notify,
    release: Notify,
}

#[async_trait::async_trait]
impl KeyProvider for GatedProvider {
    fn key_id(&self) -> String {
        self.inner.key_id()
    }

    async fn wrap(&self, key: &SecretBytes, context: &WrapContext) -> Result<Vec<u8>, Error> {
        if self.gated.swap(false, Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.notified().await;
        }
        self.inner.wrap(key, context).await
    }

    async fn unwrap(&self, wrapped: &[u8], context: &WrapContext) -> Result<SecretBytes, Error> {
        self.inner.unwrap(wrapped, context).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rekey_does_not_lose_a_concurrent_rotation() {
    let dir = temp_dir("rekey-race");
    let path = dir.join("keyset.json");
    let a = Arc::new(
        LocalKeyset::create(&path, master(1), &[pii()], clock())
            .await
            .unwrap(),
    );
    let b = Arc::new(LocalKeyset::open(&path, master(1), clock()).await.unwrap());
    let crypt_b = b
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink))
        .await
        .unwrap();
    let gate = Arc::new(GatedProvider {
        inner: master(2),
        gated: AtomicBool::new(true),
        entered: Notify::new(),
        release: Notify::new(),
    });
    let rekey = tokio::spawn({
        let a = a.clone();
        let gate = gate.clone();
        async move { a.rekey(gate).await }
    });
    // A has read the file and is re-wrapping; B rotates and writes data under the new key.
    gate.entered.notified().await;
    let (v2, _) = b.rotate(&pii(), Some(&crypt_b)).await.unwrap();
    let here = SealContext::new("pii", "users", "email", "u1").unwrap();
    let sealed = crypt_b.encrypt(b"written under v2", &here).unwrap();
    gate.release.notify_one();
    let rekeyed = rekey.await.unwrap().unwrap();

    let info = rekeyed.info();
    assert_eq!(info[0].versions, vec![1, v2], "the rekey kept B's rotation");
    let reopened = Arc::new(LocalKeyset::open(&path, master(2), clock()).await.unwrap());
    assert_eq!(reopened.info()[0].versions, vec![1, v2]);
    let crypt = reopened
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink))
        .await
        .unwrap();
    assert_eq!(
        crypt.decrypt(&sealed, &here).await.unwrap().expose_secret(),
        b"written under v2"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Where the second process finds the keyset (set only for that process).
const SECOND_PROCESS_KEYSET: &str = "MCPSEC_FIELDCRYPT_SECOND_PROCESS_KEYSET";

#[tokio::test]
#[ignore = "the second process of rekey_does_not_lose_a_rotation_by_another_process"]
async fn second_process_rotates() {
    let Ok(path) = std::env::var(SECOND_PROCESS_KEYSET) else {
        return;
    };
    let keyset = LocalKeyset::open(path, master(1), clock()).await.unwrap();
    keyset.rotate(&pii(), None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rekey_does_not_lose_a_rotation_by_another_process() {
    let dir = temp_dir("rekey-race-process");
    let path = dir.join("keyset.json");
    let a = Arc::new(
        LocalKeyset::create(&path, master(1), &[pii()], clock())
            .await
            .unwrap(),
    );
    let gate = Arc::new(GatedProvider {
        inner: master(2),
        gated: AtomicBool::new(true),
        entered: Notify::new(),
        release: Notify::new(),
    });
    let rekey = tokio::spawn({
        let a = a.clone();
        let gate = gate.clone();
        async move { a.rekey(gate).await }
    });
    gate.entered.notified().await;
    // This test binary, run again as a second process, rotates while the rekey waits.
    let status = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "second_process_rotates", "--ignored"])
                .env(SECOND_PROCESS_KEYSET, path)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(status.success());
    gate.release.notify_one();
    rekey.await.unwrap().unwrap();
    let reopened = LocalKeyset::open(&path, master(2), clock()).await.unwrap();
    assert_eq!(
        reopened.info()[0].versions,
        vec![1, 2],
        "the rotation survived"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn keyset_rollback_is_refused_by_a_handle_that_saw_newer() {
    let dir = temp_dir("rollback-handle");
    let path = dir.join("keyset.json");
    let keyset = Arc::new(
        LocalKeyset::create(&path, master(1), &[pii()], clock())
            .await
            .unwrap(),
    );
    let old_copy = std::fs::read(&path).unwrap();
    let crypt = keyset
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink))
        .await
        .unwrap();
    keyset.rotate(&pii(), Some(&crypt)).await.unwrap();
    // Someone restores the older, intact copy (a backup).
    std::fs::write(&path, &old_copy).unwrap();
    let refresh = keyset.refresh(&crypt).await;
    assert!(
        matches!(refresh, Err(Error::Rollback { .. })),
        "{refresh:?}"
    );
    let rotate = keyset.rotate(&pii(), None).await;
    assert!(matches!(rotate, Err(Error::Rollback { .. })), "{rotate:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn keyset_rollback_is_refused_by_a_new_process_via_the_watermark() {
    let dir = temp_dir("rollback-open");
    let path = dir.join("keyset.json");
    let keyset = Arc::new(
        LocalKeyset::create(&path, master(1), &[pii()], clock())
            .await
            .unwrap(),
    );
    let old_copy = std::fs::read(&path).unwrap();
    keyset.rotate(&pii(), None).await.unwrap();
    keyset.set_min_decrypt(&pii(), 2, None).await.unwrap();
    drop(keyset);
    std::fs::write(&path, &old_copy).unwrap();
    // A fresh process would give version 1 back its power and hand out version 2 again.
    let opened = LocalKeyset::open(&path, master(1), clock()).await;
    assert!(matches!(opened, Err(Error::Rollback { .. })), "{opened:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn keyset_generation_is_under_the_mac() {
    let dir = temp_dir("generation-mac");
    let path = dir.join("keyset.json");
    let keyset = LocalKeyset::create(&path, master(1), &[pii()], clock())
        .await
        .unwrap();
    keyset.rotate(&pii(), None).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let generation = json["generation"].as_u64().unwrap();
    assert!(generation >= 2, "{generation}");
    // Raising the generation of an old copy (to slip it past the watermark) breaks the MAC.
    json["generation"] = serde_json::json!(generation + 100);
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let opened = LocalKeyset::open(&path, master(1), clock()).await;
    assert!(matches!(opened, Err(Error::Keyset(_))), "{opened:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn rotate_after_an_undetected_restore_is_a_key_mismatch_not_decrypt() {
    // The case the watermark cannot catch: the keyset file and its watermark both rolled
    // back (a whole-directory backup). The reused version number is still not silent.
    let dir = temp_dir("restore-reuse");
    let path = dir.join("keyset.json");
    let watermark = dir.join("keyset.json.generation");
    let keyset = Arc::new(
        LocalKeyset::create(&path, master(1), &[pii()], clock())
            .await
            .unwrap(),
    );
    let (old_file, old_watermark) = (
        std::fs::read(&path).unwrap(),
        std::fs::read(&watermark).unwrap(),
    );
    let crypt = keyset
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink))
        .await
        .unwrap();
    keyset.rotate(&pii(), Some(&crypt)).await.unwrap();
    let here = SealContext::new("pii", "users", "email", "u1").unwrap();
    let under_first_v2 = crypt.encrypt(b"lost with the restore", &here).unwrap();
    drop((crypt, keyset));
    std::fs::write(&path, old_file).unwrap();
    std::fs::write(&watermark, old_watermark).unwrap();
    let restored = Arc::new(LocalKeyset::open(&path, master(1), clock()).await.unwrap());
    let crypt = restored
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink))
        .await
        .unwrap();
    let (again, _) = restored.rotate(&pii(), Some(&crypt)).await.unwrap();
    assert_eq!(again, 2, "the number is handed out again");
    let result = crypt.decrypt(&under_first_v2, &here).await;
    assert!(
        matches!(result, Err(Error::KeyMismatch { version: 2, .. })),
        "{result:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn single(key: u8) -> FieldCrypt {
    FieldCrypt::builder(mcpsec_core::NullSink)
        .keyring(KeyringSpec {
            category: pii(),
            primary: 1,
            min_decrypt: 1,
            versions: vec![KeyVersion {
                version: 1,
                key: SecretBytes::new(vec![key; 32]),
                reserved: 0,
            }],
            index_key: SecretBytes::new(vec![9; 32]),
        })
        .build()
        .unwrap()
}

#[test]
fn reused_key_version_with_another_key_is_a_key_mismatch() {
    let here = SealContext::new("pii", "users", "email", "u1").unwrap();
    let sealed = single(1).encrypt(b"x", &here).unwrap();
    let result = single(2).decrypt_now(&sealed, &here);
    assert!(
        matches!(result, Err(Error::KeyMismatch { version: 1, .. })),
        "{result:?}"
    );
}

#[tokio::test]

async fn retired_version_key_material_is_destroyed_and_audited() {
    let dir = temp_dir("destroy");
    let path = dir.join("keyset.json");
    let keyset = Arc::new(
        LocalKeyset::create(&path, master(1), &[pii()], clock())
            .await
            .unwrap(),
    );
    let crypt = keyset
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink))
        .await
        .unwrap();
    let events = MemorySink::new();
    // Only a retired version can be destroyed.
    let early = keyset.destroy_version(&pii(), 1, &events).await;
    assert!(matches!(early, Err(Error::InvalidArgument(_))), "{early:?}");
    keyset.rotate(&pii(), Some(&crypt)).await.unwrap();
    keyset
        .set_min_decrypt(&pii(), 2, Some(&crypt))
        .await
        .unwrap();
    let wrapped_v1 = |text: &str| -> String {
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        json["categories"]["pii"]["versions"][0]["wrapped"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Retiring is not destroying: the wrapped key is still in the file.
    assert!(!wrapped_v1(&std::fs::read_to_string(&path).unwrap()).is_empty());
    assert!(keyset.destroy_version(&pii(), 1, &events).await.unwrap());
    assert!(wrapped_v1(&std::fs::read_to_string(&path).unwrap()).is_empty());
    assert_eq!(keyset.info()[0].destroyed, vec![1]);
    let recorded = events.events();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].kind, EventKind::SensitiveDelete);
    // Idempotent (a retry after a sink failure records again), and the number stays taken.
    assert!(!keyset.destroy_version(&pii(), 1, &events).await.unwrap());
    assert_eq!(events.events().len(), 2);
    let reopened = LocalKeyset::open(&path, master(1), clock()).await.unwrap();
    assert_eq!(reopened.info()[0].versions, vec![1, 2]);
    let (v3, _) = reopened.rotate(&pii(), None).await.unwrap();
    assert_eq!(v3, 3);
    // A rekey carries the destroyed version over without trying to unwrap it.
    let rekeyed = reopened.rekey(master(2)).await.unwrap();
    assert_eq!(rekeyed.info()[0].versions, vec![1, 2, 3]);
    std::fs::remove_dir_all(dir).unwrap();
}
