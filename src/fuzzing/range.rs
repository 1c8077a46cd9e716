//! Target `content_range`: a header value → [`ContentRange::parse`].
//!
//! The input is the value itself (`bytes 0-65535/150000`); bytes that are not UTF-8 are
//! replaced, as a header value that is not text never reaches the parser as a range.
//!
//! Properties: no panic and no overflow (fuzz builds check arithmetic); the parser agrees
//! with an independent model of docs/protocol.md §3.3/§7.5 step 1 that computes in `u128`; an
//! accepted range keeps `first <= last < total`, and its rendering is canonical and parses
//! back to the same range.

use crate::proto::range::ContentRange;

/// The `content_range` target.
pub fn check(data: &[u8]) {
    check_text(&String::from_utf8_lossy(data));
}

/// Every property of [`ContentRange::parse`] for one value.
pub fn check_text(text: &str) {
    let parsed = ContentRange::parse(text).ok();
    let expected = model(text);
    assert_eq!(
        parsed.map(|r| (r.first(), r.last(), r.total())),
        expected,
        "parser and model disagree on {text:?}"
    );
    let Some(r) = parsed else { return };
    assert!(r.first() <= r.last() && r.last() < r.total(), "{r:?}");
    assert_eq!(
        u128::from(r.len()),
        u128::from(r.last()) - u128::from(r.first()) + 1
    );
    assert_eq!(r.end(), r.last() + 1);
    assert_eq!(r.is_final(), r.end() == r.total());
    let canonical = r.to_string();
    assert_eq!(
        canonical,
        format!("bytes {}-{}/{}", r.first(), r.last(), r.total())
    );
    assert_eq!(ContentRange::parse(&canonical), Ok(r), "{canonical:?}");
    assert_eq!(ContentRange::new(r.first(), r.last(), r.total()), Ok(r));
}

/// The accepted language, written out independently: blanks around, the unit `bytes` in any
/// case, one or more spaces, then `DIGITS-DIGITS/DIGITS`, each at most 20 digits and at most
/// `u64::MAX`.
fn model(text: &str) -> Option<(u64, u64, u64)> {
    let text = text.trim_matches([' ', '\t']);
    if text.len() < 5 || !text.is_char_boundary(5) {
        return None;
    }
    let (unit, rest) = text.split_at(5);
    if !unit.eq_ignore_ascii_case("bytes") || !rest.starts_with(' ') {
        return None;
    }
    let spec = rest.trim_start_matches(' ');
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // At most 20 digits (u64::MAX has 20), leading zeros included: a bound on work.
        if s.len() > 20 {
            return None;
        }
        u64::try_from(s.parse::<u128>().ok()?).ok()
    };
    let mut parts = spec.splitn(2, '/');
    let span = parts.next()?;
    let total = number(parts.next()?)?;
    let (first, last) = span.split_once('-')?;
    let (first, last) = (number(first)?, number(last)?);
    (first <= last && last < total).then_some((first, last, total))
}
