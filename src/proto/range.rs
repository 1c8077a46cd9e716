//! `Content-Range: bytes F-L/T` as a Fragment carries it (docs/protocol.md §3.3, §7.5 step 1).
//!
//! ```text
//! Content-Range: bytes 65536-149999/150000
//! ```
//!
//! Parsing is strict and overflow-safe: the unit is `bytes` in any letter case, the three
//! numbers are plain decimal `u64`s, and `first <= last < total` must hold. Anything else —
//! `*` totals, signs, spaces inside numbers, values past `u64::MAX` — is rejected.

use std::fmt;

/// A validated fragment range: `first <= last < total`, so `len()` never overflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentRange {
    first: u64,
    last: u64,
    total: u64,
}

/// Why a `Content-Range` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("Content-Range must start with the unit `bytes`")]
    Unit,
    #[error("Content-Range must read `bytes FIRST-LAST/TOTAL`")]
    Shape,
    #[error("Content-Range {0} is not a decimal number that fits in 64 bits")]
    Number(&'static str),
    #[error("Content-Range first byte is after its last byte")]
    Reversed,
    #[error("Content-Range last byte is not below the total")]
    PastTotal,
}

impl ContentRange {
    /// Builds a range, enforcing the same rules as parsing.
    pub fn new(first: u64, last: u64, total: u64) -> Result<Self, RangeError> {
        if first > last {
            return Err(RangeError::Reversed);
        }
        if last >= total {
            return Err(RangeError::PastTotal);
        }
        Ok(ContentRange { first, last, total })
    }

    /// Parses a header value.
    pub fn parse(text: &str) -> Result<Self, RangeError> {
        let text = text.trim_matches(|c| c == ' ' || c == '\t');
        let (unit, rest) = text.split_at_checked(5).ok_or(RangeError::Unit)?;
        if !unit.eq_ignore_ascii_case("bytes") {
            return Err(RangeError::Unit);
        }
        // At least one space separates the unit from the range; nothing else may.
        let spec = rest.trim_start_matches(' ');
        if spec.len() == rest.len() {
            return Err(RangeError::Shape);
        }
        let (span, total) = spec.split_once('/').ok_or(RangeError::Shape)?;
        let (first, last) = span.split_once('-').ok_or(RangeError::Shape)?;
        let first = parse_u64(first, "first byte")?;
        let last = parse_u64(last, "last byte")?;
        let total = parse_u64(total, "total")?;
        ContentRange::new(first, last, total)
    }

    pub fn first(&self) -> u64 {
        self.first
    }

    pub fn last(&self) -> u64 {
        self.last
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of bytes covered: `last - first + 1`, which cannot overflow since `last < total`.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never true: a range holds at least one byte. Present for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// One past the last byte; `<= total`, so it cannot overflow.
    pub fn end(&self) -> u64 {
        self.last + 1
    }

    /// Whether this fragment carries the file's last byte.
    pub fn is_final(&self) -> bool {
        self.end() == self.total
    }
}

impl fmt::Display for ContentRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bytes {}-{}/{}", self.first, self.last, self.total)
    }
}

fn parse_u64(text: &str, what: &'static str) -> Result<u64, RangeError> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RangeError::Number(what));
    }
    text.parse::<u64>().map_err(|_| RangeError::Number(what))
}

/// In journals and JSON: `"first-last/total"`.
impl serde::Serialize for ContentRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}-{}/{}", self.first, self.last, self.total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> (u64, u64, u64) {
        let r = ContentRange::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        (r.first(), r.last(), r.total())
    }

    #[test]
    fn the_spec_example_parses() {
        assert_eq!(ok("bytes 0-65535/150000"), (0, 65535, 150000));
        assert_eq!(ok("bytes 65536-149999/150000"), (65536, 149999, 150000));
    }

    #[test]
    fn the_unit_is_case_insensitive() {
        assert_eq!(ok("Bytes 0-0/1"), (0, 0, 1));
        assert_eq!(ok("BYTES 0-0/1"), (0, 0, 1));
    }

    #[test]
    fn surrounding_whitespace_and_several_separating_spaces_are_tolerated() {
        assert_eq!(ok("  bytes   1-2/3 "), (1, 2, 3));
    }

    #[test]
    fn sixty_four_bit_offsets_parse_up_to_the_limit() {
        let max = u64::MAX;
        assert_eq!(ok(&format!("bytes 0-{}/{max}", max - 1)), (0, max - 1, max));
        assert_eq!(ok("bytes 4294967296-4294967300/5000000000").0, 1 << 32);
    }

    #[test]
    fn values_past_u64_are_rejected_not_wrapped() {
        assert_eq!(
            ContentRange::parse("bytes 0-1/18446744073709551616"),
            Err(RangeError::Number("total"))
        );
        assert_eq!(
            ContentRange::parse("bytes 0-99999999999999999999999/1"),
            Err(RangeError::Number("last byte"))
        );
    }

    #[test]
    fn reversed_and_past_total_ranges_are_rejected() {
        assert_eq!(
            ContentRange::parse("bytes 5-4/10"),
            Err(RangeError::Reversed)
        );
        assert_eq!(
            ContentRange::parse("bytes 0-10/10"),
            Err(RangeError::PastTotal)
        );
        assert_eq!(
            ContentRange::parse("bytes 0-0/0"),
            Err(RangeError::PastTotal)
        );
    }

    #[test]
    fn star_totals_signs_and_garbage_are_rejected() {
        for bad in [
            "bytes 0-1/*",
            "bytes */10",
            "bytes -1-2/3",
            "bytes +1-2/3",
            "bytes 1 -2/3",
            "bytes 1-2 /3",
            "bytes 0x1-2/3",
            "bytes 1-2",
            "bytes 1/3",
            "bytes=1-2/3",
            "bytes1-2/3",
            "octets 1-2/3",
            "",
            "byte",
            "bytes ",
            "bytes 1-2/3/4",
            "bytes 1-2-3/4",
            "bytes\t1-2/3",
            "bytes ١-2/3",
        ] {
            assert!(ContentRange::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn rendering_round_trips() {
        for text in ["bytes 0-0/1", "bytes 7-99/100", "bytes 0-65535/150000"] {
            let r = ContentRange::parse(text).unwrap();
            assert_eq!(r.to_string(), text);
            assert_eq!(ContentRange::parse(&r.to_string()), Ok(r));
        }
    }

    #[test]
    fn length_end_and_finality_follow_from_the_bounds() {
        let r = ContentRange::new(128, 212, 213).unwrap();
        assert_eq!(r.len(), 85);
        assert_eq!(r.end(), 213);
        assert!(r.is_final());
        assert!(!ContentRange::new(0, 0, 2).unwrap().is_final());
    }
}
