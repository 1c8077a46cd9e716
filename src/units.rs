//! Human-friendly sizes and durations for flags and profiles: `8MiB`, `1.5GB`, `250ms`, `10s`.

use std::time::Duration;

/// Parses a byte size: a number with an optional unit (`B`, `K`/`KB`/`KiB`, `M`…, `G`…, `T`…).
/// Decimal units are powers of 1000, binary ones (`KiB`) and bare letters (`K`) of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim();
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1_000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        "t" | "tib" => 1 << 40,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "unknown size unit {unit:?} in {text:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 8MiB or 1000000"))?;
    let bytes = value * factor as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 || bytes.fract() != 0.0 {
        return Err(format!(
            "{text:?} is not a whole number of bytes that fits in 64 bits"
        ));
    }
    Ok(bytes as u64)
}

/// Parses a duration: a number with an optional unit (`ms`, `s`, `m`, `h`, `d`; bare = seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let seconds_per_unit = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {text:?} (use ms, s, m, h, d)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 250ms, 10s or 5m"))?;
    Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| format!("{text:?} is not a duration that fits"))
}

/// Shows a duration the way profiles write one: `250ms`, `1.5s`, `2m`, `3h`, `14d`.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    let (value, unit) = if ms < 1000.0 {
        (ms, "ms")
    } else if ms < 60_000.0 {
        (ms / 1000.0, "s")
    } else if ms < 3_600_000.0 {
        (ms / 60_000.0, "m")
    } else if ms < 86_400_000.0 {
        (ms / 3_600_000.0, "h")
    } else {
        (ms / 86_400_000.0, "d")
    };
    // Three significant decimals at most, without trailing zeros.
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_show_in_the_largest_unit_below_them_with_at_most_three_decimals() {
        let cases = [
            (Duration::ZERO, "0ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_millis(999), "999ms"),
            (Duration::from_millis(1000), "1s"),
            (Duration::from_millis(1250), "1.25s"),
            (Duration::from_secs(59), "59s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(90), "1.5m"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(5400), "1.5h"),
            (Duration::from_secs(86_400), "1d"),
            (Duration::from_secs(14 * 86_400), "14d"),
        ];
        for (d, shown) in cases {
            assert_eq!(show_duration(d), shown, "{d:?}");
            assert_eq!(parse_duration(shown).unwrap(), d, "{shown} reads back");
        }
    }

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("5 MB"), Ok(5_000_000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("1.3").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("99999999999TB").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn durations_accept_common_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("14d"), Ok(Duration::from_secs(1_209_600)));
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1e999").is_err());
    }
}
