//! Per-subject data keys, for crypto-shredding.
//!
//! A field sealed with [`FieldCrypt::encrypt_for_subject`](crate::FieldCrypt::encrypt_for_subject)
//! is encrypted with a data key of its own subject (a user or a tenant), and that key is
//! stored wrapped by the category's keyring in a [`SubjectKeyStore`]. Deleting it
//! ([`FieldCrypt::shred_subject`](crate::FieldCrypt::shred_subject)) makes every such field
//! unreadable, including copies of the fields in table backups, without finding them: the
//! answer to an erasure request for data that is spread over tables and backups.
//!
//! What it does not reach: a backup of the subject-key *store* made before the shred still
//! holds the subject's key, wrapped by a category key version. Whoever restores that
//! backup and holds a keyset with that version (and its master key) reads the data again.
//! The erasure is complete once those store backups have expired, or once the category
//! versions that wrapped the key in them are destroyed
//! ([`LocalKeyset::destroy_version`](crate::LocalKeyset::destroy_version), after a
//! rotation and [`FieldCrypt::rewrap_subject_keys`](crate::FieldCrypt::rewrap_subject_keys))
//! and no keyset backup that still holds them can be opened (expired, or its master key
//! replaced and destroyed). The field-key rotation runbook ("Erasure and backups") has the
//! procedure.
//!
//! The store keeps a tombstone (the shredded generation), so a shredded subject's old data
//! fails with [`Error::Shredded`] rather than an unknown key, and
//! new data for the same subject gets a new generation that cannot open the old fields.

use crate::{Category, Error};
use mcpsec_core::{OrgId, UserId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

/// Whose data key: a user's or a tenant's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A user.
    User(UserId),
    /// A tenant (organization).
    Org(OrgId),
}

impl Subject {
    /// `user:<id>` or `org:<id>`: bound into every subject-keyed ciphertext, and the key
    /// stores order by.
    pub fn canonical(&self) -> String {
        match self {
            Self::User(user) => format!("user:{}", user.as_str()),
            Self::Org(org) => format!("org:{}", org.as_str()),
        }
    }

    /// The subject a [`Subject::canonical`] string names (for stores that keep the text).
    pub fn parse_canonical(text: &str) -> Result<Self, Error> {
        if let Some(user) = text.strip_prefix("user:") {
            Ok(Self::User(UserId::new(user)?))
        } else if let Some(org) = text.strip_prefix("org:") {
            Ok(Self::Org(OrgId::new(org)?))
        } else {
            Err(Error::InvalidArgument("a subject is user:<id> or org:<id>"))
        }
    }
}

/// One live subject key, as listed for re-wrapping after a rotation.
#[derive(Clone, PartialEq, Eq)]
pub struct ActiveSubjectKey {
    /// Whose key.
    pub subject: Subject,
    /// Its generation.
    pub generation: u32,
    /// The data key, wrapped by the category keyring.
    pub wrapped: Vec<u8>,
}

impl fmt::Debug for ActiveSubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveSubjectKey")
            .field("subject", &self.subject)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// What a store holds for one (category, subject).
#[derive(Clone, PartialEq, Eq)]
pub enum SubjectKeyState {
    /// No key was ever created.
    Absent,
    /// The live key of this generation, wrapped by the category keyring.
    Active {
        /// Starts at 1; a new key after a shred gets the next one.
        generation: u32,
        /// The data key, encrypted by the category keyring (not secret at rest).
        wrapped: Vec<u8>,
    },
    /// The key of this generation (and every older one) was deleted.
    Shredded {
        /// The last generation that existed.
        generation: u32,
    },
}

impl fmt::Debug for SubjectKeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Absent => f.write_str("Absent"),
            Self::Active { generation, .. } => f
                .debug_struct("Active")
                .field("generation", generation)
                .finish_non_exhaustive(),
            Self::Shredded { generation } => f
                .debug_struct("Shredded")
                .field("generation", generation)
                .finish(),
        }
    }
}

/// Where subject data keys are kept. Every method is atomic per (category, subject).
#[async_trait::async_trait]
pub trait SubjectKeyStore: Send + Sync + fmt::Debug {
    /// The current state.
    async fn current(
        &self,
        category: &Category,
        subject: &Subject,
    ) -> Result<SubjectKeyState, Error>;

