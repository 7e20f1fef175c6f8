//! Shows mcpsec-mfa end to end for one user: a TOTP enrollment confirmed by a first code
//! and its secret stored sealed, a login with the next step's code, a replayed code
//! refused, and a recovery code that works once. Memory stores, a field-encryption
//! sealer and a manual clock: nothing waits and nothing leaves the process.
//!
//! Run: `cargo run -p example-mfa-login`

use mcpsec_access::{
    AuthMethod, AuthMethods, Authentication, CredentialKind, Resource, Role, ScopeSet,
    authorize_as, perm,
};
use mcpsec_core::{Clock, ManualClock, MemorySink, OrgId, SealContext, SecretBytes, UserId};
use mcpsec_fieldcrypt::{Category, FieldCrypt, KeyVersion, KeyringSpec};
use mcpsec_mfa::{
    Error, MemoryRecoveryStore, MemoryReplayGuard, PendingEnrollment, RecoveryCodes, TotpConfig,
    TotpSecret, TotpVerifier,
};
use std::sync::Arc;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 12 s into a 30 s step, so the "same step" below is visibly the same step.
    let clock = ManualClock::at_unix(1_767_225_612);
    let events = MemorySink::new();
    let config = TotpConfig::default(); // SHA-1, 6 digits, 30 s, ±1 step
    let ada = UserId::new("ada")?;

    // The sealer for TOTP secrets: field encryption with a `totp_secrets` keyring. A real
    // host loads its keyset from a file under a master key (`LocalKeyset`, see
    // example-fieldcrypt); a random in-memory key keeps this example self-contained.
    let crypt = FieldCrypt::builder(Arc::new(events.clone()))
        .keyring(KeyringSpec {
            category: Category::new("totp_secrets")?,
            primary: 1,
            min_decrypt: 1,
            versions: vec![KeyVersion {
                version: 1,
                key: SecretBytes::random(32)?,
                reserved: 0,
            }],
            index_key: SecretBytes::random(32)?,
        })
        .clock(Arc::new(clock.clone()))
        .build()?;
    let totp = TotpVerifier::new(
        Arc::new(MemoryReplayGuard::new()), // share one store across the fleet
        Arc::new(events.clone()),
        Arc::new(clock.clone()),
        config,
    );

    // Ada signed in with her password (a principal stands in for her verified session)
    // and proves she may change her own profile: enrollment acts on the proof's subject.
    let session = mcpsec_access::danger::principal(
        ada.clone(),
        OrgId::new("acme")?,
        Role::Developer,
        ScopeSet::parse_strict("user:write")?,
        CredentialKind::AccessToken,
        Authentication {
            at: Some(clock.now()),
            methods: AuthMethods::of(&[AuthMethod::Pwd]),
        },
    );
    let own = authorize_as::<perm::UserUpdateProfile>(&session, &Resource::own(&session))?;

    // 1. Enrollment: show the URI as a QR code (it holds the secret), then confirm with
    //    the first code her authenticator app shows.
    let pending = PendingEnrollment::begin(config, "Acme MCP", "ada@example.com")?;
    let uri = pending.uri().expose_secret();
    println!(
        "enroll: show {}?… as a QR code",
        uri.split('?').next().unwrap_or("")
    );
    // Her app: the same secret, scanned from the QR code.
    let app = TotpSecret::from_base32(pending.secret_base32().expose_secret())?;
    let shows = |clock: &ManualClock| app.code_at(config, clock.unix_seconds());
    let first = shows(&clock)?;
    let secret = pending
        .confirm(&totp, &own, first.expose_secret())
        .await
        .map_err(|(_, e)| e)?;
    let here = SealContext::new("totp_secrets", "users", "totp", ada.as_str())?;
    let sealed = secret.seal(&crypt, &here).await?; // store this, never the plaintext
    println!("enrolled; {} sealed bytes stored", sealed.len());
    // A context in a category the keyset lacks is refused, and the error names it.
    let misfiled = SealContext::new("mfa_secrets", "users", "totp", ada.as_str())?;
    match secret.seal(&crypt, &misfiled).await {
        Err(error @ Error::Seal(_)) => println!("  wrong category: {error}"),
        other => return Err(format!("sealing into a missing category: {other:?}").into()),
    }

    // 2. Login. The secret comes out of storage; the confirming code was spent, so in
    //    the same 30 s step Ada is told to wait for the next code (and how long).
    let stored = TotpSecret::open(&crypt, &sealed, &here).await?;
    let wait = match totp.verify(&ada, &stored, first.expose_secret()).await {
        Err(Error::WaitForNextCode { retry_after }) => retry_after,
        other => return Err(format!("the confirming code logged in: {other:?}").into()),
    };
    println!(
        "login with the confirming code: wait {} s for the next code",
        wait.as_secs()
    );
    clock.advance(wait);
    let next = shows(&clock)?;
    let verified = totp.verify(&ada, &stored, next.expose_secret()).await?;
    // Never write amr by hand: the factor says what it proved.
    let amr = verified.added_to(AuthMethods::of(&[AuthMethod::Pwd]));
    println!("logged in with the next code; amr = {:?}", names(amr));

    // 3. A replay: someone who saw that code sends it 30 s later. It is still inside the
    //    ±1 step of skew, so only the replay guard stops it.
    clock.advance(Duration::from_secs(30));
    match totp.verify(&ada, &stored, next.expose_secret()).await {
        Err(error @ Error::Replayed) => println!("replayed code: {error}"),
        other => return Err(format!("a replayed code: {other:?}").into()),
    }

    // 4. Recovery codes: ten, shown once, stored as keyed hashes; each works once.
    let recovery = RecoveryCodes::new(
        Arc::new(MemoryRecoveryStore::new()),
        SecretBytes::random(32)?, // a server secret, kept with the others
        Arc::new(events.clone()),
        Arc::new(clock.clone()),
    )?;
    let codes = recovery.regenerate(&own).await?;
    let lost_phone = codes.first().ok_or("no recovery codes")?.expose_secret();
    let redeemed = recovery.redeem(&ada, lost_phone).await?;
    let amr = redeemed
        .verified
        .added_to(AuthMethods::of(&[AuthMethod::Pwd]));
    println!(
        "recovery code accepted; amr = {:?}; {} codes left",
        names(amr),
        redeemed.remaining
    );
    match recovery.redeem(&ada, lost_phone).await {
        Err(error @ Error::InvalidRecoveryCode) => println!("same recovery code again: {error}"),
        other => return Err(format!("a recovery code worked twice: {other:?}").into()),
    }

    // Every step left a security event, and none holds a code or a secret.
    println!("events:");
    for event in events.events() {
        let reason = event.reason.map_or("", |r| r.as_str());
        println!(
            "  {:<24} {:<8} {reason}",
            event.kind.as_str(),
            event.outcome.as_str()
        );
    }
    let recorded = format!("{:?}", events.events());
    for secret_text in [first.expose_secret(), next.expose_secret(), lost_phone] {
        if recorded.contains(secret_text) {
            return Err("an event holds a code".into());
        }
    }
    Ok(())
}

/// The `amr` values, as they go into a token.
fn names(amr: AuthMethods) -> Vec<&'static str> {
    amr.iter().map(AuthMethod::as_str).collect()
}
