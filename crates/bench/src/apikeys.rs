//! Benchmark rows for mcpsec-apikeys, each beside the raw primitive it is built on.

use crate::Row;
use mcpsec_access::{
    AuthMethods, Authentication, Authorized, CredentialKind, Resource, Role, Scope, ScopeSet,
    authorize_as, perm,
};
use mcpsec_apikeys::{
    ApiKeys, Argon2Params, AttemptCounter, Env, Error, HashMode, KeyHasher, MemoryApiKeyStore,
    MemoryAttemptCounter, NewKey, Pepper, Source, format,
};
use mcpsec_core::StoreError;
use mcpsec_core::{ManualClock, NullSink, OrgId, SecretBytes, UserId};
use std::hint::black_box;
use std::sync::Arc;

const PEPPER: [u8; 32] = [7; 32];

/// A key service on the memory store; `slow_hash_cache: false` turns the Argon2 cache off.
fn service(
    mode: HashMode,
    slow_hash_cache: bool,
) -> Result<(ApiKeys, tokio::runtime::Runtime), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|_| Error::Config("runtime"))?;
    let hasher = KeyHasher::new(
        Pepper::new(1, SecretBytes::from_slice(&PEPPER))?,
        vec![],
        mode,
    )?;
    let members = mcpsec_access::MemoryMemberships::new();
    members.set(owner()?, org()?, mcpsec_access::Role::Developer);
    let keys = ApiKeys::builder(
        Arc::new(MemoryApiKeyStore::new()),
        Arc::new(members),
        hasher,
        NullSink,
    )
    .clock(Arc::new(ManualClock::at_unix(1_767_225_600)))
    .quota_per_minute(u32::MAX);
    let keys = if slow_hash_cache {
        keys
    } else {
        keys.slow_hash_cache(std::time::Duration::ZERO, 0)
    };
    let keys = keys.build()?;
    Ok((keys, runtime))
}

fn owner() -> Result<UserId, Error> {
    UserId::new("ada").map_err(|_| Error::Invalid("owner"))
}

fn org() -> Result<OrgId, Error> {
    OrgId::new("acme").map_err(|_| Error::Invalid("org"))
}

fn new_key() -> Result<NewKey, Error> {
    Ok(NewKey {
        owner: owner()?,
        org: org()?,
        scopes: "mcp:read".into(),
        env: Env::Live,
        name: "bench".into(),
        expires_at: None,
    })
}

/// The owner's own `user.manage_tokens` proof, as a token verifier would lead to.
fn owner_proof() -> Result<Authorized<perm::UserManageTokens>, Error> {
    let caller = mcpsec_access::danger::principal(
        owner()?,
        org()?,
        Role::Developer,
        ScopeSet::of(&[Scope::UserToken, Scope::McpRead]),
        CredentialKind::AccessToken,
        Authentication {
            at: None,
            methods: AuthMethods::EMPTY,
        },
    );
    authorize_as(&caller, &Resource::own(&caller)).map_err(|_| Error::NotAllowed)
}

