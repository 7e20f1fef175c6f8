//! Recovery codes: ten codes of 100 bits each, shown once, stored as keyed hashes bound
//! to the user and a key version, each usable once; regenerating replaces the whole set.

use crate::{Error, Factor, StoreError, Verified};
use mcpsec_access::{Authorized, Principal, perm};
use mcpsec_core::hmac::{Domain, MacKey};
use mcpsec_core::{
    Actor, EventKind, EventSink, Outcome, ReasonCode, SecretBytes, SecretString, SecurityEvent,
    SharedClock, UserId,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use zeroize::Zeroizing;

/// Codes per set.
pub const CODES_PER_SET: usize = 10;
/// Characters per code (Crockford base32: 5 bits each, 100 bits in all).
const CODE_CHARS: usize = 20;
const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A keyed hash of a normalised recovery code, bound to its user and key version: what
/// is stored.
pub type CodeHash = [u8; 32];

/// A recovery code that was just used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the amr values go into the session or token"]
pub struct Redeemed {
    /// The `amr` it establishes (`otp`, see [`crate::Factor`]).
    pub verified: Verified,
    /// How many unused codes remain (offer a new set when few are left).
    pub remaining: usize,
}

/// Storage for recovery-code hashes.
///
/// [`consume_once`](RecoveryCodeStore::consume_once) must be atomic across the fleet: of
/// any number of concurrent uses of one code, exactly one returns `true` (the conformance
/// suite checks 32). [`replace_set`](RecoveryCodeStore::replace_set) replaces the user's
/// whole set in one step.
#[async_trait::async_trait]
pub trait RecoveryCodeStore: Send + Sync + std::fmt::Debug {
    /// Replaces `user`'s set with `hashes` (the previous codes stop working).
    ///
    /// Tenant face: `tenant` is the user acting on their own account (the subject of the
    /// `Authorized` proof); a SQL backend runs the statement as that principal under
    /// row-level security. The set replaced is `tenant`'s subject's.
    async fn replace_set(
        &self,
        tenant: &Principal,
        hashes: Vec<CodeHash>,
    ) -> Result<(), StoreError>;
    /// Removes `hash` from `user`'s set if it is there; returns whether it was.
    async fn consume_once(&self, user: &UserId, hash: &CodeHash) -> Result<bool, StoreError>;
    /// How many unused codes `user` has.
    async fn remaining(&self, user: &UserId) -> Result<usize, StoreError>;
}

/// In-memory [`RecoveryCodeStore`].
#[derive(Debug, Default)]
pub struct MemoryRecoveryStore {
    sets: Mutex<HashMap<UserId, HashSet<CodeHash>>>,
}

impl MemoryRecoveryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, HashSet<CodeHash>>> {
        self.sets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl RecoveryCodeStore for MemoryRecoveryStore {
    async fn replace_set(
        &self,
        tenant: &Principal,
        hashes: Vec<CodeHash>,
    ) -> Result<(), StoreError> {
        self.lock()
            .insert(tenant.subject().clone(), hashes.into_iter().collect());
        Ok(())
    }

    async fn consume_once(&self, user: &UserId, hash: &CodeHash) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .get_mut(user)
            .is_some_and(|set| set.remove(hash)))
    }

    async fn remaining(&self, user: &UserId) -> Result<usize, StoreError> {
        Ok(self.lock().get(user).map_or(0, HashSet::len))
    }
}

/// Issues and redeems recovery codes.
///
/// A stored hash is an HMAC under the server key over a version tag, the key version,
/// the user id and the code. Someone who can write the store but does not hold the key
/// cannot make a hash that works: not by copying one account's hashes into another's
/// (the user id differs), nor one key version's into another's.
#[derive(Debug, Clone)]
pub struct RecoveryCodes {
    store: Arc<dyn RecoveryCodeStore>,
    key: Arc<MacKey>,
    key_version: u32,
    events: Arc<dyn EventSink>,
    clock: SharedClock,
}

