//! Strict verification of access tokens.
//!
//! Does not use jsonwebtoken's `Validation` (measured on 11.1 to accept a token without
//! `aud`, with `aud: 123`, without `iss`, `exp == now`, a far-future `iat`, any `typ`, and
//! unknown `crit`). Every check below is ours, in this order, each with its own error:
//! size cap → three base64url parts → header (duplicates, `crit`, embedded keys, `typ`,
//! `kid`, `alg` bound to the key) → signature → claims (duplicates, `exp`, `nbf`, `iat`,
//! `iss`, `aud`, `sub`, scopes) → the `jti` revocation list → the session (`sid`) check.
//!
//! Verification is async: a token minted from a login session is refused as soon as the
//! session is revoked, which needs the shared [`SessionRevocation`] store, and every
//! outcome is reported to the verifier's [`EventSink`]. There is deliberately no
//! synchronous `verify`: it could do neither, and would silently skip both.

use crate::cache::{DEFAULT_CACHE_CAPACITY, VerifiedCache};
use crate::claims::MAX_CLAIM_ID_LEN;
use crate::jwk::{JwkSet, UsableKeys, VerifyingKey};
#[cfg(feature = "remote-jwks")]
use crate::remote::{Good, RemoteJwks};
use crate::session::SessionRevocation;
use crate::{Algorithm, Error, VerifiedClaims, strict_json};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpsec_access::{AuthMethods, Memberships, Principal, Role, Scope, ScopeSet, resolve_role};
use mcpsec_core::{
    EventKind, EventSink, FlushOnInvalidation, Invalidation, Label, OrgId, Outcome, ResourceId,
    SecurityEvent, SharedClock, SystemClock, TokenId, UserId, emit,
};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default cap on the compact token, checked before any decoding.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;
/// Default clock-skew leeway for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The largest leeway a verifier accepts (its builder refuses more). A retired signing key
/// stays published this long past its last token's `exp`
/// ([`SigningKeyring::prune`](crate::SigningKeyring::prune)), whatever leeway verifiers use.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// Where a verifier's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A JWK set held in memory (for example the issuer's own keyring's JWKS).
    Static(JwkSet),
    /// A JWK set file, read when the verifier is built and on [`TokenVerifier::reload`].
    File(std::path::PathBuf),
    /// The issuer's JWKS endpoint. The verifier starts with the set the remote last
    /// fetched (fetch it first: [`RemoteJwks::keys`]);
    /// [`verify_with_remote`](crate::verify_with_remote) keeps it in step, and
    /// [`TokenVerifier::reload`] refetches. Prefer this to `Static(remote.keys().await?)`, whose reload would
    /// restore the keys of build time, removed ones included. (Feature `remote-jwks`.)
    #[cfg(feature = "remote-jwks")]
    Remote(Arc<RemoteJwks>),
}

impl KeySource {
    /// The set to load now, and the remote generation it is, for a remote source.
    fn load(&self) -> Result<(JwkSet, Option<(u64, u64)>), Error> {
        match self {
            KeySource::Static(set) => Ok((set.clone(), None)),
            KeySource::File(path) => Ok((read_jwks_file(path)?, None)),
            #[cfg(feature = "remote-jwks")]
            KeySource::Remote(remote) => {
                let good = remote
                    .last_good()
                    .ok_or(Error::Key(crate::KeyError::InvalidSet(
                        "the remote JWKS has not been fetched yet",
                    )))?;
                Ok((good.set.clone(), Some((remote.id(), good.generation))))
            }
        }
    }
}

