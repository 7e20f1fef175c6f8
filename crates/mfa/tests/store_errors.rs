//! A backend's failure reaches the caller with its kind and its cause (issue 13: one
//! `StoreError`); the old `StoreError(&'static str)` kept neither.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use mcpsec_core::{ManualClock, MemorySink, SecretBytes, StoreErrorKind, UserId};
use mcpsec_mfa::{CodeHash, Error, RecoveryCodeStore, RecoveryCodes, StoreError};
use std::error::Error as _;
use std::sync::Arc;

/// A store whose every call times out in its driver.
#[derive(Debug)]
struct TimingOut;

fn timed_out() -> StoreError {
    let driver = std::io::Error::new(std::io::ErrorKind::TimedOut, "pool wait 5s");
    StoreError::timeout("recovery codes").with_source(driver)
}

#[async_trait::async_trait]
impl RecoveryCodeStore for TimingOut {
    async fn replace_set(
        &self,
        _: &mcpsec_access::Principal,
        _: Vec<CodeHash>,
    ) -> Result<(), StoreError> {
        Err(timed_out())
    }
    async fn consume_once(&self, _: &UserId, _: &CodeHash) -> Result<bool, StoreError> {
        Err(timed_out())
    }
    async fn remaining(&self, _: &UserId) -> Result<usize, StoreError> {
        Err(timed_out())
    }
}

#[tokio::test]
async fn a_backend_failure_keeps_its_kind_and_cause() {
    let codes = RecoveryCodes::new(
        Arc::new(TimingOut),
        SecretBytes::from_slice(&[3; 32]),
        Arc::new(MemorySink::new()),
        Arc::new(ManualClock::at_unix(0)),
    )
    .unwrap();
    let error = codes
        .redeem(&UserId::new("ada").unwrap(), "aaaaa-bbbbb-ccccc-ddddd")
        .await
        .unwrap_err();
    let Error::Store(inner) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(inner.kind(), StoreErrorKind::Timeout);
    assert!(inner.kind().is_transient(), "the caller may retry");
    let cause = error.source().unwrap();
    assert_eq!(
        cause.downcast_ref::<std::io::Error>().unwrap().kind(),
        std::io::ErrorKind::TimedOut,
        "the driver's error is reachable through the source chain"
    );
    assert!(
        !error.to_string().contains("pool wait"),
        "Display stays fixed: {error}"
    );
}
