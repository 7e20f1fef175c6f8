//! WebAuthn passkeys on webauthn-rs (feature `passkeys`): registration and
//! authentication ceremonies whose state stays server-side in a [`PasskeyStore`], keyed
//! by a [`CeremonyId`], single use, expiring after a few minutes.
//!
//! A passkey authentication is phishing-resistant (the signature covers the origin) and
//! webauthn-rs requires user verification for passkeys, so it is multi-factor: the
//! result carries the RFC 8176 `amr` values `swk` and `mfa`, which the
//! [`StepUpPolicy`](crate::StepUpPolicy) accepts for administrative actions. (`swk`, not
//! `hwk`: without attestation a synced passkey and a security key look alike.)

use crate::Error;
use crate::passkey_store::{CeremonyId, CeremonyKind, CeremonyRecord, PasskeyStore, StoredPasskey};
use mcpsec_access::{AuthMethod, AuthMethods};
use mcpsec_core::{
    Actor, EventKind, EventSink, Label, Outcome, ReasonCode, SecretBytes, SecurityEvent,
    SharedClock, UserId,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid,
    Webauthn, WebauthnBuilder,
};

/// Largest client response accepted (JSON), for registration or authentication.
pub const MAX_CLIENT_RESPONSE: usize = 64 * 1024;
/// Most passkeys one user may register.
pub const MAX_PASSKEYS_PER_USER: usize = 16;

/// The relying party and ceremony lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyConfig {
    /// The RP id: the site's domain (`example.com`), which passkeys are bound to.
    pub rp_id: String,
    /// The origin the browser reports (`https://example.com`), within the RP id.
    pub rp_origin: String,
    /// The name shown by the authenticator.
    pub rp_name: String,
    /// How long a started ceremony may be finished (default 5 minutes, at most 10).
    pub ceremony_ttl: Duration,
}

impl PasskeyConfig {
    /// A configuration for `rp_id` at `rp_origin`, named `rp_name`, 5-minute ceremonies.
    pub fn new(rp_id: &str, rp_origin: &str, rp_name: &str) -> Self {
        Self {
            rp_id: rp_id.to_owned(),
            rp_origin: rp_origin.to_owned(),
            rp_name: rp_name.to_owned(),
            ceremony_ttl: Duration::from_secs(300),
        }
    }
}

/// A passkey authentication that succeeded: whose, which credential, and the `amr`
/// values to put in the session or token (`swk`, `mfa`).
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
}

/// Parses a client response: at most [`MAX_CLIENT_RESPONSE`] bytes of JSON. Public for
/// the fuzz target; the ceremonies call it.
pub fn parse_authentication_response(json: &[u8]) -> Result<PublicKeyCredential, Error> {
    parse(json)
}

fn parse<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, Error> {
    if json.len() > MAX_CLIENT_RESPONSE {
        return Err(Error::PasskeyRefused);
    }
    serde_json::from_slice(json).map_err(|_| Error::PasskeyRefused)
}

fn serialize<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|_| Error::Store("passkey state could not be encoded"))
}