    /// Creates the key of `generation` if and only if the state is `Absent` and
    /// `generation == 1`, or `Shredded { generation - 1 }`. Returns the state afterwards:
    /// the new key, or whatever a concurrent caller created first (callers use that one).
    async fn create(
        &self,
        category: &Category,
        subject: &Subject,
        generation: u32,
        wrapped: Vec<u8>,
    ) -> Result<SubjectKeyState, Error>;

    /// Turns `Active { g }` into `Shredded { g }`, erasing the wrapped key. Returns whether
    /// there was an active key.
    async fn shred(&self, category: &Category, subject: &Subject) -> Result<bool, Error>;

    /// Up to `limit` active keys of `category` whose subject's canonical form sorts after
    /// `after` (from the start when `None`), in that order.
    async fn list_active(
        &self,
        category: &Category,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ActiveSubjectKey>, Error>;

    /// Replaces the wrapped key if and only if the state is still `Active { generation }`
    /// holding `old` (a compare-and-swap). Returns whether it did.
    async fn replace_wrapped(
        &self,
        category: &Category,
        subject: &Subject,
        generation: u32,
        old: &[u8],
        new: Vec<u8>,
    ) -> Result<bool, Error>;
}

/// Subject keys in memory, for tests and single-process hosts.
#[derive(Debug, Default)]
pub struct MemorySubjectKeyStore {
    keys: Mutex<HashMap<(Category, Subject), SubjectKeyState>>,
}

impl MemorySubjectKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl SubjectKeyStore for MemorySubjectKeyStore {
    async fn current(
        &self,
        category: &Category,
        subject: &Subject,
    ) -> Result<SubjectKeyState, Error> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(keys
            .get(&(category.clone(), subject.clone()))
            .cloned()
            .unwrap_or(SubjectKeyState::Absent))
    }

    async fn create(
        &self,
        category: &Category,
        subject: &Subject,
        generation: u32,
        wrapped: Vec<u8>,
    ) -> Result<SubjectKeyState, Error> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = keys
            .entry((category.clone(), subject.clone()))
            .or_insert(SubjectKeyState::Absent);
        let may_create = match entry {
            SubjectKeyState::Absent => generation == 1,
            SubjectKeyState::Shredded { generation: last } => {
                Some(generation) == last.checked_add(1)
            }
            SubjectKeyState::Active { .. } => false,
        };
        if may_create {
            *entry = SubjectKeyState::Active {
                generation,
                wrapped,
            };
        }
        Ok(entry.clone())
    }

    async fn shred(&self, category: &Category, subject: &Subject) -> Result<bool, Error> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        match keys.get_mut(&(category.clone(), subject.clone())) {
            Some(state @ SubjectKeyState::Active { .. }) => {
                if let SubjectKeyState::Active {
                    generation,
                    wrapped,
                } = state
                {
                    zeroize::Zeroize::zeroize(wrapped);
                    *state = SubjectKeyState::Shredded {
                        generation: *generation,
                    };
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn list_active(
        &self,
        category: &Category,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ActiveSubjectKey>, Error> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let mut active: Vec<(String, ActiveSubjectKey)> = keys
            .iter()
            .filter(|((c, _), _)| c == category)
            .filter_map(|((_, subject), state)| match state {
                SubjectKeyState::Active {
                    generation,
                    wrapped,
                } => Some((
                    subject.canonical(),
                    ActiveSubjectKey {
                        subject: subject.clone(),
                        generation: *generation,
                        wrapped: wrapped.clone(),
                    },
                )),
                _ => None,
            })
            .filter(|(canonical, _)| after.is_none_or(|after| canonical.as_str() > after))
            .collect();
        active.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(active.into_iter().take(limit).map(|(_, key)| key).collect())
    }

    async fn replace_wrapped(
        &self,
        category: &Category,
        subject: &Subject,
        generation: u32,
        old: &[u8],
        new: Vec<u8>,
    ) -> Result<bool, Error> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        match keys.get_mut(&(category.clone(), subject.clone())) {
            Some(SubjectKeyState::Active {
                generation: current,
                wrapped,
            }) if *current == generation && wrapped.as_slice() == old => {
                *wrapped = new;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
