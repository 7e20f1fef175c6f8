//! Shows mcpsec-apikeys end to end: a key is created and shown once, verified into a
//! `Principal`, hammered by an attacker (whose address gets throttled while the owner keeps
//! working), rotated with an overlap, and revoked.
//!
//! Run: `cargo run -p example-apikeys`

use mcpsec_access::{
    Action, AuthMethods, Authentication, CredentialKind, MemoryMemberships, Resource, Role,
    ScopeSet, authorize, authorize_as, perm,
};
use mcpsec_apikeys::{
    ApiKeys, Env, HashMode, KeyHasher, MemoryApiKeyStore, NewKey, Pepper, Source,
};
use mcpsec_core::{ManualClock, MemorySink, OrgId, UserId};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::at_unix(1_767_225_600);
    let events = MemorySink::new();
    let hasher = KeyHasher::new(Pepper::generate(1)?, vec![], HashMode::HmacSha256)?;
    let ada = UserId::new("ada")?;
    let org = OrgId::new("acme")?;
    // Roles come from memberships at every verification: a key carries none.
    let members = Arc::new(MemoryMemberships::new());
    members.set(ada.clone(), org.clone(), Role::Developer);
    let keys = ApiKeys::builder(
        Arc::new(MemoryApiKeyStore::new()),
        members,
        hasher,
        Arc::new(events.clone()),
    )
    .clock(Arc::new(clock.clone()))
    .build()?;

    // Ada is signed in (here a principal stands in for a verified session token) and
    // proves she may manage her own keys; a key can grant only scopes she holds.
    let session = mcpsec_access::danger::principal(
        ada.clone(),
        org.clone(),
        Role::Developer,
        ScopeSet::parse_strict("user:token mcp:read")?,
        CredentialKind::AccessToken,
        Authentication {
            at: None,
            methods: AuthMethods::EMPTY,
        },
    );
    let proof = authorize_as::<perm::UserManageTokens>(&session, &Resource::own(&session))?;
    let (key, record) = keys
        .create(
            &proof,
            NewKey {
                owner: ada.clone(),
                org: org.clone(),
                scopes: "mcp:read".into(),
                env: Env::Live,
                name: "ci-runner".into(),
                expires_at: None,
            },
        )
        .await?;
    println!(
        "created key {} (…{}); stored hash scheme: {}",
        record.id,
        record.hint,
        record.hash.split('$').next().unwrap_or("")
    );

    // A request with the key.
    let office: IpAddr = "198.51.100.10".parse()?;
    let verified = keys
        .verify(key.expose_secret(), &Source::Ip(office))
        .await?;
    let principal = verified.principal();
    authorize(&principal, Action::McpUse, &Resource::of_org(org))?;
    println!(
        "ada's key may use MCP; {} requests left this minute",
        verified.rate_limit().remaining
    );

    // An attacker who learned the key id guesses secrets from one address (computing the
    // public CRC32 checksum, so the guesses reach the comparison).
    let attacker = Source::Ip("203.0.113.66".parse()?);
    let guess = with_checksum(&format!(
        "{}{}",
        key.expose_secret().get(..29).unwrap_or(""),
        "x".repeat(43)
    ));
    for _ in 0..20 {
        let _ = keys.verify(&guess, &attacker).await;
    }
    let answer = keys
        .verify(&guess, &attacker)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    println!("attacker now gets: {answer}");
    println!(
        "owner still verifies: {}",
        keys.verify(key.expose_secret(), &Source::Ip(office))
            .await
            .is_ok()
    );

    // Rotation with a one-hour overlap, then revocation of the successor.
    let (next, next_record) = keys
        .rotate(&proof, &record.id, Duration::from_secs(3600))
        .await?;
    clock.advance(Duration::from_secs(3600));
    let old = keys
        .verify(key.expose_secret(), &Source::Ip(office))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    println!("after the overlap the old key gets: {old}");
    keys.revoke(&proof, &next_record.id).await?;
    let revoked = keys
        .verify(next.expose_secret(), &Source::Ip(office))
        .await
        .err()
        .map(|e| e.client_message());
    println!("the revoked successor gets: {}", revoked.unwrap_or(""));

    for summary in keys.list(&proof, &ada).await? {
        println!(
            "listed: {} …{} {:?}",
            summary.id, summary.hint, summary.status
        );
    }
    let kinds: Vec<String> = events.events().iter().map(|e| e.kind.to_string()).collect();
    println!("events: {}", kinds.join(", "));
    Ok(())
}

/// Appends the format's checksum: CRC32 of the body as 6 base62 digits.
fn with_checksum(body: &str) -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = crc32fast::hash(body.as_bytes());
    let mut digits = [b'0'; 6];
    for slot in digits.iter_mut().rev() {
        *slot = BASE62.get((n % 62) as usize).copied().unwrap_or(b'0');
        n /= 62;
    }
    format!("{body}{}", String::from_utf8_lossy(&digits))
}
