//! Durations in configuration are written like `2s`, `90s`, `15m`, `12h`, `30d`.

use std::time::Duration;

/// Parses `<whole number><unit>` with unit `ms`, `s`, `m`, `h` or `d`. Zero is refused:
/// every duration we configure (token lifetimes, timeouts) must be positive.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration_or_zero(text)?;
    positive(duration, text.trim())
}

/// As `parse_duration`, for the settings where zero means "off" (`0s`).
pub fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit: write e.g. 2s, 15m, 30d"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        format!("`{text}` does not start with a whole number: write e.g. 2s, 15m, 30d")
    })?;
    let seconds_per_unit = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}`: use ms, s, m, h or d"
            ));
        }
    };
    let seconds = number
        .checked_mul(seconds_per_unit)
        .ok_or_else(|| format!("`{text}` is too long"))?;
    Ok(Duration::from_secs(seconds))
}

fn positive(duration: Duration, text: &str) -> Result<Duration, String> {
    if duration.is_zero() {
        Err(format!("`{text}` must be longer than zero"))
    } else {
        Ok(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_unit_is_understood() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(2_592_000)));
    }

    #[test]
    fn malformed_durations_are_refused_with_a_reason() {
        for bad in [
            "",
            "15",
            "m",
            "1.5m",
            "-3s",
            "3 weeks",
            "0s",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn zero_is_accepted_only_where_it_means_off() {
        assert_eq!(parse_duration_or_zero("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("10s"), Ok(Duration::from_secs(10)));
        assert!(parse_duration_or_zero("-1s").is_err());
        assert!(parse_duration("0ms").is_err());
    }
}
