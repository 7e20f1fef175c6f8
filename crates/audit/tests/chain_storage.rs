//! The ChainStorage conformance suite, as named tests per backend.

use mcpsec_audit::testkit::chain_storage::{FileHarness, MemoryHarness};

mcpsec_audit::chain_storage_suite!(memory, async { MemoryHarness::new() });

mcpsec_audit::chain_storage_suite!(file, async {
    // A directory per case: the cases run in parallel.
    FileHarness::new(&format!("{:?}", std::thread::current().id()))
});
