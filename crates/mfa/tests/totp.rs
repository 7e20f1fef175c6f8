//! TOTP against RFC 6238 appendix B, skew edges, replay, normalisation, enrollment.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use mcpsec_core::{
    EventKind, ManualClock, MemorySink, ReasonCode, SealContext, SecretBytes, UserId,
};
use mcpsec_mfa::{
    AttemptBudget, Error, MemoryReplayGuard, PendingEnrollment, TotpAlgorithm, TotpConfig,
    TotpSecret, TotpVerifier,
};
use std::sync::Arc;
use std::time::Duration;

mod support;

fn rfc_config(algorithm: TotpAlgorithm) -> TotpConfig {
    TotpConfig {
        algorithm,
        digits: 8,
        step: 30,
        skew: 0,
    }
}

#[test]
fn rfc6238_appendix_b_vectors() {
    let sha1 = b"12345678901234567890".as_slice();
    let sha256 = b"12345678901234567890123456789012".as_slice();
    let sha512 = b"1234567890123456789012345678901234567890123456789012345678901234".as_slice();
    let table: [(u64, &str, &str, &str); 6] = [
        (59, "94287082", "46119246", "90693936"),
        (1_111_111_109, "07081804", "68084774", "25091201"),
        (1_111_111_111, "14050471", "67062674", "99943326"),
        (1_234_567_890, "89005924", "91819424", "93441116"),
        (2_000_000_000, "69279037", "90698825", "38618901"),
        (20_000_000_000, "65353130", "77737706", "47863826"),
    ];
    for (time, c1, c256, c512) in table {
        for (seed, alg, expected) in [
            (sha1, TotpAlgorithm::Sha1, c1),
            (sha256, TotpAlgorithm::Sha256, c256),
            (sha512, TotpAlgorithm::Sha512, c512),
        ] {
            let secret = TotpSecret::from_bytes(SecretBytes::from_slice(seed)).unwrap();
            let config = rfc_config(alg);
            assert_eq!(
                secret.code_at(config, time).unwrap().expose_secret(),
                expected,
                "{alg:?} at {time}"
            );
            assert_eq!(secret.check_at(config, expected, time).unwrap(), time / 30);
        }
    }
}

fn fixture() -> (TotpVerifier, ManualClock, MemorySink, TotpSecret) {
    let clock = ManualClock::at_unix(1_767_225_600);
    let events = MemorySink::new();
    let verifier = TotpVerifier::new(
        Arc::new(MemoryReplayGuard::new()),
        Arc::new(events.clone()),
        Arc::new(clock.clone()),
        TotpConfig::default(),
    );
    (verifier, clock, events, TotpSecret::generate().unwrap())
}

#[test]
fn skew_accepts_one_step_either_side_and_no_more() {
    let secret = TotpSecret::generate().unwrap();
    let config = TotpConfig::default();
    let now = 1_767_225_615; // mid-step
    for (offset, ok) in [
        (-60i64, false),
        (-30, true),
        (0, true),
        (30, true),
        (60, false),
    ] {
        let at = u64::try_from(now as i64 + offset).unwrap();
        let code = secret.code_at(config, at).unwrap();
        assert_eq!(
            secret.check_at(config, code.expose_secret(), now).is_ok(),
            ok,
            "offset {offset}"
        );
    }
}

