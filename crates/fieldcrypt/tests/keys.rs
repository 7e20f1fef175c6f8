//! The keyset file and master key, rotation with re-encryption, blind indexes,
//! crypto-shredding, and the store conformance suites.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly on purpose"
)]

use mcpsec_core::StoreError;
use mcpsec_core::{EventKind, ManualClock, MemorySink, OrgId, SealContext, SecretBytes, UserId};
use mcpsec_fieldcrypt::rewrap::{EncryptedRow, MemoryCheckpoints, Rewrap, RowSource};
use mcpsec_fieldcrypt::{
    AuditedKeyProvider, BlindIndexConfig, Category, Error, FieldCrypt, KeyProvider, KeyVersion,
    KeyringSpec, LocalKeyset, LocalMasterKey, MemorySubjectKeyStore, Normalize, Subject,
    SubjectKeyState, SubjectKeyStore, check_master_key_location, format,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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

fn cats(names: &[&str]) -> Vec<Category> {
    names.iter().map(|n| Category::new(n).unwrap()).collect()
}

#[tokio::test]
async fn keyset_file_round_trip_rotation_and_permissions() {
    let dir = temp_dir("keyset");
    let path = dir.join("keyset.json");
    let manual = clock();
    let keyset = Arc::new(
        LocalKeyset::create(
            &path,
            master(1),
            &cats(&["pii", "totp_secrets"]),
            manual.clone(),
        )
        .await
        .unwrap(),
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // No key material in the clear: the file holds only wrapped keys.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"key_provider\": \"local:"));
    assert!(
        LocalKeyset::create(&path, master(1), &cats(&["pii"]), clock())
            .await
            .is_err(),
        "never overwrites"
    );

    let crypt = keyset
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink))
        .await
        .unwrap();
    let here = SealContext::new("pii", "users", "email", "u1").unwrap();
    let before = crypt.encrypt(b"ada@example.com", &here).unwrap();

    let pii = Category::new("pii").unwrap();
    let (version, event) = keyset.rotate(&pii, Some(&crypt)).await.unwrap();
    assert_eq!(version, 2);
    assert_eq!(event.kind, EventKind::SysCryptoKeyRotated);
    let after = crypt.encrypt(b"grace@example.com", &here).unwrap();
    assert_eq!(format::inspect(&after).unwrap().key_version, 2);

    // The schedule: version 2 is new, so nothing is due until a year has passed.
    let year = std::time::Duration::from_secs(365 * 24 * 3600);
    assert!(keyset.due_by_age(year).is_empty());
    manual.advance(year);
    assert_eq!(keyset.due_by_age(year), cats(&["pii", "totp_secrets"]));

    // A second process opening the file reads both.
    let reopened = Arc::new(LocalKeyset::open(&path, master(1), clock()).await.unwrap());
    let crypt2 = reopened
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink))
        .await
        .unwrap();
    assert_eq!(
        crypt2
            .decrypt(&before, &here)
            .await
            .unwrap()
            .expose_secret(),
        b"ada@example.com"
    );
    assert_eq!(
        crypt2.decrypt(&after, &here).await.unwrap().expose_secret(),
        b"grace@example.com"
    );
    assert_eq!(reopened.info()[0].versions, vec![1, 2]);

    // The wrong master key is named as such.
    assert!(matches!(
        LocalKeyset::open(&path, master(2), clock()).await,
        Err(Error::KeyProvider(_))
    ));

    // Raising the minimum retires version 1 for every later opener.
    reopened
        .set_min_decrypt(&pii, 2, Some(&crypt2))
        .await
        .unwrap();
    assert!(matches!(
        crypt2.decrypt(&before, &here).await,
        Err(Error::KeyVersionRetired { .. })
    ));
    let third = Arc::new(LocalKeyset::open(&path, master(1), clock()).await.unwrap());
    let crypt3 = third
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink))
        .await
        .unwrap();
    assert!(matches!(
        crypt3.decrypt(&before, &here).await,
        Err(Error::KeyVersionRetired { .. })
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn nonce_reservations_are_written_to_the_keyset() {
    let dir = temp_dir("ledger");
    let path = dir.join("keyset.json");
    let keyset = Arc::new(
        LocalKeyset::create(&path, master(1), &cats(&["pii"]), clock())
            .await
            .unwrap(),
    );
    let budget = mcpsec_fieldcrypt::NonceBudget {
        warn_at: 10,
        refuse_at: 20,
        reserve_block: 4,
        ..mcpsec_fieldcrypt::NonceBudget::default()
    };
    let crypt = keyset
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink).nonce_budget(budget))
        .await
        .unwrap();
    let here = SealContext::new("pii", "t", "c", "r").unwrap();
    for _ in 0..5 {
        // The async path: waits for the refill the synchronous `encrypt` only starts.
        mcpsec_core::Sealer::seal(&crypt, b"x", &here)
            .await
            .unwrap();
    }
    // A restart resumes from the durable total (two blocks of 4), never below the 5 used.
    let reopened = Arc::new(LocalKeyset::open(&path, master(1), clock()).await.unwrap());
    let crypt = reopened
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink).nonce_budget(budget))
        .await
        .unwrap();
    // The file held 8; opening reserves a first block (4) ahead.
    assert_eq!(crypt.usage()[0].reserved, 8 + 4);
    assert_eq!(crypt.usage()[0].this_process, 0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn two_processes_sharing_a_keyset_never_overwrite_each_other() {
    let dir = temp_dir("shared");
    let path = dir.join("keyset.json");
    let a = Arc::new(
        LocalKeyset::create(&path, master(1), &cats(&["pii"]), clock())
            .await
            .unwrap(),
    );
    let b = Arc::new(LocalKeyset::open(&path, master(1), clock()).await.unwrap());
    let budget = mcpsec_fieldcrypt::NonceBudget {
        warn_at: 100,
        refuse_at: 200,
        reserve_block: 1,
        ..mcpsec_fieldcrypt::NonceBudget::default()
    };
    let crypt_b = b
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink).nonce_budget(budget))
        .await
        .unwrap();
    let pii = Category::new("pii").unwrap();
    // A rotates; B, which still has the old copy in memory, then writes a reservation.
    let (v2, _) = a.rotate(&pii, None).await.unwrap();
    crypt_b
        .encrypt(b"x", &SealContext::new("pii", "t", "c", "r").unwrap())
        .unwrap();
    let on_disk = LocalKeyset::open(&path, master(1), clock()).await.unwrap();
    assert_eq!(
        on_disk.info()[0].versions,
        vec![1, v2],
        "B's write kept A's rotation"
    );
    // B rotating next gets the version after A's, not the same one.
    let (v3, _) = b.rotate(&pii, Some(&crypt_b)).await.unwrap();
    assert_eq!((v2, v3), (2, 3));
    let on_disk = LocalKeyset::open(&path, master(1), clock()).await.unwrap();
    assert_eq!(on_disk.info()[0].versions, vec![1, 2, 3]);
    assert_eq!(on_disk.info()[0].primary, 3);

    // A third instance loaded before the rotations catches up with `refresh`.
    let c = Arc::new(LocalKeyset::open(&path, master(1), clock()).await.unwrap());
    let crypt_c = c
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink))
        .await
        .unwrap();
    let crypt_a = a
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink))
        .await
        .unwrap();
    let here = SealContext::new("pii", "t", "c", "r2").unwrap();
    let (v4, _) = a.rotate(&pii, Some(&crypt_a)).await.unwrap();
    a.add_category(&Category::new("billing").unwrap(), Some(&crypt_a))
        .await
        .unwrap();
    let written = crypt_a.encrypt(b"new data", &here).unwrap();
    assert!(crypt_c.decrypt(&written, &here).await.is_err());
    c.refresh(&crypt_c).await.unwrap();
    assert_eq!(
        crypt_c
            .decrypt(&written, &here)
            .await
            .unwrap()
            .expose_secret(),
        b"new data"
    );
    assert_eq!(crypt_c.versions(&pii).unwrap().0, v4);
    assert!(
        crypt_c
            .categories()
            .contains(&Category::new("billing").unwrap())
    );
    a.set_min_decrypt(&pii, v4, Some(&crypt_a)).await.unwrap();
    c.refresh(&crypt_c).await.unwrap();
    assert_eq!(crypt_c.versions(&pii).unwrap(), (v4, v4));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn rekeying_moves_the_keyset_to_a_new_master_key_without_touching_data() {
    let dir = temp_dir("rekey");
    let path = dir.join("keyset.json");
    let keyset = Arc::new(
        LocalKeyset::create(&path, master(1), &cats(&["pii"]), clock())
            .await
            .unwrap(),
    );
    // One reservation per encryption, so every encryption below writes the keyset.
    let budget = mcpsec_fieldcrypt::NonceBudget {
        warn_at: 100,
        refuse_at: 200,
        reserve_block: 1,
        ..mcpsec_fieldcrypt::NonceBudget::default()
    };
    let crypt = keyset
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink).nonce_budget(budget))
        .await
        .unwrap();
    let here = SealContext::new("pii", "t", "c", "r").unwrap();
    let sealed = crypt.encrypt(b"kept", &here).unwrap();
    let index = crypt
        .blind_index(
            &Category::new("pii").unwrap(),
            "t",
            "c",
            BlindIndexConfig {
                bytes: 8,
                normalize: Normalize::Exact,
            },
        )
        .unwrap()
        .compute("v")
        .unwrap();
    let rekeyed = Arc::new(keyset.rekey(master(2)).await.unwrap());
    // The old handle (and any process still on the old master key) can no longer write:
    // not even the nonce reservation an encryption needs: the synchronous path refuses
    // without one, and reserving fails.
    let refused = crypt.encrypt(b"x", &here);
    assert!(
        matches!(refused, Err(Error::NonceReservationPending { .. })),
        "{refused:?}"
    );
    let refused = crypt.reserve_ahead().await;
    assert!(matches!(refused, Err(Error::KeyProvider(_))), "{refused:?}");
    assert!(crypt.encrypt(b"x", &here).is_err());
    assert!(
        keyset
            .rotate(&Category::new("pii").unwrap(), None)
            .await
            .is_err()
    );
    assert!(matches!(
        LocalKeyset::open(&path, master(1), clock()).await,
        Err(Error::KeyProvider(_))
    ));
    let reopened = Arc::new(LocalKeyset::open(&path, master(2), clock()).await.unwrap());
    for set in [rekeyed, reopened] {
        let crypt = set
            .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink))
            .await
            .unwrap();
        assert_eq!(
            crypt.decrypt(&sealed, &here).await.unwrap().expose_secret(),
            b"kept"
        );
        let again = crypt
            .blind_index(
                &Category::new("pii").unwrap(),
                "t",
                "c",
                BlindIndexConfig {
                    bytes: 8,
                    normalize: Normalize::Exact,
                },
            )
            .unwrap()
            .compute("v")
            .unwrap();
        assert_eq!(again, index, "blind indexes survive a rekey");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn edited_keysets_are_refused() {
    let dir = temp_dir("edited");
    let path = dir.join("keyset.json");
    let keyset = Arc::new(
        LocalKeyset::create(&path, master(1), &cats(&["pii", "oauth_tokens"]), clock())
            .await
            .unwrap(),
    );
    let pii = Category::new("pii").unwrap();
    keyset.rotate(&pii, None).await.unwrap();
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 6] = [
        ("roll the primary back", |v| {
            v["categories"]["pii"]["primary"] = 1.into()
        }),
        ("revive retired keys", |v| {
            v["categories"]["pii"]["min_decrypt"] = 0.into()
        }),
        ("change the nonce count", |v| {
            v["categories"]["pii"]["versions"][0]["reserved"] = 99.into()
        }),
        ("swap wrapped keys between categories", |v| {
            let a = v["categories"]["pii"]["versions"][0]["wrapped"].clone();
            let b = v["categories"]["oauth_tokens"]["versions"][0]["wrapped"].clone();
            v["categories"]["pii"]["versions"][0]["wrapped"] = b;
            v["categories"]["oauth_tokens"]["versions"][0]["wrapped"] = a;
        }),
        ("drop a version", |v| {
            v["categories"]["pii"]["versions"]
                .as_array_mut()
                .unwrap()
                .remove(0);
        }),
        ("strip the tag", |v| v["mac"] = "".into()),
    ];
    for (what, edit) in edits {
        let mut value = original.clone();
        edit(&mut value);
        std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
        let opened = LocalKeyset::open(&path, master(1), clock()).await;
        assert!(
            matches!(opened, Err(Error::Keyset(_))),
            "{what}: {opened:?}"
        );
        // A running instance refuses to write over it too.
        assert!(keyset.rotate(&pii, None).await.is_err(), "{what}");
    }
    // Unknown fields and garbage are refused.
    let mut value = original.clone();
    value["extra"] = serde_json::json!(1);
    std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
    assert!(matches!(
        LocalKeyset::open(&path, master(1), clock()).await,
        Err(Error::Keyset(_))
    ));
    std::fs::write(&path, b"{").unwrap();
    assert!(matches!(
        LocalKeyset::open(&path, master(1), clock()).await,
        Err(Error::Keyset(_))
    ));
    // The untouched file still opens.
    std::fs::write(&path, serde_json::to_vec(&original).unwrap()).unwrap();
    assert!(LocalKeyset::open(&path, master(1), clock()).await.is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn master_keys_load_from_base64_and_files_and_stay_out_of_debug() {
    let encoded = LocalMasterKey::generate_base64().unwrap();
    let key = LocalMasterKey::from_base64(&encoded).unwrap();
    let debug = format!("{key:?}");
    assert!(debug.contains("REDACTED") && !debug.contains(encoded.expose_secret()));
    for bad in ["", "c2hvcnQ=", "not base64 at all!"] {
        assert!(LocalMasterKey::from_base64(&mcpsec_core::SecretString::new(bad.into())).is_err());
    }
    let dir = temp_dir("master");
    let file = dir.join("master.key");
    std::fs::write(&file, format!("{}\n", encoded.expose_secret())).unwrap();
    assert_eq!(
        LocalMasterKey::from_file(&file).unwrap().key_id(),
        key.key_id()
    );
    // The master key file may not sit beside the keyset.
    assert!(check_master_key_location(&dir.join("keyset.json"), &file).is_err());
    let elsewhere = temp_dir("master-elsewhere");
    assert!(check_master_key_location(&elsewhere.join("keyset.json"), &file).is_ok());
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(elsewhere).unwrap();
}

#[tokio::test]
async fn audited_provider_records_every_key_access() {
    let sink = MemorySink::new();
    let audited = Arc::new(AuditedKeyProvider::new(
        LocalMasterKey::from_bytes(&SecretBytes::new(vec![1; 32])).unwrap(),
        Arc::new(sink.clone()),
        clock(),
    ));
    let dir = temp_dir("audited");
    let path = dir.join("keyset.json");
    let keyset = Arc::new(
        LocalKeyset::create(&path, audited.clone(), &cats(&["pii"]), clock())
            .await
            .unwrap(),
    );
    keyset
        .field_crypt(FieldCrypt::builder(mcpsec_core::NullSink))
        .await
        .unwrap();
    let kinds: Vec<_> = sink.events().iter().map(|e| e.kind).collect();
    // Three wraps at creation (data key, index key, keyset integrity key), two unwraps
    // when the keys are loaded (the integrity key is already in memory).
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::SensitiveUpdate)
            .count(),
        3
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::SensitiveRead)
            .count(),
        2
    );
    let serialized = serde_json::to_string(&sink.events()).unwrap();
    assert!(serialized.contains("pii.v1"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Rows in memory with a fault switch: `replace` fails once after `fail_after` writes.
#[derive(Debug, Default)]
struct Rows {
    rows: Mutex<Vec<EncryptedRow>>,
    writes: AtomicUsize,
    fail_after: Mutex<Option<usize>>,
    per_row_writes: Mutex<std::collections::HashMap<String, usize>>,
}

#[async_trait::async_trait]
impl RowSource for Rows {
    async fn next_batch(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EncryptedRow>, Error> {
        let rows = self.rows.lock().unwrap();
        Ok(rows
            .iter()
            .filter(|r| after.is_none_or(|a| r.cursor.as_str() > a))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn replace(&self, row: &EncryptedRow, new: Vec<u8>) -> Result<bool, Error> {
        {
            let mut fail = self.fail_after.lock().unwrap();
            if *fail == Some(self.writes.load(Ordering::SeqCst)) {
                *fail = None;
                return Err(Error::Store(StoreError::unavailable("simulated crash")));
            }
        }
        let mut rows = self.rows.lock().unwrap();
        let stored = rows.iter_mut().find(|r| r.cursor == row.cursor).unwrap();
        if stored.ciphertext != row.ciphertext {
            return Ok(false);
        }
        stored.ciphertext = new;
        self.writes.fetch_add(1, Ordering::SeqCst);
        *self
            .per_row_writes
            .lock()
            .unwrap()
            .entry(row.cursor.clone())
            .or_default() += 1;
        Ok(true)
    }
}

fn ring(versions: &[u32], primary: u32) -> KeyringSpec {
    KeyringSpec {
        category: Category::new("pii").unwrap(),
        primary,
        min_decrypt: 1,
        versions: versions
            .iter()
            .map(|&v| KeyVersion {
                version: v,
                key: SecretBytes::new(vec![u8::try_from(v).unwrap(); 32]),
                reserved: 0,
            })
            .collect(),
        index_key: SecretBytes::new(vec![0xaa; 32]),
    }
}

#[tokio::test]
async fn rewrap_resumes_after_interruption_losing_nothing_and_doing_nothing_twice() {
    let crypt = FieldCrypt::builder(mcpsec_core::NullSink)
        .keyring(ring(&[1], 1))
        .build()
        .unwrap();
    let source = Rows::default();
    {
        let mut rows = source.rows.lock().unwrap();
        for i in 0..103 {
            let cursor = format!("row-{i:04}");
            let context = SealContext::new("pii", "users", "email", cursor.as_str()).unwrap();
            let ciphertext = crypt
                .encrypt(format!("user {i}").as_bytes(), &context)
                .unwrap();
            rows.push(EncryptedRow {
                cursor,
                context,
                ciphertext,
            });
        }
    }
    crypt
        .install_primary(
            &Category::new("pii").unwrap(),
            KeyVersion {
                version: 2,
                key: SecretBytes::new(vec![2; 32]),
                reserved: 0,
            },
        )
        .unwrap();
    // One row is already current (written after the rotation).
    {
        let mut rows = source.rows.lock().unwrap();
        let row = &mut rows[5];
        row.ciphertext = crypt.encrypt(b"user 5", &row.context).unwrap();
    }
    let checkpoints = MemoryCheckpoints::new();
    let job = Rewrap::new(&crypt, &source, &checkpoints, "pii-v2").batch_size(10);

    // Run 1: stops after 2 batches.
    let first = job.run(Some(2)).await.unwrap();
    assert_eq!(first.cursor.as_deref(), Some("row-0019"));
    assert!(!first.done);
    // Run 2: "crashes" in the middle of the 4th batch (after its 3rd write).
    *source.fail_after.lock().unwrap() = Some(19 + 20 + 3);
    assert!(job.run(None).await.is_err());
    // Run 3: resumes from the last checkpoint and finishes.
    let last = job.run(None).await.unwrap();
    assert!(last.done);
    assert_eq!(last.progress.failed, 0);
    assert_eq!(last.progress.conflicts, 0);
    // The crashed batch's 3 writes were not checkpointed: on resume those rows count as
    // already current, not as rewritten again.
    assert_eq!(last.progress.scanned, 103);
    assert_eq!(last.progress.rewrapped, 99);
    assert_eq!(last.progress.current, 4);

    let rows = source.rows.lock().unwrap().clone();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(
            format::inspect(&row.ciphertext).unwrap().key_version,
            2,
            "{}",
            row.cursor
        );
        assert_eq!(
            crypt
                .decrypt(&row.ciphertext, &row.context)
                .await
                .unwrap()
                .expose_secret(),
            format!("user {i}").as_bytes()
        );
    }
    let per_row = source.per_row_writes.lock().unwrap().clone();
    assert!(
        per_row.values().all(|&n| n == 1),
        "a row was rewritten twice"
    );
    assert_eq!(per_row.len(), 102);
    // A finished job is a no-op.
    assert_eq!(job.run(None).await.unwrap(), last);
}

#[tokio::test]
async fn rewrap_leaves_rows_changed_under_it_and_counts_failures() {
    let crypt = FieldCrypt::builder(mcpsec_core::NullSink)
        .keyring(ring(&[1, 2], 1))
        .build()
        .unwrap();
    let context = SealContext::new("pii", "users", "email", "a").unwrap();
    let good = crypt.encrypt(b"a", &context).unwrap();
    let mut tampered = good.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let source = Rows::default();
    source.rows.lock().unwrap().extend([
        EncryptedRow {
            cursor: "a".into(),
            context: context.clone(),
            ciphertext: good,
        },
        EncryptedRow {
            cursor: "b".into(),
            context: context.clone(),
            ciphertext: tampered.clone(),
        },
    ]);
    crypt
        .install_primary(
            &Category::new("pii").unwrap(),
            KeyVersion {
                version: 3,
                key: SecretBytes::new(vec![3; 32]),
                reserved: 0,
            },
        )
        .unwrap();
    let checkpoints = MemoryCheckpoints::new();
    let done = Rewrap::new(&crypt, &source, &checkpoints, "job")
        .run(None)
        .await
        .unwrap();
    assert_eq!(done.progress.rewrapped, 1);
    assert_eq!(done.progress.failed, 1);
    assert_eq!(
        source.rows.lock().unwrap()[1].ciphertext,
        tampered,
        "left alone"
    );
}

#[test]
fn blind_indexes_are_deterministic_per_column_and_normalised() {
    let crypt = FieldCrypt::builder(mcpsec_core::NullSink)
        .keyring(ring(&[1], 1))
        .build()
        .unwrap();
    let pii = Category::new("pii").unwrap();
    let config = BlindIndexConfig {
        bytes: 8,
        normalize: Normalize::CaseInsensitive,
    };
    let email = crypt.blind_index(&pii, "users", "email", config).unwrap();
    let a = email.compute("Ada@Example.com ").unwrap();
    assert_eq!(a.len(), 8);
    assert_eq!(a, email.compute("ada@example.com").unwrap());
    assert_ne!(a, email.compute("grace@example.com").unwrap());
    assert_eq!(email.compute_hex("ada@example.com").unwrap().len(), 16);
    // Another column, another length, another index key: unrelated values.
    let backup = crypt
        .blind_index(&pii, "users", "backup_email", config)
        .unwrap();
    assert_ne!(a, backup.compute("ada@example.com").unwrap());
    let longer = crypt
        .blind_index(
            &pii,
            "users",
            "email",
            BlindIndexConfig {
                bytes: 16,
                ..config
            },
        )
        .unwrap();
    assert_ne!(&longer.compute("ada@example.com").unwrap()[..8], &a[..]);
    let exact = crypt
        .blind_index(
            &pii,
            "users",
            "email",
            BlindIndexConfig {
                bytes: 8,
                normalize: Normalize::Exact,
            },
        )
        .unwrap();
    assert_ne!(
        exact.compute("Ada@Example.com").unwrap(),
        exact.compute("ada@example.com").unwrap()
    );
    for bytes in [0, 1, 33] {
        assert!(
            crypt
                .blind_index(&pii, "users", "email", BlindIndexConfig { bytes, ..config })
                .is_err()
        );
    }
    assert!(format!("{email:?}").contains("REDACTED"));
    // A different index key gives different values.
    let mut other = ring(&[1], 1);
    other.index_key = SecretBytes::new(vec![0xbb; 32]);
    let other = FieldCrypt::builder(mcpsec_core::NullSink)
        .keyring(other)
        .build()
        .unwrap();
    assert_ne!(
        a,
        other
            .blind_index(&pii, "users", "email", config)
            .unwrap()
            .compute("ada@example.com")
            .unwrap()
    );
}

#[tokio::test]
async fn shredding_a_subject_makes_its_data_unreadable() {
    let sink = MemorySink::new();
    let crypt = FieldCrypt::builder(Arc::new(sink.clone()))
        .keyring(ring(&[1], 1))
        .subject_keys(Arc::new(MemorySubjectKeyStore::new()))
        .build()
        .unwrap();
    let ada = Subject::User(UserId::new("ada").unwrap());
    let grace = Subject::User(UserId::new("grace").unwrap());
    let here = SealContext::new("pii", "users", "address", "ada").unwrap();
    let sealed = crypt
        .encrypt_for_subject(&ada, b"1 Main St", &here)
        .await
        .unwrap();
    let header = format::inspect(&sealed).unwrap();
    assert!(header.subject_keyed);
    assert_eq!(
        crypt
            .decrypt_for_subject(&ada, &sealed, &here)
            .await
            .unwrap()
            .expose_secret(),
        b"1 Main St"
    );
    // Bound to the subject, and not openable without one.
    assert!(matches!(
        crypt.decrypt_for_subject(&grace, &sealed, &here).await,
        Err(Error::Decrypt) | Err(Error::UnknownKeyVersion { .. })
    ));
    assert!(matches!(
        crypt.decrypt(&sealed, &here).await,
        Err(Error::SubjectRequired)
    ));
    let graces = crypt
        .encrypt_for_subject(&grace, b"2 Side St", &here)
        .await
        .unwrap();

    let pii = Category::new("pii").unwrap();
    assert!(crypt.shred_subject(&pii, &ada).await.unwrap());
    assert!(!crypt.shred_subject(&pii, &ada).await.unwrap());
    assert!(matches!(
        crypt.decrypt_for_subject(&ada, &sealed, &here).await,
        Err(Error::Shredded)
    ));
    // Others are untouched; new data for the subject gets a new key that cannot read the old.
    assert_eq!(
        crypt
            .decrypt_for_subject(&grace, &graces, &here)
            .await
            .unwrap()
            .expose_secret(),
        b"2 Side St"
    );
    let fresh = crypt
        .encrypt_for_subject(&ada, b"new", &here)
        .await
        .unwrap();
    assert_eq!(format::inspect(&fresh).unwrap().key_version, 2);
    assert_eq!(
        crypt
            .decrypt_for_subject(&ada, &fresh, &here)
            .await
            .unwrap()
            .expose_secret(),
        b"new"
    );
    assert!(matches!(
        crypt.decrypt_for_subject(&ada, &sealed, &here).await,
        Err(Error::Shredded)
    ));
    // The repeated shred was recorded again (so a retry after a sink failure is audited).
    // The two failed opens above (wrong subject, no subject) were recorded as crypto
    // failures; reading shredded data was not.
    let events = sink.events();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::SysCryptoFail,
            EventKind::SysCryptoFail,
            EventKind::SensitiveDelete,
            EventKind::SensitiveDelete
        ]
    );

    // Tenants work the same way.
    let acme = Subject::Org(OrgId::new("acme").unwrap());
    let tenant_row = crypt
        .encrypt_for_subject(&acme, b"acme data", &here)
        .await
        .unwrap();
    crypt.shred_subject(&pii, &acme).await.unwrap();
    assert!(matches!(
        crypt.decrypt_for_subject(&acme, &tenant_row, &here).await,
        Err(Error::Shredded)
    ));
}

#[tokio::test]
async fn subject_data_survives_rotation_once_subject_keys_are_rewrapped() {
    let store = Arc::new(MemorySubjectKeyStore::new());
    let crypt = FieldCrypt::builder(mcpsec_core::NullSink)
        .keyring(ring(&[1], 1))
        .subject_keys(store.clone())
        .build()
        .unwrap();
    let pii = Category::new("pii").unwrap();
    let here = SealContext::new("pii", "users", "address", "r").unwrap();
    let mut sealed = Vec::new();
    for name in ["ada", "grace", "alan"] {
        let subject = Subject::User(UserId::new(name).unwrap());
        let data = crypt
            .encrypt_for_subject(&subject, name.as_bytes(), &here)
            .await
            .unwrap();
        sealed.push((subject, data));
    }
    crypt
        .install_primary(
            &pii,
            KeyVersion {
                version: 2,
                key: SecretBytes::new(vec![2; 32]),
                reserved: 0,
            },
        )
        .unwrap();
    let first = crypt.rewrap_subject_keys(&pii).await.unwrap();
    assert_eq!((first.scanned, first.rewrapped, first.failed), (3, 3, 0));
    let again = crypt.rewrap_subject_keys(&pii).await.unwrap();
    assert_eq!((again.rewrapped, again.current), (0, 3), "idempotent");
    crypt.set_min_decrypt(&pii, 2).unwrap();
    for (subject, data) in &sealed {
        let opened = crypt
            .decrypt_for_subject(subject, data, &here)
            .await
            .unwrap();
        assert_eq!(
            opened.expose_secret(),
            subject.canonical().trim_start_matches("user:").as_bytes()
        );
    }
}

#[tokio::test]
async fn wrapped_subject_keys_never_open_as_host_fields() {
    let store = Arc::new(MemorySubjectKeyStore::new());
    let crypt = FieldCrypt::builder(mcpsec_core::NullSink)
        .keyring(ring(&[1], 1))
        .subject_keys(store.clone())
        .build()
        .unwrap();
    let pii = Category::new("pii").unwrap();
    let ada = Subject::User(UserId::new("ada").unwrap());
    let here = SealContext::new("pii", "users", "address", "r").unwrap();
    crypt.encrypt_for_subject(&ada, b"x", &here).await.unwrap();
    let SubjectKeyState::Active { wrapped, .. } = store.current(&pii, &ada).await.unwrap() else {
        panic!("no key");
    };
    // Even a host that names its table and column like the internal ones gets nothing.
    let lookalike =
        SealContext::new("pii", "mcpsec_subject_keys", "data_key", "user:ada#1").unwrap();
    assert!(matches!(
        crypt.decrypt(&wrapped, &lookalike).await,
        Err(Error::Decrypt)
    ));
}

#[tokio::test]
async fn subject_keys_need_a_store() {
    let crypt = FieldCrypt::builder(mcpsec_core::NullSink)
        .keyring(ring(&[1], 1))
        .build()
        .unwrap();
    let ada = Subject::User(UserId::new("ada").unwrap());
    let here = SealContext::new("pii", "users", "address", "ada").unwrap();
    assert!(matches!(
        crypt.encrypt_for_subject(&ada, b"x", &here).await,
        Err(Error::InvalidArgument(_))
    ));
}

mcpsec_fieldcrypt::subject_key_store_suite!(
    memory_subject_key_store,
    |_: mcpsec_core::testkit::Namespace| async {
        Arc::new(MemorySubjectKeyStore::new()) as Arc<dyn mcpsec_fieldcrypt::SubjectKeyStore>
    }
);

mcpsec_fieldcrypt::rewrap_checkpoints_suite!(
    memory_checkpoints,
    |_: mcpsec_core::testkit::Namespace| async {
        Arc::new(MemoryCheckpoints::new()) as Arc<dyn mcpsec_fieldcrypt::rewrap::RewrapCheckpoints>
    }
);
