//! Shows mcpsec-audit end to end: a checkpoint key written to 0600 files, a `FileSink`
//! recording security events into a hash-chained log with signed checkpoints (mirrored to
//! a second file), verification with the public key, what verification says without it,
//! and a one-word edit of the log being caught.
//!
//! Run: `cargo run -p example-audit`

use mcpsec_audit::{
    ChainConfig, CheckpointKey, CheckpointPolicy, CheckpointPublicKey, Error, FileCheckpointSink,
    FileSink, FileSinkConfig, VerifyOptions, verify_file,
};
use mcpsec_core::{
    Clock, EventKind, EventSink, Outcome, SecurityEvent, ServiceId, SystemClock, UserId,
};
use std::path::Path;
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("mcpsec-example-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = run(&dir).await;
    std::fs::remove_dir_all(&dir)?;
    result
}

async fn run(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    // 1. The checkpoint key pair (`mcpsec audit keygen` does the same): both files 0600,
    //    never overwritten. The private key belongs to the writer only; verifiers get the
    //    public file.
    let (private, public) = (dir.join("checkpoint.key"), dir.join("checkpoint.pub"));
    CheckpointKey::generate()?.write_files(&private, &public)?;
    let key = Arc::new(CheckpointKey::from_file(&private)?);

    // 2. The writer: one chain per instance, a signed checkpoint every 100 records or
    //    minute and on close, each one mirrored to a place the log host cannot rewrite
    //    (here only another file).
    let clock = Arc::new(SystemClock);
    let log = dir.join("audit.jsonl");
    let chain = ChainConfig::new(ServiceId::new("api-1")?).with_checkpoints(
        key,
        CheckpointPolicy {
            every_records: 100,
            ..CheckpointPolicy::default()
        },
    );
    let mirror = Arc::new(FileCheckpointSink::open(&dir.join("checkpoints.jsonl"))?);
    let sink = FileSink::open(
        &log,
        FileSinkConfig::new(chain, clock.clone()).mirror(mirror),
    )?;
    let ada = UserId::new("ada")?;
    for (kind, outcome) in [
        (EventKind::AuthnLoginFail, Outcome::Failure),
        (EventKind::AuthnLoginSuccess, Outcome::Success),
        (EventKind::AuthzAdmin, Outcome::Success), // critical: on disk before it returns
    ] {
        let event = SecurityEvent::new(kind, outcome, clock.now()).with_user(ada.clone());
        sink.record(event).await?;
    }
    sink.close()?; // writes the final checkpoint
    println!("wrote {}", log.display());

    // 3. Verification with the public key: every hash, link and signature, and every
    //    record covered by a checkpoint.
    let options = VerifyOptions::with_keys(vec![CheckpointPublicKey::from_file(&public)?]);
    let report = verify_file(&log, &options)?;
    println!(
        "verified: {} records, {} signature(s), authenticated: {}",
        report.records, report.signatures_verified, report.authenticated
    );

    // 4. Without the key, verification says no: a self-consistent chain is all it could
    //    prove, and anyone able to write the file can build one. Opting in is explicit,
    //    and the report keeps saying so.
    match verify_file(&log, &VerifyOptions::default()) {
        Err(Error::Unauthenticated) => println!("without the key: refused (unauthenticated)"),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    let unkeyed = verify_file(&log, &VerifyOptions::unauthenticated())?;
    println!(
        "opted in without the key: authenticated: {}",
        unkeyed.authenticated
    );

    // 5. Someone edits one word of the log: verification names the line and the reason.
    let text = std::fs::read_to_string(&log)?;
    std::fs::write(&log, text.replacen("\"ada\"", "\"eve\"", 1))?;
    match verify_file(&log, &options) {
        Err(Error::Tampered(finding)) => println!("after an edit: {finding}"),
        other => return Err(format!("the edit went unnoticed: {other:?}").into()),
    }
    Ok(())
}
