//! Numbers as the scripts see them: Lua numbers are doubles, exact up to 2^53, so every
//! time (microseconds since the Unix epoch, as the SQL stores keep it), duration and
//! count crosses into a script as an integer no larger than that, written as decimal text.

use mcpsec_core::StoreError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The largest integer every Lua number below it is exact for.
pub(crate) const MAX_EXACT: u64 = 1 << 53;

/// `time` in microseconds since the epoch; before the epoch or after the year 2255 is
/// refused (nothing changed).
pub(crate) fn micros(time: SystemTime) -> Result<u64, StoreError> {
    time.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_micros()).ok())
        .filter(|&m| m <= MAX_EXACT)
        .ok_or(StoreError::rejected("a time the store cannot hold"))
}

/// A stored time.
pub(crate) fn from_micros(micros: u64) -> Result<SystemTime, StoreError> {
    UNIX_EPOCH
        .checked_add(Duration::from_micros(micros))
        .ok_or(StoreError::corrupt("a stored time out of range"))
}

/// A duration in microseconds, saturating (a window of 285 years is forever).
pub(crate) fn duration_micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).map_or(MAX_EXACT, |m| m.min(MAX_EXACT))
}

/// A duration in milliseconds for `PX`/`PEXPIRE`, at least 1 (Redis refuses 0), saturating.
pub(crate) fn ttl_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).map_or(MAX_EXACT, |m| m.clamp(1, MAX_EXACT))
}

/// A count, saturating at what a script holds exactly.
pub(crate) fn count(n: u64) -> u64 {
    n.min(MAX_EXACT)
}

/// A decimal integer a script returned.
pub(crate) fn parse(text: &str) -> Result<u64, StoreError> {
    text.parse::<u64>()
        .map_err(|e| StoreError::corrupt("a number stored in Redis").with_source(e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_round_trip_and_out_of_range_is_refused() {
        let t = UNIX_EPOCH + Duration::from_micros(1_767_225_600_123_456);
        assert_eq!(from_micros(micros(t).unwrap()).unwrap(), t);
        assert!(micros(UNIX_EPOCH - Duration::from_secs(1)).is_err());
        assert!(micros(UNIX_EPOCH + Duration::from_micros(MAX_EXACT + 1)).is_err());
    }

    #[test]
    fn durations_and_counts_saturate() {
        assert_eq!(duration_micros(Duration::MAX), MAX_EXACT);
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::MAX), MAX_EXACT);
        assert_eq!(count(u64::MAX), MAX_EXACT);
        assert!(parse("1e+15").is_err());
        assert_eq!(parse("1767225600000000").unwrap(), 1_767_225_600_000_000);
    }
}
