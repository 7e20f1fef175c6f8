//! [`FieldCrypt`]: encrypt and decrypt fields with the keyring of their data category.

use crate::backend::{CryptoProvider, KEY_LEN, PreparedKey};
use crate::budget::{BudgetState, MemoryLedger, NonceBudget, Usage, UsageLedger};
use crate::format::{self, FORMAT_VERSION, Header, MAX_PLAINTEXT, NONCE_LEN, TAG_LEN};
use crate::subject::{Subject, SubjectKeyState, SubjectKeyStore};
use crate::{Category, Error};
use mcpsec_core::StoreError;
use mcpsec_core::{
    Clock, EventKind, EventSink, NullSink, Outcome, ReasonCode, SealContext, SecretBytes,
    SecurityEvent, SystemClock,
};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

/// What a ciphertext is, bound first in its associated data: a host field, or a subject's
/// data key wrapped by the category keyring. The two never open as each other, whatever
/// table and column names a host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Domain {
    Field,
    SubjectKey,
}

impl Domain {
    fn tag(self) -> &'static [u8] {
        match self {
            Self::Field => b"mcpsec-fieldcrypt-v1",
            Self::SubjectKey => b"mcpsec-fieldcrypt-subject-key-v1",
        }
    }
}
const SUBJECT_KEY_TABLE: &str = "mcpsec_subject_keys";
const SUBJECT_KEY_COLUMN: &str = "data_key";

/// One key version of a category, as handed to [`FieldCrypt`] by a keyset loader.
pub struct KeyVersion {
    /// The version number (≥ 1).
    pub version: u32,
    /// The 32-byte AES-256 key.
    pub key: SecretBytes,
    /// The ledger's total for this version when the keys were loaded.
    pub reserved: u64,
}

impl fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVersion")
            .field("version", &self.version)
            .field("key", &"[REDACTED]")
            .field("reserved", &self.reserved)
            .finish()
    }
}

/// A category's keys, as handed to [`FieldCrypt`] by a keyset loader.
#[derive(Debug)]
pub struct KeyringSpec {
    /// The data category.
    pub category: Category,
    /// The version new data is encrypted with.
    pub primary: u32,
    /// Versions below this are refused for decryption.
    pub min_decrypt: u32,
    /// Every version still kept.
    pub versions: Vec<KeyVersion>,
    /// The root of this category's blind-index keys.
    pub index_key: SecretBytes,
}

struct VersionState {
    cipher: Box<dyn PreparedKey>,
    /// Written into every ciphertext, checked on every open (see [`format`]).
    key_id: [u8; format::KEY_ID_LEN],
    usage: Arc<Usage>,
}

impl VersionState {
    fn new(provider: CryptoProvider, version: &KeyVersion) -> Result<Self, Error> {
        Ok(Self {
            cipher: provider.aead().prepare(&version.key)?,
            key_id: format::key_id(&version.key)?,
            usage: Arc::new(Usage::resume(version.reserved)),
        })
    }
}

struct Keyring {
    primary: u32,
    min_decrypt: u32,
    versions: BTreeMap<u32, VersionState>,
    index_key: SecretBytes,
}

/// How far one key version is into its nonce budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    /// The data category.
    pub category: Category,
    /// The key version.
    pub version: u32,
    /// Whether it is the category's primary version.
    pub primary: bool,
    /// Encryptions reserved by every process sharing the ledger: an upper bound on the
    /// encryptions performed under this version (reserved-but-unused blocks count).
    pub reserved: u64,
    /// Encryptions by this process.
    pub this_process: u64,
    /// Where that is in the budget.
    pub state: BudgetState,
}

