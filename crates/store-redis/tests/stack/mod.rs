//! One service instance for the fleet and fault tests: an API-key service and a TOTP
//! verifier whose attempt counter (and replay guard) are whatever the test passes, over a
//! key store and memberships shared by every instance (the durable store is not what these
//! tests are about; the counters are).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests; not every test file uses every helper"
)]

use mcpsec_access::{
    AuthMethods, Authentication, Authorized, CredentialKind, MemoryMemberships, Resource, Role,
    ScopeSet, authorize_as, perm,
};
use mcpsec_apikeys::{
    ApiKeys, Env, HashMode, KeyHasher, LockoutPolicy, MemoryApiKeyStore, NewKey, Pepper, Source,
};
use mcpsec_core::{
    AttemptCounter, ManualClock, NullSink, OrgId, SecretBytes, SecretString, SharedClock, UserId,
};
use mcpsec_mfa::{AttemptBudget, TotpConfig, TotpReplayGuard, TotpSecret, TotpVerifier};
use std::sync::Arc;
use std::time::Duration;

/// Failures from one source before it is throttled.
pub const SOURCE_THRESHOLD: u64 = 4;
/// Wrong TOTP codes before a user is paused.
pub const TOTP_FAILURES: u64 = 3;

/// The lockout every instance runs: throttled after [`SOURCE_THRESHOLD`] failures, 1 s
/// doubling up to a minute.
pub fn lockout() -> LockoutPolicy {
    LockoutPolicy {
        source_threshold: SOURCE_THRESHOLD,
        base_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(60),
        ..LockoutPolicy::default()
    }
}

/// The TOTP budget every instance runs: paused after [`TOTP_FAILURES`] wrong codes.
pub fn budget() -> AttemptBudget {
    AttemptBudget {
        max_failures: TOTP_FAILURES,
        ..AttemptBudget::default()
    }
}

/// What every instance shares besides Redis: the key records, the memberships, the time.
#[derive(Clone)]
pub struct Shared {
    pub keys: Arc<MemoryApiKeyStore>,
    pub members: Arc<MemoryMemberships>,
    pub clock: ManualClock,
}

impl Shared {
    pub fn new() -> Self {
        let members = MemoryMemberships::new();
        members.set(victim(), acme(), Role::Developer);
        Self {
            keys: Arc::new(MemoryApiKeyStore::new()),
            members: Arc::new(members),
            clock: ManualClock::at_unix(1_767_225_600),
        }
    }

    pub fn clock(&self) -> SharedClock {
        Arc::new(self.clock.clone())
    }

    pub fn unix(&self) -> u64 {
        use mcpsec_core::Clock;
        self.clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }
}

/// One instance: its own API-key service and TOTP verifier.
pub struct Instance {
    pub keys: ApiKeys,
    pub totp: TotpVerifier,
}

/// An instance counting in `counter` and guarding TOTP steps in `guard`.
pub fn instance(
    shared: &Shared,
    counter: Arc<dyn AttemptCounter>,
    guard: Arc<dyn TotpReplayGuard>,
) -> Instance {
    let keys = ApiKeys::builder(
        shared.keys.clone(),
        shared.members.clone(),
        KeyHasher::new(pepper(), vec![], HashMode::HmacSha256).unwrap(),
        NullSink,
    )
    .clock(shared.clock())
    .attempt_counter(Arc::clone(&counter))
    .lockout(lockout())
    .build()
    .unwrap();
    let totp = TotpVerifier::new(
        guard,
        Arc::new(NullSink),
        shared.clock(),
        TotpConfig::default(),
    )
    .with_attempt_budget(counter, budget());
    Instance { keys, totp }
}

/// The fleet's pepper (every instance has the same).
pub fn pepper() -> Pepper {
    Pepper::new(1, SecretBytes::from_slice(&[7; 32])).unwrap()
}

pub fn victim() -> UserId {
    UserId::new("victim").unwrap()
}

pub fn acme() -> OrgId {
    OrgId::new("acme").unwrap()
}

/// `victim` managing their own keys.
pub fn victim_proof() -> Authorized<perm::UserManageTokens> {
    let p = mcpsec_access::danger::principal(
        victim(),
        acme(),
        Role::Developer,
        ScopeSet::parse_strict("user:token mcp:read").unwrap(),
        CredentialKind::AccessToken,
        Authentication {
            at: None,
            methods: AuthMethods::EMPTY,
        },
    );
    authorize_as(&p, &Resource::own(&p)).unwrap()
}

pub fn new_key() -> NewKey {
    NewKey {
        owner: victim(),
        org: acme(),
        scopes: "mcp:read".into(),
        env: Env::Live,
        name: "laptop".into(),
        expires_at: None,
    }
}

/// The victim's key, created through `on` (stored in the shared key store).
pub async fn victim_key(on: &Instance) -> SecretString {
    on.keys.create(&victim_proof(), new_key()).await.unwrap().0
}

/// A well-formed key (valid checksum) that no instance knows: minted by a service of the
/// attacker's own, so a guess with it reaches the lookup and is counted like a wrong
/// secret.
pub async fn attacker_key() -> SecretString {
    let shared = Shared::new();
    let own = instance(
        &shared,
        Arc::new(mcpsec_core::MemoryAttemptCounter::default()),
        Arc::new(mcpsec_mfa::MemoryReplayGuard::default()),
    );
    victim_key(&own).await
}

/// The source every guess comes from.
pub fn source() -> Source {
    Source::Ip(std::net::IpAddr::from([203, 0, 113, 9]))
}

/// A well-formed code that is none of the codes valid around `unix` (skew 1).
pub fn wrong_code(secret: &TotpSecret, unix: u64) -> String {
    let config = TotpConfig::default();
    let valid: Vec<String> = [unix.saturating_sub(30), unix, unix + 30]
        .iter()
        .map(|t| {
            secret
                .code_at(config, *t)
                .unwrap()
                .expose_secret()
                .to_owned()
        })
        .collect();
    (0..1_000_000u32)
        .map(|n| format!("{:06}", (n * 7_919 + 13) % 1_000_000))
        .find(|c| !valid.contains(c))
        .unwrap()
}
