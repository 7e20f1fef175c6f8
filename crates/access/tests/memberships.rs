//! The memberships conformance suite, run against the memory backend.

use mcpsec_access::testkit::memberships::MemoryHarness;

mcpsec_access::memberships_suite!(memory, |_ns| async { MemoryHarness::new() });
