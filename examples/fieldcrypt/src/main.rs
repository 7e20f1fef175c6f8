//! Shows mcpsec-fieldcrypt end to end: a keyset file under a master key, fields bound to
//! where they are stored, a blind index for lookup by email, a key rotation followed by a
//! resumable re-encryption of the "table", destroying the retired key, crypto-shredding of
//! one user's data, and giving unused nonce reservations back on shutdown.
//!
//! Run: `cargo run -p example-fieldcrypt`

use mcpsec_core::{ManualClock, MemorySink, SealContext, UserId};
use mcpsec_fieldcrypt::rewrap::{EncryptedRow, MemoryCheckpoints, Rewrap, RowSource};
use mcpsec_fieldcrypt::{
    BlindIndexConfig, Category, Error, FieldCrypt, LocalKeyset, LocalMasterKey,
    MemorySubjectKeyStore, Normalize, Subject, format,
};
use std::sync::{Arc, Mutex, PoisonError};

/// A users table in memory: (id, email ciphertext, email blind index).
#[derive(Debug, Default)]
struct Users(Mutex<Vec<EncryptedRow>>);

#[async_trait::async_trait]
impl RowSource for Users {
    async fn next_batch(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EncryptedRow>, Error> {
        let rows = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(rows
            .iter()
            .filter(|row| after.is_none_or(|after| row.cursor.as_str() > after))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn replace(&self, row: &EncryptedRow, new: Vec<u8>) -> Result<bool, Error> {
        let mut rows = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match rows.iter_mut().find(|r| r.cursor == row.cursor) {
            // UPDATE users SET email = $new WHERE id = $id AND email = $old
            Some(stored) if stored.ciphertext == row.ciphertext => {
                stored.ciphertext = new;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = Arc::new(ManualClock::at_unix(1_767_225_600));
    let events = MemorySink::new();
    let dir = std::env::temp_dir().join(format!("example-fieldcrypt-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("keyset.json");

    // An operator made a master key (kept in a secret store, never beside the keyset) and
    // a keyset: `mcpsec crypt keygen --out keyset.json`.
    let master = LocalMasterKey::from_base64(&LocalMasterKey::generate_base64()?)?;
    let pii = Category::new("pii")?;
    let keyset = Arc::new(
        LocalKeyset::create(
            &path,
            Arc::new(master),
            std::slice::from_ref(&pii),
            clock.clone(),
        )
        .await?,
    );
    let crypt = keyset
        .field_crypt(
            FieldCrypt::builder(Arc::new(events.clone()))
                .subject_keys(Arc::new(MemorySubjectKeyStore::new()))
                .clock(clock.clone()),
        )
        .await?;

    // Store three users' emails encrypted, with a blind index to find them by email.
    let by_email = crypt.blind_index(
        &pii,
        "users",
        "email",
        BlindIndexConfig {
            bytes: 8,
            normalize: Normalize::CaseInsensitive,
        },
    )?;
    let users = Users::default();
    let mut index = Vec::new();
    for (id, email) in [
        ("u1", "ada@example.com"),
        ("u2", "grace@example.com"),
        ("u3", "alan@example.com"),
    ] {
        let context = SealContext::new("pii", "users", "email", id)?;
        let ciphertext = crypt.encrypt(email.as_bytes(), &context)?;
        index.push((by_email.compute_hex(email)?, id));
        users
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(EncryptedRow {
                cursor: id.to_owned(),
                context,
                ciphertext,
            });
    }
    let wanted = by_email.compute_hex("  GRACE@example.com")?;
    let found = index
        .iter()
        .find(|(value, _)| *value == wanted)
        .map(|(_, id)| *id);
    println!("lookup by email finds user {found:?} without decrypting any row");

    // Rotation: a new primary version, then a resumable re-encryption of the table.
    let (version, _event) = keyset.rotate(&pii, Some(&crypt)).await?;
    let checkpoints = MemoryCheckpoints::new();
    let done = Rewrap::new(&crypt, &users, &checkpoints, "pii-v2")
        .batch_size(2)
        .run(None)
        .await?;
    println!(
        "rotated pii to version {version}; rewrap: {} rewritten, {} already current, done: {}",
        done.progress.rewrapped, done.progress.current, done.done
    );
    keyset.set_min_decrypt(&pii, version, Some(&crypt)).await?;
    // Retiring stops using version 1; destroying removes its key from the keyset file.
    let destroyed = keyset.destroy_version(&pii, 1, &events).await?;
    println!("pii version 1 retired and destroyed: {destroyed}");
    let stored = users
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for row in &stored {
        let header = format::inspect(&row.ciphertext)?;
        let email = crypt.decrypt(&row.ciphertext, &row.context).await?;
        println!(
            "  {} -> key version {}, {} bytes of plaintext",
            row.cursor,
            header.key_version,
            email.len()
        );
    }

    // A ciphertext moved to another row does not decrypt.
    let rows = users
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let (Some(first), Some(second)) = (rows.first(), rows.get(1)) {
        let moved = crypt.decrypt(&first.ciphertext, &second.context).await;
        println!(
            "u1's email pasted into u2's row: {}",
            moved.err().map(|e| e.to_string()).unwrap_or_default()
        );
    }

    // Crypto-shredding: Ada's address is sealed with her own key; erasing it erases the data.
    let ada = Subject::User(UserId::new("ada")?);
    let here = SealContext::new("pii", "users", "address", "u1")?;
    let address = crypt.encrypt_for_subject(&ada, b"1 Main St", &here).await?;
    crypt.shred_subject(&pii, &ada).await?;
    match crypt.decrypt_for_subject(&ada, &address, &here).await {
        Err(Error::Shredded) => {
            println!("after the erasure request Ada's address is gone: shredded")
        }
        other => return Err(format!("expected Shredded, got {:?}", other.map(|_| ())).into()),
    }
    println!(
        "events: {:?}",
        events.events().iter().map(|e| e.kind).collect::<Vec<_>>()
    );
    // Clean shutdown: the unused part of each nonce reservation goes back to the keyset.
    let released = crypt.release_reservations().await?;
    println!("released {released} reserved but unused encryptions");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
