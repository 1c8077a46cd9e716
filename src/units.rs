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

/// A duration the profile parser reads back to the same nanosecond: whole units as integers
/// (`2m`, `10s`), whole milliseconds under a second as `250ms`, anything else as decimal
/// seconds (`1.5s`, `0.000001s`). Whole seconds beyond 2^53 go out as a bare integer, which a
/// profile reads as seconds without passing through a float.
pub fn show_duration(d: Duration) -> String {
    const EXACT_IN_F64: u64 = 1 << 53;
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    if nanos == 0 {
        if secs > EXACT_IN_F64 {
            return secs.to_string();
        }
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
            if secs != 0 && secs % size == 0 {
                return format!("{}{unit}", secs / size);
            }
        }
        format!("{secs}s")
    } else if secs == 0 && nanos % 1_000_000 == 0 {
        format!("{}ms", nanos / 1_000_000)
    } else {
        let fraction = format!("{nanos:09}");
        format!("{secs}.{}s", fraction.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_show_in_the_largest_exact_unit() {
        for (d, text) in [
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_secs(86_400 * 14), "14d"),
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "0.000000001s"),
            (Duration::new(61, 5), "61.000000005s"),
            (Duration::from_secs(u64::MAX), "18446744073709551615"),
        ] {
            assert_eq!(show_duration(d), text, "{d:?}");
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
