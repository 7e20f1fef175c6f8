//! Audit log records and chain verification on arbitrary input: parsing never panics,
//! whatever parses re-encodes to an equal record with the same hash, and verification of
//! any byte string returns a report or a finding — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpsec_audit::{Record, VerifyOptions, verify_bytes};

fuzz_target!(|data: &[u8]| {
    if data.len() > 512 * 1024 {
        return;
    }
    for line in data.split(|&b| b == b'\n') {
        if let Ok(record) = Record::parse(line) {
            let hash = record.compute_hash();
            if let Ok(text) = record.to_json() {
                let back = Record::parse(text.as_bytes()).expect("an encoded record parses");
                assert_eq!(back, record);
                assert_eq!(back.compute_hash(), hash);
            }
        }
    }
    if let Ok(report) = verify_bytes(data, &VerifyOptions::default()) {
        let lines = data
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count() as u64;
        assert!(report.records <= lines);
    }
});
