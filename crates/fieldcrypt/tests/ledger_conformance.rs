//! The UsageLedger conformance suite, as named tests per backend: the memory ledger and the
//! keyset file (`LocalKeyset`), which is the ledger a single-host deployment uses.
#![allow(clippy::unwrap_used, reason = "tests")]

use mcpsec_core::testkit::Namespace;
use mcpsec_core::{ManualClock, SecretBytes};
use mcpsec_fieldcrypt::{Category, LocalKeyset, LocalMasterKey, MemoryLedger, UsageLedger};
use std::sync::Arc;

mcpsec_fieldcrypt::usage_ledger_suite!(memory, |_: Namespace| async {
    Arc::new(MemoryLedger::new()) as Arc<dyn UsageLedger>
});

mcpsec_fieldcrypt::usage_ledger_suite!(local_keyset, |ns: Namespace| async move {
    // One directory per case and run: the cases run in parallel.
    let mut suffix = [0u8; 6];
    mcpsec_core::fill_random(&mut suffix).unwrap();
    let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("mcpsec-{ns}-{hex}"));
    std::fs::create_dir_all(&dir).unwrap();
    let master = Arc::new(LocalMasterKey::from_bytes(&SecretBytes::new(vec![7; 32])).unwrap());
    let categories = [
        Category::new("pii").unwrap(),
        Category::new("contact").unwrap(),
    ];
    let keyset = LocalKeyset::create(
        &dir.join("keyset.json"),
        master,
        &categories,
        Arc::new(ManualClock::at_unix(1_764_000_000)),
    )
    .await
    .unwrap();
    Arc::new(keyset) as Arc<dyn UsageLedger>
});
