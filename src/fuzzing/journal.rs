//! Target `journal`: a journal file's bytes → [`crate::journal_view`] (`bitsmock journal`).
//!
//! The input is the file itself: NDJSON event lines as the file sink writes them (the seeds
//! are lines from a real run), or anything a damaged, truncated or newer file might hold.
//!
//! Properties: reading never panics and gives one entry per line (a `\n` ends a line; a
//! last line without one counts), numbered from 1; reading the bytes in two pieces gives
//! the same entries as reading them whole (`--follow` reads a growing file in pieces);
//! under every filter the view is a heading plus at most one row per line — exactly one
//! unfiltered — and keeps every bad line; no row holds a line break or any other control
//! character, in the fitted and the streaming layout alike.

use crate::journal_view::{Entry, Filter, Layout, Lines, SessionMatch, read, row, view};
use crate::proto::{PacketType, SessionId};

/// The `journal` target.
pub fn check(data: &[u8]) {
    let entries = read(data);
    let lines = memchr::memchr_iter(b'\n', data).count()
        + usize::from(data.last().is_some_and(|&b| b != b'\n'));
    assert_eq!(entries.len(), lines, "one entry per line");
    for (n, entry) in entries.iter().enumerate() {
        assert_eq!(entry.line, n as u64 + 1, "entries are numbered by line");
    }
    assert_eq!(in_two_pieces(data), entries, "read in pieces");

    let bad = entries.iter().filter(|e| e.event.is_err()).count();
    for filter in filters() {
        let shown = view(&entries, &filter);
        if filter == Filter::default() {
            assert_eq!(shown.len(), lines + 1, "a heading and one row per line");
        }
        assert!(
            (bad + 1..=lines + 1).contains(&shown.len()),
            "{} rows for {lines} lines ({bad} bad) under {filter:?}",
            shown.len()
        );
        for line in &shown {
            assert_one_line(line);
        }
    }
    let streaming = Layout::streaming();
    for entry in &entries {
        assert_one_line(&streaming.show(&row(entry)));
    }
}

/// Split where the first byte says, as a follower might find the file half-written.
fn in_two_pieces(data: &[u8]) -> Vec<Entry> {
    let at = data
        .first()
        .map_or(0, |&b| usize::from(b) * data.len() / 256);
    let mut lines = Lines::default();
    let mut entries = lines.push(&data[..at]);
    entries.extend(lines.push(&data[at..]));
    entries.extend(lines.finish());
    entries
}

/// No filter, each filter alone, and all of them at once. The id is the first session of
/// the `run` seed.
fn filters() -> Vec<Filter> {
    let id = SessionId::parse("{BB53324C-F162-4F0F-AB06-9B4B85E5D0A3}").map(SessionMatch::Id);
    let mut filters = vec![
        Filter::default(),
        Filter {
            session: Some(SessionMatch::Ordinal(1)),
            ..Filter::default()
        },
        Filter {
            session: id,
            ..Filter::default()
        },
        Filter {
            faults: true,
            ..Filter::default()
        },
        Filter {
            session: Some(SessionMatch::Ordinal(2)),
            faults: true,
            packet: Some(PacketType::Fragment),
        },
    ];
    filters.extend(PacketType::ALL.map(|p| Filter {
        packet: Some(p),
        ..Filter::default()
    }));
    filters
}

fn assert_one_line(line: &str) {
    assert!(
        !line.chars().any(char::is_control),
        "a row with a control character: {line:?}"
    );
}
