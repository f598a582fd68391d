//! Byte sizes as people write them: `4096`, `64KiB`, `64MiB`, `1GiB`, `500MB`, `1.5G`.
//! Binary units (`KiB`, `K`) are powers of 1024; decimal ones (`kB`, `MB`, `GB`) of 1000.

/// Why a size text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid size '{0}': expected a number of bytes, optionally with a unit (KiB, MiB, GiB, kB, MB, GB), e.g. 64MiB"
)]
pub struct SizeError(pub String);

/// Parses a size into bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number.parse().map_err(|_| SizeError(trimmed.to_string()))?;
    let factor: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "K" | "KiB" | "k" => 1024.0,
        "M" | "MiB" => 1024.0 * 1024.0,
        "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "T" | "TiB" => 1024f64.powi(4),
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return Err(SizeError(trimmed.to_string())),
    };
    let bytes = value * factor;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(SizeError(trimmed.to_string()));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases() {
        for (text, bytes) in [
            ("4096", 4096),
            ("64KiB", 65_536),
            ("64MiB", 64 << 20),
            ("1GiB", 1 << 30),
            ("1.5G", 3 << 29),
            ("500MB", 500_000_000),
            (" 2 kB ", 2000),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "MiB", "12XB", "-1", "1e999"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
