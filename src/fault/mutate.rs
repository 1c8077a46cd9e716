//! The `mutate` fault: the real answer, then structure-aware mutations of it, for fuzzing the
//! client's parser of Acks (docs/fuzzing.md has the catalogue with its weights).
//!
//! ```text
//!  Rendered Ack ─▶ Answer (status line, header lines, body, line ending) ─▶ N mutations
//!  drawn from the seed ─▶ bytes on the wire + what each mutation changed, from what to what
//! ```
//!
//! Pure and deterministic: the same Ack, seed and settings give the same bytes. Every
//! mutation is bounded (an answer grows by at most [`MAX_GROWTH`] bytes) and described
//! exactly, so a finding can be replayed and explained.

use crate::proto::Rendered;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use std::fmt;

/// The most an answer may grow by all its mutations together.
pub const MAX_GROWTH: usize = 16 * 1024;
/// Length of an overlong header value.
const OVERLONG: usize = 4096;
/// Most mutations of one answer.
pub const MAX_COUNT: u32 = 8;

/// What a mutation works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Header lines: dropped, duplicated, reordered, re-cased, unknown, folded, overlong.
    Header,
    /// The value of one BITS header.
    Value,
    /// The status line's code and reason.
    Status,
    /// How the answer is framed: lengths, bodies, chunking, HTTP version, line endings.
    Framing,
}

impl Family {
    pub const ALL: [Family; 4] = [
        Family::Header,
        Family::Value,
        Family::Status,
        Family::Framing,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Header => "header",
            Family::Value => "value",
            Family::Status => "status",
            Family::Framing => "framing",
        }
    }

    pub fn parse(text: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == text)
    }

    /// How often each family is drawn when several are allowed.
    fn weight(self) -> u32 {
        match self {
            Family::Header => 3,
            Family::Value => 5,
            Family::Status => 2,
            Family::Framing => 2,
        }
    }
}

/// One change made to an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mutation {
    pub family: Family,
    /// The mutation's name in the catalogue (`off-by-one`, `drop`, `lf-only`, …).
    pub name: &'static str,
    /// What it changed: a header name, `status line`, `body`, `line endings`, `header order`.
    pub target: String,
    /// Before and after, as text (invalid UTF-8 shown as `\xNN`; long values shortened).
    pub from: String,
    pub to: String,
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}: `{}` → `{}`",
            self.family.name(),
            self.name,
            self.target,
            self.from,
            self.to
        )
    }
}

/// An answer as bytes we can take apart.
#[derive(Debug, Clone)]
struct Answer {
    version: &'static str,
    status: Vec<u8>,
    reason: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    eol: &'static str,
}