fn read_jwks_file(path: &Path) -> Result<JwkSet, Error> {
    let meta = std::fs::metadata(path)
        .map_err(|_| Error::Key(crate::KeyError::InvalidSet("cannot read the JWKS file")))?;
    if meta.len() > crate::jwk::MAX_JWKS_LEN as u64 {
        return Err(Error::Key(crate::KeyError::InvalidSet(
            "larger than 64 KiB",
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|_| Error::Key(crate::KeyError::InvalidSet("cannot read the JWKS file")))?;
    JwkSet::parse(&bytes)
}

/// A list of revoked token ids (`jti`), consulted on every verification after the cache.
///
/// Called on the request path for every token, so it must answer from memory (a set the
/// host keeps current from its store); it must not block.
pub trait JtiRevocation: Send + Sync + std::fmt::Debug {
    /// Whether the token with this `jti` has been revoked.
    ///
    /// `jti` is the claim as the issuer wrote it (see [`MAX_CLAIM_ID_LEN`]), which for an
    /// outside issuer need not be an mcpsec [`TokenId`](mcpsec_core::TokenId).
    fn is_revoked(&self, jti: &str) -> bool;
}

/// The verifier's keys and what the cache is valid for. Every change of the keys goes
/// through `install`, which bumps `generation`, followed by a cache reset to that
/// generation, both under the write lock (`replace_keys`, `apply_remote`).
#[derive(Debug, Default)]
struct KeyTable {
    keys: HashMap<String, VerifyingKey>,
    generation: u64,
    /// Signing keys of the current set this verifier cannot use.
    skipped: usize,
    /// The remote set these keys are, as (remote id, remote generation), when they came
    /// from a [`RemoteJwks`]; each verifier tracks its own, so that every verifier sharing
    /// a remote learns of every change.
    remote: Option<(u64, u64)>,
}

/// What one verification found: the claims whose signature verified (kept even when a
/// later check refused them, so the failure event can name the subject), and the answer.
#[derive(Debug)]
pub(crate) struct Checked {
    claims: Option<Arc<VerifiedClaims>>,
    result: Result<(), Error>,
}

impl Checked {
    pub(crate) fn failed(error: Error) -> Self {
        Self {
            claims: None,
            result: Err(error),
        }
    }

    #[cfg(feature = "remote-jwks")]
    pub(crate) fn error(&self) -> Option<&Error> {
        self.result.as_ref().err()
    }

    pub(crate) fn into_result(self) -> Result<VerifiedClaims, Error> {
        self.result?;
        self.claims
            .map(|claims| VerifiedClaims::clone(&claims))
            .ok_or(Error::Malformed)
    }
}

/// Verifies access tokens strictly. Build with [`TokenVerifier::builder`].
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    cache: Arc<VerifiedCache>,
    revocation: Option<Arc<dyn JtiRevocation>>,
    sessions: Option<Arc<dyn SessionRevocation>>,
    events: Arc<dyn EventSink>,
    memberships: Option<Arc<dyn Memberships>>,
    source: KeySource,
    keys: Arc<RwLock<KeyTable>>,
    issuer: String,
    audience: String,
    leeway: Duration,
    max_len: usize,
    types: Vec<String>,
    accept_missing_typ: bool,
    clock: SharedClock,
    /// Runs between the signature check and the cache insert, so a test can change the
    /// keys at exactly that point.
    #[cfg(test)]
    pub(crate) before_insert: tests_support::Hook,
}

/// Builds a [`TokenVerifier`]. [`build`](TokenVerifierBuilder::build) refuses to build
/// without an issuer and an audience; the event sink is an argument of
/// [`TokenVerifier::builder`].
#[derive(Debug)]
pub struct TokenVerifierBuilder {
    cache_capacity: usize,
    revocation: Option<Arc<dyn JtiRevocation>>,
    sessions: Option<Arc<dyn SessionRevocation>>,
    events: Arc<dyn EventSink>,
    memberships: Option<Arc<dyn Memberships>>,
    source: KeySource,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    max_len: usize,
    types: Vec<String>,
    accept_missing_typ: bool,
    clock: SharedClock,
}

impl TokenVerifier {
    /// Starts a builder with keys from `source`, reporting every verification to `events`:
    /// the audit log's sink, or [`NullSink`](mcpsec_core::NullSink) written by name to
    /// discard them (an `Arc` of a shared sink works too). Every verification records one
    /// event; a sink that refuses is logged, and the answer is the same either way.
    ///
    /// There is no default, so a verifier cannot drop its events by omission:
    ///
    /// ```compile_fail,E0061
    /// # use mcpsec_tokens::{JwkSet, KeySource, TokenVerifier};
    /// let builder = TokenVerifier::builder(KeySource::Static(JwkSet { keys: vec![] }));
    /// ```
    pub fn builder(source: KeySource, events: impl EventSink + 'static) -> TokenVerifierBuilder {
        TokenVerifierBuilder {
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            revocation: None,
            sessions: None,
            events: Arc::new(events),
            memberships: None,
            source,
            issuer: None,
            audience: None,
            leeway: DEFAULT_LEEWAY,
            max_len: DEFAULT_MAX_TOKEN_LEN,
            types: vec!["at+jwt".to_owned(), "jwt".to_owned()],
            accept_missing_typ: false,
            clock: Arc::new(SystemClock),
        }
    }

    /// Re-reads the key source (after a rotation, or when the JWKS file changed); a
    /// [`KeySource::Remote`] is refetched now. On failure the current keys stay in use.
    pub async fn reload(&self) -> Result<(), Error> {
        match &self.source {
            #[cfg(feature = "remote-jwks")]
            KeySource::Remote(remote) => {
                remote.refetch().await?;
                let good = remote
                    .last_good()
                    .ok_or(Error::Key(crate::KeyError::InvalidSet(
                        "no JWK set fetched",
                    )))?;
                self.apply_remote(remote.id(), &good).map(|_| ())
            }
            source => {
                let (set, origin) = source.load()?;
                self.replace_keys(set.usable_keys(), origin)
            }
        }
    }

    /// Replaces the keys with those of `set` (for a verifier fed by an in-process keyring).
    /// Signing keys this verifier cannot use are skipped (and logged); a set with no usable
    /// key is refused and the current keys stay. Tokens verified with the old keys are
    /// forgotten by the cache, also those being verified while this runs.
    pub fn set_keys(&self, set: &JwkSet) -> Result<(), Error> {
        self.replace_keys(set.usable_keys(), None)
    }

    /// How many signing keys of the current set this verifier skipped because it cannot
    /// use them (see [`JwkSet::usable_keys`]).
    pub fn skipped_keys(&self) -> usize {
        self.read_keys().skipped
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, KeyTable> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn replace_keys(&self, usable: UsableKeys, remote: Option<(u64, u64)>) -> Result<(), Error> {
        let mut table = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        install(&mut table, usable, remote)?;
        // Under the write lock: a verification that read the old keys cannot insert into
        // the new generation.
        self.cache.reset(table.generation);
        Ok(())
    }

    /// Gives this verifier the remote set `good`, unless it has it already or has a newer
    /// one from the same remote. Returns whether the keys changed.
    #[cfg(feature = "remote-jwks")]
    pub(crate) fn apply_remote(&self, remote: u64, good: &Good) -> Result<bool, Error> {
        let mut table = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if let Some((id, applied)) = table.remote
            && id == remote
            && applied >= good.generation
        {
            return Ok(false);
        }
        install(
            &mut table,
            good.set.usable_keys(),
            Some((remote, good.generation)),
        )?;
        self.cache.reset(table.generation);
        Ok(true)
    }

    /// Verifies `token` and returns its claims, or the first check that failed, and
    /// records the outcome in the verifier's event sink: `authn_login_success`, or
    /// `authn_login_fail` with the reason code (never any token text; the subject, org and
    /// `jti` only once the signature verified).
    ///
    /// A token verified before (same bytes, keys unchanged since, its key still present)
    /// is answered from the cache after re-checking `exp`; the `jti` revocation list and
    /// the session store ([`sessions`](TokenVerifierBuilder::sessions)) are consulted
    /// either way. A token with a `sid` whose session was revoked is
    /// [`Error::SessionRevoked`] (and its session's cached tokens are dropped); a session
    /// store that does not answer is [`Error::SessionCheckUnavailable`].
    pub async fn verify(&self, token: &str) -> Result<VerifiedClaims, Error> {
        let checked = self.check(token).await;
        self.report(&checked).await;
        checked.into_result()
    }

    /// Every check of [`verify`](TokenVerifier::verify), without the event.
    pub(crate) async fn check(&self, token: &str) -> Checked {
        let claims = match self.check_local(token) {
            Ok(claims) => claims,
            Err(error) => return Checked::failed(error),
        };
        let result = self.check_session(&claims).await;
        Checked {
            claims: Some(claims),
            result,
        }
    }

    /// The session check, after the cache: a revoked session's tokens are refused and
    /// forgotten by the cache; an unknown answer refuses.
    async fn check_session(&self, claims: &VerifiedClaims) -> Result<(), Error> {
        let (Some(sessions), Some(sid)) = (&self.sessions, claims.sid.as_deref()) else {
            return Ok(());
        };
        // Our issuer writes family ids; anything else cannot be looked up, so it cannot
        // be known to be live.
        let sid = TokenId::new(sid).map_err(|_| Error::InvalidClaim("sid"))?;
        match sessions.is_revoked(&sid).await {
            Ok(false) => Ok(()),
            Ok(true) => {
                self.cache.remove_session(sid.as_str());
                Err(Error::SessionRevoked)
            }
            Err(error) => Err(Error::SessionCheckUnavailable(error)),
        }
    }

    /// Records the outcome of one verification.
    pub(crate) async fn report(&self, checked: &Checked) {
        let now = self.clock.now();
        let mut event = match &checked.result {
            Ok(()) => SecurityEvent::new(EventKind::AuthnLoginSuccess, Outcome::Success, now),
            Err(error) => SecurityEvent::new(EventKind::AuthnLoginFail, Outcome::Failure, now)
                .with_reason(error.reason_code()),
        };
        // Our session store failing is not the user's failure: it names no user, so
        // failure-counting rules (brute force) do not count an outage against everyone.
        let ours = matches!(checked.result, Err(Error::SessionCheckUnavailable(_)));
        if let Some(claims) = &checked.claims {
            // Only claims whose signature verified: an unverified `sub` is the attacker's.
            if let Ok(user) = UserId::new(&claims.subject)
                && !ours
            {
                event = event.with_user(user);
            }
            if let Some(org) = claims.org.as_deref().and_then(|o| OrgId::new(o).ok()) {
                event = event.with_org(org);
            }
            if let Ok(kind) = Label::new("access_token") {
                let jti = claims.jti.as_deref().and_then(|j| ResourceId::new(j).ok());
                event = event.with_resource(kind, jti);
            }
        }
        emit(self.events.as_ref(), event).await;
    }

    /// Records `sid` as revoked in the verifier's session store until `until` (when the
    /// last token that can carry it expires) and drops the session's cached tokens. For a
    /// host that ends sessions outside [`RefreshTokens`](crate::RefreshTokens), which does
    /// this itself through the shared store. Fails without a session store
    /// ([`Error::Config`]) or when the store fails ([`Error::Store`]).
    pub async fn revoke_session(&self, sid: &TokenId, until: SystemTime) -> Result<(), Error> {
        let sessions = self
            .sessions
            .as_ref()
            .ok_or(Error::Config("the verifier has no session store"))?;
        sessions.revoke(sid, until).await.map_err(Error::Store)?;
        self.cache.remove_session(sid.as_str());
        Ok(())
    }

    /// The checks that need no store: size, cache or signature and claims, `jti` list.
    fn check_local(&self, token: &str) -> Result<Arc<VerifiedClaims>, Error> {
        if token.len() > self.max_len {
            return Err(Error::TooLarge);
        }
        let cache_key = VerifiedCache::key(token);
        let hit = self
            .cache
            .get(&cache_key)
            .filter(|hit| self.read_keys().keys.contains_key(&hit.kid));
        let claims = match hit {
            Some(hit) => {
                if seconds(self.clock.now()) >= hit.exp_seconds + self.leeway.as_secs_f64() {
                    self.cache.remove(&cache_key);
                    return Err(Error::Expired);
                }
                hit
            }
            None => {
                let (claims, generation) = self.verify_uncached(token)?;
                let claims = Arc::new(claims);
                #[cfg(test)]
                self.before_insert.run();
                self.cache
                    .insert(cache_key, Arc::clone(&claims), generation);
                claims
            }
        };
        if let Some(revocation) = &self.revocation {
            let jti = claims.jti.as_deref().ok_or(Error::MissingClaim("jti"))?;
            if revocation.is_revoked(jti) {
                return Err(Error::Revoked);
            }
        }
        Ok(claims)
    }

    /// The claims, and the generation of the keys that verified them.
    fn verify_uncached(&self, token: &str) -> Result<(VerifiedClaims, u64), Error> {
        let (header_b64, payload_b64, signature_b64) = split(token)?;
        let header = decode_object(header_b64)?;
        let (key, generation) = self.check_header(&header)?;
        let signing_input = token
            .get(..header_b64.len() + 1 + payload_b64.len())
            .ok_or(Error::Malformed)?;
        // Strict base64url (no padding, canonical trailing bits) before the backend sees it.
        URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| Error::Malformed)?;
        key.verify(signing_input.as_bytes(), signature_b64)?;
        let payload = decode_object(payload_b64)?;
        Ok((self.check_claims(payload, &key)?, generation))
    }

    /// The [`Principal`] for verified `claims`, with the role from the memberships the
    /// verifier was built with ([`TokenVerifierBuilder::memberships`]): the subject's
    /// current role in the token's organization, lowered to the `role` claim when that is
    /// less privileged. A subject who is not a member is [`Error::NotAMember`]; a store
    /// failure is [`Error::Store`] (unknown is refused, never guessed).
    ///
    /// Without memberships the role is the token's `role` claim, as
    /// [`VerifiedClaims::principal`].
    pub async fn principal(&self, claims: &VerifiedClaims) -> Result<Principal, Error> {
        let Some(memberships) = &self.memberships else {
            return claims.principal();
        };
        let subject = mcpsec_core::UserId::new(claims.subject())
            .map_err(|_| Error::NotAnIdentifier("sub"))?;
        let org = claims.org().ok_or(Error::MissingClaim("org"))?;
        let org = mcpsec_core::OrgId::new(org).map_err(|_| Error::NotAnIdentifier("org"))?;
        let role = resolve_role(memberships.as_ref(), &subject, &org, claims.role())
            .await
            .map_err(Error::Store)?
            .ok_or(Error::NotAMember)?;
        Ok(claims.principal_mapped(subject, org, role))
    }

    /// [`verify`](TokenVerifier::verify), then requires `scope` (through the hierarchy).
    pub async fn verify_with_scope(
        &self,
        token: &str,
        scope: Scope,
    ) -> Result<VerifiedClaims, Error> {
        let claims = self.verify(token).await?;
        if !claims.scopes.allows(scope) {
            return Err(Error::InsufficientScope);
        }
        Ok(claims)
    }

    /// The key the header names, with the generation of the key table it was read from.
    fn check_header(&self, header: &Map<String, Value>) -> Result<(VerifyingKey, u64), Error> {
        if header.contains_key("crit") {
            return Err(Error::CriticalHeader);
        }
        if ["jwk", "jku", "x5u", "x5c"]
            .iter()
            .any(|k| header.contains_key(*k))
        {
            return Err(Error::EmbeddedKey);
        }
        match header.get("typ") {
            None if self.accept_missing_typ => {}
            None => return Err(Error::WrongType),
            Some(Value::String(typ)) => {
                // RFC 7515 §4.1.9: compare case-insensitively, "application/" may be omitted.
                let typ = typ.to_ascii_lowercase();
                let typ = typ.strip_prefix("application/").unwrap_or(&typ);
                if !self.types.iter().any(|t| t == typ) {
                    return Err(Error::WrongType);
                }
            }
            Some(_) => return Err(Error::WrongType),
        }
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.as_str(),
            _ => return Err(Error::WrongAlgorithm),
        };
        let kid = match header.get("kid") {
            Some(Value::String(kid)) => kid.as_str(),
            None => return Err(Error::UnknownKey),
            Some(_) => return Err(Error::Malformed),
        };
        let (key, generation) = {
            let table = self.read_keys();
            let key = table.keys.get(kid).cloned().ok_or(Error::UnknownKey)?;
            (key, table.generation)
        };
        // The algorithm is the key's, never the token's choice: `none`, HS256 with the
        // public key as secret, ES256 against an RSA key all fail here.
        if Algorithm::from_name(alg) != Some(key.algorithm()) {
            return Err(Error::WrongAlgorithm);
        }
        Ok((key, generation))
    }

    fn check_claims(
        &self,
        payload: Map<String, Value>,
        key: &VerifyingKey,
    ) -> Result<VerifiedClaims, Error> {
        let now = seconds(self.clock.now());
        let leeway = self.leeway.as_secs_f64();

        let exp = numeric_date(&payload, "exp")?.ok_or(Error::MissingClaim("exp"))?;
        if now >= exp + leeway {
            return Err(Error::Expired);
        }
        if let Some(nbf) = numeric_date(&payload, "nbf")?
            && now + leeway < nbf
        {
            return Err(Error::NotYetValid);
        }
        let iat = numeric_date(&payload, "iat")?.ok_or(Error::MissingClaim("iat"))?;
        if iat > now + leeway {
            return Err(Error::IssuedInFuture);
        }

        let issuer = string_claim(&payload, "iss")?.ok_or(Error::MissingClaim("iss"))?;
        if issuer != self.issuer {
            return Err(Error::WrongIssuer);
        }
        let audience_ok = match payload.get("aud") {
            None => return Err(Error::MissingClaim("aud")),
            Some(Value::String(aud)) => *aud == self.audience,
            Some(Value::Array(items)) => {
                let mut found = false;
                for item in items {
                    match item {
                        Value::String(aud) => found |= *aud == self.audience,
                        _ => return Err(Error::InvalidClaim("aud")),
                    }
                }
                found
            }
            Some(_) => return Err(Error::InvalidClaim("aud")),
        };
        if !audience_ok {
            return Err(Error::WrongAudience);
        }

        let subject = outside_id(&payload, "sub")?.ok_or(Error::MissingClaim("sub"))?;
        let scopes = match string_claim(&payload, "scope")? {
            Some(scope) => {
                ScopeSet::parse_tolerant(scope).map_err(|_| Error::InvalidClaim("scope"))?
            }
            None => ScopeSet::EMPTY,
        };
        let org = outside_id(&payload, "org")?;
        let role = string_claim(&payload, "role")?
            .map(|r| r.parse::<Role>().map_err(|_| Error::InvalidClaim("role")))
            .transpose()?;
        let jti = outside_id(&payload, "jti")?;
        let sid = outside_id(&payload, "sid")?;
        let auth_time = numeric_date(&payload, "auth_time")?;
        let amr = match payload.get("amr") {
            None => AuthMethods::EMPTY,
            Some(Value::Array(items)) => {
                let mut names = Vec::with_capacity(items.len());
                for item in items {
                    names.push(item.as_str().ok_or(Error::InvalidClaim("amr"))?);
                }
                AuthMethods::from_amr(names)
            }
            Some(_) => return Err(Error::InvalidClaim("amr")),
        };
        let acr = string_claim(&payload, "acr")?.map(str::to_owned);

        Ok(VerifiedClaims {
            subject,
            issuer: issuer.to_owned(),
            expires_at: time(exp),
            issued_at: time(iat),
            jti,
            sid,
            scopes,
            org,
            role,
            auth_time: auth_time.map(time),
            amr,
            acr,
            kid: key.kid().to_owned(),
            alg: key.algorithm(),
            exp_seconds: exp,
            payload: Arc::new(payload),
        })
    }
}

/// Puts `usable` in `table` as a new generation, logging each skipped key. A set without
/// one usable key changes nothing.
fn install(
    table: &mut KeyTable,
    usable: UsableKeys,
    remote: Option<(u64, u64)>,
) -> Result<(), Error> {
    if usable.keys.is_empty() {
        return Err(Error::Key(crate::KeyError::InvalidSet(
            "no usable signing key",
        )));
    }
    for skipped in &usable.skipped {
        tracing::warn!(
            target: "mcpsec::tokens",
            kid = skipped.kid.as_deref().unwrap_or("-"),
            reason = %skipped.reason,
            "JWK skipped: this verifier cannot use it"
        );
    }
    table.skipped = usable.skipped.len();
    table.keys = usable
        .keys
        .into_iter()
        .map(|k| (k.kid().to_string(), k))
        .collect();
    table.remote = remote;
    table.generation = table.generation.wrapping_add(1);
    Ok(())
}

/// `sub`, `org`, `jti` or `sid` of a verified token: the issuer's data, not an mcpsec
/// identifier. Any string of 1 to [`MAX_CLAIM_ID_LEN`] bytes without control characters
/// (which could forge log lines or headers downstream).
fn outside_id(payload: &Map<String, Value>, name: &'static str) -> Result<Option<String>, Error> {
    match string_claim(payload, name)? {
        None => Ok(None),
        Some(value) if value.len() <= MAX_CLAIM_ID_LEN && !value.chars().any(char::is_control) => {
            Ok(Some(value.to_owned()))
        }
        Some(_) => Err(Error::InvalidClaim(name)),
    }
}

/// Exactly three non-empty parts separated by dots.
fn split(token: &str) -> Result<(&str, &str, &str), Error> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() && !s.is_empty() => {
            Ok((h, p, s))
        }
        _ => Err(Error::Malformed),
    }
}