#[tokio::test]
async fn a_code_is_accepted_once() {
    let (verifier, clock, events, secret) = fixture();
    let ada = UserId::new("ada").unwrap();
    let code = secret
        .code_at(
            TotpConfig::default(),
            mcpsec_core::Clock::unix_seconds(&clock),
        )
        .unwrap();
    let _otp = verifier
        .verify(&ada, &secret, code.expose_secret())
        .await
        .unwrap();
    // The same code again, while the app still shows it: wait for the next one.
    assert_eq!(
        verifier.verify(&ada, &secret, code.expose_secret()).await,
        Err(Error::WaitForNextCode {
            retry_after: Duration::from_secs(30)
        })
    );
    // The previous step's code is older than the accepted one: also refused.
    let previous = secret
        .code_at(
            TotpConfig::default(),
            mcpsec_core::Clock::unix_seconds(&clock) - 30,
        )
        .unwrap();
    assert_eq!(
        verifier
            .verify(&ada, &secret, previous.expose_secret())
            .await,
        Err(Error::Replayed)
    );
    clock.advance(Duration::from_secs(30));
    let next = secret
        .code_at(
            TotpConfig::default(),
            mcpsec_core::Clock::unix_seconds(&clock),
        )
        .unwrap();
    let _otp = verifier
        .verify(&ada, &secret, next.expose_secret())
        .await
        .unwrap();
    let reasons: Vec<_> = events.events().iter().filter_map(|e| e.reason).collect();
    assert_eq!(reasons, [ReasonCode::Replayed, ReasonCode::Replayed]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn totp_code_used_32_times_concurrently_succeeds_once() {
    let (verifier, clock, _, secret) = fixture();
    let secret = Arc::new(secret);
    let code = secret
        .code_at(
            TotpConfig::default(),
            mcpsec_core::Clock::unix_seconds(&clock),
        )
        .unwrap();
    let code = Arc::new(code.expose_secret().to_owned());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (v, s, c) = (verifier.clone(), Arc::clone(&secret), Arc::clone(&code));
        tasks.spawn(async move { v.verify(&UserId::new("ada").unwrap(), &s, &c).await.is_ok() });
    }
    let mut wins = 0;
    while let Some(ok) = tasks.join_next().await {
        wins += usize::from(ok.unwrap());
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn input_is_normalised_and_junk_refused() {
    let (verifier, clock, _, secret) = fixture();
    let code = secret
        .code_at(
            TotpConfig::default(),
            mcpsec_core::Clock::unix_seconds(&clock),
        )
        .unwrap();
    let c = code.expose_secret();
    let spaced = format!("{} {}", &c[..3], &c[3..]);
    assert!(
        verifier
            .verify(&UserId::new("a").unwrap(), &secret, &spaced)
            .await
            .is_ok()
    );
    let dashed = format!("{}-{}", &c[..3], &c[3..]);
    assert!(
        verifier
            .verify(&UserId::new("b").unwrap(), &secret, &dashed)
            .await
            .is_ok()
    );
    let long = "1".repeat(100);
    let wrong_length = Err(Error::WrongLength { expected: 6 });
    let junks = [
        ("", Err(Error::Malformed)),
        ("12345", wrong_length.clone()),
        ("1234567", wrong_length.clone()),
        ("1234 5678", wrong_length),
        ("12a456", Err(Error::Malformed)),
        ("１２３４５６", Err(Error::Malformed)),
        (long.as_str(), Err(Error::Malformed)),
    ];
    for (i, (junk, expected)) in junks.into_iter().enumerate() {
        // A user each: the attempt budget would otherwise pause after five failures.
        let user = UserId::new(format!("c{i}")).unwrap();
        assert_eq!(
            verifier.verify(&user, &secret, junk).await,
            expected,
            "{junk:?}"
        );
    }
}

#[tokio::test]
async fn enrollment_is_confirmed_by_a_first_code_and_the_secret_is_stored_sealed() {
    let (verifier, clock, events, _) = fixture();
    let pending = PendingEnrollment::begin(TotpConfig::default(), "mcpsec", "ada").unwrap();
    let uri = pending.uri().expose_secret().to_owned();
    assert!(uri.starts_with("otpauth://totp/mcpsec:ada?"), "{uri}");
    assert!(uri.contains("issuer=mcpsec"));
    let b32 = pending.secret_base32();
    assert!(b32.expose_secret().len() >= 32, "at least 160 bits");
    let ada = UserId::new("ada").unwrap();
    let (pending, err) = pending
        .confirm(&verifier, &support::own(&ada), "000000")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongCode | Error::Malformed));
    let secret = TotpSecret::from_base32(pending.secret_base32().expose_secret()).unwrap();
    let code = secret
        .code_at(
            TotpConfig::default(),
            mcpsec_core::Clock::unix_seconds(&clock),
        )
        .unwrap();
    let confirmed = pending
        .confirm(&verifier, &support::own(&ada), code.expose_secret())
        .await
        .unwrap();

    let sealer = mcpsec_core::testkit::InsecureTestSealer;
    let ctx = SealContext::new("totp_secrets", "mfa_totp", "secret", "ada").unwrap();
    let sealed = confirmed.seal(&sealer, &ctx).await.unwrap();
    let opened = TotpSecret::open(&sealer, &sealed, &ctx).await.unwrap();
    assert_eq!(opened.to_base32(), confirmed.to_base32());
    let other = SealContext::new("totp_secrets", "mfa_totp", "secret", "bob").unwrap();
    assert!(TotpSecret::open(&sealer, &sealed, &other).await.is_err());

    let json = serde_json::to_string(&events.events()).unwrap();
    assert!(!json.contains(code.expose_secret()) && !json.contains(b32.expose_secret()));
    assert!(
        events
            .events()
            .iter()
            .any(|e| e.kind == EventKind::AuthnMfaSuccess)
    );
    assert_eq!(format!("{confirmed:?}"), "TotpSecret([REDACTED])");
}

#[test]
fn short_secrets_and_odd_configs_are_refused() {
    assert!(TotpSecret::from_bytes(SecretBytes::from_slice(&[1; 10])).is_err());
    let secret = TotpSecret::generate().unwrap();
    for config in [
        TotpConfig {
            digits: 5,
            ..TotpConfig::default()
        },
        TotpConfig {
            digits: 9,
            ..TotpConfig::default()
        },
        TotpConfig {
            step: 0,
            ..TotpConfig::default()
        },
        TotpConfig {
            skew: 5,
            ..TotpConfig::default()
        },
    ] {
        assert!(secret.code_at(config, 0).is_err(), "{config:?}");
    }
    assert!(
        secret
            .otpauth_uri(TotpConfig::default(), "evil:issuer", "ada")
            .is_err()
    );
}

#[test]
fn otpauth_uris_round_trip_and_junk_is_refused() {
    let secret = TotpSecret::generate().unwrap();
    let config = TotpConfig {
        algorithm: TotpAlgorithm::Sha256,
        digits: 8,
        step: 60,
        skew: 1,
    };
    let uri = secret.otpauth_uri(config, "mcpsec", "ada").unwrap();
    let (back, parsed) = TotpSecret::from_otpauth_uri(uri.expose_secret()).unwrap();
    assert_eq!(parsed, config);
    assert_eq!(back.to_base32(), secret.to_base32());
    for junk in [
        "",
        "otpauth://hotp/x?secret=AAAA",
        "https://example.com",
        &format!("otpauth://totp/a?secret={}", "A".repeat(3000)),
    ] {
        assert!(TotpSecret::from_otpauth_uri(junk).is_err(), "{junk:.40}");
    }
}

#[tokio::test]
async fn the_attempt_budget_pauses_a_user_after_wrong_codes() {
    let (verifier, clock, events, secret) = fixture();
    let ada = UserId::new("ada").unwrap();
    let now = mcpsec_core::Clock::unix_seconds(&clock);
    let right = secret.code_at(TotpConfig::default(), now).unwrap();
    let wrong = if right.expose_secret() == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..5 {
        assert_eq!(
            verifier.verify(&ada, &secret, wrong).await,
            Err(Error::WrongCode)
        );
    }
    // Budget spent: even the right code is not checked now.
    assert_eq!(
        verifier.verify(&ada, &secret, right.expose_secret()).await,
        Err(Error::TooManyAttempts {
            retry_after: Duration::from_secs(30)
        })
    );
    assert!(
        events
            .events()
            .iter()
            .any(|e| e.kind == EventKind::AuthnLoginFailMax && e.is_critical())
    );
    // Another user is unaffected.
    let bob = UserId::new("bob").unwrap();
    assert!(
        verifier
            .verify(&bob, &secret, right.expose_secret())
            .await
            .is_ok()
    );
    clock.advance(Duration::from_secs(30));
    let fresh = secret
        .code_at(
            TotpConfig::default(),
            mcpsec_core::Clock::unix_seconds(&clock),
        )
        .unwrap();
    assert!(
        verifier
            .verify(&ada, &secret, fresh.expose_secret())
            .await
            .is_ok(),
        "after the pause"
    );
}

/// Issue 12 item 15: 200 concurrent wrong guesses against one user, through a shared
/// counter that holds every request inside it until all 200 have arrived. Reading the
/// budget before counting let all of them be checked; counting first lets at most the
/// budget's five through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_burst_cannot_bypass_the_totp_attempt_budget() {
    const GUESSES: usize = 200;
    let (verifier, clock, events, secret) = fixture();
    let counter = support::SuspendingCounter::new(GUESSES);
    let verifier = verifier.with_attempt_budget(counter, AttemptBudget::default());
    let right = secret
        .code_at(
            TotpConfig::default(),
            mcpsec_core::Clock::unix_seconds(&clock),
        )
        .unwrap();
    let wrong = Arc::new(if right.expose_secret() == "000000" {
        "111111"
    } else {
        "000000"
    });
    let secret = Arc::new(secret);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..GUESSES {
        let (v, s, w) = (verifier.clone(), Arc::clone(&secret), Arc::clone(&wrong));
        tasks.spawn(async move { v.verify(&UserId::new("ada").unwrap(), &s, &w).await });
    }
    let mut refused = 0;
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Err(Error::WrongCode) => {}
            Err(Error::TooManyAttempts { .. }) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let checked = events
        .events()
        .iter()
        .filter(|e| e.reason == Some(ReasonCode::WrongCode))
        .count();
    assert!(
        checked <= AttemptBudget::default().max_failures as usize,
        "{checked} of {GUESSES} concurrent guesses were checked"
    );
    assert_eq!(checked + refused, GUESSES);
}

