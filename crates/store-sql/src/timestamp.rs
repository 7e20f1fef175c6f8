//! Times as stored: signed 64-bit microseconds since the Unix epoch, the same column type
//! on both backends (PostgreSQL's `timestamptz` has the same resolution), so every query
//! compares integers and a row reads the same way everywhere.

use mcpsec_core::StoreError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `time` as stored; refused when it is before the epoch or past year 294,000.
pub(crate) fn to_db(time: SystemTime) -> Result<i64, StoreError> {
    time.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_micros()).ok())
        .ok_or(StoreError::rejected("a time the store cannot hold"))
}

/// A stored time; a negative one is corrupt.
pub(crate) fn from_db(micros: i64) -> Result<SystemTime, StoreError> {
    u64::try_from(micros)
        .ok()
        .and_then(|m| UNIX_EPOCH.checked_add(Duration::from_micros(m)))
        .ok_or(StoreError::corrupt("a stored time out of range"))
}

/// A stored optional time.
pub(crate) fn from_db_opt(micros: Option<i64>) -> Result<Option<SystemTime>, StoreError> {
    micros.map(from_db).transpose()
}

/// A duration in stored units, saturating (a window longer than 292,000 years is forever).
pub(crate) fn duration_to_db(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_at_microsecond_resolution() {
        let t = UNIX_EPOCH + Duration::from_micros(1_767_225_600_123_456);
        assert_eq!(from_db(to_db(t).unwrap()).unwrap(), t);
        assert!(to_db(UNIX_EPOCH - Duration::from_secs(1)).is_err());
        assert!(from_db(-1).is_err());
        assert_eq!(duration_to_db(Duration::MAX), i64::MAX);
    }
}
