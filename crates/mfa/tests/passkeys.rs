//! Passkeys end to end with a minimal software authenticator (ES256 on aws-lc-rs, `none`
//! attestation, clientDataJSON and authenticatorData built by hand): registration,
//! authentication, single-use ceremonies, expiry, wrong origin, counter regression,
//! events, step-up; and the memory store's conformance suite.
#![cfg(all(feature = "passkeys", feature = "testkit"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod support;
use support::own;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use mcpsec_access::{Action, AuthMethod, Authentication, CredentialKind, Role, ScopeSet};
use mcpsec_core::{
    Clock, EventKind, ManualClock, MemorySink, OrgId, SecretBytes, Severity, UserId,
};
use mcpsec_mfa::webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};
use mcpsec_mfa::{
    CeremonyId, CeremonyLimits, Error, MAX_PASSKEYS_PER_USER, MAX_USER_NAME, MemoryPasskeyStore,
    PasskeyConfig, PasskeyStore, Passkeys, StepUpPolicy,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const RP_ID: &str = "example.com";
const ORIGIN: &str = "https://example.com";

/// A software authenticator holding one ES256 credential.
struct SoftAuthenticator {
    key: EcdsaKeyPair,
    credential_id: Vec<u8>,
    counter: u32,
    origin: String,
    /// The RP id whose hash goes in authenticatorData.
    rp_id: String,
    /// Whether the UV flag is set (user verification performed).
    user_verified: bool,
}

impl SoftAuthenticator {
    fn new(origin: &str) -> Self {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let mut credential_id = vec![0u8; 32];
        aws_lc_rs::rand::fill(&mut credential_id).unwrap();
        Self {
            key,
            credential_id,
            counter: 0,
            origin: origin.to_owned(),
            rp_id: RP_ID.to_owned(),
            user_verified: true,
        }
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        }))
        .unwrap()
    }

    /// rpIdHash, flags (UP | UV, and AT when attesting), the counter.
    fn auth_data(&self, attested: bool) -> Vec<u8> {
        let mut data = digest(&SHA256, self.rp_id.as_bytes()).as_ref().to_vec();
        let flags = if self.user_verified { 0x05 } else { 0x01 };
        data.push(if attested { flags | 0x40 } else { flags });
        data.extend_from_slice(&self.counter.to_be_bytes());
        data
    }

    /// The COSE_Key (EC2, ES256, P-256) in CBOR.
    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.public_key().as_ref();
        assert_eq!((point.len(), point[0]), (65, 4), "uncompressed P-256 point");
        let mut key = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20];
        key.extend_from_slice(&point[1..33]);
        key.extend_from_slice(&[0x22, 0x58, 0x20]);
        key.extend_from_slice(&point[33..65]);
        key
    }

    fn register(&mut self, options: &CreationChallengeResponse) -> Vec<u8> {
        let options = serde_json::to_value(options).unwrap();
        assert_eq!(options["publicKey"]["rp"]["id"], RP_ID);
        let challenge = options["publicKey"]["challenge"].as_str().unwrap();
        let client_data = self.client_data("webauthn.create", challenge);
        let mut auth_data = self.auth_data(true);
        auth_data.extend_from_slice(&[0u8; 16]); // AAGUID
        auth_data.extend_from_slice(
            &u16::try_from(self.credential_id.len())
                .unwrap()
                .to_be_bytes(),
        );
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend_from_slice(&self.cose_key());
        // {"fmt": "none", "attStmt": {}, "authData": bytes}
        let mut attestation = vec![0xa3, 0x63];
        attestation.extend_from_slice(b"fmt");
        attestation.push(0x64);
        attestation.extend_from_slice(b"none");
        attestation.push(0x67);
        attestation.extend_from_slice(b"attStmt");
        attestation.extend_from_slice(&[0xa0, 0x68]);
        attestation.extend_from_slice(b"authData");
        attestation.push(0x59);
        attestation.extend_from_slice(&u16::try_from(auth_data.len()).unwrap().to_be_bytes());
        attestation.extend_from_slice(&auth_data);
        serde_json::to_vec(&json!({
            "id": B64.encode(&self.credential_id),
            "rawId": B64.encode(&self.credential_id),
            "type": "public-key",
            "response": {
                "attestationObject": B64.encode(&attestation),
                "clientDataJSON": B64.encode(&client_data),
            },
            "extensions": {},
        }))
        .unwrap()
    }

    fn assert(&mut self, options: &RequestChallengeResponse) -> Vec<u8> {
        self.counter += 1;
        self.sign(options)
    }

    /// An assertion with the current counter (no increment): what a clone would send.
    fn sign(&self, options: &RequestChallengeResponse) -> Vec<u8> {
        let options = serde_json::to_value(options).unwrap();
        let allowed: Vec<&Value> = options["publicKey"]["allowCredentials"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        assert!(
            allowed
                .iter()
                .any(|c| c["id"] == B64.encode(&self.credential_id))
        );
        let challenge = options["publicKey"]["challenge"].as_str().unwrap();
        let client_data = self.client_data("webauthn.get", challenge);
        let auth_data = self.auth_data(false);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(digest(&SHA256, &client_data).as_ref());
        let signature = self.key.sign(&SystemRandom::new(), &signed).unwrap();
        serde_json::to_vec(&json!({
            "id": B64.encode(&self.credential_id),
            "rawId": B64.encode(&self.credential_id),
            "type": "public-key",
            "response": {
                "authenticatorData": B64.encode(&auth_data),
                "clientDataJSON": B64.encode(&client_data),
                "signature": B64.encode(signature.as_ref()),
                "userHandle": null,
            },
            "extensions": {},
        }))
        .unwrap()
    }
}

