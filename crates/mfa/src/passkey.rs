//! WebAuthn passkeys on webauthn-rs (feature `passkeys`): registration and
//! authentication ceremonies whose state stays server-side in a [`PasskeyStore`], keyed
//! by a [`CeremonyId`], single use, expiring after a few minutes.
//!
//! A passkey authentication is phishing-resistant (the signature covers the origin) and
//! webauthn-rs requires user verification for passkeys, so it is multi-factor: the
//! result carries the RFC 8176 `amr` values `swk` and `mfa`, which the
//! [`StepUpPolicy`](crate::StepUpPolicy) accepts for administrative actions. (`swk`, not
//! `hwk`: without attestation a synced passkey and a security key look alike.)

use crate::passkey_store::{
    CeremonyId, CeremonyKind, CeremonyLimits, CeremonyRecord, CeremonyStored, CredentialAdded,
    PasskeyStore, StoredPasskey,
};
use crate::{Error, Factor};
use mcpsec_access::{AuthMethods, Authorized, Principal, perm};
use mcpsec_core::StoreError;
use mcpsec_core::hmac::{Domain, MacKey};
use mcpsec_core::{
    Actor, EventKind, EventSink, Label, Outcome, ReasonCode, SecretBytes, SecurityEvent, Severity,
    SharedClock, UserId,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid,
    Webauthn, WebauthnBuilder, WebauthnError,
};

/// The user handle's domain (its bytes are stored by authenticators: never change it).
const USER_HANDLE_DOMAIN: Domain = Domain::new("mcpsec-webauthn-user-v2");

/// Largest client response accepted (JSON), for registration or authentication.
pub const MAX_CLIENT_RESPONSE: usize = 64 * 1024;
/// Most passkeys one user may register.
pub const MAX_PASSKEYS_PER_USER: usize = 16;
/// Longest `name` or `display_name` accepted when starting a registration (bytes).
pub const MAX_USER_NAME: usize = 256;
/// Shortest user-handle key accepted (bytes).
const MIN_HANDLE_KEY: usize = 32;

/// The relying party, the user-handle key and ceremony limits.
#[derive(Debug, PartialEq, Eq)]
pub struct PasskeyConfig {
    /// The RP id: the site's domain (`example.com`), which passkeys are bound to.
    pub rp_id: String,
    /// The origin the browser reports (`https://example.com`), within the RP id.
    pub rp_origin: String,
    /// The name shown by the authenticator.
    pub rp_name: String,
    /// How long a started ceremony may be finished (default 5 minutes, at most 10).
    pub ceremony_ttl: Duration,
    /// How many ceremonies may be open, per user and in total.
    pub ceremony_limits: CeremonyLimits,
    /// The server-side key (at least 32 random bytes, kept like any other server secret
    /// and never rotated casually) under which user ids become WebAuthn user handles:
    /// `HMAC-SHA256(key, user id)`, truncated to 16 bytes. The handle is stored on the
    /// authenticator and returned to any site asking for it, so it must not reveal the
    /// user id, nor let someone who guesses an id confirm it. Changing the key changes
    /// every user's handle: existing passkeys keep working (they are looked up by
    /// credential id), but an authenticator may then show two accounts for one user.
    pub user_handle_key: SecretBytes,
}

impl Clone for PasskeyConfig {
    fn clone(&self) -> Self {
        Self {
            rp_id: self.rp_id.clone(),
            rp_origin: self.rp_origin.clone(),
            rp_name: self.rp_name.clone(),
            ceremony_ttl: self.ceremony_ttl,
            ceremony_limits: self.ceremony_limits,
            user_handle_key: self.user_handle_key.duplicate(),
        }
    }
}

