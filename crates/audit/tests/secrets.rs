//! No secret reaches the log: events produced by the real API key service and by the
//! audited sealer are written, then the file is scanned for every secret involved.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use mcpsec_apikeys::{
    ApiKeys, Env, HashMode, KeyHasher, MemoryApiKeyStore, NewKey, Pepper, Source,
};
use mcpsec_audit::{
    AuditedSealer, ChainConfig, FileSink, FileSinkConfig, Pseudonymizer, Record, VerifyOptions,
    verify_file,
};
use mcpsec_core::{
    Actor, EventKind, EventSink, ManualClock, OrgId, Outcome, SealContext, Sealer, SecretBytes,
    SecretString, ServiceId, UserId, testkit::InsecureTestSealer,
};
use std::sync::Arc;

fn with_checksum(body: &str) -> String {
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = crc32fast::hash(body.as_bytes());
    let mut sum = [b'0'; 6];
    for slot in sum.iter_mut().rev() {
        *slot = B62[(n % 62) as usize];
        n /= 62;
    }
    format!("{body}{}", std::str::from_utf8(&sum).unwrap())
}

/// Same id, another secret, valid checksum: what an attacker who saw a key id sends.
fn wrong_secret_for(key: &SecretString) -> String {
    let text = key.expose_secret();
    let body = &text[..text.len() - 6];
    let (head, secret) = body.split_at(body.len() - 43);
    with_checksum(&format!("{head}{}", "Z".repeat(secret.len())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_never_holds_keys_secrets_plaintexts_or_raw_addresses() {
    let dir = std::env::temp_dir().join(format!("mcpsec-audit-{}-secrets", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let clock = Arc::new(ManualClock::at_unix(1_767_225_600));
    let pseudonymizer = Arc::new(Pseudonymizer::new(&SecretBytes::random(32).unwrap()).unwrap());
    let config = FileSinkConfig::new(
        ChainConfig::new(ServiceId::new("api-1").unwrap()).with_pseudonymizer(pseudonymizer),
        clock.clone(),
    );
    let sink = Arc::new(FileSink::open(&path, config).unwrap());

    // API keys: create, use, misuse, revoke, use again.
    let pepper = Pepper::generate(1).unwrap();
    let hasher = KeyHasher::new(pepper, vec![], HashMode::HmacSha256).unwrap();
    let ada = UserId::new("ada").unwrap();
    let members = mcpsec_access::MemoryMemberships::new();
    members.set(
        ada.clone(),
        OrgId::new("acme").unwrap(),
        mcpsec_access::Role::Developer,
    );
    let keys = ApiKeys::builder(
        Arc::new(MemoryApiKeyStore::new()),
        Arc::new(members),
        hasher,
        sink.clone(),
    )
    .clock(clock.clone())
    .build()
    .unwrap();
    let caller = mcpsec_access::danger::principal(
        ada.clone(),
        OrgId::new("acme").unwrap(),
        mcpsec_access::Role::Developer,
        mcpsec_access::ScopeSet::parse_strict("user:token mcp:read").unwrap(),
        mcpsec_access::CredentialKind::AccessToken,
        mcpsec_access::Authentication {
            at: None,
            methods: mcpsec_access::AuthMethods::EMPTY,
        },
    );
    let proof = mcpsec_access::authorize_as::<mcpsec_access::perm::UserManageTokens>(
        &caller,
        &mcpsec_access::Resource::own(&caller),
    )
    .unwrap();
    let (key, record) = keys
        .create(
            &proof,
            NewKey {
                owner: ada.clone(),
                org: OrgId::new("acme").unwrap(),
                scopes: "mcp:read".into(),
                env: Env::Live,
                name: "ci".into(),
                expires_at: None,
            },
        )
        .await
        .unwrap();
    let source = Source::Ip("192.0.2.77".parse().unwrap());
    keys.verify(key.expose_secret(), &source).await.unwrap();
    let wrong = wrong_secret_for(&key);
    for _ in 0..3 {
        assert!(keys.verify(&wrong, &source).await.is_err());
    }
    assert!(keys.verify("mcp_sk_live_garbage", &source).await.is_err());
    keys.revoke(&proof, &record.id).await.unwrap();
    assert!(keys.verify(key.expose_secret(), &source).await.is_err());

    // The audited sealer: seal, open, open with the wrong context.
    let plaintext = b"TOTP-SEED-VERY-SECRET-0123456789";
    let sealer = AuditedSealer::new(
        InsecureTestSealer,
        sink.clone(),
        clock.clone(),
        Actor::Service {
            service: ServiceId::new("mfa").unwrap(),
        },
    );
    let context = SealContext::new("totp_secrets", "users", "totp_seed", "row-1")
        .unwrap()
        .with_tenant("acme")
        .unwrap();
    let sealed = sealer.seal(plaintext, &context).await.unwrap();
    let opened = sealer.open(&sealed, &context).await.unwrap();
    assert_eq!(opened.expose_secret(), plaintext);
    let other = SealContext::new("totp_secrets", "users", "totp_seed", "row-2").unwrap();
    assert!(sealer.open(&sealed, &other).await.is_err());

    sink.close().unwrap();
    verify_file(&path, &VerifyOptions::unauthenticated()).unwrap();
    let log = std::fs::read_to_string(&path).unwrap();
    let key_text = key.expose_secret();
    let secret_part = &key_text[key_text.len() - 49..key_text.len() - 6];
    for forbidden in [
        key_text,
        secret_part,
        &wrong,
        "ZZZZZZZZZZ",
        "mcp_sk_",
        "TOTP-SEED",
        "192.0.2.77",
        &String::from_utf8_lossy(&sealed),
    ] {
        assert!(!log.contains(forbidden), "the log holds {forbidden:?}");
    }
    // What is there: the key's public id, pseudonymised sources, the seal calls.
    assert!(log.contains(record.id.as_str()));
    assert!(log.contains("\"source_pseudonym\":\""));
    let kinds: Vec<(EventKind, Outcome)> = log
        .lines()
        .filter_map(|l| {
            Record::parse(l.as_bytes())
                .unwrap()
                .event()
                .map(|e| (e.kind, e.outcome))
        })
        .collect();
    assert!(kinds.contains(&(EventKind::SensitiveUpdate, Outcome::Success)));
    assert!(kinds.contains(&(EventKind::SensitiveRead, Outcome::Success)));
    assert!(kinds.contains(&(EventKind::SensitiveRead, Outcome::Failure)));
    assert!(kinds.iter().any(|(k, _)| *k == EventKind::AuthnLoginFail));
    assert!(log.contains("\"org\":\"acme\""), "the tenant maps to org");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn sealer_fails_closed_when_the_audit_sink_refuses() {
    #[derive(Debug)]
    struct Refusing;
    #[async_trait::async_trait]
    impl EventSink for Refusing {
        async fn record(&self, _: mcpsec_core::SecurityEvent) -> Result<(), mcpsec_core::Error> {
            Err(mcpsec_core::Error::SinkUnavailable("down"))
        }
    }
    let sealer = AuditedSealer::new(
        InsecureTestSealer,
        Arc::new(Refusing),
        Arc::new(ManualClock::at_unix(0)),
        Actor::Anonymous,
    );
    let context = SealContext::new("c", "t", "col", "r").unwrap();
    let sealed = InsecureTestSealer.seal(b"secret", &context).await.unwrap();
    assert!(
        sealer.open(&sealed, &context).await.is_err(),
        "no unrecorded access"
    );
}

/// Item 29: each read and write of a sealed secret names where it lives (table, column,
/// row), not just its category: an auditor asks "who read row 42's TOTP seed".
#[tokio::test]
async fn audited_sealer_records_table_column_and_row() {
    let events = mcpsec_core::MemorySink::new();
    let sealer = AuditedSealer::new(
        InsecureTestSealer,
        Arc::new(events.clone()),
        Arc::new(ManualClock::at_unix(1_767_225_600)),
        Actor::Anonymous,
    );
    let context = SealContext::new("totp_secrets", "users", "totp_seed", "u-42").unwrap();
    let sealed = sealer.seal(b"seed", &context).await.unwrap();
    sealer.open(&sealed, &context).await.unwrap();
    // A row id the event's identifiers cannot hold (a space, over 64 bytes) is named by
    // a stable digest of the three parts instead, never dropped.
    let odd = SealContext::new("totp_secrets", "users", "totp_seed", "row with spaces").unwrap();
    let _ = sealer.open(&sealed, &odd).await;
    let ids: Vec<Option<String>> = events
        .events()
        .iter()
        .map(|e| {
            e.resource
                .as_ref()
                .and_then(|r| r.id.as_ref())
                .map(|id| id.as_str().to_owned())
        })
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0].as_deref(), Some("users|totp_seed|u-42"), "{ids:?}");
    assert_eq!(ids[1].as_deref(), Some("users|totp_seed|u-42"));
    let digest = ids[2].clone().unwrap_or_default();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 39,
        "{ids:?}"
    );
}
