//! Human durations as wubot wrote them: `30`, `5s`, `15m`, `1h`, `2d`, `1w`, `1M`, `1y`,
//! or sums such as `1h30m`. A bare number means seconds. `M` is a month of 30 days and
//! `y` a year of 365 days, as in wubot.

use std::time::Duration;

/// Why a duration text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error(
        "invalid duration '{text}': expected a number followed by one of s, m, h, d, w, M, y (e.g. 5s, 15m, 1h30m)"
    )]
    Invalid { text: String },
}

/// Parses a duration such as `15m` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let invalid = || DurationError::Invalid { text: trimmed.to_string() };
    if let Ok(seconds) = trimmed.parse::<f64>() {
        return if seconds.is_finite() && seconds >= 0.0 {
            Ok(Duration::from_secs_f64(seconds))
        } else {
            Err(invalid())
        };
    }
    let mut total = 0f64;
    let mut number = String::new();
    for c in trimmed.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        if c == ' ' {
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86_400.0,
            'w' => 7.0 * 86_400.0,
            'M' => 30.0 * 86_400.0,
            'y' => 365.0 * 86_400.0,
            _ => return Err(invalid()),
        };
        let value: f64 = number.parse().map_err(|_| invalid())?;
        total += value * unit;
        number.clear();
    }
    if !number.is_empty() {
        return Err(invalid());
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expected_secs: Option<f64>) {
        match (parse_duration(text), expected_secs) {
            (Ok(d), Some(s)) => assert_eq!(d.as_secs_f64(), s, "{text}"),
            (Err(_), None) => {}
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn cases() {
        check("30", Some(30.0));
        check("0.5", Some(0.5));
        check("5s", Some(5.0));
        check("15m", Some(900.0));
        check("1h", Some(3600.0));
        check("1h30m", Some(5400.0));
        check("2d", Some(172_800.0));
        check("1w", Some(604_800.0));
        check("1M", Some(2_592_000.0));
        check("1y", Some(31_536_000.0));
        check(" 10s ", Some(10.0));
        check("", None);
        check("abc", None);
        check("5", Some(5.0));
        check("5x", None);
        check("m", None);
        check("10s5", None);
        check("-5", None);
    }
}
