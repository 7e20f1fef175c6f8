//! [`FieldCryptBuilder`]: backend, budget, ledger, keyrings, subject store, events.

use super::FieldCrypt;
use super::keys::{KeyringSpec, prepare_ring};
use crate::Error;
use crate::backend::CryptoProvider;
use crate::budget::{MemoryLedger, NonceBudget, UsageLedger};
use crate::subject::SubjectKeyStore;
use mcpsec_core::{Clock, EventSink, SystemClock};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Builds a [`FieldCrypt`]. Its event sink is an argument of [`FieldCrypt::builder`],
/// never a default.
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

impl FieldCrypt {
    /// A builder with the RustCrypto backend, the default budget and no keyrings,
    /// reporting to `events` (any sink, or an `Arc` of one to share it): decryption failures through the `Sealer` interface,
    /// shredding, rotation and nonce-budget warnings. There is no default sink, so a host
    /// that wants no events says so by passing [`NullSink`](mcpsec_core::NullSink) by name.
    ///
    /// A builder without a sink does not compile:
    ///
    /// ```compile_fail
    /// use mcpsec_fieldcrypt::FieldCrypt;
    /// let crypt = FieldCrypt::builder().build();
    /// ```
    ///
    /// ```
    /// use mcpsec_core::NullSink;
    /// use mcpsec_fieldcrypt::FieldCrypt;
    /// // No events, as a choice that reads as one.
    /// let crypt = FieldCrypt::builder(NullSink).build();
    /// assert!(crypt.is_ok());
    /// ```
    pub fn builder(events: impl EventSink + 'static) -> FieldCryptBuilder {
        FieldCryptBuilder {
            provider: CryptoProvider::default(),
            budget: NonceBudget::default(),
            ledger: None,
            rings: Vec::new(),
            subjects: None,
            events: Arc::new(events),
            clock: Arc::new(SystemClock),
        }
    }
}