/// Issue 12 item 18: the replay guard remembers steps per enrollment. A user who
/// re-enrols in the same 30 s step must be able to confirm the new authenticator.
#[tokio::test]
async fn a_new_authenticators_first_code_is_not_replayed() {
    let (verifier, clock, _, old) = fixture();
    let ada = UserId::new("ada").unwrap();
    let now = mcpsec_core::Clock::unix_seconds(&clock);
    let code = old.code_at(TotpConfig::default(), now).unwrap();
    let _otp = verifier
        .verify(&ada, &old, code.expose_secret())
        .await
        .unwrap();
    let pending = PendingEnrollment::begin(TotpConfig::default(), "mcpsec", "ada").unwrap();
    let new = TotpSecret::from_base32(pending.secret_base32().expose_secret()).unwrap();
    let first = new.code_at(TotpConfig::default(), now).unwrap();
    assert!(
        pending
            .confirm(&verifier, &support::own(&ada), first.expose_secret())
            .await
            .is_ok(),
        "the new authenticator's first code is not a replay of the old one's"
    );
    // The old enrollment still refuses its own replay.
    assert!(matches!(
        verifier.verify(&ada, &old, code.expose_secret()).await,
        Err(Error::WaitForNextCode { .. })
    ));
}

/// Issue 12 item 18: garbage is not a guess. Five malformed inputs must not pause a
/// user's TOTP; malformed input has its own, larger budget so it is not free either.
#[tokio::test]
async fn malformed_input_does_not_pause_totp() {
    let (verifier, clock, _, secret) = fixture();
    let ada = UserId::new("ada").unwrap();
    for junk in ["", "12a456", "1234567", "abcdef", "12345"] {
        assert!(
            matches!(
                verifier.verify(&ada, &secret, junk).await,
                Err(Error::Malformed | Error::WrongLength { expected: 6 })
            ),
            "{junk:?}"
        );
    }
    let right = secret
        .code_at(
            TotpConfig::default(),
            mcpsec_core::Clock::unix_seconds(&clock),
        )
        .unwrap();
    assert!(
        verifier
            .verify(&ada, &secret, right.expose_secret())
            .await
            .is_ok(),
        "five malformed inputs paused the user"
    );
}