impl Answer {
    fn of(rendered: &Rendered) -> Answer {
        Answer {
            version: "HTTP/1.1",
            status: rendered.status.to_string().into_bytes(),
            reason: reason(rendered.status).as_bytes().to_vec(),
            headers: rendered
                .headers
                .iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
            body: Vec::new(),
            eol: "\r\n",
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let eol = self.eol.as_bytes();
        let mut out = Vec::new();
        out.extend_from_slice(self.version.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.status);
        out.push(b' ');
        out.extend_from_slice(&self.reason);
        out.extend_from_slice(eol);
        for (name, value) in &self.headers {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            // An obsolete fold is kept as written, with this answer's line ending.
            out.extend_from_slice(&replace(value, b"\r\n", eol));
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(eol);
        out.extend_from_slice(&self.body);
        out
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// The headers as a client might read them back, for the record.
    fn rendered(&self) -> Rendered {
        let status = std::str::from_utf8(&self.status)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut r = Rendered {
            status,
            headers: Vec::new(),
        };
        for (name, value) in &self.headers {
            if let Some(known) = KNOWN
                .iter()
                .find(|k| k.as_bytes().eq_ignore_ascii_case(name))
                && r.header(known).is_none()
            {
                r.headers.push((known, shown(value)));
            }
        }
        r
    }
}

/// Header names the record keeps (the ones a verdict reads).
const KNOWN: [&str; 9] = [
    "BITS-Packet-Type",
    "BITS-Session-Id",
    "BITS-Received-Content-Range",
    "BITS-Error-Code",
    "BITS-Error-Context",
    "BITS-Reply-URL",
    "BITS-Protocol",
    "Retry-After",
    "Content-Length",
];

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from == to {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

/// Bytes as text for the record: UTF-8 where it is, `\xNN` where not, at most 80 characters.
fn shown(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    if out.chars().count() > 80 {
        let kept: String = out.chars().take(60).collect();
        format!("{kept}… ({} bytes)", bytes.len())
    } else {
        out
    }
}

/// The answer's bytes as the mutations start from them (no mutation applied).
pub fn unmutated(rendered: &Rendered) -> Vec<u8> {
    Answer::of(rendered).bytes()
}

/// The result of mutating one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutated {
    /// What goes on the wire.
    pub bytes: Vec<u8>,
    /// The mutated status and BITS headers as text, for the record.
    pub shaped: Rendered,
    pub mutations: Vec<Mutation>,
}

/// Mutates `rendered` `count` times with mutations of the allowed families, drawn from
/// `seed`. `other_session` is a session id that is not the answer's (for `another-session`).
pub fn mutate(
    rendered: &Rendered,
    seed: u64,
    families: &[Family],
    count: u32,
    other_session: &str,
) -> Mutated {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut answer = Answer::of(rendered);
    let start = answer.bytes().len();
    let families: Vec<Family> = if families.is_empty() {
        Family::ALL.to_vec()
    } else {
        families.to_vec()
    };
    let mut mutations = Vec::new();
    for _ in 0..count.clamp(1, MAX_COUNT) {
        let family = pick(&mut rng, &families, |f| f.weight());
        let before = answer.clone();
        let mutation = match family {
            Family::Header => header(&mut answer, &mut rng),
            Family::Value => value(&mut answer, &mut rng, other_session),
            Family::Status => status(&mut answer, &mut rng),
            Family::Framing => framing(&mut answer, &mut rng),
        };
        match mutation {
            Some(m) if answer.bytes().len() <= start + MAX_GROWTH => mutations.push(m),
            // Nothing to mutate (no header of the kind), or over the bound: undo.
            _ => answer = before,
        }
    }
    Mutated {
        bytes: answer.bytes(),
        shaped: answer.rendered(),
        mutations,
    }
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T], weight: impl Fn(T) -> u32) -> T {
    let total: u32 = items.iter().map(|&i| weight(i)).sum();
    let mut at = rng.random_range(0..total.max(1));
    for &item in items {
        let w = weight(item);
        if at < w {
            return item;
        }
        at -= w;
    }
    items[0]
}

fn m(family: Family, name: &'static str, target: &str, from: &[u8], to: &[u8]) -> Mutation {
    Mutation {
        family,
        name,
        target: target.to_owned(),
        from: shown(from),
        to: shown(to),
    }
}

/// Header-level mutations and their weights.
const HEADER: [(&str, u32); 7] = [
    ("drop", 3),
    ("duplicate", 2),
    ("reorder", 1),
    ("name-case", 2),
    ("unknown", 1),
    ("folded", 1),
    ("overlong", 1),
];

fn header(a: &mut Answer, rng: &mut StdRng) -> Option<Mutation> {
    let name = pick(rng, &HEADER, |(_, w)| w).0;
    let f = Family::Header;
    if a.headers.is_empty() && name != "unknown" {
        return None;
    }
    let i = rng.random_range(0..a.headers.len().max(1));
    let target = |a: &Answer| String::from_utf8_lossy(&a.headers[i].0).into_owned();
    Some(match name {
        "drop" => {
            let t = target(a);
            let (_, value) = a.headers.remove(i);
            m(f, "drop", &t, &value, b"(absent)")
        }
        "duplicate" => {
            let t = target(a);
            let (n, v) = a.headers[i].clone();
            let mut other = v.clone();
            other.extend_from_slice(b"0");
            a.headers.insert(i + 1, (n, other.clone()));
            m(
                f,
                "duplicate",
                &t,
                &v,
                &[&v[..], b" and ", &other[..]].concat(),
            )
        }
        "reorder" => {
            let before = names(a);
            let n = a.headers.len();
            a.headers
                .rotate_left(rng.random_range(1..n.max(2)) % n.max(1));
            if n > 1 {
                a.headers.swap(0, n - 1);
            }
            m(
                f,
                "reorder",
                "header order",
                before.as_bytes(),
                names(a).as_bytes(),
            )
        }
        "name-case" => {
            let t = target(a);
            let old = a.headers[i].0.clone();
            let new: Vec<u8> = match rng.random_range(0..3) {
                0 => old.to_ascii_lowercase(),
                1 => old.to_ascii_uppercase(),
                _ => old
                    .iter()
                    .enumerate()
                    .map(|(k, b)| {
                        if k % 2 == 0 {
                            b.to_ascii_lowercase()
                        } else {
                            b.to_ascii_uppercase()
                        }
                    })
                    .collect(),
            };
            a.headers[i].0.clone_from(&new);
            m(f, "name-case", &t, &old, &new)
        }
        "unknown" => {
            let (n, v): (&[u8], &[u8]) = match rng.random_range(0..3) {
                0 => (b"BITS-Unknown-Header", b"1"),
                1 => (
                    b"X-Bitsmock-Noise",
                    b"{00000000-0000-0000-0000-000000000000}",
                ),
                _ => (b"BITS-Received-Content-Range-Extra", b"0"),
            };
            let at = rng.random_range(0..=a.headers.len());
            a.headers.insert(at, (n.to_vec(), v.to_vec()));
            m(f, "unknown", &String::from_utf8_lossy(n), b"(absent)", v)
        }
        "folded" => {
            let t = target(a);
            let v = a.headers[i].1.clone();
            let cut = v.len() / 2;
            let folded = [&v[..cut], b"\r\n ", &v[cut..]].concat();
            a.headers[i].1.clone_from(&folded);
            m(f, "folded", &t, &v, &folded)
        }
        _ => {
            let t = target(a);
            let v = a.headers[i].1.clone();
            let mut long = v.clone();
            long.resize(OVERLONG.max(v.len()), b'9');
            a.headers[i].1.clone_from(&long);
            m(f, "overlong", &t, &v, &long)
        }
    })
}

fn names(a: &Answer) -> String {
    a.headers
        .iter()
        .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// What a BITS header holds, for the value mutations that make sense for it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Holds {
    Number,
    Guid,
    Url,
    Code,
    Word,
}

fn holds(name: &[u8]) -> Option<Holds> {
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    if is("BITS-Received-Content-Range") || is("BITS-Error-Context") || is("Content-Length") {
        Some(Holds::Number)
    } else if is("BITS-Session-Id") || is("BITS-Protocol") {
        Some(Holds::Guid)
    } else if is("BITS-Reply-URL") || is("BITS-Host-Id") {
        Some(Holds::Url)
    } else if is("BITS-Error-Code") {
        Some(Holds::Code)
    } else if is("BITS-Packet-Type") {
        Some(Holds::Word)
    } else {
        None
    }
}

/// How much each header is picked for a value mutation: the received range is where resume
/// logic lives.
fn target_weight(name: &[u8]) -> u32 {
    if name.eq_ignore_ascii_case(b"BITS-Received-Content-Range") {
        6
    } else if name.eq_ignore_ascii_case(b"Content-Length") {
        1
    } else {
        2
    }
}

fn value(a: &mut Answer, rng: &mut StdRng, other_session: &str) -> Option<Mutation> {
    let candidates: Vec<usize> = (0..a.headers.len())
        .filter(|&i| holds(&a.headers[i].0).is_some())
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let i = pick(rng, &candidates, |i| target_weight(&a.headers[i].0));
    let kind = holds(&a.headers[i].0)?;
    let old = a.headers[i].1.clone();
    let text = String::from_utf8_lossy(&old).into_owned();
    let number = text.trim().parse::<u64>().ok();
    let common: [(&'static str, Vec<u8>); 4] = [
        ("whitespace", format!(" {text}\t").into_bytes()),
        ("non-ascii", format!("{text}\u{00e9}").into_bytes()),
        ("invalid-utf8", [&old[..], b"\xff\xfe"].concat()),
        ("empty", Vec::new()),
    ];
    let specific: Vec<(&'static str, Vec<u8>)> = match kind {
        Holds::Number => {
            let n = number.unwrap_or(0);
            vec![
                ("off-by-one", (n + 1).to_string().into_bytes()),
                ("off-by-one", n.saturating_sub(1).to_string().into_bytes()),
                ("negative", format!("-{n}").into_bytes()),
                ("huge", b"18446744073709551616".to_vec()),
                ("hex", format!("0x{n:X}").into_bytes()),
                ("digits-split", format!("{n} 0").into_bytes()),
            ]
        }
        Holds::Guid => {
            let bare = text.trim_matches(|c| c == '{' || c == '}').to_owned();
            vec![
                ("no-braces", bare.clone().into_bytes()),
                ("lower-case", text.to_ascii_lowercase().into_bytes()),
                (
                    "truncated",
                    text.chars()
                        .take(text.len() / 2)
                        .collect::<String>()
                        .into_bytes(),
                ),
                ("another-session", other_session.as_bytes().to_vec()),
            ]
        }
        Holds::Url => {
            let path = text
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|p| rest[p..].to_owned()))
                .unwrap_or_else(|| text.clone());
            let mut long = text.clone();
            long.push_str(&"a".repeat(2300));
            vec![
                (
                    "relative",
                    path.trim_start_matches('/').to_owned().into_bytes(),
                ),
                ("overlong", long.into_bytes()),
                (
                    "other-scheme",
                    format!(
                        "ftp://{}",
                        text.split_once("://").map_or(text.as_str(), |(_, r)| r)
                    )
                    .into_bytes(),
                ),
                (
                    "other-host",
                    format!("http://203.0.113.7:1{path}").into_bytes(),
                ),
            ]
        }
        Holds::Code => {
            let code = u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).unwrap_or(0);
            vec![
                (
                    "off-by-one",
                    format!("0x{:08X}", code.wrapping_add(1)).into_bytes(),
                ),
                ("decimal", code.to_string().into_bytes()),
                ("lower-case", text.to_ascii_lowercase().into_bytes()),
                ("no-prefix", format!("{code:08X}").into_bytes()),
            ]
        }
        Holds::Word => vec![
            ("lower-case", text.to_ascii_lowercase().into_bytes()),
            ("other-word", b"Nack".to_vec()),
            ("trailing-space", format!("{text} ").into_bytes()),
        ],
    };
    let all: Vec<(&'static str, Vec<u8>)> = specific.into_iter().chain(common).collect();
    let (name, new) = all[rng.random_range(0..all.len())].clone();
    let target = String::from_utf8_lossy(&a.headers[i].0).into_owned();
    a.headers[i].1.clone_from(&new);
    Some(m(Family::Value, name, &target, &old, &new))
}

fn status(a: &mut Answer, rng: &mut StdRng) -> Option<Mutation> {
    let old_line = [&a.status[..], b" ", &a.reason[..]].concat();
    let (name, code, reason): (&'static str, &str, &[u8]) = match rng.random_range(0..7) {
        0 => (
            "other-2xx",
            ["201", "202", "204", "206"][rng.random_range(0..4)],
            b"OK",
        ),
        1 => (
            "other-4xx",
            ["400", "404", "409", "416"][rng.random_range(0..4)],
            b"Client Error",
        ),
        2 => (
            "other-5xx",
            ["500", "502", "503"][rng.random_range(0..3)],
            b"Server Error",
        ),
        3 => (
            "unknown-code",
            ["299", "599", "999", "100"][rng.random_range(0..4)],
            b"Whatever",
        ),
        4 => ("reason-phrase", "", b"Everything Is Fine (not really)"),
        5 => ("empty-reason", "", b""),
        _ => (
            "non-ascii-reason",
            "",
            "D\u{00e9}j\u{00e0} vu \u{2713}".as_bytes(),
        ),
    };
    if !code.is_empty() {
        a.status = code.as_bytes().to_vec();
    }
    a.reason = reason.to_vec();
    let new_line = [&a.status[..], b" ", &a.reason[..]].concat();
    Some(m(Family::Status, name, "status line", &old_line, &new_line))
}

fn framing(a: &mut Answer, rng: &mut StdRng) -> Option<Mutation> {
    let f = Family::Framing;
    let length = a.find("Content-Length");
    Some(match rng.random_range(0..6) {
        0 => {
            let old = length.map(|i| a.headers[i].1.clone()).unwrap_or_default();
            let new = b"17".to_vec();
            match length {
                Some(i) => a.headers[i].1.clone_from(&new),
                None => a.headers.push((b"Content-Length".to_vec(), new.clone())),
            }
            m(f, "wrong-length", "Content-Length", &old, &new)
        }
        1 => {
            let body = b"unexpected body!".to_vec();
            let len = body.len().to_string().into_bytes();
            match length {
                Some(i) => a.headers[i].1.clone_from(&len),
                None => a.headers.push((b"Content-Length".to_vec(), len)),
            }
            a.body.clone_from(&body);
            m(f, "unexpected-body", "body", b"(empty)", &body)
        }
        2 => {
            if let Some(i) = length {
                a.headers.remove(i);
            }
            a.headers
                .push((b"Transfer-Encoding".to_vec(), b"chunked".to_vec()));
            a.body = b"5\r\nhello\r\n0\r\n\r\n".to_vec();
            m(
                f,
                "chunked",
                "body",
                b"Content-Length: 0",
                b"Transfer-Encoding: chunked, 5 bytes",
            )
        }
        3 => {
            a.version = "HTTP/1.0";
            m(f, "http-1.0", "status line", b"HTTP/1.1", b"HTTP/1.0")
        }
        4 => {
            a.eol = "\n";
            m(f, "lf-only", "line endings", b"\\r\\n", b"\\n")
        }
        _ => {
            let old = length.map(|i| a.headers[i].1.clone()).unwrap_or_default();
            if let Some(i) = length {
                a.headers.remove(i);
            }
            m(
                f,
                "no-length",
                "Content-Length",
                &old,
                b"(absent: the body ends at close)",
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment_ack() -> Rendered {
        Rendered {
            status: 200,
            headers: vec![
                ("BITS-Packet-Type", "Ack".into()),
                (
                    "BITS-Session-Id",
                    "{6E4B3C1A-0000-4000-8000-000000000001}".into(),
                ),
                ("BITS-Received-Content-Range", "5120".into()),
                ("Content-Length", "0".into()),
            ],
        }
    }

    const OTHER: &str = "{11111111-2222-4333-8444-555555555555}";

    #[test]
    fn no_mutation_of_the_plain_answer_is_the_answer_itself() {
        let a = Answer::of(&fragment_ack());
        let text = String::from_utf8(a.bytes()).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nBITS-Packet-Type: Ack\r\nBITS-Session-Id: {6E4B3C1A-0000-4000-8000-000000000001}\r\nBITS-Received-Content-Range: 5120\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(a.rendered(), fragment_ack());
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes_and_other_seeds_other_ones() {
        let one = mutate(&fragment_ack(), 7, &[], 3, OTHER);
        assert_eq!(one, mutate(&fragment_ack(), 7, &[], 3, OTHER));
        let distinct: std::collections::BTreeSet<Vec<u8>> = (0..50)
            .map(|s| mutate(&fragment_ack(), s, &[], 1, OTHER).bytes)
            .collect();
        assert!(distinct.len() > 20, "{}", distinct.len());
    }

    #[test]
    fn every_mutation_is_recorded_and_bounded_and_only_allowed_families_appear() {
        let plain = Answer::of(&fragment_ack()).bytes().len();
        for seed in 0..2000 {
            let count = (seed % 4) as u32 + 1;
            let families = [Family::ALL[(seed % 4) as usize]];
            let out = mutate(&fragment_ack(), seed, &families, count, OTHER);
            assert!(out.bytes.len() <= plain + MAX_GROWTH, "seed {seed}");
            assert!(!out.mutations.is_empty(), "seed {seed}: something changed");
            assert!(out.mutations.len() <= count as usize);
            assert!(out.mutations.iter().all(|m| m.family == families[0]));
            assert!(
                out.mutations
                    .iter()
                    .all(|m| m.from.chars().count() <= 100 && m.to.chars().count() <= 100)
            );
            if out
                .mutations
                .iter()
                .any(|m| m.name != "reorder" || m.from != m.to)
            {
                assert_ne!(
                    out.bytes,
                    Answer::of(&fragment_ack()).bytes(),
                    "seed {seed}: {:?}",
                    out.mutations
                );
            }
        }
    }

    #[test]
    fn every_catalogue_entry_is_reachable() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..4000 {
            for m in mutate(&fragment_ack(), seed, &[], 1, OTHER).mutations {
                seen.insert(m.name);
            }
        }
        for name in [
            "drop",
            "duplicate",
            "reorder",
            "name-case",
            "unknown",
            "folded",
            "overlong",
            "off-by-one",
            "negative",
            "huge",
            "hex",
            "digits-split",
            "whitespace",
            "non-ascii",
            "invalid-utf8",
            "empty",
            "no-braces",
            "lower-case",
            "truncated",
            "another-session",
            "other-2xx",
            "other-4xx",
            "other-5xx",
            "unknown-code",
            "reason-phrase",
            "empty-reason",
            "non-ascii-reason",
            "wrong-length",
            "unexpected-body",
            "chunked",
            "http-1.0",
            "lf-only",
            "no-length",
        ] {
            assert!(seen.contains(name), "{name} never drawn: {seen:?}");
        }
    }

    #[test]
    fn mutations_say_exactly_what_changed() {
        // Find one of each shape and check the bytes against its description.
        let mut checked = 0;
        for seed in 0..3000 {
            let out = mutate(&fragment_ack(), seed, &[Family::Value], 1, OTHER);
            let text = String::from_utf8_lossy(&out.bytes).into_owned();
            let mu = &out.mutations[0];
            match mu.name {
                "another-session" => {
                    assert!(
                        text.contains(&format!("BITS-Session-Id: {OTHER}\r\n")),
                        "{text}"
                    );
                    checked += 1;
                }
                "huge" if mu.target == "BITS-Received-Content-Range" => {
                    assert!(text.contains("BITS-Received-Content-Range: 18446744073709551616\r\n"));
                    assert_eq!(
                        out.shaped.header("BITS-Received-Content-Range"),
                        Some("18446744073709551616")
                    );
                    assert_eq!(
                        (mu.from.as_str(), mu.to.as_str()),
                        ("5120", "18446744073709551616")
                    );
                    checked += 1;
                }
                "invalid-utf8" => {
                    assert!(out.bytes.windows(2).any(|w| w == b"\xff\xfe"));
                    assert!(mu.to.ends_with("\\xFF\\xFE"), "{mu:?}");
                    checked += 1;
                }
                _ => {}
            }
        }
        assert!(checked >= 3);
        for seed in 0..300 {
            let out = mutate(&fragment_ack(), seed, &[Family::Framing], 1, OTHER);
            let text = String::from_utf8_lossy(&out.bytes).into_owned();
            match out.mutations[0].name {
                "lf-only" => assert!(!text.contains('\r') && text.ends_with("\n\n"), "{text:?}"),
                "http-1.0" => assert!(text.starts_with("HTTP/1.0 200 OK\r\n")),
                "chunked" => assert!(
                    text.ends_with("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
                    "{text:?}"
                ),
                "unexpected-body" => {
                    assert!(text.ends_with("Content-Length: 16\r\n\r\nunexpected body!"))
                }
                "no-length" => assert!(!text.contains("Content-Length")),
                "wrong-length" => assert!(
                    text.contains("Content-Length: 17\r\n\r\n") && text.ends_with("\r\n\r\n")
                ),
                other => panic!("not a framing mutation: {other}"),
            }
        }
    }

    #[test]
    fn families_parse_by_name() {
        for f in Family::ALL {
            assert_eq!(Family::parse(f.name()), Some(f));
        }
        assert_eq!(Family::parse("headers"), None);
        assert_eq!(shown(b"a\r\n\xff"), "a\\r\\n\\xFF");
        assert!(shown(&[b'x'; 200]).ends_with("(200 bytes)"));
    }
}
