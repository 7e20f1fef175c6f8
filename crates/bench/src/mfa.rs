//! Benchmark rows for mcpsec-mfa.

use crate::Row;
use mcpsec_core::{Clock, ManualClock, NullSink, UserId};
use mcpsec_mfa::{Error, MemoryReplayGuard, TotpConfig, TotpSecret, TotpVerifier};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

/// `mfa.totp_verify`: a verification including the replay record (memory guard), against
/// raw totp-rs `check` of the same code (no replay protection).
pub(crate) fn totp_row() -> Result<Row, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|_| Error::Config("runtime"))?;
    let clock = ManualClock::at_unix(1_767_225_600);
    let verifier = TotpVerifier::new(
        Arc::new(MemoryReplayGuard::new()),
        Arc::new(NullSink),
        Arc::new(clock.clone()),
        TotpConfig::default(),
    );
    let secret = TotpSecret::generate()?;
    let raw = totp_rs::Totp::from_url(
        secret
            .otpauth_uri(TotpConfig::default(), "bench", "ada")?
            .expose_secret(),
    )
    .map_err(|_| Error::Config("raw totp"))?;
    // Codes for many consecutive steps, made before timing: each iteration presents the
    // next step's code (the replay guard accepts only newer steps); after the table, the
    // next user starts over.
    const STEPS: u64 = 1 << 14;
    let start = clock.unix_seconds();
    let table: Vec<(u64, String)> = (0..STEPS)
        .map(|i| {
            let at = start + i * 30;
            (at, raw.generate(at).to_string())
        })
        .collect();
    let table = Arc::new(table);
    let raw_table = Arc::clone(&table);
    let (mut index, mut generation) = (0usize, 0u64);
    let mut raw_index = 0usize;
    let mut user = UserId::new("bench-0").map_err(|_| Error::Config("user"))?;
    Ok(Row {
        name: "mfa.totp_verify",
        baseline: "totp_rs_check",
        op: Box::new(move || {
            let Some((at, code)) = table.get(index) else {
                index = 0;
                generation += 1;
                if let Ok(next) = UserId::new(format!("bench-{generation}")) {
                    user = next;
                }
                return;
            };
            clock.set(std::time::UNIX_EPOCH + Duration::from_secs(*at));
            black_box(
                runtime
                    .block_on(verifier.verify(&user, &secret, black_box(code)))
                    .is_ok(),
            );
            index += 1;
        }),
        base: Box::new(move || {
            let Some((at, code)) = raw_table.get(raw_index % raw_table.len()) else {
                return;
            };
            black_box(raw.check(black_box(code), *at));
            raw_index += 1;
        }),
    })
}