/// Issue 12 item 18: malformed input has its own budget (20 in the window by default):
/// over it, garbage is refused as too many attempts, yet a well-formed right code still
/// works, because garbage never spends the wrong-code budget.
#[tokio::test]
async fn malformed_input_has_its_own_larger_budget() {
    let (verifier, clock, _, secret) = fixture();
    let ada = UserId::new("ada").unwrap();
    let budget = AttemptBudget::default();
    for _ in 0..budget.max_malformed {
        assert_eq!(
            verifier.verify(&ada, &secret, "junk").await.map(|_| ()),
            Err(Error::Malformed)
        );
    }
    assert!(matches!(
        verifier.verify(&ada, &secret, "junk").await,
        Err(Error::TooManyAttempts { .. })
    ));
    let right = secret
        .code_at(
            TotpConfig::default(),
            mcpsec_core::Clock::unix_seconds(&clock),
        )
        .unwrap();
    assert!(
        verifier
            .verify(&ada, &secret, right.expose_secret())
            .await
            .is_ok()
    );
}

/// Issue 12 item 15: with increment-first, a right code gives its attempt back, so four
/// wrong codes and a right one leave room for four more wrong codes before the pause,
/// and the pause still comes after exactly `max_failures` wrong codes.
#[tokio::test]
async fn a_right_code_gives_its_attempt_back() {
    let (verifier, clock, _, secret) = fixture();
    let ada = UserId::new("ada").unwrap();
    let now = mcpsec_core::Clock::unix_seconds(&clock);
    let right = secret.code_at(TotpConfig::default(), now).unwrap();
    let wrong = if right.expose_secret() == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..4 {
        assert_eq!(
            verifier.verify(&ada, &secret, wrong).await.map(|_| ()),
            Err(Error::WrongCode)
        );
    }
    assert!(
        verifier
            .verify(&ada, &secret, right.expose_secret())
            .await
            .is_ok()
    );
    assert_eq!(
        verifier.verify(&ada, &secret, wrong).await.map(|_| ()),
        Err(Error::WrongCode),
        "the fifth wrong code is still checked"
    );
    assert!(matches!(
        verifier.verify(&ada, &secret, wrong).await,
        Err(Error::TooManyAttempts { .. })
    ));
}

