//! Times at the precision the stores keep, and their conversions to and from the wire
//! (`google.protobuf.Timestamp`).

use chrono::{DateTime, SubsecRound as _, Utc};
use prost_types::Timestamp;

/// The current time in microseconds (what PostgreSQL keeps), so a time a call hands out
/// is exactly the time later reads return, and keyset comparisons on it are exact.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A time as a proto field.
pub fn timestamp(time: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

/// A time in whole seconds since the Unix epoch (a JWT claim) as a proto field.
pub fn unix_timestamp(seconds: u64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
        nanos: 0,
    })
}

/// A proto time, if it names one chrono can hold.
pub fn from_timestamp(time: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_has_whole_microseconds() {
        assert_eq!(now().timestamp_subsec_nanos() % 1_000, 0);
    }

    #[test]
    fn a_time_goes_to_the_wire_and_back_unchanged() {
        let time = now();
        assert_eq!(timestamp(time).and_then(from_timestamp), Some(time));
        let claim = unix_timestamp(1_764_447_303).expect("a time");
        assert_eq!((claim.seconds, claim.nanos), (1_764_447_303, 0));
        let negative_nanos = Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(from_timestamp(negative_nanos), None);
    }
}
