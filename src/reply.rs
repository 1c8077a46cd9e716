//! The built-in server application for upload-reply jobs (docs/protocol.md §7.7, §9.8).
//!
//! When an upload-reply session's last byte arrives, the "application" answers with a small
//! JSON document describing the upload. The reply is then served by plain `GET`/`HEAD` with
//! single byte-range support until Close-Session or expiry. This module is pure: it builds the
//! document and decides what a ranged request gets; the server writes it out.
//!
//! ```text
//! GET /BITS-Sessions/Replies/<id>/responsefile.bin HTTP/1.1
//! Range: bytes=0-511
//!
//! HTTP/1.1 206 Partial Content
//! Content-Range: bytes 0-511/612
//! Content-Length: 512
//! ```

use bytes::Bytes;

/// The reply document for an upload.
pub fn document(name: &str, size: u64, sha256_hex: &str) -> Bytes {
    let doc = serde_json::json!({ "name": name, "size": size, "sha256": sha256_hex });
    Bytes::from(doc.to_string())
}

/// What a GET or HEAD for a reply of `len` bytes gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// 200 with the whole reply.
    Whole,
    /// 206 with bytes `first..=last`.
    Partial { first: u64, last: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Decides how to answer a `Range` header (RFC 9110 §14.2): one range is honoured; several
/// ranges or an unparseable header fall back to the whole reply, as the RFC allows.
pub fn select(range: Option<&str>, len: u64) -> Served {
    let Some(spec) = range.and_then(|r| {
        let r = r.trim();
        r.get(..6)
            .filter(|u| u.eq_ignore_ascii_case("bytes="))
            .map(|_| &r[6..])
    }) else {
        return Served::Whole;
    };
    if spec.contains(',') {
        return Served::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Served::Whole;
    };
    let number = |t: &str| {
        (!t.is_empty() && t.len() <= 20 && t.bytes().all(|c| c.is_ascii_digit()))
            .then(|| t.parse::<u64>().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => Served::Unsatisfiable,
            Some(n) if len > 0 => Served::Partial {
                first: len.saturating_sub(n),
                last: len - 1,
            },
            Some(_) => Served::Unsatisfiable,
            None => Served::Whole,
        },
        (first, last) => {
            let Some(first) = number(first) else {
                return Served::Whole;
            };
            let last = if last.is_empty() {
                u64::MAX
            } else {
                match number(last) {
                    Some(l) if l >= first => l,
                    _ => return Served::Whole,
                }
            };
            if first >= len {
                Served::Unsatisfiable
            } else {
                Served::Partial {
                    first,
                    last: last.min(len - 1),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_the_upload_its_size_and_digest() {
        let doc = document("a.bin", 3, "ab01");
        let v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(v["name"], "a.bin");
        assert_eq!(v["size"], 3);
        assert_eq!(v["sha256"], "ab01");
    }

    #[test]
    fn single_ranges_are_honoured_and_clamped() {
        assert_eq!(
            select(Some("bytes=0-9"), 100),
            Served::Partial { first: 0, last: 9 }
        );
        assert_eq!(
            select(Some("Bytes=90-"), 100),
            Served::Partial {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            select(Some("bytes=90-500"), 100),
            Served::Partial {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            select(Some("bytes=-10"), 100),
            Served::Partial {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            select(Some("bytes=-500"), 100),
            Served::Partial { first: 0, last: 99 }
        );
    }

    #[test]
    fn unsatisfiable_ranges_are_416() {
        assert_eq!(select(Some("bytes=100-"), 100), Served::Unsatisfiable);
        assert_eq!(select(Some("bytes=-0"), 100), Served::Unsatisfiable);
        assert_eq!(select(Some("bytes=0-"), 0), Served::Unsatisfiable);
    }

    #[test]
    fn absent_multiple_or_garbled_ranges_serve_the_whole_reply() {
        for r in [
            None,
            Some("bytes=0-1,5-6"),
            Some("items=0-1"),
            Some("bytes=5-1"),
            Some("bytes=x-"),
            Some("bytes="),
        ] {
            assert_eq!(select(r, 100), Served::Whole, "{r:?}");
        }
    }
}
