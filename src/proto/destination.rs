//! The destination URL's path, validated so it can never leave the upload root
//! (docs/protocol.md §7.10, issue "path safety").
//!
//! ```text
//! BITS_POST /drop/report.bin HTTP/1.1        ->  ["drop", "report.bin"]
//! BITS_POST /drop/../etc/passwd HTTP/1.1     ->  rejected (400 + 0x80070057)
//! ```
//!
//! Only plain segments survive: no `.`/`..`, no empty segments, no backslash, NUL or other
//! control characters, no `:` (drive letters, alternate streams), and no percent-encoded
//! dot, slash or backslash (a decoder elsewhere could turn them into traversal). The query
//! string is dropped; an absolute-form target (`http://host/path`, sent through proxies)
//! keeps only its path.

use std::fmt::{self, Write as _};

/// Longest request-target accepted, in bytes.
pub const MAX_TARGET_LEN: usize = 2048;
/// Longest single segment, in bytes after decoding (a common filesystem name limit).
pub const MAX_SEGMENT_LEN: usize = 255;
/// First segment reserved for the server's own session files and reply URLs.
pub const RESERVED_SEGMENT: &str = "BITS-Sessions";

/// A validated destination: one or more plain segments, kept decoded and joined by `/` in
/// one string (a segment never holds a `/`: an encoded one is rejected). One allocation per
/// destination, however many segments it has.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    path: String,
}

/// Why a request-target cannot name a destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("request-target is longer than {MAX_TARGET_LEN} bytes")]
    TooLong,
    #[error("request-target must be an absolute path")]
    NotAbsolute,
    #[error("request-target names a directory, not a file")]
    Directory,
    #[error("request-target has an empty, `.` or `..` segment")]
    DotSegment,
    #[error("request-target has a percent-encoded dot, slash, backslash or NUL")]
    EncodedSeparator,
    #[error("request-target has a malformed percent escape")]
    BadEscape,
    #[error("request-target has a backslash, colon, control character or invalid UTF-8")]
    ForbiddenCharacter,
    #[error("request-target segment is longer than {MAX_SEGMENT_LEN} bytes")]
    SegmentTooLong,
    #[error("request-target is reserved for the server's own files")]
    Reserved,
}

impl Destination {
    /// Validates a request-target.
    pub fn parse(target: &str) -> Result<Self, DestinationError> {
        if target.len() > MAX_TARGET_LEN {
            return Err(DestinationError::TooLong);
        }
        let path = origin_path(target)?;
        let path = path.split('?').next().unwrap_or_default();
        let path = path
            .strip_prefix('/')
            .ok_or(DestinationError::NotAbsolute)?;
        if path.is_empty() || path.ends_with('/') {
            return Err(DestinationError::Directory);
        }
        let mut decoded = Vec::with_capacity(path.len());
        for (i, raw) in path.split('/').enumerate() {
            if i > 0 {
                decoded.push(b'/');
            }
            decode_segment(raw, &mut decoded)?;
        }
        let path = String::from_utf8(decoded).map_err(|_| DestinationError::ForbiddenCharacter)?;
        let destination = Destination { path };
        if destination
            .segments()
            .next()
            .is_some_and(|first| first.eq_ignore_ascii_case(RESERVED_SEGMENT))
        {
            return Err(DestinationError::Reserved);
        }
        // The canonical form percent-encodes what the target may have sent raw, up to three
        // times longer; it must fit the same limit or the rendered target would not parse.
        if destination.canonical_len() > MAX_TARGET_LEN {
            return Err(DestinationError::TooLong);
        }
        Ok(destination)
    }

    /// Length of the rendering ([`fmt::Display`]) without building it.
    fn canonical_len(&self) -> usize {
        1 + self
            .path
            .bytes()
            .map(|b| if b == b'/' || plain(b) { 1 } else { 3 })
            .sum::<usize>()
    }

    /// The plain segments, safe to join under the upload root.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path.split('/')
    }

    /// The last segment: the file name.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }

    /// Whether this path lies under a URL prefix such as `/reply/` (segment-wise).
    pub fn starts_with(&self, prefix: &[String]) -> bool {
        let mut segments = self.segments();
        prefix.iter().all(|p| segments.next() == Some(p.as_str())) && segments.next().is_some()
    }
}

/// Renders the canonical request-target; parsing it gives back the same destination.
impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('/')?;
        for &b in self.path.as_bytes() {
            if b == b'/' || plain(b) {
                f.write_char(b as char)?;
            } else {
                write!(f, "%{b:02X}")?;
            }
        }
        Ok(())
    }
}

/// Bytes a rendered segment keeps as they are; all others are percent-encoded.
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=@".contains(&b)
}

