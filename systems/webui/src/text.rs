//! Small text helpers for pages: query-string encoding, times, durations and rates as
//! people read them. Pure; HTML escaping is the templates' (askama escapes every value).

/// `text` percent-encoded for a query-string value: everything but unreserved
/// characters (RFC 3986) is encoded, spaces too.
pub fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A query string from pairs, leaving out empty values: `?a=1&b=x%20y`, or "" when
/// nothing is left.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", query_value(v))).collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc_time(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Days since 1970-01-01 as a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Seconds as the two largest units: `45s`, `3m 20s`, `2h 5m`, `3d 4h`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A rate for a table cell: `0`, `0.02`, `12.5`, `1234`.
pub fn rate(per_second: f64) -> String {
    if per_second >= 100.0 { format!("{per_second:.0}") } else { crate::chart::rate_label(per_second) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        let cases = [
            ("reactor", "reactor"),
            ("a b", "a%20b"),
            ("subject matches <x>&y=1", "subject%20matches%20%3Cx%3E%26y%3D1"),
            ("#chan", "%23chan"),
            ("ä", "%C3%A4"),
        ];
        for (text, expected) in cases {
            assert_eq!(query_value(text), expected);
        }
        assert_eq!(query(&[("a", "1"), ("b", ""), ("c", "x y")]), "?a=1&c=x%20y");
        assert_eq!(query(&[("a", "")]), "");
    }

    #[test]
    fn times_are_utc_dates() {
        let cases = [
            (0, "1970-01-01 00:00:00"),
            (951_782_400_000, "2000-02-29 00:00:00"),
            (1_764_789_296_789, "2025-12-03 19:14:56"),
            (-1_000, "1969-12-31 23:59:59"),
        ];
        for (millis, expected) in cases {
            assert_eq!(utc_time(millis), expected, "{millis}");
        }
    }

    #[test]
    fn durations_show_two_units() {
        let cases = [(0, "0s"), (45, "45s"), (200, "3m 20s"), (7_500, "2h 5m"), (273_600, "3d 4h")];
        for (secs, expected) in cases {
            assert_eq!(duration(secs), expected);
        }
    }
}
