//! The store and counter conformance suites on the in-memory backends.
#![allow(clippy::unwrap_used, reason = "tests")]

use mcpsec_apikeys::{MemoryApiKeyStore, MemoryAttemptCounter};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_api_key_store_conforms() {
    mcpsec_apikeys::testkit::api_key_store_conformance(|| Arc::new(MemoryApiKeyStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_attempt_counter_conforms() {
    mcpsec_core::testkit::attempt_counter_conformance(|| Arc::new(MemoryAttemptCounter::default()))
        .await;
}