/// Splits a URL prefix like `/reply/` into the segments `Destination::starts_with` expects.
pub fn prefix_segments(prefix: &str) -> Vec<String> {
    prefix
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn origin_path(target: &str) -> Result<&str, DestinationError> {
    let scheme = |name: &str| {
        target
            .get(..name.len())
            .is_some_and(|t| t.eq_ignore_ascii_case(name))
    };
    let rest = if scheme("http://") {
        &target[7..]
    } else if scheme("https://") {
        &target[8..]
    } else {
        return Ok(target);
    };
    match rest.find('/') {
        Some(at) => Ok(&rest[at..]),
        None => Err(DestinationError::Directory),
    }
}

/// Decodes one raw segment onto the end of `out` and checks it is plain.
fn decode_segment(raw: &str, out: &mut Vec<u8>) -> Result<(), DestinationError> {
    if raw.is_empty() || raw == "." || raw == ".." {
        return Err(DestinationError::DotSegment);
    }
    let start = out.len();
    let bytes = raw.as_bytes();
    let mut i = 0;
    while let Some(at) = bytes[i..].iter().position(|&b| b == b'%') {
        out.extend_from_slice(&bytes[i..i + at]);
        i += at;
        let value = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| Some(hex_digit(hex[0])? << 4 | hex_digit(hex[1])?))
            .ok_or(DestinationError::BadEscape)?;
        if matches!(value, b'.' | b'/' | b'\\' | 0) {
            return Err(DestinationError::EncodedSeparator);
        }
        out.push(value);
        i += 3;
    }
    out.extend_from_slice(&bytes[i..]);
    let text =
        std::str::from_utf8(&out[start..]).map_err(|_| DestinationError::ForbiddenCharacter)?;
    if text
        .chars()
        .any(|c| c == '\\' || c == ':' || c == '#' || c.is_control())
    {
        return Err(DestinationError::ForbiddenCharacter);
    }
    if text.len() > MAX_SEGMENT_LEN {
        return Err(DestinationError::SegmentTooLong);
    }
    Ok(())
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(target: &str) -> Vec<String> {
        Destination::parse(target)
            .unwrap_or_else(|e| panic!("{target:?}: {e}"))
            .segments()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn plain_paths_become_segments() {
        assert_eq!(segs("/drop/report.bin"), ["drop", "report.bin"]);
        assert_eq!(segs("/a.b/c..d/.hidden"), ["a.b", "c..d", ".hidden"]);
    }

    #[test]
    fn the_query_string_is_dropped_and_absolute_form_keeps_its_path() {
        assert_eq!(segs("/x/y.bin?job=1"), ["x", "y.bin"]);
        assert_eq!(segs("http://upload.test/drop/r.bin"), ["drop", "r.bin"]);
        assert_eq!(segs("HTTPS://h:8080/r.bin"), ["r.bin"]);
    }

    #[test]
    fn harmless_escapes_are_decoded() {
        assert_eq!(segs("/my%20file.txt"), ["my file.txt"]);
        assert_eq!(segs("/%C3%A9t%C3%A9"), ["été"]);
    }

    #[test]
    fn traversal_in_every_spelling_is_rejected() {
        for bad in [
            "/../etc/passwd",
            "/a/../../b",
            "/a/./b",
            "/a//b",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/.%2e/x",
            "/a%2fb",
            "/a%2F..%2Fb",
            "/a%5cb",
            "/a\\b",
            "/..\\x",
            "/a%00b",
            "/a\0b",
            "/C:/windows/x",
            "/c%3A/x",
            "//server/share",
            "http://h/../x",
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn directories_relative_targets_and_bad_escapes_are_rejected() {
        assert_eq!(Destination::parse("/"), Err(DestinationError::Directory));
        assert_eq!(Destination::parse("/a/"), Err(DestinationError::Directory));
        assert_eq!(
            Destination::parse("a/b"),
            Err(DestinationError::NotAbsolute)
        );
        assert_eq!(Destination::parse("*"), Err(DestinationError::NotAbsolute));
        assert_eq!(Destination::parse("/a%"), Err(DestinationError::BadEscape));
        assert_eq!(
            Destination::parse("/a%zz"),
            Err(DestinationError::BadEscape)
        );
        assert_eq!(
            Destination::parse("/%ff"),
            Err(DestinationError::ForbiddenCharacter)
        );
        assert_eq!(
            Destination::parse(&format!("/{}", "a".repeat(256))),
            Err(DestinationError::SegmentTooLong)
        );
        assert_eq!(
            Destination::parse(&format!("/{}", "a".repeat(3000))),
            Err(DestinationError::TooLong)
        );
        assert_eq!(
            Destination::parse("/bits-sessions/x"),
            Err(DestinationError::Reserved)
        );
    }

    #[test]
    fn a_target_whose_rendering_would_exceed_the_limit_is_too_long() {
        // fuzz/regressions/packet/rendered-target-longer-than-the-limit: every raw `{` renders
        // as `%7B`, so a target well under the limit rendered past it and did not parse back.
        let segment = "{".repeat(200);
        let fits = format!("/{segment}/{segment}/{segment}");
        let d = Destination::parse(&fits).unwrap();
        assert_eq!(d.to_string().len(), 3 * 601);
        assert_eq!(Destination::parse(&d.to_string()), Ok(d));
        let too_long = format!("{fits}/{segment}");
        assert!(too_long.len() < MAX_TARGET_LEN / 2);
        assert_eq!(
            Destination::parse(&too_long),
            Err(DestinationError::TooLong)
        );
    }

    #[test]
    fn rendering_round_trips() {
        for target in ["/drop/report.bin", "/my%20file.txt", "/%C3%A9/~a+b"] {
            let d = Destination::parse(target).unwrap();
            assert_eq!(Destination::parse(&d.to_string()), Ok(d));
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let prefix = prefix_segments("/reply/");
        assert!(Destination::parse("/reply/a").unwrap().starts_with(&prefix));
        assert!(
            !Destination::parse("/replyx/a")
                .unwrap()
                .starts_with(&prefix)
        );
        assert!(!Destination::parse("/reply").unwrap().starts_with(&prefix));
    }
}