/// Issue 18: an 8-digit code sent to a 6-digit verifier is told which length was
/// expected, not just "malformed". It stays malformed input for the budget: it never
/// spends the wrong-code budget, and it is counted under `max_malformed` as before.
#[tokio::test]
async fn an_eight_digit_code_to_a_six_digit_verifier_names_the_expected_length() {
    let (verifier, clock, events, secret) = fixture();
    let ada = UserId::new("ada").unwrap();
    let now = mcpsec_core::Clock::unix_seconds(&clock);
    let eight = TotpConfig {
        digits: 8,
        ..TotpConfig::default()
    };
    let code = secret.code_at(eight, now).unwrap();
    let error = verifier
        .verify(&ada, &secret, code.expose_secret())
        .await
        .unwrap_err();
    assert_eq!(error, Error::WrongLength { expected: 6 });
    assert_eq!(error.to_string(), "the code must be 6 digits");
    assert!(!format!("{error} {error:?}").contains(code.expose_secret()));
    assert_eq!(
        events.events().last().map(|e| (e.kind, e.reason)),
        Some((EventKind::AuthnMfaFail, Some(ReasonCode::Malformed)))
    );
    // The budget is unchanged: malformed input, counted apart. More than `max_failures`
    // of them do not pause a right code; over `max_malformed` they are refused.
    let budget = AttemptBudget::default();
    for _ in 1..budget.max_malformed {
        assert_eq!(
            verifier.verify(&ada, &secret, code.expose_secret()).await,
            Err(Error::WrongLength { expected: 6 })
        );
    }
    assert!(matches!(
        verifier.verify(&ada, &secret, code.expose_secret()).await,
        Err(Error::TooManyAttempts { .. })
    ));
    let six = secret.code_at(TotpConfig::default(), now).unwrap();
    assert!(
        verifier
            .verify(&ada, &secret, six.expose_secret())
            .await
            .is_ok()
    );
    // `check_at` (no verifier, no budget) says the same.
    assert_eq!(
        secret.check_at(TotpConfig::default(), code.expose_secret(), now),
        Err(Error::WrongLength { expected: 6 })
    );
}

