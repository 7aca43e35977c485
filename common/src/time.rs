//! Times at the precision the stores keep.

use chrono::{DateTime, SubsecRound as _, Utc};

/// The current time in microseconds (what PostgreSQL keeps), so a time a call hands out
/// is exactly the time later reads return, and keyset comparisons on it are exact.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_has_whole_microseconds() {
        assert_eq!(super::now().timestamp_subsec_nanos() % 1_000, 0);
    }
}