fn decode_object(part: &str) -> Result<Map<String, Value>, Error> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| Error::Malformed)?;
    strict_json::object(&bytes).map_err(|duplicate| {
        if duplicate {
            Error::DuplicateMember
        } else {
            Error::Malformed
        }
    })
}

fn string_claim<'a>(
    payload: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, Error> {
    match payload.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(_) => Err(Error::InvalidClaim(name)),
    }
}

/// A NumericDate: a JSON number of seconds, finite and not negative. Any other type is an
/// error, never "absent".
fn numeric_date(payload: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, Error> {
    match payload.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if (0.0..1e12).contains(&v) => Ok(Some(v)),
            _ => Err(Error::InvalidClaim(name)),
        },
        Some(_) => Err(Error::InvalidClaim(name)),
    }
}

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn time(seconds: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(seconds)
}

impl TokenVerifierBuilder {
    /// The issuer every token must name in `iss` (required).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The audience every token's `aud` must contain (required).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Clock-skew leeway for `exp`, `nbf`, `iat` (default 30 s; at most [`MAX_LEEWAY`]).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Cap on the compact token's length (default 8 KiB).
    pub fn max_token_len(mut self, max: usize) -> Self {
        self.max_len = max;
        self
    }

    /// The accepted `typ` values, compared case-insensitively without `application/`
    /// (default `at+jwt` and `JWT`).
    pub fn types<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, types: I) -> Self {
        self.types = types
            .into_iter()
            .map(|t| t.as_ref().to_ascii_lowercase())
            .collect();
        self
    }

    /// Also accept tokens with no `typ` header (off by default: RFC 9068 requires it).
    pub fn accept_missing_typ(mut self, accept: bool) -> Self {
        self.accept_missing_typ = accept;
        self
    }

    /// The clock (default the system clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// How many verified tokens to remember (default 10,000; 0 turns the cache off).
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// The session store (shared with [`RefreshTokens`](crate::RefreshTokens)): a token
    /// that carries a `sid` is refused once its session is revoked, at its next
    /// verification, cached or not, and refused when the store does not answer. Without
    /// it, a revoked session's access tokens live out their lifetime: pair such a verifier
    /// with a shorter token lifetime (docs/integration.md).
    pub fn sessions(mut self, sessions: Arc<dyn SessionRevocation>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// Refuse tokens whose `jti` the list says is revoked (and tokens without a `jti`).
    pub fn revocation(mut self, revocation: Arc<dyn JtiRevocation>) -> Self {
        self.revocation = Some(revocation);
        self
    }

    /// Where [`TokenVerifier::principal`] reads the subject's role: their current
    /// membership of the token's organization, at every request. A token's `role` claim
    /// can then only lower that role, and a subject who is no longer a member is refused,
    /// so a demotion bites at the next request rather than when the token expires.
    pub fn memberships(mut self, memberships: Arc<dyn Memberships>) -> Self {
        self.memberships = Some(memberships);
        self
    }

    /// Loads the keys and builds the verifier. Fails without an issuer or an audience,
    /// with a leeway over 5 minutes, or when the key source yields no usable key.
    pub fn build(self) -> Result<TokenVerifier, Error> {
        let issuer = self
            .issuer
            .filter(|s| !s.is_empty())
            .ok_or(Error::Config("an issuer is required"))?;
        let audience = self
            .audience
            .filter(|s| !s.is_empty())
            .ok_or(Error::Config("an audience is required"))?;
        if self.leeway > MAX_LEEWAY {
            return Err(Error::Config("leeway over 5 minutes"));
        }
        if self.max_len == 0 {
            return Err(Error::Config("the token size cap must be positive"));
        }
        let (set, remote) = self.source.load()?;
        let mut table = KeyTable::default();
        install(&mut table, set.usable_keys(), remote)?;
        let cache = VerifiedCache::new(self.cache_capacity);
        cache.reset(table.generation);
        Ok(TokenVerifier {
            cache: Arc::new(cache),
            revocation: self.revocation,
            sessions: self.sessions,
            events: self.events,
            memberships: self.memberships,
            source: self.source,
            keys: Arc::new(RwLock::new(table)),
            issuer,
            audience,
            leeway: self.leeway,
            max_len: self.max_len,
            types: self.types,
            accept_missing_typ: self.accept_missing_typ,
            clock: self.clock,
            #[cfg(test)]
            before_insert: tests_support::Hook::default(),
        })
    }
}