/// Issue 18: confirming an enrollment spends the current step. A login in the same
/// step is told to wait for the next code (with how long), never let in; the next
/// step's code logs in; the confirming code never logs in, then or later.
#[tokio::test]
async fn login_right_after_confirmation_waits_for_the_next_code() {
    let (verifier, clock, events, _) = fixture();
    clock.advance(Duration::from_secs(12)); // 12 s into a step
    let ada = UserId::new("ada").unwrap();
    let pending = PendingEnrollment::begin(TotpConfig::default(), "mcpsec", "ada").unwrap();
    let app = TotpSecret::from_base32(pending.secret_base32().expose_secret()).unwrap();
    let at = |clock: &ManualClock| {
        app.code_at(
            TotpConfig::default(),
            mcpsec_core::Clock::unix_seconds(clock),
        )
        .unwrap()
    };
    let first = at(&clock);
    let secret = pending
        .confirm(&verifier, &support::own(&ada), first.expose_secret())
        .await
        .unwrap();

    // Same step: the app still shows the confirming code.
    assert_eq!(
        verifier.verify(&ada, &secret, first.expose_secret()).await,
        Err(Error::WaitForNextCode {
            retry_after: Duration::from_secs(18)
        })
    );
    let last = events.events().last().cloned().unwrap();
    assert_eq!(
        (last.kind, last.reason),
        (EventKind::AuthnMfaFail, Some(ReasonCode::Replayed)),
        "still recorded as a replay"
    );
    clock.advance(Duration::from_secs(17));
    assert!(matches!(
        verifier.verify(&ada, &secret, first.expose_secret()).await,
        Err(Error::WaitForNextCode { retry_after }) if retry_after == Duration::from_secs(1)
    ));

    // The next step's code logs in, once.
    clock.advance(Duration::from_secs(1));
    let next = at(&clock);
    assert_ne!(next.expose_secret(), first.expose_secret());
    let _otp = verifier
        .verify(&ada, &secret, next.expose_secret())
        .await
        .unwrap();
    // The confirming code is still within the skew, and still refused: older now.
    assert_eq!(
        verifier.verify(&ada, &secret, first.expose_secret()).await,
        Err(Error::Replayed)
    );
    assert!(matches!(
        verifier.verify(&ada, &secret, next.expose_secret()).await,
        Err(Error::WaitForNextCode { .. })
    ));
}

/// A sealer that refuses for a reason, or whose store fails.
#[derive(Debug)]
struct RefusingSealer(mcpsec_core::Error);

#[async_trait::async_trait]
impl mcpsec_core::Sealer for RefusingSealer {
    async fn seal(&self, _: &[u8], _: &SealContext) -> Result<Vec<u8>, mcpsec_core::Error> {
        Err(self.0.clone())
    }
    async fn open(&self, _: &[u8], _: &SealContext) -> Result<SecretBytes, mcpsec_core::Error> {
        Err(mcpsec_core::Error::Open)
    }
}

/// Issue 18: sealing a TOTP secret into a category the keyset lacks says so, by name,
/// instead of "store unavailable: sealing failed". A failed store stays a store error.
#[tokio::test]
async fn sealing_into_a_missing_category_passes_the_reason_through() {
    let secret = TotpSecret::generate().unwrap();
    let here = SealContext::new("totp_secrets", "users", "totp", "ada").unwrap();
    let missing = mcpsec_core::Error::SealCategoryMissing {
        category: "totp_secrets".to_owned(),
    };
    let error = secret
        .seal(&RefusingSealer(missing.clone()), &here)
        .await
        .unwrap_err();
    assert_eq!(error, Error::Seal(missing));
    assert_eq!(
        error.to_string(),
        "sealing failed: the keyset has no keyring for data category \"totp_secrets\""
    );
    let down = mcpsec_core::StoreError::unavailable("kms");
    assert_eq!(
        secret
            .seal(
                &RefusingSealer(mcpsec_core::Error::Store(down.clone())),
                &here
            )
            .await,
        Err(Error::Store(down))
    );
}