impl Passkeys {
    /// A service for `config`, keeping state in `store`.
    pub fn new(
        config: &PasskeyConfig,
        store: Arc<dyn PasskeyStore>,
        events: Arc<dyn EventSink>,
        clock: SharedClock,
    ) -> Result<Self, Error> {
        if config.ceremony_ttl.is_zero() || config.ceremony_ttl > Duration::from_secs(600) {
            return Err(Error::Config("passkey ceremonies last up to 10 minutes"));
        }
        let origin = Url::parse(&config.rp_origin)
            .map_err(|_| Error::Config("passkeys: the origin is not a URL"))?;
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
        })
    }

    /// The WebAuthn user handle for `user`: the first 16 bytes of SHA-256 over a tag and
    /// the user id, so authenticators never hold the id itself.
    fn user_handle(user: &UserId) -> Uuid {
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            format!("mcpsec-webauthn-user-v1\0{user}").as_bytes(),
        );
        let mut bytes = [0u8; 16];
        for (b, d) in bytes.iter_mut().zip(digest.as_ref()) {
            *b = *d;
        }
        Uuid::from_bytes(bytes)
    }

    async fn passkeys(&self, user: &UserId) -> Result<Vec<(StoredPasskey, Passkey)>, Error> {
        let stored = self
            .store
            .credentials(user)
            .await
            .map_err(|e| Error::Store(e.0))?;
        stored
            .into_iter()
            .map(|s| {
                let passkey = serde_json::from_slice(&s.passkey)
                    .map_err(|_| Error::Store("stored passkey could not be decoded"))?;
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
        self.store
            .put_ceremony(&id, record, now)
            .await
            .map_err(|e| Error::Store(e.0))?;
        Ok(id)
    }

    /// Takes the ceremony `id` (single use) and checks it is `kind`, `user`'s, and live.
    async fn take(
        &self,
        user: &UserId,
        id: &CeremonyId,
        kind: CeremonyKind,
    ) -> Result<SecretBytes, Error> {
        let record = self
            .store
            .take_ceremony(id)
            .await
            .map_err(|e| Error::Store(e.0))?
            .ok_or(Error::CeremonyUnknown)?;
        if record.kind != kind || &record.user != user || self.clock.now() >= record.expires_at {
            return Err(Error::CeremonyUnknown);
        }
        Ok(record.state)
    }

    /// Starts registering a passkey for `user` (`name` and `display_name` are shown by the
    /// authenticator). Send the options to the browser's `navigator.credentials.create`
    /// and keep the id for [`finish_registration`](Self::finish_registration).
    pub async fn start_registration(
        &self,
        user: &UserId,
        name: &str,
        display_name: &str,
    ) -> Result<(CeremonyId, CreationChallengeResponse), Error> {
        let existing = self.passkeys(user).await?;
        if existing.len() >= MAX_PASSKEYS_PER_USER {
            return Err(Error::Config("too many passkeys for this user"));
        }
        let exclude = existing.iter().map(|(_, p)| p.cred_id().clone()).collect();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(Self::user_handle(user), name, display_name, Some(exclude))
            .map_err(|_| Error::Config("passkey registration could not start"))?;
        let id = self
            .begin(user, CeremonyKind::Registration, serialize(&state)?)
            .await?;
        Ok((id, options))
    }

    /// Finishes registration with the browser's response (JSON of the
    /// `PublicKeyCredential`, at most 64 KiB). Returns the new credential id; reports an
    /// `authn_mfa_changed` event.
    pub async fn finish_registration(
        &self,
        user: &UserId,
        id: &CeremonyId,
        response: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let result = self.register(user, id, response).await;
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
        user: &UserId,
        id: &CeremonyId,
        response: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let state = self.take(user, id, CeremonyKind::Registration).await?;
        let state: PasskeyRegistration =
            serde_json::from_slice(state.expose_secret()).map_err(|_| Error::CeremonyUnknown)?;
        let response: RegisterPublicKeyCredential = parse(response)?;
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
        if !self
            .store
            .add_credential(user, stored)
            .await
            .map_err(|e| Error::Store(e.0))?
        {
            return Err(Error::PasskeyRefused);
        }
        Ok(credential_id)
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
    /// than the stored one (a cloned authenticator, or a concurrent replay) is refused.
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
                self.report(
                    EventKind::AuthnMfaFail,
                    Outcome::Failure,
                    user,
                    Some(reason(e)),
                    "passkey",
                )
                .await;
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
            .map_err(|_| Error::PasskeyRefused)?;
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
            .map_err(|e| Error::Store(e.0))?
        {
            return Err(Error::PasskeyCounter);
        }
        Ok(PasskeyAuthenticated {
            user: user.clone(),
            credential_id: stored.credential_id,
            methods: AuthMethods::of(&[AuthMethod::Swk, AuthMethod::Mfa]),
            at: self.clock.now(),
        })
    }

    /// Removes `user`'s passkey `credential_id`; reports `authn_mfa_changed`.
    pub async fn remove(&self, user: &UserId, credential_id: &[u8]) -> Result<bool, Error> {
        let removed = self
            .store
            .remove_credential(user, credential_id)
            .await
            .map_err(|e| Error::Store(e.0))?;
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
        let mut event = SecurityEvent::new(kind, outcome, self.clock.now())
            .with_actor(Actor::User { user: user.clone() });
        if let Ok(action) = Label::new(action) {
            event = event.with_action(action);
        }
        if let Some(reason) = reason {
            event = event.with_reason(reason);
        }
        let _ = self.events.record(event).await;
    }
}

fn reason(error: &Error) -> ReasonCode {
    match error {
        Error::CeremonyUnknown => ReasonCode::Reused,
        Error::PasskeyCounter => ReasonCode::Replayed,
        Error::NoPasskey => ReasonCode::UnknownCredential,
        _ => ReasonCode::BadSignature,
    }
}