impl PasskeyConfig {
    /// A configuration for `rp_id` at `rp_origin`, named `rp_name`, with user handles keyed
    /// by `user_handle_key` (32 random bytes or more, stable across restarts), 5-minute
    /// ceremonies and the default [`CeremonyLimits`].
    pub fn new(rp_id: &str, rp_origin: &str, rp_name: &str, user_handle_key: SecretBytes) -> Self {
        Self {
            rp_id: rp_id.to_owned(),
            rp_origin: rp_origin.to_owned(),
            rp_name: rp_name.to_owned(),
            ceremony_ttl: Duration::from_secs(300),
            ceremony_limits: CeremonyLimits::default(),
            user_handle_key,
        }
    }
}

/// A passkey authentication that succeeded: whose, which credential, and the `amr`
/// values to put in the session or token (`hwk`, plus `user` when the authenticator
/// verified the user; see [`crate::Factor`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyAuthenticated {
    /// The user.
    pub user: UserId,
    /// The credential used.
    pub credential_id: Vec<u8>,
    /// The `amr` values this authentication establishes.
    pub methods: AuthMethods,
    /// When it happened (the `auth_time`).
    pub at: SystemTime,
}

/// Registers passkeys and authenticates with them.
#[derive(Debug, Clone)]
pub struct Passkeys {
    webauthn: Arc<Webauthn>,
    store: Arc<dyn PasskeyStore>,
    events: Arc<dyn EventSink>,
    clock: SharedClock,
    ttl: Duration,
    limits: CeremonyLimits,
    handle_key: MacKey,
}

/// Parses a client response: at most [`MAX_CLIENT_RESPONSE`] bytes of JSON. Public for
/// the fuzz target; the ceremonies call it.
pub fn parse_authentication_response(json: &[u8]) -> Result<PublicKeyCredential, Error> {
    parse(json)
}

/// Parses a registration response (the `PublicKeyCredential` from
/// `navigator.credentials.create`): at most [`MAX_CLIENT_RESPONSE`] bytes of JSON. Public
/// for the fuzz target; the ceremony calls it.
pub fn parse_registration_response(json: &[u8]) -> Result<RegisterPublicKeyCredential, Error> {
    parse(json)
}

fn parse<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, Error> {
    if json.len() > MAX_CLIENT_RESPONSE {
        return Err(Error::PasskeyRefused);
    }
    serde_json::from_slice(json).map_err(|_| Error::PasskeyRefused)
}

fn serialize<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| {
        Error::Store(StoreError::corrupt("passkey state could not be encoded").with_source(e))
    })
}

impl Passkeys {
    /// A service for `config`, keeping state in `store`. Refuses a ceremony lifetime over
    /// 10 minutes, a user-handle key under 32 bytes, and an origin that is not `https`
    /// (plain `http` only for `localhost`, for development).
    pub fn new(
        config: &PasskeyConfig,
        store: Arc<dyn PasskeyStore>,
        events: Arc<dyn EventSink>,
        clock: SharedClock,
    ) -> Result<Self, Error> {
        if config.ceremony_ttl.is_zero() || config.ceremony_ttl > Duration::from_secs(600) {
            return Err(Error::Config("passkey ceremonies last up to 10 minutes"));
        }
        if config.user_handle_key.len() < MIN_HANDLE_KEY {
            return Err(Error::Config(
                "passkeys: the user-handle key is at least 32 bytes",
            ));
        }
        let handle_key = MacKey::new(config.user_handle_key.expose_secret())
            .map_err(|_| Error::Config("passkeys: the user-handle key is at least 32 bytes"))?;
        if config.ceremony_limits.per_user == 0 {
            return Err(Error::Config("passkeys: ceremony limits must be positive"));
        }
        let origin = Url::parse(&config.rp_origin)
            .map_err(|_| Error::Config("passkeys: the origin is not a URL"))?;
        let local = origin.host_str() == Some("localhost");
        if origin.scheme() != "https" && !(origin.scheme() == "http" && local) {
            return Err(Error::Config(
                "passkeys: the origin is https (http only for localhost)",
            ));
        }
        let webauthn = WebauthnBuilder::new(&config.rp_id, &origin)
            .and_then(|b| {
                b.rp_name(&config.rp_name)
                    .timeout(config.ceremony_ttl)
                    .build()
            })
            .map_err(|_| Error::Config("passkeys: RP id, origin or name refused"))?;
        Ok(Self {
            webauthn: Arc::new(webauthn),
            store,
            events,
            clock,
            ttl: config.ceremony_ttl,
            limits: config.ceremony_limits,
            handle_key,
        })
    }

