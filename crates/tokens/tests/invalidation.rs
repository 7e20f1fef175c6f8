//! Fleet announcements reach the verifier: a removed signing key is refused at once (also
//! for a token the cache holds), other keys keep working, and the other kinds reset the
//! cache without touching a static key set.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::*;
use mcpsec_core::{FlushOnInvalidation, Invalidation, KeyId, OrgId, UserId};
use mcpsec_tokens::Error;

#[tokio::test]
async fn a_removed_signing_key_is_refused_even_from_the_cache() {
    let clock = clock();
    let verifier = verifier(&clock);
    let leaked = forge(ed(), &header(ed()), &claims());
    let other = forge(rsa(), &header(rsa()), &claims());
    assert!(verifier.verify(&leaked).await.is_ok());
    assert!(verifier.verify(&other).await.is_ok());
    let kid = ed().kid().to_string();
    verifier.flush(&Invalidation::SigningKeyRemoved(KeyId::new(kid).unwrap()));
    assert_eq!(
        verifier.verify(&leaked).await.unwrap_err(),
        Error::UnknownKey
    );
    assert!(verifier.verify(&other).await.is_ok(), "other keys stay");
}

#[tokio::test]
async fn other_announcements_keep_a_static_key_set() {
    let clock = clock();
    let verifier = verifier(&clock);
    let token = forge(ed(), &header(ed()), &claims());
    for what in [
        Invalidation::Everything,
        Invalidation::JwksChanged,
        Invalidation::ApiKeyRevoked(KeyId::new("k1").unwrap()),
        Invalidation::MembershipChanged {
            org: OrgId::new("o").unwrap(),
            user: UserId::new("u").unwrap(),
        },
    ] {
        assert!(verifier.verify(&token).await.is_ok(), "{what:?}");
        verifier.flush(&what);
        assert!(verifier.verify(&token).await.is_ok(), "{what:?}");
    }
}