struct Fixture {
    passkeys: Passkeys,
    store: Arc<MemoryPasskeyStore>,
    events: Arc<MemorySink>,
    clock: ManualClock,
    user: UserId,
}

const HANDLE_KEY: [u8; 32] = [7; 32];

fn config() -> PasskeyConfig {
    PasskeyConfig::new(
        RP_ID,
        ORIGIN,
        "Example",
        SecretBytes::from_slice(&HANDLE_KEY),
    )
}

fn fixture() -> Fixture {
    let store = Arc::new(MemoryPasskeyStore::new());
    let events = Arc::new(MemorySink::new());
    let clock = ManualClock::at_unix(1_767_225_600);
    let passkeys = Passkeys::new(
        &config(),
        store.clone(),
        events.clone(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    Fixture {
        passkeys,
        store,
        events,
        clock,
        user: UserId::new("ada").unwrap(),
    }
}

async fn registered(f: &Fixture) -> SoftAuthenticator {
    let mut authenticator = SoftAuthenticator::new(ORIGIN);
    let (id, options) = f
        .passkeys
        .start_registration(&own(&f.user), "ada", "Ada")
        .await
        .unwrap();
    let response = authenticator.register(&options);
    let credential = f
        .passkeys
        .finish_registration(&own(&f.user), &id, &response)
        .await
        .unwrap();
    assert_eq!(credential, authenticator.credential_id);
    authenticator
}

#[tokio::test]
async fn register_then_authenticate_and_step_up() {
    let f = fixture();
    let mut authenticator = registered(&f).await;
    let (id, options) = f.passkeys.start_authentication(&f.user).await.unwrap();
    let response = authenticator.assert(&options);
    let done = f
        .passkeys
        .finish_authentication(&f.user, &id, &response)
        .await
        .unwrap();
    assert_eq!(done.user, f.user);
    assert_eq!(done.credential_id, authenticator.credential_id);
    assert!(done.methods.contains(AuthMethod::Hwk) && done.methods.contains(AuthMethod::User));
    let stored = f.store.credentials(&f.user).await.unwrap();
    assert_eq!(stored[0].counter, 1, "the counter is recorded");

    let kinds: Vec<EventKind> = f.events.events().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::AuthnMfaChanged, EventKind::AuthnMfaSuccess]
    );

    // The passkey's amr satisfies step-up for an administrative action.
    let admin = Action::ALL.into_iter().find(|a| a.is_admin()).unwrap();
    let principal = mcpsec_access::danger::principal(
        f.user.clone(),
        OrgId::new("acme").unwrap(),
        Role::OrgAdmin,
        ScopeSet::ALL,
        CredentialKind::AccessToken,
        Authentication {
            methods: done.methods,
            at: Some(done.at),
        },
    );
    assert!(
        StepUpPolicy::new()
            .check(&principal, admin, f.clock.now())
            .is_ok()
    );
}