    /// The WebAuthn user handle for `user`: the first 16 bytes of HMAC-SHA256 under the
    /// server's user-handle key over a tag and the user id, so an authenticator never holds
    /// the id, and a guessed id cannot be checked against a handle without the key.
    fn user_handle(&self, user: &UserId) -> Uuid {
        // A NUL after the label, then the user id unframed (it is the last field).
        let tag = self
            .handle_key
            .input(USER_HANDLE_DOMAIN)
            .raw(b"\0")
            .raw(user.as_str().as_bytes())
            .tag();
        let mut bytes = [0u8; 16];
        for (b, d) in bytes.iter_mut().zip(tag.iter()) {
            *b = *d;
        }
        Uuid::from_bytes(bytes)
    }

    async fn passkeys(&self, user: &UserId) -> Result<Vec<(StoredPasskey, Passkey)>, Error> {
        let stored = self.store.credentials(user).await.map_err(Error::Store)?;
        stored
            .into_iter()
            .map(|s| {
                let passkey = serde_json::from_slice(&s.passkey).map_err(|e| {
                    Error::Store(
                        StoreError::corrupt("stored passkey could not be decoded").with_source(e),
                    )
                })?;
                Ok((s, passkey))
            })
            .collect()
    }

    async fn begin(
        &self,
        user: &UserId,
        kind: CeremonyKind,
        state: Vec<u8>,
    ) -> Result<CeremonyId, Error> {
        let id = CeremonyId::generate()?;
        let now = self.clock.now();
        let record = CeremonyRecord {
            user: user.clone(),
            kind,
            state: SecretBytes::new(state),
            expires_at: now.checked_add(self.ttl).unwrap_or(now),
        };
        match self
            .store
            .put_ceremony(&id, record, now, self.limits)
            .await
            .map_err(Error::Store)?
        {
            CeremonyStored::Stored => Ok(id),
            _ => Err(Error::TooManyCeremonies),
        }
    }

    /// Takes the ceremony `id` (single use) if it is `kind` and `user`'s (otherwise it stays
    /// for its owner), and checks it is live.
    async fn take(
        &self,
        user: &UserId,
        id: &CeremonyId,
        kind: CeremonyKind,
    ) -> Result<SecretBytes, Error> {
        let record = self
            .store
            .take_ceremony(id, user, kind)
            .await
            .map_err(Error::Store)?
            .ok_or(Error::CeremonyUnknown)?;
        if record.kind != kind || &record.user != user || self.clock.now() >= record.expires_at {
            return Err(Error::CeremonyUnknown);
        }
        Ok(record.state)
    }

    /// Starts registering a passkey for `user` (`name` and `display_name`, 1 to 256 bytes
    /// without control characters, are shown by the authenticator). Send the options to
    /// the browser's `navigator.credentials.create` and keep the id for
    /// [`finish_registration`](Self::finish_registration).
    ///
    /// The user is the proof's subject (`user.update_profile` on their own profile), never
    /// an id from the request. When the user already has a second factor, adding one is
    /// itself a sensitive change: require recent MFA (step-up) before calling this.
    pub async fn start_registration(
        &self,
        proof: &Authorized<perm::UserUpdateProfile>,
        name: &str,
        display_name: &str,
    ) -> Result<(CeremonyId, CreationChallengeResponse), Error> {
        let user = proof.subject();
        let name_ok = |text: &str| {
            !text.is_empty() && text.len() <= MAX_USER_NAME && !text.chars().any(char::is_control)
        };
        if !name_ok(name) || !name_ok(display_name) {
            return Err(Error::Config(
                "passkeys: name and display name are 1 to 256 bytes without control characters",
            ));
        }
        let existing = self.passkeys(user).await?;
        if existing.len() >= MAX_PASSKEYS_PER_USER {
            return Err(Error::TooManyPasskeys);
        }
        let exclude = existing.iter().map(|(_, p)| p.cred_id().clone()).collect();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(self.user_handle(user), name, display_name, Some(exclude))
            .map_err(|_| Error::Config("passkey registration could not start"))?;
        let id = self
            .begin(user, CeremonyKind::Registration, serialize(&state)?)
            .await?;
        Ok((id, options))
    }