/// `apikeys.verify_hmac`, `apikeys.reject_bad_checksum`, `apikeys.verify_argon2_cached`,
/// `apikeys.verify_argon2_cold`, `apikeys.attempt_counter_new_source_100k`.
pub(crate) fn rows() -> Result<Vec<Row>, Error> {
    let source = Source::Ip(std::net::IpAddr::from([192, 0, 2, 1]));
    let hmac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &PEPPER);

    // End to end with the memory store, against one HMAC-SHA256 of the key.
    let (keys, runtime) = service(HashMode::HmacSha256, true)?;
    let (key, _) = runtime.block_on(keys.create(&owner_proof()?, new_key()?))?;
    runtime.block_on(keys.verify(key.expose_secret(), &source))?;
    let hmac_text = key.expose_secret().to_owned();
    let verify_key = key;
    let src = source.clone();
    let hmac_row = Row {
        name: "apikeys.verify_hmac",
        baseline: "hmac_sha256",
        op: Box::new(move || {
            black_box(
                runtime
                    .block_on(keys.verify(black_box(verify_key.expose_secret()), &src))
                    .is_ok(),
            );
        }),
        base: Box::new(move || {
            black_box(aws_lc_rs::hmac::sign(
                &hmac_key,
                black_box(hmac_text.as_bytes()),
            ));
        }),
    };

    // A typo'd key refused by its checksum, against one CRC32 of the same bytes.
    let good = format::generate(Env::Live)?;
    let mut bad = good.expose_secret().to_owned();
    let last = if bad.ends_with('0') { "1" } else { "0" };
    bad.replace_range(bad.len() - 1.., last);
    let bad_for_crc = bad.clone();
    let checksum_row = Row {
        name: "apikeys.reject_bad_checksum",
        baseline: "crc32",
        op: Box::new(move || {
            black_box(format::parse(black_box(&bad)).is_err());
        }),
        base: Box::new(move || {
            black_box(crc32fast::hash(black_box(bad_for_crc.as_bytes())));
        }),
    };

    // Argon2id: the hot path through the cache, and a cold verification (cache off),
    // each against raw argon2 on the same parameters.
    let params = Argon2Params::default();
    let raw_argon2 = move |input: &[u8]| {
        let argon = argon2::Argon2::new_with_secret(
            &PEPPER,
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32)).ok()?,
        )
        .ok()?;
        let mut out = [0u8; 32];
        argon.hash_password_into(input, &[9u8; 16], &mut out).ok()?;
        Some(out)
    };
    let (cached, cached_rt) = service(HashMode::Argon2id(params), true)?;
    let (slow_key, _) = cached_rt.block_on(cached.create(&owner_proof()?, new_key()?))?;
    cached_rt.block_on(cached.verify(slow_key.expose_secret(), &source))?;
    let slow_text = slow_key.expose_secret().to_owned();
    let src = source.clone();
    let argon_cached_row = Row {
        name: "apikeys.verify_argon2_cached",
        baseline: "argon2id_hash",
        op: Box::new(move || {
            black_box(
                cached_rt
                    .block_on(cached.verify(black_box(slow_key.expose_secret()), &src))
                    .is_ok(),
            );
        }),
        base: Box::new(move || {
            black_box(raw_argon2(black_box(slow_text.as_bytes())));
        }),
    };

    let (cold, runtime) = service(HashMode::Argon2id(params), false)?;
    let (cold_key, _) = runtime.block_on(cold.create(&owner_proof()?, new_key()?))?;
    runtime.block_on(cold.verify(cold_key.expose_secret(), &source))?;
    let cold_text = cold_key.expose_secret().to_owned();
    let argon_cold_row = Row {
        name: "apikeys.verify_argon2_cold",
        baseline: "argon2id_hash",
        op: Box::new(move || {
            black_box(
                runtime
                    .block_on(cold.verify(black_box(cold_key.expose_secret()), &source))
                    .is_ok(),
            );
        }),
        base: Box::new(move || {
            black_box(raw_argon2(black_box(cold_text.as_bytes())));
        }),
    };
    Ok(vec![
        hmac_row,
        checksum_row,
        argon_cached_row,
        argon_cold_row,
        attempt_counter_row()?,
    ])
}

/// `apikeys.attempt_counter_new_source_100k`: one failure of a source never seen before,
/// counted by a memory attempt counter already full at its default 100,000 subjects (so
/// every call evicts), against one insert and one remove in a plain `HashMap`.
fn attempt_counter_row() -> Result<Row, Error> {
    const FULL: u64 = 100_000;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|_| Error::Config("runtime"))?;
    let counter = MemoryAttemptCounter::default();
    let window = std::time::Duration::from_secs(15 * 60);
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600);
    for n in 0..FULL {
        runtime
            .block_on(counter.record_failure(&format!("src:ip:{n}"), window, now))
            .map_err(|e| Error::Store(StoreError::from_core("attempt counter", e)))?;
    }
    let mut next = FULL;
    let mut map: std::collections::HashMap<String, u64> =
        (0..FULL).map(|n| (format!("src:ip:{n}"), n)).collect();
    let mut base_next = FULL;
    Ok(Row {
        name: "apikeys.attempt_counter_new_source_100k",
        baseline: "hashmap_insert_remove",
        op: Box::new(move || {
            next += 1;
            let subject = format!("src:ip:{next}");
            black_box(
                runtime
                    .block_on(counter.record_failure(black_box(&subject), window, now))
                    .is_ok(),
            );
        }),
        base: Box::new(move || {
            base_next += 1;
            map.insert(format!("src:ip:{base_next}"), base_next);
            black_box(map.remove(&format!("src:ip:{}", base_next - FULL)));
        }),
    })
}
