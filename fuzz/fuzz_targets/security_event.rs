//! Security event records as read back from a log: decoding arbitrary JSON never panics,
//! and whatever decodes re-encodes to an equal event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpsec_core::SecurityEvent;

fuzz_target!(|data: &[u8]| {
    if data.len() > 16 * 1024 {
        return;
    }
    if let Ok(event) = serde_json::from_slice::<SecurityEvent>(data) {
        let text = serde_json::to_string(&event).expect("a decoded event encodes");
        let back: SecurityEvent = serde_json::from_str(&text).expect("and decodes again");
        assert_eq!(back, event);
    }
});