/// Announcements from the fleet ([`mcpsec_core::InvalidationBus`]): a removed signing key
/// is dropped from this verifier's keys at once (until a reload brings it back from a
/// source that still lists it), and every change of keys forgets the cached tokens.
///
/// - [`SigningKeyRemoved`](Invalidation::SigningKeyRemoved): the kid goes, the cache is
///   reset; tokens it signed are [`Error::UnknownKey`] from the next verification.
/// - [`SigningKeyRetired`](Invalidation::SigningKeyRetired),
///   [`JwksChanged`](Invalidation::JwksChanged), [`Everything`](Invalidation::Everything):
///   the cache is reset and the keys re-read: a [`KeySource::File`] at once, a
///   [`KeySource::Remote`] by a refetch spawned on the current tokio runtime (its keys
///   stay until the refetch lands). A [`KeySource::Static`] verifier is fed by
///   [`set_keys`](TokenVerifier::set_keys): its host applies the new set.
/// - API-key and membership announcements do not concern it.
impl FlushOnInvalidation for TokenVerifier {
    fn flush(&self, what: &Invalidation) {
        match what {
            Invalidation::SigningKeyRemoved(kid) => {
                let mut table = self.keys.write().unwrap_or_else(PoisonError::into_inner);
                table.keys.remove(kid.as_str());
                table.generation = table.generation.wrapping_add(1);
                self.cache.reset(table.generation);
            }
            Invalidation::SigningKeyRetired(_)
            | Invalidation::JwksChanged
            | Invalidation::Everything => {
                {
                    let mut table = self.keys.write().unwrap_or_else(PoisonError::into_inner);
                    table.generation = table.generation.wrapping_add(1);
                    self.cache.reset(table.generation);
                }
                self.reload_after_announcement();
            }
            _ => {}
        }
    }
}

