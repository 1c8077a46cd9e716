//! Property checks shared by the fuzz targets (`fuzz/fuzz_targets/`) and their replay on
//! stable (`tests/fuzz_replay.rs`).
//!
//! ```text
//!  fuzz/fuzz_targets/packet.rs ─┐
//!  tests/fuzz_replay.rs ────────┴─▶ fuzzing::packet::check(&[u8]) ─▶ proto::packet::parse
//! ```
//!
//! Each target is one `check(&[u8])` function: it decodes the fuzzer's bytes into an input
//! for one part of the library, runs it, and **panics when a property fails** — a panic is
//! what libFuzzer reports as a crash and what `cargo test` reports as a failure. These are
//! test harnesses, the one place in `src/` where panicking on input is the point; nothing
//! else in the crate calls them.
//!
//! The module is always compiled (`arbitrary` is a regular dependency) so that stable
//! `cargo test` replays every seed and regression input through exactly the code the
//! fuzzers run. The `arbitrary` feature only adds `Arbitrary` impls to public protocol types.
//!
//! | target            | input                                             | checked                                      |
//! |-------------------|---------------------------------------------------|----------------------------------------------|
//! | `packet`          | a request head as text (`METHOD target`, headers) | [`crate::proto::packet::parse`]              |
//! | `content_range`   | a header value                                    | [`crate::proto::range::ContentRange::parse`] |
//! | `session_machine` | an `Arbitrary` list of operations                 | [`crate::proto::session::Table`]             |
//! | `fault_plan`      | rule lines, `\0`, then `Arbitrary` requests        | [`crate::fault::Faults::plan`]               |
//! | `profile`         | profile text                                      | [`crate::fault::profile::parse`]             |
//! | `connection`      | 4 control bytes, then raw HTTP bytes              | [`crate::Server::serve_io`]                  |
//! | `journal`         | a journal file's bytes (NDJSON event lines)       | [`crate::journal_view`]                      |
//! | `admin`           | request line, content type, authorization, body   | [`crate::admin::route`], [`crate::admin::authorize`] |

pub mod admin;
pub mod connection;
pub mod journal;
pub mod packet;
pub mod plan;
pub mod profile;
pub mod range;
pub mod session;

use crate::proto::Ack;

/// A fuzz target's check function.
pub type Check = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/seeds/<name>/` spell it.
pub const TARGETS: &[(&str, Check)] = &[
    ("packet", packet::check),
    ("content_range", range::check),
    ("session_machine", session::check),
    ("fault_plan", plan::check),
    ("profile", profile::check),
    ("connection", connection::check),
    ("journal", journal::check),
    ("admin", admin::check),
];

/// Statuses whose Acks carry no BITS error by design: 401 (auth challenge), 404 (a `status`
/// fault faking IIS 7's bare 404), 405 (not BITS), 409 (destination exists), 413 (fragment too large), 416
/// (range not satisfiable, offset header instead).
pub const BARE_ERROR_STATUSES: [u16; 6] = [401, 404, 405, 409, 413, 416];

/// An Ack's error headers match its status: every other failure (>= 400) carries a code and
/// a context, and a success carries neither.
pub fn assert_error_headers(ack: &Ack, what: &dyn std::fmt::Debug) {
    if ack.status >= 400 && !BARE_ERROR_STATUSES.contains(&ack.status) {
        let error = ack.error.unwrap_or_else(|| {
            panic!("{what:?}: error Ack {} without a code: {ack:?}", ack.status)
        });
        assert_ne!(error.code, 0, "{what:?}: error Ack with code 0: {ack:?}");
        assert!(
            error.context == 0x5 || error.context == 0x7,
            "{what:?}: error context is neither 0x5 nor 0x7: {ack:?}"
        );
    }
    if ack.status < 400 {
        assert_eq!(
            ack.error, None,
            "{what:?}: a non-error Ack carries an error"
        );
    }
}

/// Every header of a rendered answer can go on the wire: hyper would silently drop a value
/// that is not a valid header value, and the client would see a different Ack.
pub fn assert_sendable(rendered: &crate::proto::Rendered, what: &dyn std::fmt::Debug) {
    for (name, value) in &rendered.headers {
        assert!(
            http::HeaderValue::from_str(value).is_ok(),
            "{what:?}: header {name} has a value hyper cannot send: {value:?}"
        );
    }
    assert!(
        (100..=599).contains(&rendered.status),
        "{what:?}: status {} is not an HTTP status",
        rendered.status
    );
}
