//! Encryption under per-subject data keys, wrapped by the category keyring, and their
//! erasure (see [`crate::subject`]).

use super::{Domain, FieldCrypt, associated_data, check_key_id, seal_with};
use crate::backend::KEY_LEN;
use crate::format::{self, FORMAT_VERSION, Header, MAX_PLAINTEXT};
use crate::subject::{Subject, SubjectKeyState, SubjectKeyStore};
use crate::{Category, Error};
use mcpsec_core::StoreError;
use mcpsec_core::{EventKind, EventSink, Outcome, SealContext, SecretBytes, SecurityEvent};
use std::sync::Arc;

const SUBJECT_KEY_TABLE: &str = "mcpsec_subject_keys";
const SUBJECT_KEY_COLUMN: &str = "data_key";

impl FieldCrypt {
    fn subject_store(&self) -> Result<&Arc<dyn SubjectKeyStore>, Error> {
        self.subjects.as_ref().ok_or(Error::InvalidArgument(
            "no subject key store configured (FieldCryptBuilder::subject_keys)",
        ))
    }

    fn subject_key_context(
        category: &Category,
        subject: &Subject,
        generation: u32,
    ) -> Result<SealContext, Error> {
        Ok(SealContext::new(
            category.as_str(),
            SUBJECT_KEY_TABLE,
            SUBJECT_KEY_COLUMN,
            format!("{}#{generation}", subject.canonical()),
        )?)
    }

