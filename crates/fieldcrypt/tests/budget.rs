//! The nonce budget across restarts, shutdowns and subject keys (issue 12, item 22).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly on purpose"
)]

use mcpsec_core::{SealContext, SecretBytes, UserId};
use mcpsec_fieldcrypt::{
    Category, Error, FieldCrypt, KeyVersion, KeyringSpec, MemoryLedger, MemorySubjectKeyStore,
    NonceBudget, Subject,
};
use std::sync::Arc;

fn pii() -> Category {
    Category::new("pii").unwrap()
}

fn crypt(ledger: Arc<MemoryLedger>, budget: NonceBudget) -> FieldCrypt {
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
        .subject_keys(Arc::new(MemorySubjectKeyStore::new()))
        .build()
        .unwrap()
}

fn here() -> SealContext {
    SealContext::new("pii", "users", "email", "u1").unwrap()
}

#[test]
fn restarts_reserve_a_small_block_that_grows() {
    // Each start used to reserve a whole block (2^20): 4,096 restarts spent a key version.
    let ledger = Arc::new(MemoryLedger::new());
    let budget = NonceBudget::default();
    for _restart in 0..4096 {
        crypt(ledger.clone(), budget)
            .encrypt(b"x", &here())
            .unwrap();
    }
    let spent = ledger.reserved(&pii(), 1).unwrap();
    assert!(spent <= 4096 * 1024, "4,096 restarts reserved {spent}");
    // A busy process still reserves rarely: the block doubles up to the full size.
    let busy = crypt(Arc::new(MemoryLedger::new()), budget);
    let mut reservations = 0;
    let mut last = 0;
    for _ in 0..(1 << 16) {
        busy.encrypt(b"", &here()).unwrap();
        let now = busy.usage()[0].reserved;
        if now != last {
            reservations += 1;
            last = now;
        }
    }
    assert!(
        reservations <= 7,
        "{reservations} reservations for 2^16 encryptions"
    );
}

#[tokio::test]
async fn clean_shutdown_returns_the_unused_reservation() {
    let ledger = Arc::new(MemoryLedger::new());
    let budget = NonceBudget::default();
    let first = crypt(ledger.clone(), budget);
    for _ in 0..3 {
        first.encrypt(b"x", &here()).unwrap();
    }
    assert!(ledger.reserved(&pii(), 1).unwrap() > 3);
    first.release_reservations().await.unwrap();
    assert_eq!(ledger.reserved(&pii(), 1), Some(3));
    // Encrypting after the release reserves again, so the count is never under.
    first.encrypt(b"x", &here()).unwrap();
    assert!(ledger.reserved(&pii(), 1).unwrap() >= 4);
    assert_eq!(first.usage()[0].this_process, 4);
}

#[tokio::test]
async fn subject_key_encryptions_count_against_the_budget() {
    let budget = NonceBudget {
        warn_at: 8,
        refuse_at: 8,
        reserve_block: 2,
        ..NonceBudget::default()
    };
    let crypt = crypt(Arc::new(MemoryLedger::new()), budget);
    let subject = Subject::User(UserId::new("u1").unwrap());
    let mut sealed = 0;
    let outcome = loop {
        match crypt.encrypt_for_subject(&subject, b"x", &here()).await {
            Ok(_) if sealed < 100 => sealed += 1,
            other => break other.map(|_| ()),
        }
    };
    // One encryption wraps the subject key; seven seal fields; the eighth is refused.
    assert!(
        matches!(outcome, Err(Error::NonceBudgetExhausted { version: 1, .. })),
        "{outcome:?} after {sealed}"
    );
    assert_eq!(sealed, 7);
}

#[tokio::test]
async fn clean_shutdown_returns_the_unused_reservation_to_the_keyset_file() {
    let dir =
        std::env::temp_dir().join(format!("mcpsec-fieldcrypt-release-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keyset.json");
    let master = Arc::new(
        mcpsec_fieldcrypt::LocalMasterKey::from_bytes(&SecretBytes::new(vec![1; 32])).unwrap(),
    );
    let clock = Arc::new(mcpsec_core::ManualClock::at_unix(1_764_000_000));
    let keyset = Arc::new(
        mcpsec_fieldcrypt::LocalKeyset::create(&path, master.clone(), &[pii()], clock.clone())
            .await
            .unwrap(),
    );
    let crypt = keyset
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink))
        .await
        .unwrap();
    crypt.encrypt(b"x", &here()).unwrap();
    assert_eq!(crypt.usage()[0].reserved, 1024);
    assert_eq!(crypt.release_reservations().await.unwrap(), 1023);
    let reopened = Arc::new(
        mcpsec_fieldcrypt::LocalKeyset::open(&path, master, clock)
            .await
            .unwrap(),
    );
    let crypt = reopened
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink))
        .await
        .unwrap();
    // The file held 1 (the one nonce used); opening reserves a first block ahead.
    assert_eq!(crypt.usage()[0].reserved, 1 + 1024);
    assert_eq!(crypt.usage()[0].this_process, 0);
    std::fs::remove_dir_all(dir).unwrap();
}