#[tokio::test]
async fn a_ceremony_is_single_use() {
    let f = fixture();
    let mut authenticator = registered(&f).await;
    let (id, options) = f.passkeys.start_authentication(&f.user).await.unwrap();
    let response = authenticator.assert(&options);
    f.passkeys
        .finish_authentication(&f.user, &id, &response)
        .await
        .unwrap();
    assert_eq!(
        f.passkeys
            .finish_authentication(&f.user, &id, &response)
            .await,
        Err(Error::CeremonyUnknown)
    );
}

#[tokio::test]
async fn passkey_ceremony_finished_32_times_concurrently_succeeds_once() {
    let f = fixture();
    let mut authenticator = registered(&f).await;
    let (id, options) = f.passkeys.start_authentication(&f.user).await.unwrap();
    let response = Arc::new(authenticator.assert(&options));
    let passkeys = Arc::new(f.passkeys.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (p, r, id, user) = (
            passkeys.clone(),
            response.clone(),
            id.clone(),
            f.user.clone(),
        );
        tasks.spawn(async move { p.finish_authentication(&user, &id, &r).await.is_ok() });
    }
    let mut wins = 0;
    while let Some(won) = tasks.join_next().await {
        wins += usize::from(won.unwrap());
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn a_cloned_authenticator_is_refused_by_its_counter() {
    let f = fixture();
    let mut authenticator = registered(&f).await;
    let (first, options) = f.passkeys.start_authentication(&f.user).await.unwrap();
    let response = authenticator.assert(&options);
    f.passkeys
        .finish_authentication(&f.user, &first, &response)
        .await
        .unwrap();
    // Same counter again, on a fresh ceremony: a clone, or a replayed signing.
    let (second, options) = f.passkeys.start_authentication(&f.user).await.unwrap();
    let cloned = authenticator.sign(&options);
    assert_eq!(
        f.passkeys
            .finish_authentication(&f.user, &second, &cloned)
            .await,
        Err(Error::PasskeyCounter)
    );
    let last = f.events.events().last().cloned().unwrap();
    assert_eq!(
        (last.kind, last.severity),
        (EventKind::AuthnMfaFail, Severity::Critical),
        "a possible clone is a critical event"
    );
    let stored = f.store.credentials(&f.user).await.unwrap();
    assert_eq!(
        stored[0].counter, 1,
        "the counter is not moved by the clone"
    );
}

#[tokio::test]
async fn two_ceremonies_racing_on_one_counter_update_once() {
    let f = fixture();
    let mut authenticator = registered(&f).await;
    let (a, options_a) = f.passkeys.start_authentication(&f.user).await.unwrap();
    let (b, options_b) = f.passkeys.start_authentication(&f.user).await.unwrap();
    authenticator.counter = 7;
    let response_a = authenticator.sign(&options_a);
    let response_b = authenticator.sign(&options_b);
    let ok_a = f
        .passkeys
        .finish_authentication(&f.user, &a, &response_a)
        .await;
    let ok_b = f
        .passkeys
        .finish_authentication(&f.user, &b, &response_b)
        .await;
    assert!(ok_a.is_ok());
    assert_eq!(ok_b, Err(Error::PasskeyCounter));
    let last = f.events.events().last().cloned().unwrap();
    assert_eq!(last.severity, Severity::Critical);
}

#[tokio::test]
async fn an_expired_ceremony_is_refused() {
    let f = fixture();
    let mut authenticator = registered(&f).await;
    let (id, options) = f.passkeys.start_authentication(&f.user).await.unwrap();
    let response = authenticator.assert(&options);
    f.clock.advance(Duration::from_secs(301));
    assert_eq!(
        f.passkeys
            .finish_authentication(&f.user, &id, &response)
            .await,
        Err(Error::CeremonyUnknown)
    );
}

#[tokio::test]
async fn a_phishing_origin_is_refused() {
    let f = fixture();
    let mut authenticator = registered(&f).await;
    authenticator.origin = "https://examp1e.com".to_owned();
    let (id, options) = f.passkeys.start_authentication(&f.user).await.unwrap();
    let response = authenticator.assert(&options);
    assert_eq!(
        f.passkeys
            .finish_authentication(&f.user, &id, &response)
            .await,
        Err(Error::PasskeyRefused)
    );
    let last = f.events.events().last().cloned().unwrap();
    assert_eq!(last.kind, EventKind::AuthnMfaFail);
}

#[tokio::test]
async fn another_users_ceremony_and_wrong_kind_are_refused() {
    let f = fixture();
    let mut authenticator = registered(&f).await;
    let (id, options) = f.passkeys.start_authentication(&f.user).await.unwrap();
    let response = authenticator.assert(&options);
    let mallory = UserId::new("mallory").unwrap();
    assert_eq!(
        f.passkeys
            .finish_authentication(&mallory, &id, &response)
            .await,
        Err(Error::CeremonyUnknown)
    );
    let (reg, _) = f
        .passkeys
        .start_registration(&own(&f.user), "ada", "Ada")
        .await
        .unwrap();
    assert_eq!(
        f.passkeys
            .finish_authentication(&f.user, &reg, &response)
            .await,
        Err(Error::CeremonyUnknown)
    );
}

#[tokio::test]
async fn malformed_and_oversized_responses_are_refused() {
    let f = fixture();
    let _authenticator = registered(&f).await;
    for body in [b"{".to_vec(), b"null".to_vec(), vec![b' '; 64 * 1024 + 1]] {
        let (id, _) = f.passkeys.start_authentication(&f.user).await.unwrap();
        assert_eq!(
            f.passkeys.finish_authentication(&f.user, &id, &body).await,
            Err(Error::PasskeyRefused)
        );
    }
    assert_eq!(
        f.passkeys
            .start_authentication(&UserId::new("nobody").unwrap())
            .await
            .map(|_| ()),
        Err(Error::NoPasskey)
    );
    assert!(CeremonyId::parse("../etc").is_err());
    assert!(CeremonyId::parse(&"a".repeat(65)).is_err());
}

#[tokio::test]
async fn a_credential_id_cannot_be_registered_twice() {
    let f = fixture();
    let mut authenticator = registered(&f).await;
    // webauthn-rs excludes known credentials; a second user with the same credential id
    // (a confused or malicious client) is refused by the store.
    let eve = UserId::new("eve").unwrap();
    let (id, options) = f
        .passkeys
        .start_registration(&own(&eve), "eve", "Eve")
        .await
        .unwrap();
    let response = authenticator.register(&options);
    assert_eq!(
        f.passkeys
            .finish_registration(&own(&eve), &id, &response)
            .await,
        Err(Error::PasskeyRefused)
    );
    assert!(
        f.passkeys
            .remove(&own(&f.user), &authenticator.credential_id)
            .await
            .unwrap()
    );
    assert!(f.store.credentials(&f.user).await.unwrap().is_empty());
}

mcpsec_mfa::passkey_store_suite!(
    memory_passkey_store,
    |_: mcpsec_core::testkit::Namespace| async {
        Arc::new(MemoryPasskeyStore::new()) as Arc<dyn mcpsec_mfa::PasskeyStore>
    }
);

#[tokio::test]
async fn user_verification_is_required_for_registration_and_authentication() {
    let f = fixture();
    // Registration with UP only (flags 0x41: UP | AT, no UV).
    let mut unverified = SoftAuthenticator::new(ORIGIN);
    unverified.user_verified = false;
    let (id, options) = f
        .passkeys
        .start_registration(&own(&f.user), "ada", "Ada")
        .await
        .unwrap();
    let response = unverified.register(&options);
    assert_eq!(
        f.passkeys
            .finish_registration(&own(&f.user), &id, &response)
            .await,
        Err(Error::PasskeyRefused)
    );
    assert!(f.store.credentials(&f.user).await.unwrap().is_empty());

    // Authentication with UP only (flags 0x01).
    let mut authenticator = registered(&f).await;
    authenticator.user_verified = false;
    let (id, options) = f.passkeys.start_authentication(&f.user).await.unwrap();
    let response = authenticator.assert(&options);
    assert_eq!(
        f.passkeys
            .finish_authentication(&f.user, &id, &response)
            .await,
        Err(Error::PasskeyRefused)
    );
}

#[tokio::test]
async fn a_response_to_another_ceremonys_challenge_is_refused() {
    let f = fixture();
    let mut authenticator = registered(&f).await;
    let (a, options_a) = f.passkeys.start_authentication(&f.user).await.unwrap();
    let (b, _options_b) = f.passkeys.start_authentication(&f.user).await.unwrap();
    let for_a = authenticator.assert(&options_a);
    assert_eq!(
        f.passkeys.finish_authentication(&f.user, &b, &for_a).await,
        Err(Error::PasskeyRefused),
        "authentication: A's response finished against B"
    );
    assert!(
        f.passkeys
            .finish_authentication(&f.user, &a, &for_a)
            .await
            .is_ok(),
        "A itself is untouched"
    );

    let mut second = SoftAuthenticator::new(ORIGIN);
    let (a, options_a) = f
        .passkeys
        .start_registration(&own(&f.user), "ada", "Ada")
        .await
        .unwrap();
    let (b, _) = f
        .passkeys
        .start_registration(&own(&f.user), "ada", "Ada")
        .await
        .unwrap();
    let for_a = second.register(&options_a);
    assert_eq!(
        f.passkeys
            .finish_registration(&own(&f.user), &b, &for_a)
            .await,
        Err(Error::PasskeyRefused),
        "registration: A's response finished against B"
    );
    assert!(
        f.passkeys
            .finish_registration(&own(&f.user), &a, &for_a)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_wrong_rp_id_hash_is_refused() {
    let f = fixture();
    let mut elsewhere = SoftAuthenticator::new(ORIGIN);
    elsewhere.rp_id = "evil.example".to_owned();
    let (id, options) = f
        .passkeys
        .start_registration(&own(&f.user), "ada", "Ada")
        .await
        .unwrap();
    let response = elsewhere.register(&options);
    assert_eq!(
        f.passkeys
            .finish_registration(&own(&f.user), &id, &response)
            .await,
        Err(Error::PasskeyRefused),
        "registration"
    );

    let mut authenticator = registered(&f).await;
    authenticator.rp_id = "evil.example".to_owned();
    let (id, options) = f.passkeys.start_authentication(&f.user).await.unwrap();
    let response = authenticator.assert(&options);
    assert_eq!(
        f.passkeys
            .finish_authentication(&f.user, &id, &response)
            .await,
        Err(Error::PasskeyRefused),
        "authentication"
    );
}

#[tokio::test]
async fn a_phishing_origin_is_refused_at_registration() {
    let f = fixture();
    let mut phished = SoftAuthenticator::new("https://examp1e.com");
    let (id, options) = f
        .passkeys
        .start_registration(&own(&f.user), "ada", "Ada")
        .await
        .unwrap();
    let response = phished.register(&options);
    assert_eq!(
        f.passkeys
            .finish_registration(&own(&f.user), &id, &response)
            .await,
        Err(Error::PasskeyRefused)
    );
    assert!(f.store.credentials(&f.user).await.unwrap().is_empty());
    let last = f.events.events().last().cloned().unwrap();
    assert_eq!(last.kind, EventKind::AuthnMfaFail);
}

#[tokio::test]
async fn a_registration_ceremony_is_single_use_and_expires() {
    let f = fixture();
    let mut authenticator = SoftAuthenticator::new(ORIGIN);
    let (id, options) = f
        .passkeys
        .start_registration(&own(&f.user), "ada", "Ada")
        .await
        .unwrap();
    let response = authenticator.register(&options);
    f.passkeys
        .finish_registration(&own(&f.user), &id, &response)
        .await
        .unwrap();
    assert_eq!(
        f.passkeys
            .finish_registration(&own(&f.user), &id, &response)
            .await,
        Err(Error::CeremonyUnknown),
        "single use"
    );

    let mut late = SoftAuthenticator::new(ORIGIN);
    let (id, options) = f
        .passkeys
        .start_registration(&own(&f.user), "ada", "Ada")
        .await
        .unwrap();
    let response = late.register(&options);
    f.clock.advance(Duration::from_secs(301));
    assert_eq!(
        f.passkeys
            .finish_registration(&own(&f.user), &id, &response)
            .await,
        Err(Error::CeremonyUnknown),
        "expired"
    );
    assert_eq!(f.store.credentials(&f.user).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_passkey_cap_holds_across_concurrent_ceremonies() {
    let f = fixture();
    for _ in 1..MAX_PASSKEYS_PER_USER {
        registered(&f).await;
    }
    // One slot left; two ceremonies both started under the cap.
    let (a, options_a) = f
        .passkeys
        .start_registration(&own(&f.user), "ada", "Ada")
        .await
        .unwrap();
    let (b, options_b) = f
        .passkeys
        .start_registration(&own(&f.user), "ada", "Ada")
        .await
        .unwrap();
    let response_a = SoftAuthenticator::new(ORIGIN).register(&options_a);
    let response_b = SoftAuthenticator::new(ORIGIN).register(&options_b);
    assert!(
        f.passkeys
            .finish_registration(&own(&f.user), &a, &response_a)
            .await
            .is_ok()
    );
    assert_eq!(
        f.passkeys
            .finish_registration(&own(&f.user), &b, &response_b)
            .await,
        Err(Error::TooManyPasskeys)
    );
    assert_eq!(
        f.store.credentials(&f.user).await.unwrap().len(),
        MAX_PASSKEYS_PER_USER
    );
    assert_eq!(
        f.passkeys
            .start_registration(&own(&f.user), "ada", "Ada")
            .await
            .map(|_| ()),
        Err(Error::TooManyPasskeys)
    );
}

fn user_handle(options: &CreationChallengeResponse) -> String {
    let options = serde_json::to_value(options).unwrap();
    options["publicKey"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn user_handles_are_keyed_and_stable() {
    let f = fixture();
    let (_, first) = f
        .passkeys
        .start_registration(&own(&f.user), "ada", "Ada")
        .await
        .unwrap();
    let (_, again) = f
        .passkeys
        .start_registration(&own(&f.user), "ada", "Ada")
        .await
        .unwrap();
    let handle = user_handle(&first);
    assert_eq!(handle, user_handle(&again), "stable for a user");
    let bytes = B64.decode(&handle).unwrap();
    assert_eq!(bytes.len(), 16);
    assert!(!handle.contains("ada") && !bytes.windows(3).any(|w| w == b"ada"));
    let unkeyed = digest(&SHA256, b"mcpsec-webauthn-user-v1\0ada");
    assert_ne!(
        bytes,
        unkeyed.as_ref()[..16],
        "not an unkeyed hash of the id"
    );

    let mut other = config();
    other.user_handle_key = SecretBytes::from_slice(&[8; 32]);
    let elsewhere = Passkeys::new(
        &other,
        Arc::new(MemoryPasskeyStore::new()),
        Arc::new(MemorySink::new()),
        Arc::new(f.clock.clone()),
    )
    .unwrap();
    let (_, keyed) = elsewhere
        .start_registration(&own(&f.user), "ada", "Ada")
        .await
        .unwrap();
    assert_ne!(user_handle(&keyed), handle, "another key, another handle");
    // Authenticators store the handle: its derivation must never change. This is the
    // layout from before mcpsec-core's MacKey, computed independently.
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[8; 32]);
    let expected = aws_lc_rs::hmac::sign(
        &key,
        format!("mcpsec-webauthn-user-v2\0{}", f.user).as_bytes(),
    );
    assert_eq!(
        B64.decode(user_handle(&keyed)).unwrap(),
        expected.as_ref()[..16],
        "the user-handle derivation is unchanged"
    );
    let (_, bob) = f
        .passkeys
        .start_registration(&own(&UserId::new("bob").unwrap()), "bob", "Bob")
        .await
        .unwrap();
    assert_ne!(user_handle(&bob), handle);
}

#[tokio::test]
async fn a_wrong_user_finish_does_not_burn_the_ceremony() {
    let f = fixture();
    let mut authenticator = registered(&f).await;
    let (id, options) = f.passkeys.start_authentication(&f.user).await.unwrap();
    let response = authenticator.assert(&options);
    let mallory = UserId::new("mallory").unwrap();
    assert_eq!(
        f.passkeys
            .finish_authentication(&mallory, &id, &response)
            .await,
        Err(Error::CeremonyUnknown)
    );
    assert!(
        f.passkeys
            .finish_authentication(&f.user, &id, &response)
            .await
            .is_ok(),
        "the owner can still finish"
    );
}

#[tokio::test]
async fn open_ceremonies_are_capped_per_user_and_in_total() {
    let f = fixture();
    let mut authenticator = registered(&f).await;
    let (oldest, options) = f.passkeys.start_authentication(&f.user).await.unwrap();
    let stale = authenticator.assert(&options);
    let mut newest = None;
    for _ in 0..CeremonyLimits::default().per_user {
        newest = Some(f.passkeys.start_authentication(&f.user).await.unwrap());
    }
    assert_eq!(
        f.passkeys
            .finish_authentication(&f.user, &oldest, &stale)
            .await,
        Err(Error::CeremonyUnknown),
        "the oldest was dropped"
    );
    assert_eq!(
        f.store.open_ceremonies(),
        CeremonyLimits::default().per_user
    );
    let (id, options) = newest.unwrap();
    let response = authenticator.assert(&options);
    assert!(
        f.passkeys
            .finish_authentication(&f.user, &id, &response)
            .await
            .is_ok()
    );

    // The total is the memory backend's own bound, not a limit every backend keeps.
    let small = config();
    let store = Arc::new(MemoryPasskeyStore::with_max_ceremonies(2));
    let limited = Passkeys::new(
        &small,
        store.clone(),
        Arc::new(MemorySink::new()),
        Arc::new(f.clock.clone()),
    )
    .unwrap();
    for name in ["u1", "u2"] {
        limited
            .start_registration(&own(&UserId::new(name).unwrap()), name, name)
            .await
            .unwrap();
    }
    assert_eq!(
        limited
            .start_registration(&own(&UserId::new("u3").unwrap()), "u3", "u3")
            .await
            .map(|_| ()),
        Err(Error::TooManyCeremonies)
    );
    f.clock.advance(Duration::from_secs(301));
    assert!(
        limited
            .start_registration(&own(&UserId::new("u3").unwrap()), "u3", "u3")
            .await
            .is_ok(),
        "expired ceremonies make room"
    );
    assert_eq!(store.open_ceremonies(), 1);
}

#[tokio::test]
async fn configuration_and_names_are_checked() {
    let store = || Arc::new(MemoryPasskeyStore::new());
    let build = |config: &PasskeyConfig| {
        Passkeys::new(
            config,
            store(),
            Arc::new(MemorySink::new()),
            Arc::new(ManualClock::at_unix(1_767_225_600)),
        )
        .map(|_| ())
    };
    assert!(build(&config()).is_ok());
    let mut short = config();
    short.user_handle_key = SecretBytes::from_slice(&[1; 31]);
    assert!(build(&short).is_err(), "a short user-handle key");
    let plain = PasskeyConfig::new(
        RP_ID,
        "http://example.com",
        "Example",
        SecretBytes::from_slice(&HANDLE_KEY),
    );
    assert!(build(&plain).is_err(), "http outside localhost");
    let local = PasskeyConfig::new(
        "localhost",
        "http://localhost:8080",
        "Dev",
        SecretBytes::from_slice(&HANDLE_KEY),
    );
    assert!(build(&local).is_ok(), "http on localhost, for development");
    let mut long = config();
    long.ceremony_ttl = Duration::from_secs(601);
    assert!(build(&long).is_err());
    assert!(
        !format!("{:?}", config()).contains("7, 7"),
        "the key is redacted"
    );

    let f = fixture();
    for (name, display) in [
        ("", "Ada"),
        ("ada", ""),
        (&*"a".repeat(MAX_USER_NAME + 1), "Ada"),
        ("ada\n", "Ada"),
    ] {
        assert!(
            matches!(
                f.passkeys
                    .start_registration(&own(&f.user), name, display)
                    .await,
                Err(Error::Config(_))
            ),
            "{name:?} {display:?}"
        );
    }
}

mod parsing {
    use super::*;
    use mcpsec_mfa::{MAX_CLIENT_RESPONSE, parse_registration_response};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn ceremony_ids_parse_exactly_short_base64url(text in "\\PC{0,80}") {
            let expected = !text.is_empty()
                && text.len() <= 64
                && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            let parsed = CeremonyId::parse(&text);
            prop_assert_eq!(parsed.is_ok(), expected);
            if let Ok(id) = parsed {
                prop_assert_eq!(id.as_str(), text.as_str());
            }
        }

        #[test]
        fn base64url_ids_round_trip(text in "[A-Za-z0-9_-]{1,64}") {
            let id = CeremonyId::parse(&text).unwrap();
            prop_assert_eq!(CeremonyId::parse(&id.to_string()).unwrap(), id);
        }

        #[test]
        fn registration_responses_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_registration_response(&bytes);
        }
    }

    #[test]
    fn generated_ids_parse_and_oversized_registrations_are_refused() {
        for _ in 0..16 {
            let id = CeremonyId::generate().unwrap();
            assert_eq!(CeremonyId::parse(id.as_str()).unwrap(), id);
        }
        assert_eq!(
            parse_registration_response(&vec![b' '; MAX_CLIENT_RESPONSE + 1]).map(|_| ()),
            Err(Error::PasskeyRefused)
        );
        let mut authenticator = SoftAuthenticator::new(ORIGIN);
        let config = config();
        let passkeys = Passkeys::new(
            &config,
            Arc::new(MemoryPasskeyStore::new()),
            Arc::new(MemorySink::new()),
            Arc::new(ManualClock::at_unix(1_767_225_600)),
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (_, options) = runtime
            .block_on(passkeys.start_registration(&own(&UserId::new("ada").unwrap()), "ada", "Ada"))
            .unwrap();
        let response = authenticator.register(&options);
        assert!(parse_registration_response(&response).is_ok());
    }
}