    /// Finishes registration with the browser's response (JSON of the
    /// `PublicKeyCredential`, at most 64 KiB). Returns the new credential id; reports an
    /// `authn_mfa_changed` event. The per-user maximum is enforced again here, atomically
    /// in the store, so concurrent ceremonies cannot exceed it.
    pub async fn finish_registration(
        &self,
        proof: &Authorized<perm::UserUpdateProfile>,
        id: &CeremonyId,
        response: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let user = proof.subject();
        let result = self.register(proof.principal(), id, response).await;
        match &result {
            Ok(_) => {
                self.report(
                    EventKind::AuthnMfaChanged,
                    Outcome::Success,
                    user,
                    None,
                    "passkey_register",
                )
                .await;
            }
            Err(e) => {
                self.report(
                    EventKind::AuthnMfaFail,
                    Outcome::Failure,
                    user,
                    Some(reason(e)),
                    "passkey_register",
                )
                .await;
            }
        }
        result
    }

    async fn register(
        &self,
        tenant: &Principal,
        id: &CeremonyId,
        response: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let user = tenant.subject();
        let state = self.take(user, id, CeremonyKind::Registration).await?;
        let state: PasskeyRegistration =
            serde_json::from_slice(state.expose_secret()).map_err(|_| Error::CeremonyUnknown)?;
        let response = parse_registration_response(response)?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(&response, &state)
            .map_err(|_| Error::PasskeyRefused)?;
        let credential_id = passkey.cred_id().to_vec();
        let stored = StoredPasskey {
            credential_id: credential_id.clone(),
            counter: 0,
            passkey: serialize(&passkey)?,
            created_at: self.clock.now(),
        };
        match self
            .store
            .add_credential(tenant, stored, MAX_PASSKEYS_PER_USER)
            .await
            .map_err(Error::Store)?
        {
            CredentialAdded::Added => Ok(credential_id),
            CredentialAdded::TooMany => Err(Error::TooManyPasskeys),
            _ => Err(Error::PasskeyRefused),
        }
    }

