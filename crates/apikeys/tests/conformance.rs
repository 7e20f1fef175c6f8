//! The store and counter conformance suites on the in-memory backends.
#![allow(clippy::unwrap_used, reason = "tests")]

use mcpsec_apikeys::{AttemptCounter, MemoryApiKeyStore, MemoryAttemptCounter};
use mcpsec_core::testkit::Namespace;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_api_key_store_conforms() {
    mcpsec_apikeys::testkit::api_key_store_conformance(|| Arc::new(MemoryApiKeyStore::new())).await;
}

mcpsec_core::attempt_counter_suite!(memory_attempt_counter, |_: Namespace| async {
    Arc::new(MemoryAttemptCounter::default()) as Arc<dyn AttemptCounter>
});