/// The hash of a code: the key version (4 bytes), then the user and the normalized code,
/// each length-framed.
const RECOVERY_CODE_DOMAIN: Domain = Domain::new("mcpsec-recovery-code-v2");

impl RecoveryCodes {
    /// Codes kept in `store`, hashed under `key` (a server-side secret of at least 32 bytes).
    pub fn new(
        store: Arc<dyn RecoveryCodeStore>,
        key: SecretBytes,
        events: Arc<dyn EventSink>,
        clock: SharedClock,
    ) -> Result<Self, Error> {
        let key = MacKey::new(key.expose_secret())
            .map_err(|_| Error::Config("the recovery-code key is at least 32 bytes"))?;
        Ok(Self {
            store,
            key: Arc::new(key),
            key_version: 1,
            events,
            clock,
        })
    }

    /// The version of the hashing key (default 1), bound into every hash. Give a new key
    /// a new version: codes issued under the old one stop working, so hand out new sets.
    #[must_use]
    pub fn with_key_version(mut self, version: u32) -> Self {
        self.key_version = version;
        self
    }

    /// A fresh set for the proof's subject, replacing the old one. Show the codes once;
    /// they are not stored, only their keyed hashes.
    ///
    /// The user is the one the proof was issued to (`user.update_profile` on their own
    /// profile): whoever regenerates the codes sees them, so nobody does it for someone
    /// else, an org admin included.
    ///
    /// A user id taken from a request is not a proof:
    ///
    /// ```compile_fail
    /// # async fn handler(codes: mcpsec_mfa::RecoveryCodes, from_request: mcpsec_core::UserId) {
    /// let _ = codes.regenerate(&from_request).await;
    /// # }
    /// ```
    pub async fn regenerate(
        &self,
        proof: &Authorized<perm::UserUpdateProfile>,
    ) -> Result<Vec<SecretString>, Error> {
        let user = proof.subject();
        let mut codes = Vec::with_capacity(CODES_PER_SET);
        let mut hashes = Vec::with_capacity(CODES_PER_SET);
        for _ in 0..CODES_PER_SET {
            let raw = fresh_code()?;
            hashes.push(self.hash(user, raw.expose_secret()));
            codes.push(group(raw.expose_secret()));
        }
        self.store
            .replace_set(proof.principal(), hashes)
            .await
            .map_err(Error::Store)?;
        self.report(EventKind::AuthnMfaChanged, Outcome::Success, user, None)
            .await;
        Ok(codes)
    }

    /// Uses one code of `user`'s set; returns the `amr` it establishes and how many
    /// remain. Each code works once, even under concurrent use.
    pub async fn redeem(&self, user: &UserId, code: &str) -> Result<Redeemed, Error> {
        let normalized = normalize(code).ok_or(Error::InvalidRecoveryCode);
        let consumed = match &normalized {
            Ok(n) => self
                .store
                .consume_once(user, &self.hash(user, n))
                .await
                .map_err(Error::Store)?,
            Err(_) => false,
        };
        if !consumed {
            self.report(
                EventKind::AuthnMfaFail,
                Outcome::Failure,
                user,
                Some(ReasonCode::WrongCode),
            )
            .await;
            return Err(Error::InvalidRecoveryCode);
        }
        self.report(
            EventKind::AuthnMfaRecoveryUsed,
            Outcome::Success,
            user,
            None,
        )
        .await;
        Ok(Redeemed {
            verified: Verified::new(Factor::RecoveryCode),
            remaining: self.remaining(user).await?,
        })
    }

    /// How many unused codes `user` has.
    pub async fn remaining(&self, user: &UserId) -> Result<usize, Error> {
        self.store.remaining(user).await.map_err(Error::Store)
    }

    /// HMAC over a version tag, the key version, then the user and the code
    /// (length-prefixed).
    fn hash(&self, user: &UserId, normalized: &str) -> CodeHash {
        self.key
            .input(RECOVERY_CODE_DOMAIN)
            .raw(&self.key_version.to_be_bytes())
            .part(user.as_str().as_bytes())
            .part(normalized.as_bytes())
            .tag()
    }