    /// Starts authenticating `user` with one of their passkeys. Send the options to
    /// `navigator.credentials.get`.
    pub async fn start_authentication(
        &self,
        user: &UserId,
    ) -> Result<(CeremonyId, RequestChallengeResponse), Error> {
        let passkeys: Vec<Passkey> = self
            .passkeys(user)
            .await?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        if passkeys.is_empty() {
            return Err(Error::NoPasskey);
        }
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|_| Error::Config("passkey authentication could not start"))?;
        let id = self
            .begin(user, CeremonyKind::Authentication, serialize(&state)?)
            .await?;
        Ok((id, options))
    }

    /// Finishes authentication with the browser's response (JSON, at most 64 KiB). The
    /// signature counter is updated atomically: a response whose counter is not newer
    /// than the stored one (a cloned authenticator, or a concurrent replay) is refused
    /// with [`Error::PasskeyCounter`] and reported as a critical `authn_mfa_fail` event.
    pub async fn finish_authentication(
        &self,
        user: &UserId,
        id: &CeremonyId,
        response: &[u8],
    ) -> Result<PasskeyAuthenticated, Error> {
        let result = self.authenticate(user, id, response).await;
        match &result {
            Ok(_) => {
                self.report(
                    EventKind::AuthnMfaSuccess,
                    Outcome::Success,
                    user,
                    None,
                    "passkey",
                )
                .await;
            }
            Err(e) => {
                let mut event = self.event(
                    EventKind::AuthnMfaFail,
                    Outcome::Failure,
                    user,
                    Some(reason(e)),
                    "passkey",
                );
                if *e == Error::PasskeyCounter {
                    // WebAuthn's clone signal: two copies of the private key may exist.
                    event = event.with_severity(Severity::Critical);
                }
                mcpsec_core::emit(&*self.events, event).await;
            }
        }
        result
    }

    async fn authenticate(
        &self,
        user: &UserId,
        id: &CeremonyId,
        response: &[u8],
    ) -> Result<PasskeyAuthenticated, Error> {
        let state = self.take(user, id, CeremonyKind::Authentication).await?;
        let state: PasskeyAuthentication =
            serde_json::from_slice(state.expose_secret()).map_err(|_| Error::CeremonyUnknown)?;
        let response = parse_authentication_response(response)?;
        let result = self
            .webauthn
            .finish_passkey_authentication(&response, &state)
            .map_err(|e| match e {
                WebauthnError::CredentialPossibleCompromise => Error::PasskeyCounter,
                _ => Error::PasskeyRefused,
            })?;
        // The state holds the passkeys as they were at start; read the current one.
        let (stored, mut passkey) = self
            .passkeys(user)
            .await?
            .into_iter()
            .find(|(_, p)| p.cred_id() == result.cred_id())
            .ok_or(Error::PasskeyRefused)?;
        passkey.update_credential(&result);
        let updated = StoredPasskey {
            credential_id: stored.credential_id.clone(),
            counter: result.counter(),
            passkey: serialize(&passkey)?,
            created_at: stored.created_at,
        };
        if !self
            .store
            .update_credential(user, updated)
            .await
            .map_err(Error::Store)?
        {
            return Err(Error::PasskeyCounter);
        }
        Ok(PasskeyAuthenticated {
            user: user.clone(),
            credential_id: stored.credential_id,
            methods: Factor::Passkey.amr(result.user_verified()),
            at: self.clock.now(),
        })
    }

    /// Removes the proof's subject's passkey `credential_id`; reports `authn_mfa_changed`.
    /// As with registration, require recent MFA first.
    pub async fn remove(
        &self,
        proof: &Authorized<perm::UserUpdateProfile>,
        credential_id: &[u8],
    ) -> Result<bool, Error> {
        let user = proof.subject();
        let removed = self
            .store
            .remove_credential(proof.principal(), credential_id)
            .await
            .map_err(Error::Store)?;
        if removed {
            self.report(
                EventKind::AuthnMfaChanged,
                Outcome::Success,
                user,
                None,
                "passkey_remove",
            )
            .await;
        }
        Ok(removed)
    }

    async fn report(
        &self,
        kind: EventKind,
        outcome: Outcome,
        user: &UserId,
        reason: Option<ReasonCode>,
        action: &str,
    ) {
        let event = self.event(kind, outcome, user, reason, action);
        mcpsec_core::emit(&*self.events, event).await;
    }

    fn event(
        &self,
        kind: EventKind,
        outcome: Outcome,
        user: &UserId,
        reason: Option<ReasonCode>,
        action: &str,
    ) -> SecurityEvent {
        let mut event = SecurityEvent::new(kind, outcome, self.clock.now())
            .with_actor(Actor::User { user: user.clone() });
        if let Ok(action) = Label::new(action) {
            event = event.with_action(action);
        }
        if let Some(reason) = reason {
            event = event.with_reason(reason);
        }
        event
    }
}

fn reason(error: &Error) -> ReasonCode {
    match error {
        Error::CeremonyUnknown => ReasonCode::Reused,
        Error::PasskeyCounter => ReasonCode::Replayed,
        Error::NoPasskey => ReasonCode::UnknownCredential,
        Error::TooManyPasskeys | Error::TooManyCeremonies => ReasonCode::RateLimited,
        _ => ReasonCode::BadSignature,
    }
}