/// Field encryption with a keyring per data category.
///
/// Cheap to share (`Arc<FieldCrypt>`); encryption and decryption are synchronous and take
/// a read lock; rotation takes a short write lock. Implements core's
/// [`Sealer`](mcpsec_core::Sealer) for the capability crates.
pub struct FieldCrypt {
    provider: CryptoProvider,
    budget: NonceBudget,
    ledger: Arc<dyn UsageLedger>,
    rings: RwLock<BTreeMap<Category, Keyring>>,
    subjects: Option<Arc<dyn SubjectKeyStore>>,
    events: Arc<dyn EventSink>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for FieldCrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("FieldCrypt")
            .field("backend", &self.provider.aead().name())
            .field("categories", &rings.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Builds a [`FieldCrypt`].
#[derive(Debug)]
pub struct FieldCryptBuilder {
    provider: CryptoProvider,
    budget: NonceBudget,
    ledger: Option<Arc<dyn UsageLedger>>,
    rings: Vec<KeyringSpec>,
    subjects: Option<Arc<dyn SubjectKeyStore>>,
    events: Arc<dyn EventSink>,
    clock: Arc<dyn Clock>,
}

impl FieldCryptBuilder {
    /// The AEAD backend (default: RustCrypto).
    pub fn provider(mut self, provider: CryptoProvider) -> Self {
        self.provider = provider;
        self
    }

    /// The nonce budget (default: warn at 2^31, refuse at 2^32).
    pub fn nonce_budget(mut self, budget: NonceBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Where encryption counts are persisted (default: memory only, which a host with
    /// long-lived keys should replace; [`LocalKeyset`](crate::LocalKeyset) is one).
    pub fn ledger(mut self, ledger: Arc<dyn UsageLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Adds a category's keyring.
    pub fn keyring(mut self, spec: KeyringSpec) -> Self {
        self.rings.push(spec);
        self
    }

    /// Enables per-subject data keys (crypto-shredding) kept in `store`.
    pub fn subject_keys(mut self, store: Arc<dyn SubjectKeyStore>) -> Self {
        self.subjects = Some(store);
        self
    }

    /// Where security events go (decryption failures through the `Sealer` interface,
    /// shredding, rotation). Default: discarded.
    pub fn events(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = sink;
        self
    }

    /// The clock for event times (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks every keyring (primary present, minimum ≤ primary, 32-byte keys) and expands
    /// the keys.
    pub fn build(self) -> Result<FieldCrypt, Error> {
        self.budget.validate()?;
        let ledger: Arc<dyn UsageLedger> = match self.ledger {
            Some(ledger) => ledger,
            None => {
                // A memory ledger starts from the totals the specs carry.
                let memory = MemoryLedger::new();
                for spec in &self.rings {
                    for version in &spec.versions {
                        memory.grant(&spec.category, version.version, version.reserved, u64::MAX);
                    }
                }
                Arc::new(memory)
            }
        };
        let mut rings = BTreeMap::new();
        for spec in self.rings {
            let category = spec.category.clone();
            let ring = prepare_ring(self.provider, spec)?;
            if rings.insert(category, ring).is_some() {
                return Err(Error::InvalidArgument("a category appears twice"));
            }
        }
        Ok(FieldCrypt {
            provider: self.provider,
            budget: self.budget,
            ledger,
            rings: RwLock::new(rings),
            subjects: self.subjects,
            events: self.events,
            clock: self.clock,
        })
    }
}

fn prepare_ring(provider: CryptoProvider, spec: KeyringSpec) -> Result<Keyring, Error> {
    if spec.index_key.len() != KEY_LEN {
        return Err(Error::InvalidArgument("an index key is 32 bytes"));
    }
    let mut versions = BTreeMap::new();
    for version in spec.versions {
        if version.version == 0 {
            return Err(Error::InvalidArgument("key versions start at 1"));
        }
        let state = VersionState::new(provider, &version)?;
        if versions.insert(version.version, state).is_some() {
            return Err(Error::InvalidArgument("a key version appears twice"));
        }
    }
    if !versions.contains_key(&spec.primary) {
        return Err(Error::InvalidArgument("the primary key version is missing"));
    }
    if spec.min_decrypt == 0 || spec.min_decrypt > spec.primary {
        return Err(Error::InvalidArgument(
            "the minimum decryption version must be between 1 and the primary",
        ));
    }
    Ok(Keyring {
        primary: spec.primary,
        min_decrypt: spec.min_decrypt,
        versions,
        index_key: spec.index_key,
    })
}

/// The associated data: a domain tag, the header, the context, and the subject if any.
fn associated_data(
    domain: Domain,
    header: &[u8],
    context: &SealContext,
    subject: Option<&Subject>,
) -> Vec<u8> {
    let context_len = context.aad_len();
    let tag = domain.tag();
    let mut aad = Vec::with_capacity(tag.len() + 8 + header.len() + context_len + 80);
    aad.extend_from_slice(tag);
    // Both are bounded (header ≤ 79 bytes, context ≤ 5 × 260), so the lengths fit.
    aad.extend_from_slice(
        &u32::try_from(header.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    aad.extend_from_slice(header);
    aad.extend_from_slice(&u32::try_from(context_len).unwrap_or(u32::MAX).to_be_bytes());
    context.write_aad(&mut aad);
    if let Some(subject) = subject {
        let canonical = subject.canonical();
        aad.extend_from_slice(
            &u32::try_from(canonical.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        aad.extend_from_slice(canonical.as_bytes());
    }
    aad
}

/// A ciphertext that names another key than the one installed under its version number
/// was sealed under a reused version number: say so, rather than "tampered".
fn check_key_id(
    written: Option<&[u8; format::KEY_ID_LEN]>,
    installed: &[u8; format::KEY_ID_LEN],
    category: &str,
    version: u32,
) -> Result<(), Error> {
    match written {
        Some(id) if id != installed => Err(Error::KeyMismatch {
            category: category.to_owned(),
            version,
        }),
        _ => Ok(()),
    }
}

fn seal_with(
    domain: Domain,
    cipher: &dyn PreparedKey,
    header: &Header,
    plaintext: &[u8],
    context: &SealContext,
    subject: Option<&Subject>,
) -> Result<Vec<u8>, Error> {
    let header_len = header.encoded_len();
    let mut out = Vec::with_capacity(header_len + NONCE_LEN + plaintext.len() + TAG_LEN);
    header.encode_into(&mut out);
    let mut nonce = [0u8; NONCE_LEN];
    mcpsec_core::fill_random(&mut nonce)?;
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let aad = associated_data(
        domain,
        out.get(..header_len).unwrap_or_default(),
        context,
        subject,
    );
    if let Err(error) = cipher.seal_in_place(&nonce, &aad, &mut out, start) {
        zeroize::Zeroize::zeroize(&mut out);
        return Err(error);
    }
    Ok(out)
}

impl FieldCrypt {
    /// A builder with the RustCrypto backend, the default budget and no keyrings.
    pub fn builder() -> FieldCryptBuilder {
        FieldCryptBuilder {
            provider: CryptoProvider::default(),
            budget: NonceBudget::default(),
            ledger: None,
            rings: Vec::new(),
            subjects: None,
            events: Arc::new(NullSink),
            clock: Arc::new(SystemClock),
        }
    }

    /// The backend's name (`rustcrypto`, `aws-lc`).
    pub fn backend(&self) -> &'static str {
        self.provider.aead().name()
    }

    /// Encrypts `plaintext` (at most 1 MiB) with the primary key of `context`'s category,
    /// bound to the whole context. Returns the binary form.
    pub fn encrypt(&self, plaintext: &[u8], context: &SealContext) -> Result<Vec<u8>, Error> {
        self.encrypt_in(Domain::Field, plaintext, context)
    }

    fn encrypt_in(
        &self,
        domain: Domain,
        plaintext: &[u8],
        context: &SealContext,
    ) -> Result<Vec<u8>, Error> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(Error::TooLarge("plaintext"));
        }
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let (category, ring) = rings
            .get_key_value(context.category())
            .ok_or_else(|| Error::UnknownCategory(context.category().to_owned()))?;
        let version = ring.primary;
        let state = ring
            .versions
            .get(&version)
            .ok_or(Error::Keyset("the primary key version is missing"))?;
        state
            .usage
            .take(&self.budget, &self.ledger, category, version)?;
        let header = Header {
            version: FORMAT_VERSION,
            category: category.clone(),
            key_version: version,
            subject_keyed: false,
            key_id: Some(state.key_id),
        };
        seal_with(domain, &*state.cipher, &header, plaintext, context, None)
    }

    /// [`FieldCrypt::encrypt`], returning the text form (`mcpsec:fc1:…`).
    pub fn encrypt_text(&self, plaintext: &[u8], context: &SealContext) -> Result<String, Error> {
        Ok(format::to_text(&self.encrypt(plaintext, context)?))
    }

    /// Decrypts a binary ciphertext written for the same context.
    ///
    /// Every failure is also recorded as a `sys_crypto_fail` event (resource: the
    /// context's category; reason `malformed` or `decrypt_failed`) in the builder's
    /// [event sink](FieldCryptBuilder::events), as [`Sealer::open`](mcpsec_core::Sealer::open)
    /// does: a burst of them is tampering or a key problem. A sink that refuses the event
    /// does not change the result; the refusal is logged (see [`mcpsec_core::emit`]).
    pub async fn decrypt(
        &self,
        ciphertext: &[u8],
        context: &SealContext,
    ) -> Result<SecretBytes, Error> {
        let result = self.decrypt_in(Domain::Field, ciphertext, context);
        if let Err(error) = &result {
            self.record_failure(context.category(), error).await;
        }
        result
    }

    fn decrypt_in(
        &self,
        domain: Domain,
        ciphertext: &[u8],
        context: &SealContext,
    ) -> Result<SecretBytes, Error> {
        let parsed = format::parse(ciphertext)?;
        if parsed.subject_keyed {
            return Err(Error::SubjectRequired);
        }
        if parsed.category != context.category() {
            return Err(Error::WrongCategory);
        }
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let ring = rings
            .get(parsed.category)
            .ok_or_else(|| Error::UnknownCategory(parsed.category.to_owned()))?;
        let version = parsed.key_version;
        if version < ring.min_decrypt {
            return Err(Error::KeyVersionRetired {
                category: parsed.category.to_owned(),
                version,
            });
        }
        let state = ring
            .versions
            .get(&version)
            .ok_or_else(|| Error::UnknownKeyVersion {
                category: parsed.category.to_owned(),
                version,
            })?;
        check_key_id(
            parsed.key_id.as_ref(),
            &state.key_id,
            parsed.category,
            version,
        )?;
        let aad = associated_data(domain, parsed.header_bytes, context, None);
        let plaintext = state.cipher.open(&parsed.nonce, &aad, parsed.sealed)?;
        Ok(SecretBytes::new(plaintext))
    }

    /// Decrypts the text form (failures recorded as for [`FieldCrypt::decrypt`]).
    pub async fn decrypt_text(
        &self,
        text: &str,
        context: &SealContext,
    ) -> Result<SecretBytes, Error> {
        match format::from_text(text) {
            Ok(bytes) => self.decrypt(&bytes, context).await,
            Err(error) => {
                self.record_failure(context.category(), &error).await;
                Err(error)
            }
        }
    }

    /// Whether a ciphertext is already under its category's primary key (so a rewrap job
    /// can skip it). Errors only when the header cannot be read or the category is unknown.
    pub fn is_current(&self, ciphertext: &[u8]) -> Result<bool, Error> {
        let parsed = format::parse(ciphertext)?;
        if parsed.subject_keyed {
            return Ok(true);
        }
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let ring = rings
            .get(parsed.category)
            .ok_or_else(|| Error::UnknownCategory(parsed.category.to_owned()))?;
        Ok(parsed.key_version == ring.primary)
    }

    /// Re-encrypts a ciphertext under its category's primary key, for the same context.
    /// Returns `None` when it already is.
    pub fn reencrypt(
        &self,
        ciphertext: &[u8],
        context: &SealContext,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.reencrypt_in(Domain::Field, ciphertext, context)
    }

    fn reencrypt_in(
        &self,
        domain: Domain,
        ciphertext: &[u8],
        context: &SealContext,
    ) -> Result<Option<Vec<u8>>, Error> {
        if self.is_current(ciphertext)? {
            return Ok(None);
        }
        let plaintext = self.decrypt_in(domain, ciphertext, context)?;
        self.encrypt_in(domain, plaintext.expose_secret(), context)
            .map(Some)
    }

    /// The categories with a keyring.
    pub fn categories(&self) -> Vec<Category> {
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        rings.keys().cloned().collect()
    }

    /// A category's primary version and minimum decryption version.
    pub fn versions(&self, category: &Category) -> Result<(u32, u32), Error> {
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let ring = rings
            .get(category)
            .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
        Ok((ring.primary, ring.min_decrypt))
    }

    /// Every key version's place in its nonce budget. A host polls this (or
    /// [`FieldCrypt::due_for_rotation`]) on its rotation schedule.
    pub fn usage(&self) -> Vec<KeyUsage> {
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for (category, ring) in rings.iter() {
            for (version, state) in &ring.versions {
                out.push(KeyUsage {
                    category: category.clone(),
                    version: *version,
                    primary: *version == ring.primary,
                    reserved: state.usage.reserved(),
                    this_process: state.usage.local(),
                    state: state.usage.state(&self.budget),
                });
            }
        }
        out
    }

    /// Categories whose primary key has reached the warning threshold of its budget.
    pub fn due_for_rotation(&self) -> Vec<Category> {
        self.usage()
            .into_iter()
            .filter(|usage| usage.primary && usage.state != BudgetState::Ok)
            .map(|usage| usage.category)
            .collect()
    }

    /// Gives the unused part of every nonce reservation back to the ledger, for a clean
    /// shutdown (call it after the last encryption). An encryption after it still works:
    /// it reserves again. Returns how many were given back. A crash, which skips this,
    /// loses at most one block per key version (see [`crate::budget`]).
    pub async fn release_reservations(&self) -> Result<u64, Error> {
        let mut given_back = Vec::new();
        {
            let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
            for (category, ring) in rings.iter() {
                for (version, state) in &ring.versions {
                    let unused = state.usage.release();
                    if unused > 0 {
                        given_back.push((category.clone(), *version, unused));
                    }
                }
            }
        }
        let mut total = 0u64;
        let mut first_error = None;
        for (category, version, unused) in given_back {
            total = total.saturating_add(unused);
            // A ledger that cannot take them back keeps them: an over-count, safe.
            if let Err(error) = self.ledger.release(&category, version, unused).await {
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(total),
        }
    }

    /// Reserves nonces ahead for every category's primary version, waiting for the
    /// ledger: call it after building (or after installing a new primary) so the first
    /// synchronous [`FieldCrypt::encrypt`] does not find an empty allowance. Later
    /// refills run in the background (see [`crate::budget`]).
    /// [`LocalKeyset::field_crypt`](crate::LocalKeyset::field_crypt) and its rotations
    /// call it.
    pub async fn reserve_ahead(&self) -> Result<(), Error> {
        for category in self.categories() {
            self.reserve_primary(&category).await?;
        }
        Ok(())
    }

    /// Waits until `category`'s primary version has a nonce to give.
    pub(crate) async fn reserve_primary(&self, category: &Category) -> Result<(), Error> {
        let (usage, version) = {
            let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
            let ring = rings
                .get(category)
                .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
            let state = ring
                .versions
                .get(&ring.primary)
                .ok_or(Error::Keyset("the primary key version is missing"))?;
            (state.usage.clone(), ring.primary)
        };
        usage
            .reserve(&self.budget, &self.ledger, category, version)
            .await
    }

    /// Runs a synchronous encryption under `category`'s primary version, and once more
    /// after waiting for a reservation if it found none (the async paths wait; the
    /// synchronous ones fail closed).
    async fn with_reservation<T>(
        &self,
        category: &Category,
        encrypt: impl Fn() -> Result<T, Error>,
    ) -> Result<T, Error> {
        match encrypt() {
            Err(Error::NonceReservationPending { .. }) => {
                self.reserve_primary(category).await?;
                encrypt()
            }
            other => other,
        }
    }

    /// Takes one encryption from the budget of `category`'s primary version, for an
    /// encryption under a subject key (see [`crate::budget`]).
    fn charge_primary(&self, category: &Category) -> Result<(), Error> {
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let (category, ring) = rings
            .get_key_value(category)
            .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
        let state = ring
            .versions
            .get(&ring.primary)
            .ok_or(Error::Keyset("the primary key version is missing"))?;
        state
            .usage
            .take(&self.budget, &self.ledger, category, ring.primary)
    }

    /// Installs a new key version for a category and makes it primary. Persist it first
    /// (see [`LocalKeyset::rotate`](crate::LocalKeyset::rotate), which does both).
    pub fn install_primary(&self, category: &Category, version: KeyVersion) -> Result<(), Error> {
        let state = VersionState::new(self.provider, &version)?;
        let mut rings = self.rings.write().unwrap_or_else(PoisonError::into_inner);
        let ring = rings
            .get_mut(category)
            .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
        if version.version <= ring.primary || ring.versions.contains_key(&version.version) {
            return Err(Error::InvalidArgument(
                "a new primary version must be greater than every existing one",
            ));
        }
        ring.versions.insert(version.version, state);
        ring.primary = version.version;
        Ok(())
    }

    /// Adds a key version another process created (see
    /// [`LocalKeyset::refresh`](crate::LocalKeyset::refresh)): usable for decryption at
    /// once, and for encryption when `primary` is set and it is newer than the primary.
    pub fn install_version(
        &self,
        category: &Category,
        version: KeyVersion,
        primary: bool,
    ) -> Result<(), Error> {
        let state = VersionState::new(self.provider, &version)?;
        let mut rings = self.rings.write().unwrap_or_else(PoisonError::into_inner);
        let ring = rings
            .get_mut(category)
            .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
        if version.version == 0 || ring.versions.contains_key(&version.version) {
            return Err(Error::InvalidArgument(
                "the key version is already installed",
            ));
        }
        if primary && version.version <= ring.primary {
            return Err(Error::InvalidArgument(
                "a new primary version must be greater than the current one",
            ));
        }
        ring.versions.insert(version.version, state);
        if primary {
            ring.primary = version.version;
        }
        Ok(())
    }

    /// The versions a category has installed.
    pub fn installed_versions(&self, category: &Category) -> Result<Vec<u32>, Error> {
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let ring = rings
            .get(category)
            .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
        Ok(ring.versions.keys().copied().collect())
    }

    /// Adds a whole category's keyring (a category created after start-up).
    pub fn install_keyring(&self, spec: KeyringSpec) -> Result<(), Error> {
        let category = spec.category.clone();
        let ring = prepare_ring(self.provider, spec)?;
        let mut rings = self.rings.write().unwrap_or_else(PoisonError::into_inner);
        if rings.contains_key(&category) {
            return Err(Error::InvalidArgument("the category already has a keyring"));
        }
        rings.insert(category, ring);
        Ok(())
    }

    /// Raises a category's minimum decryption version (after a rewrap finished) and drops
    /// the keys below it. Data still under those versions becomes unreadable.
    pub fn set_min_decrypt(&self, category: &Category, min: u32) -> Result<(), Error> {
        let mut rings = self.rings.write().unwrap_or_else(PoisonError::into_inner);
        let ring = rings
            .get_mut(category)
            .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
        if min == 0 || min > ring.primary {
            return Err(Error::InvalidArgument(
                "the minimum decryption version must be between 1 and the primary",
            ));
        }
        ring.min_decrypt = ring.min_decrypt.max(min);
        let keep = ring.min_decrypt;
        ring.versions.retain(|version, _| *version >= keep);
        Ok(())
    }

    /// A blind index for equality search on one column; see [`crate::blind`].
    pub fn blind_index(
        &self,
        category: &Category,
        table: &str,
        column: &str,
        config: crate::blind::BlindIndexConfig,
    ) -> Result<crate::blind::BlindIndex, Error> {
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let ring = rings
            .get(category)
            .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
        crate::blind::BlindIndex::derive(&ring.index_key, category, table, column, config)
    }

    // --- per-subject keys (crypto-shredding) -------------------------------------------

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

    async fn record_failure(&self, category: &str, error: &Error) {
        let Ok(label) = mcpsec_core::Label::new(category) else {
            return;
        };
        let reason = match error {
            Error::Malformed(_) | Error::TooLarge(_) | Error::UnsupportedVersion(_) => {
                ReasonCode::Malformed
            }
            _ => ReasonCode::DecryptFailed,
        };
        let event =
            SecurityEvent::new(EventKind::SysCryptoFail, Outcome::Failure, self.clock.now())
                .with_resource(label, None)
                .with_reason(reason);
        // A failed open is already an error to the caller; a sink outage must not mask
        // it, and is logged rather than discarded.
        mcpsec_core::emit(&*self.events, event).await;
    }
}

fn subject_label() -> Result<mcpsec_core::Label, Error> {
    Ok(mcpsec_core::Label::new("subject_data_key")?)
}

#[async_trait::async_trait]
impl mcpsec_core::Sealer for FieldCrypt {
    async fn seal(
        &self,
        plaintext: &[u8],
        context: &SealContext,
    ) -> Result<Vec<u8>, mcpsec_core::Error> {
        if plaintext.len() > mcpsec_core::MAX_SEAL_PLAINTEXT {
            return Err(mcpsec_core::Error::Seal(
                "plaintext larger than the seal cap",
            ));
        }
        let category = Category::new(context.category())
            .map_err(|_| mcpsec_core::Error::Seal("no keyring for the category"))?;
        self.with_reservation(&category, || self.encrypt(plaintext, context))
            .await
            .map_err(|error| match error {
                Error::UnknownCategory(_) => {
                    mcpsec_core::Error::Seal("no keyring for the category")
                }
                Error::NonceBudgetExhausted { .. } => {
                    mcpsec_core::Error::Seal("the category's key must be rotated")
                }
                Error::NonceReservationPending { .. } => {
                    mcpsec_core::Error::Seal("the nonce ledger cannot be reached")
                }
                Error::RandomUnavailable => mcpsec_core::Error::RandomUnavailable,
                _ => mcpsec_core::Error::Seal("field encryption failed"),
            })
    }

    async fn open(
        &self,
        sealed: &[u8],
        context: &SealContext,
    ) -> Result<SecretBytes, mcpsec_core::Error> {
        // `decrypt` records the failure.
        self.decrypt(sealed, context)
            .await
            .map_err(|_| mcpsec_core::Error::Open)
    }
}