    /// Encrypts with `subject`'s own data key in `context`'s category, creating the key
    /// (wrapped by the category's primary key) on first use. Deleting the subject's key
    /// ([`FieldCrypt::shred_subject`]) makes every such field unreadable.
    pub async fn encrypt_for_subject(
        &self,
        subject: &Subject,
        plaintext: &[u8],
        context: &SealContext,
    ) -> Result<Vec<u8>, Error> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(Error::TooLarge("plaintext"));
        }
        let category = Category::new(context.category())?;
        let store = self.subject_store()?;
        let (generation, wrapped) = match store.current(&category, subject).await? {
            SubjectKeyState::Active {
                generation,
                wrapped,
            } => (generation, wrapped),
            state => {
                let generation = match state {
                    SubjectKeyState::Shredded { generation } => generation
                        .checked_add(1)
                        .ok_or(Error::InvalidArgument("subject key generations exhausted"))?,
                    _ => 1,
                };
                let key = SecretBytes::random(KEY_LEN)?;
                let wrap_context = Self::subject_key_context(&category, subject, generation)?;
                let wrapped = self
                    .with_reservation(&category, || {
                        self.encrypt_in(Domain::SubjectKey, key.expose_secret(), &wrap_context)
                    })
                    .await?;
                match store
                    .create(&category, subject, generation, wrapped)
                    .await?
                {
                    // Ours, or a concurrent creator's: either way the one in the store.
                    SubjectKeyState::Active {
                        generation,
                        wrapped,
                    } => (generation, wrapped),
                    _ => {
                        return Err(Error::Store(StoreError::conflict(
                            "subject key creation lost to a shred",
                        )));
                    }
                }
            }
        };
        let key = self.open_subject_key(&category, subject, generation, &wrapped)?;
        self.with_reservation(&category, || self.charge_primary(&category))
            .await?;
        let cipher = self.provider.aead().prepare(&key)?;
        let header = Header {
            version: FORMAT_VERSION,
            category,
            key_version: generation,
            subject_keyed: true,
            key_id: Some(format::key_id(&key)?),
        };
        seal_with(
            Domain::Field,
            &*cipher,
            &header,
            plaintext,
            context,
            Some(subject),
        )
    }

    fn open_subject_key(
        &self,
        category: &Category,
        subject: &Subject,
        generation: u32,
        wrapped: &[u8],
    ) -> Result<SecretBytes, Error> {
        let context = Self::subject_key_context(category, subject, generation)?;
        let key = self.decrypt_in(Domain::SubjectKey, wrapped, &context)?;
        if key.len() != KEY_LEN {
            return Err(Error::Decrypt);
        }
        Ok(key)
    }

    /// Decrypts a field sealed by [`FieldCrypt::encrypt_for_subject`] (or an ordinary one,
    /// which is passed to [`FieldCrypt::decrypt`]). A shredded subject's data fails with
    /// [`Error::Shredded`]. Other failures are recorded as for [`FieldCrypt::decrypt`]
    /// (reading shredded data is the expected outcome of an erasure, not a crypto failure).
    pub async fn decrypt_for_subject(
        &self,
        subject: &Subject,
        ciphertext: &[u8],
        context: &SealContext,
    ) -> Result<SecretBytes, Error> {
        match format::parse(ciphertext) {
            Ok(parsed) if !parsed.subject_keyed => return self.decrypt(ciphertext, context).await,
            _ => {}
        }
        let result = self.open_for_subject(subject, ciphertext, context).await;
        match &result {
            Err(Error::Shredded) | Ok(_) => {}
            Err(error) => self.record_failure(context.category(), error).await,
        }
        result
    }

    async fn open_for_subject(
        &self,
        subject: &Subject,
        ciphertext: &[u8],
        context: &SealContext,
    ) -> Result<SecretBytes, Error> {
        let parsed = format::parse(ciphertext)?;
        if parsed.category != context.category() {
            return Err(Error::WrongCategory);
        }
        let category = &Category::new(parsed.category)?;
        let wanted = parsed.key_version;
        let store = self.subject_store()?;
        let key = match store.current(category, subject).await? {
            SubjectKeyState::Active {
                generation,
                wrapped,
            } if generation == wanted => {
                self.open_subject_key(category, subject, generation, &wrapped)?
            }
            SubjectKeyState::Active { generation, .. }
            | SubjectKeyState::Shredded { generation }
                if generation >= wanted =>
            {
                return Err(Error::Shredded);
            }
            _ => {
                return Err(Error::UnknownKeyVersion {
                    category: category.to_string(),
                    version: wanted,
                });
            }
        };
        check_key_id(
            parsed.key_id.as_ref(),
            &format::key_id(&key)?,
            parsed.category,
            wanted,
        )?;
        let cipher = self.provider.aead().prepare(&key)?;
        let aad = associated_data(Domain::Field, parsed.header_bytes, context, Some(subject));
        let plaintext = cipher.open(&parsed.nonce, &aad, parsed.sealed)?;
        Ok(SecretBytes::new(plaintext))
    }

    /// Deletes `subject`'s data key in `category` (an erasure request). Every field sealed
    /// for the subject in that category becomes unreadable, on every instance, at once.
    /// Records a critical `sensitive_delete` event. Returns whether a key was deleted.
    pub async fn shred_subject(
        &self,
        category: &Category,
        subject: &Subject,
    ) -> Result<bool, Error> {
        let store = self.subject_store()?;
        let shredded = store.shred(category, subject).await?;
        // A repeated call for a shredded subject records the event again, so a caller
        // retrying after a sink failure still leaves the erasure in the audit trail.
        let record = shredded
            || matches!(
                store.current(category, subject).await?,
                SubjectKeyState::Shredded { .. }
            );
        if record {
            let event = SecurityEvent::new(
                EventKind::SensitiveDelete,
                Outcome::Success,
                self.clock.now(),
            )
            .with_resource(subject_label()?, None);
            let event = match subject {
                Subject::User(user) => event.with_user(user.clone()),
                Subject::Org(org) => event.with_org(org.clone()),
            };
            self.events.record(event).await.map_err(|e| {
                Error::Store(StoreError::from_core(
                    "the event sink refused the shred event",
                    e,
                ))
            })?;
        }
        Ok(shredded)
    }

    /// Re-wraps every subject key of `category` under the category's primary key (after a
    /// rotation, before raising the minimum decryption version, which would otherwise make
    /// every subject key wrapped under an older version, and so its data, unreadable).
    /// Compare-and-swap writes: a key shredded or changed meanwhile is left alone. Run it
    /// until it reports `rewrapped == 0 && failed == 0`.
    pub async fn rewrap_subject_keys(
        &self,
        category: &Category,
    ) -> Result<crate::rewrap::Progress, Error> {
        let store = self.subject_store()?;
        let mut progress = crate::rewrap::Progress::default();
        let mut after: Option<String> = None;
        loop {
            let batch = store.list_active(category, after.as_deref(), 500).await?;
            let Some(last) = batch.last() else {
                break;
            };
            after = Some(last.subject.canonical());
            for key in batch {
                progress.scanned += 1;
                let context = Self::subject_key_context(category, &key.subject, key.generation)?;
                match self.reencrypt_in(Domain::SubjectKey, &key.wrapped, &context) {
                    Ok(None) => progress.current += 1,
                    Ok(Some(new)) => {
                        if store
                            .replace_wrapped(
                                category,
                                &key.subject,
                                key.generation,
                                &key.wrapped,
                                new,
                            )
                            .await?
                        {
                            progress.rewrapped += 1;
                        } else {
                            progress.conflicts += 1;
                        }
                    }
                    Err(error) if crate::rewrap::is_row_failure(&error) => progress.failed += 1,
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(progress)
    }
}

fn subject_label() -> Result<mcpsec_core::Label, Error> {
    Ok(mcpsec_core::Label::new("subject_data_key")?)
}