    async fn report(
        &self,
        kind: EventKind,
        outcome: Outcome,
        user: &UserId,
        reason: Option<ReasonCode>,
    ) {
        let mut event = SecurityEvent::new(kind, outcome, self.clock.now())
            .with_actor(Actor::User { user: user.clone() });
        if let Some(reason) = reason {
            event = event.with_reason(reason);
        }
        mcpsec_core::emit(&*self.events, event).await;
    }
}

/// `xxxxx-xxxxx-xxxxx-xxxxx`.
fn group(raw: &str) -> SecretString {
    let parts: Vec<&str> = (0..CODE_CHARS / 5)
        .filter_map(|i| raw.get(i * 5..i * 5 + 5))
        .collect();
    SecretString::new(parts.join("-"))
}

/// `count` fresh recovery codes in the form they are shown (`xxxxx-xxxxx-xxxxx-xxxxx`,
/// Crockford base32, 100 bits each from the OS CSPRNG), the same codes
/// [`RecoveryCodes::regenerate`] draws. Pure: nothing is hashed or stored, so these codes
/// redeem nowhere until a host stores their hashes; for tools that print codes.
pub fn generate_codes(count: usize) -> Result<Vec<SecretString>, Error> {
    (0..count)
        .map(|_| fresh_code().map(|raw| group(raw.expose_secret())))
        .collect()
}

/// One code's 20 symbols, ungrouped (what is hashed).
fn fresh_code() -> Result<SecretString, Error> {
    SecretString::random_from_alphabet(CODE_CHARS, CROCKFORD).map_err(|_| Error::Random)
}

/// Upper-cases, drops dashes and spaces, reads the Crockford look-alikes (O→0, I/L→1);
/// `None` unless exactly 20 symbols of the alphabet remain.
pub(crate) fn normalize(code: &str) -> Option<Zeroizing<String>> {
    if code.len() > 64 {
        return None;
    }
    let mut out = Zeroizing::new(String::with_capacity(CODE_CHARS));
    for c in code.chars().filter(|c| !matches!(c, '-' | ' ')) {
        let c = match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        };
        if !CROCKFORD.contains(c) {
            return None;
        }
        out.push(c);
    }
    (out.len() == CODE_CHARS).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpsec_core::{ManualClock, NullSink};

    #[test]
    fn generated_codes_have_the_display_form_and_normalize() {
        let codes = generate_codes(CODES_PER_SET).unwrap();
        assert_eq!(codes.len(), CODES_PER_SET);
        for code in &codes {
            let text = code.expose_secret();
            assert_eq!(text.len(), 23);
            assert_eq!(text.matches('-').count(), 3);
            assert_eq!(normalize(text).unwrap().len(), CODE_CHARS);
        }
        let distinct: HashSet<&str> = codes.iter().map(SecretString::expose_secret).collect();
        assert_eq!(distinct.len(), CODES_PER_SET);
        assert!(generate_codes(0).unwrap().is_empty());
    }

    /// Stored hashes must keep verifying: this is the layout from before mcpsec-core's
    /// MacKey (tag, key version, then length-prefixed user and code), computed
    /// independently with aws-lc.
    #[test]
    fn stored_hash_layout_is_unchanged() {
        let codes = RecoveryCodes::new(
            Arc::new(MemoryRecoveryStore::new()),
            SecretBytes::from_slice(&[9; 32]),
            Arc::new(NullSink),
            Arc::new(ManualClock::at_unix(0)),
        )
        .unwrap()
        .with_key_version(3);
        let user = UserId::new("ada").unwrap();
        let code = "0123456789ABCDEFGHJK";
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[9; 32]);
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
        ctx.update(b"mcpsec-recovery-code-v2");
        ctx.update(&3u32.to_be_bytes());
        for part in ["ada", code] {
            ctx.update(&(part.len() as u32).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        assert_eq!(codes.hash(&user, code)[..], *ctx.sign().as_ref());
    }
}