impl TokenVerifier {
    /// Re-reads the key source without waiting: a file now, a remote in the background.
    fn reload_after_announcement(&self) {
        match &self.source {
            KeySource::Static(_) => {}
            KeySource::File(_) => {
                if let Err(error) = self
                    .source
                    .load()
                    .and_then(|(set, origin)| self.replace_keys(set.usable_keys(), origin))
                {
                    tracing::warn!(
                        target: "mcpsec::tokens",
                        %error,
                        "JWKS file reload after an invalidation failed; the current keys stay"
                    );
                }
            }
            #[cfg(feature = "remote-jwks")]
            KeySource::Remote(_) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let verifier = self.clone();
                    runtime.spawn(async move {
                        if let Err(error) = verifier.reload().await {
                            tracing::warn!(
                                target: "mcpsec::tokens",
                                %error,
                                "JWKS refetch after an invalidation failed; the current keys stay"
                            );
                        }
                    });
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A callback a test installs in a verifier (none by default).
    #[derive(Clone, Default)]
    pub(crate) struct Hook(pub(crate) Option<Arc<dyn Fn() + Send + Sync>>);

    impl Hook {
        pub(crate) fn run(&self) {
            if let Some(hook) = &self.0 {
                hook();
            }
        }
    }

    impl std::fmt::Debug for Hook {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Hook")
        }
    }

    /// A `VerifiedClaims` for unit tests of the cache.
    pub(crate) fn sample_claims() -> VerifiedClaims {
        VerifiedClaims {
            subject: "u".to_owned(),
            issuer: "i".to_owned(),
            expires_at: UNIX_EPOCH,
            issued_at: UNIX_EPOCH,
            jti: None,
            sid: None,
            scopes: ScopeSet::EMPTY,
            org: None,
            role: None,
            auth_time: None,
            amr: AuthMethods::EMPTY,
            acr: None,
            kid: "k".to_owned(),
            alg: Algorithm::EdDSA,
            exp_seconds: 0.0,
            payload: Arc::new(Map::new()),
        }
    }
}
