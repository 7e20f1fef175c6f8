//! The store and counter conformance suites on the in-memory backends.
#![allow(clippy::unwrap_used, reason = "tests")]

use mcpsec_apikeys::{ApiKeyStore, AttemptCounter, MemoryApiKeyStore, MemoryAttemptCounter};
use mcpsec_core::testkit::Namespace;
use std::sync::Arc;

mcpsec_apikeys::api_key_store_suite!(memory_api_key_store, |_: Namespace| async {
    Arc::new(MemoryApiKeyStore::new()) as Arc<dyn ApiKeyStore>
});

mcpsec_core::attempt_counter_suite!(memory_attempt_counter, |_: Namespace| async {
    Arc::new(MemoryAttemptCounter::default()) as Arc<dyn AttemptCounter>
});
