//! Reading a journal back for people: the NDJSON lines the file sink writes (docs/journal.md)
//! → one aligned row per event, behind `bitsmock journal`.
//!
//! ```text
//!  bytes of a journal file ─▶ Lines (one Entry per line) ─▶ Filter ─▶ Row ─▶ Layout ─▶ text
//! ```
//!
//! It reads `serde_json::Value`s rather than the typed [`crate::journal::Event`] on purpose:
//! a journal written by a newer bitsmock (new event kinds, new fields, new fault effects)
//! still reads, and what this version does not know is shown as `key=value` instead of
//! rejected. A line that is not a JSON object becomes an error row naming its line number.
//! Pure: no files, no clock, no terminal; the CLI reads, follows and prints.

use crate::journal::SCHEMA;
use crate::proto::{PacketType, SessionId};
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// Longest line kept; the rest of a longer one is skipped and the line reported. A journal
/// line is a few hundred bytes (`started`: a few KiB), so only a damaged file gets here, and
/// a follower must not buffer a runaway file forever.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// How much of a bad line its error row quotes.
const QUOTED: usize = 60;

/// One line of a journal, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// 1 for the file's first line.
    pub line: u64,
    /// The event as JSON, or why the line is not one.
    pub event: Result<Map<String, Value>, String>,
}

impl Entry {
    /// The `event` field (`request`, `committed`, …), when the line has one.
    pub fn kind(&self) -> Option<&str> {
        self.event.as_ref().ok()?.get("event")?.as_str()
    }

    /// The server's last event: a follower stops after it.
    pub fn is_stopped(&self) -> bool {
        self.kind() == Some("stopped")
    }
}

/// One line's bytes (without its `\n`; a `\r` before it is dropped) → an [`Entry`].
pub fn read_line(line: u64, bytes: &[u8]) -> Entry {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let event = if bytes.iter().all(u8::is_ascii_whitespace) {
        Err("empty line".to_owned())
    } else {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(format!(
                "not an event: a JSON {}: {}",
                json_type(&other),
                quote(bytes)
            )),
            Err(e) => Err(format!("not JSON ({e}): {}", quote(bytes))),
        }
    };
    Entry { line, event }
}

/// Every line of a whole journal; a last line without `\n` counts too.
pub fn read(bytes: &[u8]) -> Vec<Entry> {
    let mut lines = Lines::default();
    let mut entries = lines.push(bytes);
    entries.extend(lines.finish());
    entries
}

/// Lines cut from a journal that arrives in pieces (a file being written, read as it
/// grows): a line is read once its `\n` has arrived, so a half-written last line is never
/// mistaken for a bad one.
#[derive(Debug, Default)]
pub struct Lines {
    pending: Vec<u8>,
    /// The current line outgrew [`MAX_LINE`]; its bytes are skipped up to its end.
    overlong: bool,
    /// Lines completed so far.
    done: u64,
}

impl Lines {
    /// The entries of every line `bytes` completes.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut rest = bytes;
        while let Some(at) = memchr::memchr(b'\n', rest) {
            self.take(&rest[..at]);
            entries.push(self.complete());
            rest = &rest[at + 1..];
        }
        self.take(rest);
        entries
    }

    /// The last line, if it never got its `\n`; call at the end of the input.
    pub fn finish(&mut self) -> Option<Entry> {
        (self.overlong || !self.pending.is_empty()).then(|| self.complete())
    }

    /// Lines completed so far (the number of the last one read).
    pub fn count(&self) -> u64 {
        self.done
    }

    fn take(&mut self, bytes: &[u8]) {
        if self.overlong {
            return;
        }
        if self.pending.len() + bytes.len() > MAX_LINE {
            self.overlong = true;
            self.pending = Vec::new();
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    fn complete(&mut self) -> Entry {
        self.done += 1;
        let entry = if self.overlong {
            Entry {
                line: self.done,
                event: Err(format!("line longer than {MAX_LINE} bytes, skipped")),
            }
        } else {
            read_line(self.done, &self.pending)
        };
        self.pending.clear();
        self.overlong = false;
        entry
    }
}

/// Which events to show; every condition set must hold. Bad lines are always shown, so a
/// filter never hides that the file is damaged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// Events naming this session (requests and session events).
    pub session: Option<SessionMatch>,
    /// Requests a fault shaped, and refused connections.
    pub faults: bool,
    /// Requests of this packet type.
    pub packet: Option<PacketType>,
}

/// A session as `--session` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMatch {
    /// Its ordinal (1 for the first session; ordinals start again after a `reset`).
    Ordinal(u64),
    Id(SessionId),
}

impl std::str::FromStr for SessionMatch {
    type Err = String;

    /// Digits are an ordinal; anything else must be a session id (any case, braces
    /// optional).
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse()
                .map(SessionMatch::Ordinal)
                .map_err(|_| format!("session ordinal {text} is too large"));
        }
        SessionId::parse(text).map(SessionMatch::Id).ok_or_else(|| {
            format!("`{text}` is neither a session ordinal (1, 2, …) nor a session id ({{GUID}})")
        })
    }
}

/// A packet type by its profile name (`create-session`, as `packet =` in a rule).
pub fn packet_named(text: &str) -> Result<PacketType, String> {
    PacketType::parse(text.trim()).ok_or_else(|| {
        let names: Vec<String> = PacketType::ALL
            .iter()
            .map(|p| p.as_str().to_ascii_lowercase())
            .collect();
        format!("unknown packet type `{text}` ({})", names.join(", "))
    })
}

impl Filter {
    pub fn keeps(&self, entry: &Entry) -> bool {
        let Ok(event) = &entry.event else {
            return true;
        };
        let kind = event.get("event").and_then(Value::as_str);
        let request = kind == Some("request");
        if let Some(wanted) = self.session
            && !event
                .get("session")
                .is_some_and(|s| names_session(s, wanted))
        {
            return false;
        }
        if self.faults {
            let faulted = request
                && event
                    .get("faults")
                    .and_then(Value::as_array)
                    .is_some_and(|f| !f.is_empty());
            if !faulted && kind != Some("refused") {
                return false;
            }
        }
        if let Some(wanted) = self.packet {
            let packet = event
                .get("packet")
                .and_then(Value::as_str)
                .and_then(PacketType::parse);
            if !request || packet != Some(wanted) {
                return false;
            }
        }
        true
    }
}

/// Whether a `session` object (`{"id": "{…}", "ordinal": 2}`) is the wanted one.
fn names_session(session: &Value, wanted: SessionMatch) -> bool {
    match wanted {
        SessionMatch::Ordinal(n) => session.get("ordinal").and_then(Value::as_u64) == Some(n),
        SessionMatch::Id(id) => {
            session
                .get("id")
                .and_then(Value::as_str)
                .and_then(SessionId::parse)
                == Some(id)
        }
    }
}

/// The columns of a request row, in order; the fault summary or reason follows unpadded.
const HEADINGS: [&str; COLUMNS] = [
    "seq", "time", "conn", "packet", "session", "idx", "range", "stored", "sent",
];
const COLUMNS: usize = 9;
/// Numbers are right-aligned.
const RIGHT: [bool; COLUMNS] = [true, true, true, false, false, true, false, true, false];
/// The cells other events fill before their sentence: seq, time and conn (refusals).
const LEAD: usize = 3;

/// One entry cut into the cells its line shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The entry's line in the file.
    pub line: u64,
    cells: Cells,
}

#[derive(Debug, Clone, PartialEq)]
enum Cells {
    /// The [`HEADINGS`] cells, then the faults and reason.
    Request([String; COLUMNS], String),
    /// Seq, time and conn, then a sentence starting in the packet column.
    Other([String; LEAD], String),
    Bad(String),
}

/// Column widths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    widths: [usize; COLUMNS],
}

impl Layout {
    /// Widths that fit a typical run, for rows not known yet (`--follow`); a wider cell
    /// pushes the rest of its line right.
    pub fn streaming() -> Layout {
        Layout {
            widths: [5, 8, 4, 14, 11, 3, 15, 7, 9],
        }
    }

    /// The narrowest widths that fit the headings and every row.
    pub fn fit(rows: &[Row]) -> Layout {
        let mut widths = HEADINGS.map(width);
        for row in rows {
            let cells: &[String] = match &row.cells {
                Cells::Request(cells, _) => cells,
                Cells::Other(cells, _) => cells,
                Cells::Bad(_) => &[],
            };
            for (w, cell) in widths.iter_mut().zip(cells) {
                *w = (*w).max(width(cell));
            }
        }
        Layout { widths }
    }

    /// The column names, aligned like the rows.
    pub fn heading(&self) -> String {
        let mut out = self.cells(&HEADINGS);
        out.push_str("faults / reason");
        out
    }

    /// One row as one line (no line break).
    pub fn show(&self, row: &Row) -> String {
        let line = match &row.cells {
            Cells::Request(cells, tail) => self.cells(cells) + tail,
            Cells::Other(cells, sentence) => self.cells(cells) + sentence,
            Cells::Bad(error) => format!("! line {}: {error}", row.line),
        };
        line.trim_end().to_owned()
    }

    /// The cells padded to their widths, each followed by two spaces.
    fn cells(&self, cells: &[impl AsRef<str>]) -> String {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let cell = cell.as_ref();
            let pad = self.widths[i].saturating_sub(width(cell));
            if RIGHT[i] {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str("  ");
        }
        out
    }
}

fn width(cell: &str) -> usize {
    cell.chars().count()
}

/// The batch view: a heading, then one line per kept entry, columns fitted to them.
pub fn view(entries: &[Entry], filter: &Filter) -> Vec<String> {
    let rows: Vec<Row> = entries
        .iter()
        .filter(|e| filter.keeps(e))
        .map(row)
        .collect();
    let layout = Layout::fit(&rows);
    std::iter::once(layout.heading())
        .chain(rows.iter().map(|r| layout.show(r)))
        .collect()
}

/// Cuts one entry into its cells.
pub fn row(entry: &Entry) -> Row {
    let cells = match &entry.event {
        Err(error) => Cells::Bad(clean(error)),
        Ok(event) => {
            let kind = event.get("event").and_then(Value::as_str);
            let seq = event.get("seq").map_or("?".to_owned(), text);
            let time = event.get("at_ms").map_or("?".to_owned(), seconds);
            match kind {
                Some("request") => request_cells(event, seq, time),
                Some("refused") => {
                    let conn = event.get("conn").map_or(String::new(), text);
                    Cells::Other([seq, time, conn], refused(event))
                }
                _ => Cells::Other([seq, time, String::new()], sentence(kind, event)),
            }
        }
    };
    Row {
        line: entry.line,
        cells,
    }
}

const COMMON: [&str; 3] = ["seq", "at_ms", "event"];
const REQUEST: [&str; 20] = [
    "conn",
    "peer",
    "method",
    "path",
    "packet",
    "packet_label",
    "session",
    "index",
    "range",
    "received",
    "stored",
    "status",
    "reason",
    "faults",
    "sent",
    "latency_ms",
    "content_length_missing",
    "offers_bits15",
    "content_name",
    "ack",
];

fn request_cells(event: &Map<String, Value>, seq: String, time: String) -> Cells {
    let field = |name: &str| event.get(name).unwrap_or(&Value::Null);
    let packet = match (field("packet"), field("packet_label"), field("method")) {
        (Value::String(p), _, _) => clean(p),
        // Quoted: a BITS-Packet-Type this version did not recognise.
        (_, Value::String(label), _) => format!("\"{}\"", clean(label)),
        (_, _, method) => text(method),
    };
    let session = match field("session") {
        Value::Null => "-".to_owned(),
        s => session_cell(s),
    };
    let index = match field("index") {
        Value::Number(n) if n.as_u64() == Some(0) => "-".to_owned(),
        v => text(v),
    };
    let status = text(field("status"));
    let sent = sent(field("sent"));
    let answered = if status == sent {
        sent
    } else {
        format!("{status}→{sent}")
    };
    let mut tail = match field("faults") {
        Value::Array(faults) => faults.iter().map(firing).collect::<Vec<_>>().join("; "),
        Value::Null => String::new(),
        other => text(other),
    };
    if let Some(reason) = event.get("reason").filter(|r| !r.is_null()) {
        if !tail.is_empty() {
            tail.push_str(" — ");
        }
        tail.push_str(&text(reason));
    }
    tail.push_str(&extras(event, &REQUEST));
    Cells::Request(
        [
            seq,
            time,
            text(field("conn")),
            packet,
            session,
            index,
            text(field("range")),
            text(field("stored")),
            answered,
        ],
        tail.trim_start().to_owned(),
    )
}

/// `200`, `reset`, `closed`, … from `{"sent": "status", "status": 200}`.
fn sent(value: &Value) -> String {
    let Some(fields) = value.as_object() else {
        return text(value);
    };
    match fields.get("sent").and_then(Value::as_str) {
        Some("status") => {
            fields.get("status").map_or("?".to_owned(), text) + &extras(fields, &["sent", "status"])
        }
        Some("mutated") => {
            let status = fields.get("status").map_or("?".to_owned(), text);
            format!("mutated {status}") + &extras(fields, &["sent", "status"])
        }
        Some(how) => clean(how) + &extras(fields, &["sent"]),
        None => text(value),
    }
}

/// `2 67D2DA23`: the ordinal (`?` when the server did not know it) and the id's first
/// eight digits, enough to tell sessions apart in one run.
fn session_cell(session: &Value) -> String {
    let ordinal = match session.get("ordinal") {
        None | Some(Value::Null) => "?".to_owned(),
        Some(o) => text(o),
    };
    let id = session
        .get("id")
        .and_then(Value::as_str)
        .map(|id| {
            clean(
                &id.trim_matches(['{', '}'])
                    .chars()
                    .take(8)
                    .collect::<String>(),
            )
        })
        .unwrap_or_else(|| "?".to_owned());
    format!("{ordinal} {id}")
}

/// One fired rule: `rule 3: lost the Ack (reset)`.
fn firing(firing: &Value) -> String {
    let Some(fields) = firing.as_object() else {
        return text(firing);
    };
    let name = fields.get("name").map_or("?".to_owned(), text);
    let effect = fields.get("effect").map_or("?".to_owned(), effect);
    let known = [
        "rule", "name", "packet", "session", "index", "range", "effect",
    ];
    format!("{name}: {effect}{}", extras(fields, &known))
}

/// What a fault did, shortened for a row (the log's sentences are longer).
pub fn effect(value: &Value) -> String {
    let Some(fields) = value.as_object() else {
        return text(value);
    };
    let f = |name: &str| fields.get(name).unwrap_or(&Value::Null);
    let (said, known): (String, &[&str]) = match f("kind").as_str() {
        Some("delayed") => (format!("delayed {}", millis(f("by"))), &["by"]),
        Some("stalled") => (format!("stalled the body {}", millis(f("by"))), &["by"]),
        Some("throttled") => (
            format!(
                "throttled reads to {}, writes to {}",
                rate(f("read")),
                rate(f("write"))
            ),
            &["read", "write"],
        ),
        Some("lost-ack") => (format!("lost the Ack ({})", lost(f("how"))), &["how"]),
        Some("lost-request") => (format!("lost the request ({})", lost(f("how"))), &["how"]),
        Some("reset-mid-body") => (
            format!(
                "reset after {} of {} body bytes, {} them",
                text(f("after")),
                text(f("of")),
                if f("keep").as_bool() == Some(true) {
                    "keeping"
                } else {
                    "discarding"
                }
            ),
            &["after", "of", "keep"],
        ),
        Some("lost-session") => (text(f("loss")), &["loss"]),
        Some("status") => (format!("answered {}", text(f("status"))), &["status"]),
        Some("lied") => (format!("lied: {}", text(f("lie"))), &["lie"]),
        Some("broken") => (
            format!("broken response: {}", text(f("broken"))),
            &["broken"],
        ),
        Some("challenged") => (format!("demanded {} auth", text(f("scheme"))), &["scheme"]),
        Some("refused") => ("refused the connection".to_owned(), &[]),
        Some("mutated") => (mutated(f("mutations")), &["mutations"]),
        Some("notify") => (format!("notify {}", text(f("fault"))), &["fault"]),
        Some(other) => (clean(other), &[]),
        None => ("?".to_owned(), &[]),
    };
    let mut known = known.to_vec();
    known.push("kind");
    said + &extras(fields, &known)
}

/// The mutations of a `mutate` fault: `mutated: value huge BITS-Received-Content-Range
/// `5120` → `18446744073709551616``, several joined by `; `.
fn mutated(value: &Value) -> String {
    let Some(all) = value.as_array() else {
        return "mutated".to_owned();
    };
    let each: Vec<String> = all
        .iter()
        .map(|m| {
            let f = |name: &str| m.get(name).map_or("?".to_owned(), text);
            format!(
                "{} {} {} `{}` → `{}`",
                f("family"),
                f("name"),
                f("target"),
                f("from"),
                f("to")
            )
        })
        .collect();
    format!("mutated: {}", each.join("; "))
}

/// How an answer was lost: `{"how": "hung", "for_": 5000.0}` → `hung 5s`.
fn lost(value: &Value) -> String {
    let Some(fields) = value.as_object() else {
        return text(value);
    };
    match fields.get("how").and_then(Value::as_str) {
        Some("hung") => {
            let for_ = fields.get("for_").map_or("?".to_owned(), millis);
            format!("hung {for_}") + &extras(fields, &["how", "for_"])
        }
        Some("status") => {
            let status = fields.get("status").map_or("?".to_owned(), text);
            format!("answered {status}") + &extras(fields, &["how", "status"])
        }
        Some(how) => clean(how) + &extras(fields, &["how"]),
        None => text(value),
    }
}

fn rate(value: &Value) -> String {
    match value {
        Value::Null => "full speed".to_owned(),
        v => format!("{} B/s", text(v)),
    }
}

/// A duration in milliseconds as `250ms` or `1.5s`.
fn millis(value: &Value) -> String {
    match value.as_f64() {
        Some(ms) if ms.abs() >= 1000.0 => format!("{}s", decimal(ms / 1000.0)),
        Some(ms) => format!("{}ms", decimal(ms)),
        None => text(value),
    }
}

/// Milliseconds since start as seconds with milliseconds: `12.345s`.
fn seconds(value: &Value) -> String {
    match value.as_f64() {
        Some(ms) => format!("{:.3}s", ms / 1000.0),
        None => text(value),
    }
}

/// Up to three decimals, trailing zeros dropped: `1`, `0.25`.
fn decimal(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn refused(event: &Map<String, Value>) -> String {
    let peer = event.get("peer").map_or("?".to_owned(), text);
    let fault = event.get("fault").unwrap_or(&Value::Null);
    let rule = fault.get("name").map_or("?".to_owned(), text);
    let mut said = format!("refused connection from {peer} (fault: {rule})");
    if let Some(more) = fault.as_object() {
        said.push_str(&extras(
            more,
            &[
                "rule", "name", "packet", "session", "index", "range", "effect",
            ],
        ));
    }
    said + &extras(event, &["conn", "peer", "fault"])
}

/// The one-line form of every event but requests and refusals.
fn sentence(kind: Option<&str>, event: &Map<String, Value>) -> String {
    let f = |name: &str| event.get(name).unwrap_or(&Value::Null);
    let session = || match f("session") {
        Value::Null => "session ?".to_owned(),
        s => format!("session {}", session_cell(s)),
    };
    let (said, known): (String, &[&str]) = match kind {
        Some("started") => {
            let mut said = format!(
                "started bitsmock {}, schema {}, seed {}, profile {}, time scale {}, {}",
                text(f("version")),
                text(f("schema")),
                text(f("seed")),
                match f("profile") {
                    Value::Null => "none".to_owned(),
                    p => text(p),
                },
                f("time_scale")
                    .as_f64()
                    .map_or_else(|| text(f("time_scale")), decimal),
                rules(f("rules"), false),
            );
            if f("schema").as_u64().is_some_and(|s| s > u64::from(SCHEMA)) {
                let _ = write!(
                    said,
                    " (newer than this reader's schema {SCHEMA}: fields may mean something else)"
                );
            }
            (
                said,
                &[
                    "schema",
                    "version",
                    "seed",
                    "profile",
                    "time_scale",
                    "rules",
                    "settings",
                ],
            )
        }
        Some("rules-changed") => (
            format!("rules changed: {}", rules(f("rules"), false)),
            &["rules"],
        ),
        Some("reset") => (
            match f("uploads_cleared").as_bool() {
                Some(true) => "reset, uploads cleared".to_owned(),
                Some(false) => "reset, uploads kept".to_owned(),
                None => format!("reset, uploads_cleared={}", text(f("uploads_cleared"))),
            },
            &["uploads_cleared"],
        ),
        Some("stopped") => (format!("stopped: {}", rules(f("rules"), true)), &["rules"]),
        Some("session-created") => {
            let reply = if f("reply").as_bool() == Some(true) {
                " (upload-reply)"
            } else {
                ""
            };
            (
                format!("{} created {}{reply}", session(), text(f("destination"))),
                &["session", "destination", "reply"],
            )
        }
        Some("committed") => {
            let sha = match f("sha256") {
                Value::String(hex) if hex.chars().count() > 12 => {
                    format!(
                        " sha256 {}…",
                        clean(&hex.chars().take(12).collect::<String>())
                    )
                }
                Value::Null => String::new(),
                other => format!(" sha256 {}", text(other)),
            };
            (
                format!(
                    "committed {} {} bytes{sha} ({})",
                    text(f("path")),
                    text(f("size")),
                    session()
                ),
                &["session", "path", "size", "sha256"],
            )
        }
        Some("session-gone") => {
            let kept = if f("kept_file").as_bool() == Some(true) {
                ", temp file kept"
            } else {
                ""
            };
            (
                format!("{} gone: {}{kept}", session(), text(f("why"))),
                &["session", "why", "kept_file"],
            )
        }
        Some("reply-served") => (
            format!(
                "{} reply served: {}, {} bytes",
                session(),
                text(f("status")),
                text(f("bytes"))
            ),
            &["session", "status", "bytes"],
        ),
        Some("notification") => {
            let outcome = match (f("status"), f("error")) {
                (_, Value::String(e)) => format!("failed: {}", clean(e)),
                (Value::Null, _) => "no answer".to_owned(),
                (status, _) => format!("answered {}", text(status)),
            };
            let relayed = match f("relayed") {
                Value::Null => "dropped (a duplicate)".to_owned(),
                status => format!("relayed {}", text(status)),
            };
            let reply = match f("reply_bytes") {
                Value::Null => String::new(),
                bytes => format!(", reply {} bytes", text(bytes)),
            };
            let fault = match f("fault") {
                Value::Null => String::new(),
                shaped => format!(" (fault: {})", firing(shaped)),
            };
            (
                format!(
                    "{} notified {} ({}): {outcome}{reply}, {relayed}, {}{fault}",
                    session(),
                    text(f("url")),
                    text(f("mode")),
                    millis(f("duration_ms"))
                ),
                &[
                    "session",
                    "url",
                    "mode",
                    "status",
                    "error",
                    "relayed",
                    "duration_ms",
                    "headers",
                    "reply_bytes",
                    "reply_url",
                    "fault",
                ],
            )
        }
        // A kind this version does not know: its name and every field.
        Some(other) => (clean(other), &[]),
        None => ("(no event kind)".to_owned(), &[]),
    };
    (said + &extras(event, known)).trim_start().to_owned()
}

/// `2 rules: #0 rule 1 [refuse, --fault:1], …`, or with fire counts for `stopped`.
fn rules(value: &Value, fired: bool) -> String {
    let Some(rules) = value.as_array() else {
        return format!("rules {}", text(value));
    };
    if rules.is_empty() {
        return "no rules".to_owned();
    }
    let shown: Vec<String> = rules
        .iter()
        .map(|r| {
            let f = |name: &str| r.get(name).map_or("?".to_owned(), text);
            let extra = r
                .as_object()
                .map(|o| extras(o, &["id", "name", "origin", "fault", "line", "fired"]))
                .unwrap_or_default();
            if fired {
                format!("{} fired {}{extra}", f("name"), f("fired"))
            } else {
                format!(
                    "#{} {} [{}, {}]{extra}",
                    f("id"),
                    f("name"),
                    f("fault"),
                    f("origin")
                )
            }
        })
        .collect();
    let count = rules.len();
    format!(
        "{count} rule{}: {}",
        if count == 1 { "" } else { "s" },
        shown.join(", ")
    )
}

/// ` key=value` for every field not in `known` (nor seq/at_ms/event): what a newer journal
/// added is shown, not dropped.
fn extras(fields: &Map<String, Value>, known: &[&str]) -> String {
    let mut out = String::new();
    for (key, value) in fields {
        if !known.contains(&key.as_str()) && !COMMON.contains(&key.as_str()) {
            let _ = write!(out, " {}={}", clean(key), text(value));
        }
    }
    out
}

/// A value as a cell: strings bare, `null` as `-`, anything else as compact JSON.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => clean(s),
        other => clean(&other.to_string()),
    }
}

/// Control characters escaped (`\n`, `\u{1b}`): a row stays one line, and a journal cannot
/// drive the terminal.
fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The start of a bad line, escaped, for its error row.
fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut quoted: String = text.chars().take(QUOTED).collect();
    if text.chars().nth(QUOTED).is_some() {
        quoted.push('…');
    }
    clean(&quoted)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{Effect, Firing, Lost};
    use crate::journal::{Event, Request, RuleState, Sent, SessionRef, What};
    use crate::proto::{ContentRange, Gone};
    use std::net::SocketAddr;
    use std::time::Duration;

    const ID_A: &str = "{67D2DA23-04F4-42E7-83A2-EA0172119B3E}";
    const ID_B: &str = "{388F4397-4E52-420E-9415-047D81514348}";

    fn id(text: &str) -> SessionId {
        SessionId::parse(text).unwrap()
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 53888))
    }

    fn session(text: &str, ordinal: u64) -> SessionRef {
        SessionRef {
            id: id(text),
            ordinal: Some(ordinal),
        }
    }

    fn fired(rule: usize, effect: Effect) -> Firing {
        Firing {
            rule,
            name: format!("rule {}", rule + 1),
            packet: Some(PacketType::Fragment),
            session: 1,
            index: 2,
            range: None,
            effect,
        }
    }

    fn request(packet: PacketType, on: Option<SessionRef>, faults: Vec<Firing>) -> Request {
        Request {
            conn: 2,
            peer: peer(),
            method: "BITS_POST".into(),
            path: "/a/b.bin".into(),
            packet: Some(packet),
            packet_label: None,
            session: on,
            index: u64::from(on.is_some()),
            range: None,
            received: 0,
            stored: 0,
            status: Some(200),
            reason: None,
            faults,
            sent: Sent::Status { status: 200 },
            latency_ms: 0.3,
            content_length_missing: false,
            offers_bits15: None,
            content_name: None,
            ack: None,
        }
    }

    fn fragment(on: SessionRef, first: u64, len: u64, faults: Vec<Firing>) -> Request {
        Request {
            range: Some(ContentRange::new(first, first + len - 1, 5000).unwrap()),
            received: len,
            stored: len,
            ..request(PacketType::Fragment, Some(on), faults)
        }
    }

    /// The events as the file sink writes them, one NDJSON line each.
    fn journal(whats: Vec<What>) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, what) in whats.into_iter().enumerate() {
            let event = Event {
                seq: n as u64 + 1,
                at_ms: n as f64 * 2.0,
                what,
            };
            out.extend(serde_json::to_vec(&event).unwrap());
            out.push(b'\n');
        }
        out
    }

    fn rule_state(id: u64, fault: &str, fired: u64) -> RuleState {
        RuleState {
            id,
            name: format!("rule {}", id + 1),
            origin: format!("--fault:{}", id + 1),
            fault: fault.into(),
            line: format!("fault={fault}"),
            fired,
        }
    }

    /// A small run with every event kind: two sessions, a lost Ack, a refusal.
    fn run() -> Vec<u8> {
        let a = session(ID_A, 1);
        let b = session(ID_B, 2);
        let lost = fired(1, Effect::LostAck { how: Lost::Reset });
        journal(vec![
            What::Started {
                schema: SCHEMA,
                version: "0.1.0".into(),
                seed: 7,
                profile: None,
                time_scale: 1.0,
                rules: vec![rule_state(0, "refuse", 0), rule_state(1, "lose-ack", 0)],
                settings: serde_json::json!({"sha256": true}),
            },
            What::Refused {
                conn: 1,
                peer: peer(),
                fault: Firing {
                    packet: None,
                    session: 0,
                    index: 0,
                    ..fired(0, Effect::Refused)
                },
            },
            What::SessionCreated {
                session: a,
                destination: "/a/b.bin".into(),
                reply: false,
            },
            What::Request(Box::new(request(
                PacketType::CreateSession,
                Some(a),
                vec![],
            ))),
            What::Request(Box::new(fragment(a, 0, 2000, vec![]))),
            What::Request(Box::new(Request {
                sent: Sent::Reset,
                ..fragment(a, 2000, 3000, vec![lost])
            })),
            What::Committed {
                session: a,
                path: "a/b.bin".into(),
                size: 5000,
                sha256: Some(
                    "45148a6eb1c6f9a2d6d9cb7204edd1272b3c69eb1732e1fa1c6f9f324600930a".into(),
                ),
            },
            What::SessionCreated {
                session: b,
                destination: "/reply/c.bin".into(),
                reply: true,
            },
            What::ReplyServed {
                session: b,
                status: 200,
                bytes: 102,
            },
            What::SessionGone {
                session: b,
                why: Gone::Cancelled,
                kept_file: false,
            },
            What::Request(Box::new(request(PacketType::Ping, None, vec![]))),
            What::RulesChanged { rules: vec![] },
            What::Reset {
                uploads_cleared: true,
            },
            What::Stopped {
                rules: vec![rule_state(0, "refuse", 1), rule_state(1, "lose-ack", 1)],
            },
        ])
    }

    fn shown(bytes: &[u8], filter: Filter) -> Vec<String> {
        view(&read(bytes), &filter)
    }

    /// The rows' seq numbers, heading and bad lines left out.
    fn seqs(lines: &[String]) -> Vec<u64> {
        lines
            .iter()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// Asserts that `cell` sits in the heading's column `name`: starting where the heading
    /// starts (text) or ending where it ends (numbers).
    #[track_caller]
    fn assert_in_column(line: &str, heading: &str, name: &str, cell: &str) {
        let chars: Vec<char> = line.chars().collect();
        let start = heading.find(name).unwrap();
        let at = if RIGHT[HEADINGS.iter().position(|h| *h == name).unwrap()] {
            start + name.len() - width(cell)
        } else {
            start
        };
        let found: String = chars.iter().skip(at).take(width(cell)).collect();
        assert_eq!(found, cell, "column {name} of {line:?}");
        assert!(at == 0 || chars[at - 1] == ' ', "column {name} of {line:?}");
        let after = chars.get(at + width(cell));
        assert!(after.is_none_or(|c| *c == ' '), "column {name} of {line:?}");
    }

    #[test]
    fn columns_line_up_for_a_mixed_run_and_other_events_start_in_the_packet_column() {
        let lines = shown(&run(), Filter::default());
        assert_eq!(lines.len(), 15, "{lines:#?}");
        let heading = &lines[0];
        let expected: [(usize, [&str; COLUMNS]); 4] = [
            (
                4,
                [
                    "4",
                    "0.006s",
                    "2",
                    "Create-Session",
                    "1 67D2DA23",
                    "1",
                    "-",
                    "0",
                    "200",
                ],
            ),
            (
                5,
                [
                    "5",
                    "0.008s",
                    "2",
                    "Fragment",
                    "1 67D2DA23",
                    "1",
                    "0-1999/5000",
                    "2000",
                    "200",
                ],
            ),
            (
                6,
                [
                    "6",
                    "0.010s",
                    "2",
                    "Fragment",
                    "1 67D2DA23",
                    "1",
                    "2000-4999/5000",
                    "3000",
                    "200→reset",
                ],
            ),
            (11, ["11", "0.020s", "2", "Ping", "-", "-", "-", "0", "200"]),
        ];
        for (seq, cells) in expected {
            for (name, cell) in HEADINGS.iter().zip(cells) {
                assert_in_column(&lines[seq], heading, name, cell);
            }
        }
        let faults = heading.find("faults / reason").unwrap();
        assert_eq!(
            lines[6]
                .find("rule 2: lost the Ack (reset)")
                .map(|at| at - 2),
            Some(faults)
        );
        // Other events: seq and time in their columns, then the sentence from the packet
        // column on; a refusal also fills the conn column.
        for (seq, sentence) in [
            (3, "session 1 67D2DA23 created"),
            (13, "reset, uploads cleared"),
        ] {
            assert_in_column(&lines[seq], heading, "seq", &seq.to_string());
            assert_in_column(
                &lines[seq],
                heading,
                "time",
                &format!("{:.3}s", (seq - 1) as f64 * 0.002),
            );
            assert_eq!(
                lines[seq].find(sentence),
                heading.find("packet"),
                "{}",
                lines[seq]
            );
        }
        assert_in_column(&lines[2], heading, "conn", "1");
        assert_eq!(
            lines[2].find("refused"),
            heading.find("packet"),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn a_notification_reads_as_one_line_with_its_outcome() {
        let b = session(ID_B, 2);
        let notified = |status: Option<u16>, relayed: Option<u16>, error: Option<&str>, fault| {
            What::Notification {
                session: b,
                url: "http://127.0.0.1:9000/h".into(),
                mode: "value",
                headers: vec![("Host".into(), "127.0.0.1:9000".into())],
                status,
                duration_ms: 12.5,
                reply_bytes: status.filter(|s| *s == 200).map(|_| 131),
                reply_url: None,
                error: error.map(str::to_owned),
                relayed,
                fault,
            }
        };
        let twice = fired(
            0,
            Effect::Notify {
                fault: crate::fault::NotifyFault::Twice,
            },
        );
        let bytes = journal(vec![
            notified(Some(200), None, None, Some(twice)),
            notified(Some(503), Some(503), None, None),
            notified(
                None,
                Some(408),
                Some("the application did not answer in time"),
                None,
            ),
        ]);
        let lines = shown(&bytes, Filter::default());
        let body = |seq: usize| {
            lines[seq]
                .split_whitespace()
                .skip(2)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            body(1),
            "session 2 388F4397 notified http://127.0.0.1:9000/h (value): answered 200, reply 131 bytes, dropped (a duplicate), 12.5ms (fault: rule 1: notify how=twice)"
        );
        assert_eq!(
            body(2),
            "session 2 388F4397 notified http://127.0.0.1:9000/h (value): answered 503, relayed 503, 12.5ms"
        );
        assert_eq!(
            body(3),
            "session 2 388F4397 notified http://127.0.0.1:9000/h (value): failed: the application did not answer in time, relayed 408, 12.5ms"
        );
    }

    #[test]
    fn every_event_kind_reads_as_one_readable_line() {
        let lines = shown(&run(), Filter::default());
        let body = |seq: usize| {
            lines[seq]
                .split_whitespace()
                .skip(2)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            body(1),
            "started bitsmock 0.1.0, schema 1, seed 7, profile none, time scale 1, 2 rules: \
             #0 rule 1 [refuse, --fault:1], #1 rule 2 [lose-ack, --fault:2]"
        );
        assert_eq!(
            body(2),
            "1 refused connection from 127.0.0.1:53888 (fault: rule 1)"
        );
        assert_eq!(body(3), "session 1 67D2DA23 created /a/b.bin");
        assert_eq!(body(4), "2 Create-Session 1 67D2DA23 1 - 0 200");
        assert_eq!(body(5), "2 Fragment 1 67D2DA23 1 0-1999/5000 2000 200");
        assert_eq!(
            body(6),
            "2 Fragment 1 67D2DA23 1 2000-4999/5000 3000 200→reset rule 2: lost the Ack (reset)"
        );
        assert_eq!(
            body(7),
            "committed a/b.bin 5000 bytes sha256 45148a6eb1c6… (session 1 67D2DA23)"
        );
        assert_eq!(
            body(8),
            "session 2 388F4397 created /reply/c.bin (upload-reply)"
        );
        assert_eq!(body(9), "session 2 388F4397 reply served: 200, 102 bytes");
        assert_eq!(body(10), "session 2 388F4397 gone: cancelled");
        assert_eq!(body(11), "2 Ping - - - 0 200");
        assert_eq!(body(12), "rules changed: no rules");
        assert_eq!(body(13), "reset, uploads cleared");
        assert_eq!(body(14), "stopped: 2 rules: rule 1 fired 1, rule 2 fired 1");
        assert!(
            lines[1].starts_with("  1  0.000s        started"),
            "{}",
            lines[1]
        );
        assert!(
            lines[14].starts_with(" 14  0.026s        stopped"),
            "{}",
            lines[14]
        );
    }

    #[test]
    fn each_fault_effect_reads_as_a_short_phrase() {
        use crate::fault::rule::{Broken, Lie, Scheme, SessionLoss};
        let cases = [
            (
                Effect::Delayed {
                    by: Duration::from_millis(250),
                },
                "delayed 250ms",
            ),
            (
                Effect::Stalled {
                    by: Duration::from_millis(1500),
                },
                "stalled the body 1.5s",
            ),
            (
                Effect::Throttled {
                    read: Some(1000),
                    write: None,
                },
                "throttled reads to 1000 B/s, writes to full speed",
            ),
            (
                Effect::LostAck { how: Lost::Closed },
                "lost the Ack (closed)",
            ),
            (
                Effect::LostRequest {
                    how: Lost::Hung {
                        for_: Duration::from_secs(5),
                    },
                },
                "lost the request (hung 5s)",
            ),
            (
                Effect::LostAck {
                    how: Lost::Status { status: 500 },
                },
                "lost the Ack (answered 500)",
            ),
            (
                Effect::ResetMidBody {
                    after: 100,
                    of: 2000,
                    keep: true,
                },
                "reset after 100 of 2000 body bytes, keeping them",
            ),
            (
                Effect::LostSession {
                    loss: SessionLoss::All { keep_file: false },
                },
                "forgot every session (restart)",
            ),
            (Effect::Status { status: 503 }, "answered 503"),
            (
                Effect::Lied {
                    lie: Lie::Behind(100),
                },
                "lied: behind by=100",
            ),
            (
                Effect::Broken {
                    broken: Broken::Garbage,
                },
                "broken response: garbage",
            ),
            (
                Effect::Challenged {
                    scheme: Scheme::Ntlm,
                },
                "demanded NTLM auth",
            ),
            (Effect::Refused, "refused the connection"),
            (
                Effect::Mutated {
                    mutations: vec![crate::fault::mutate::Mutation {
                        family: crate::fault::mutate::Family::Value,
                        name: "huge",
                        target: "BITS-Received-Content-Range".into(),
                        from: "5120".into(),
                        to: "18446744073709551616".into(),
                    }],
                },
                "mutated: value huge BITS-Received-Content-Range `5120` → `18446744073709551616`",
            ),
        ];
        for (effect, phrase) in cases {
            let json = serde_json::to_value(&effect).unwrap();
            assert_eq!(super::effect(&json), phrase, "{json}");
        }
    }

    #[test]
    fn a_session_filter_matches_the_ordinal_or_the_id_in_any_case_with_or_without_braces() {
        let bytes = run();
        let by = |text: &str| {
            let wanted: SessionMatch = text.parse().unwrap();
            seqs(&shown(
                &bytes,
                Filter {
                    session: Some(wanted),
                    ..Filter::default()
                },
            ))
        };
        assert_eq!(by("1"), [3, 4, 5, 6, 7]);
        assert_eq!(by("2"), [8, 9, 10]);
        let bare = ID_B.trim_matches(['{', '}']);
        for text in [
            ID_B.to_owned(),
            ID_B.to_ascii_lowercase(),
            bare.to_owned(),
            bare.to_ascii_lowercase(),
        ] {
            assert_eq!(by(&text), [8, 9, 10], "{text}");
        }
        assert!(by("3").is_empty());
        for bad in ["", "two", "{67D2DA23}", "-1", "99999999999999999999999"] {
            assert!(bad.parse::<SessionMatch>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_faults_filter_keeps_faulted_requests_and_refusals_only() {
        let lines = shown(
            &run(),
            Filter {
                faults: true,
                ..Filter::default()
            },
        );
        assert_eq!(seqs(&lines), [2, 6]);
    }

    #[test]
    fn the_packet_filter_keeps_requests_of_that_type_named_as_in_profiles() {
        let bytes = run();
        let by = |name: &str| {
            seqs(&shown(
                &bytes,
                Filter {
                    packet: Some(packet_named(name).unwrap()),
                    ..Filter::default()
                },
            ))
        };
        assert_eq!(by("fragment"), [5, 6]);
        assert_eq!(by("create-session"), [4]);
        assert_eq!(by("ping"), [11]);
        assert!(by("close-session").is_empty());
        assert!(by("cancel-session").is_empty());
        let error = packet_named("frag").unwrap_err();
        assert!(
            error.contains("ping, create-session, fragment, close-session, cancel-session"),
            "{error}"
        );
    }

    #[test]
    fn filters_combine_and_all_must_hold() {
        let both = Filter {
            session: Some(SessionMatch::Ordinal(1)),
            packet: Some(PacketType::Fragment),
            faults: true,
        };
        assert_eq!(seqs(&shown(&run(), both)), [6]);
    }

    #[test]
    fn bad_lines_become_error_rows_with_their_line_number_and_no_filter_hides_them() {
        let mut bytes = run();
        bytes.splice(
            0..0,
            b"{\"seq\": 1, \"event\": \"request\"\n".iter().copied(),
        );
        bytes.extend_from_slice(b"\n[1, 2]\nnot json at all\r\n{\"seq\":99,\"event\":\"sto");
        let entries = read(&bytes);
        assert_eq!(entries.len(), 19);
        let lines = shown(&bytes, Filter::default());
        let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with('!')).collect();
        assert_eq!(errors.len(), 5, "{lines:#?}");
        assert!(
            errors[0].starts_with("! line 1: not JSON ("),
            "{}",
            errors[0]
        );
        assert_eq!(errors[1], "! line 16: empty line");
        assert_eq!(errors[2], "! line 17: not an event: a JSON array: [1, 2]");
        assert!(
            errors[3].starts_with("! line 18: not JSON"),
            "{}",
            errors[3]
        );
        assert!(errors[3].ends_with(": not json at all"), "{}", errors[3]);
        assert!(
            errors[4].starts_with("! line 19: not JSON"),
            "{}",
            errors[4]
        );
        let faults = shown(
            &bytes,
            Filter {
                faults: true,
                ..Filter::default()
            },
        );
        assert_eq!(faults.iter().filter(|l| l.starts_with('!')).count(), 5);
    }

    #[test]
    fn unknown_event_kinds_and_unknown_fields_are_shown_not_rejected() {
        let mut bytes = run();
        bytes.extend_from_slice(
            b"{\"seq\":15,\"at_ms\":30.0,\"event\":\"host-died\",\"host\":\"b\",\"after\":{\"n\":1}}\n\
              {\"seq\":16,\"at_ms\":31.0,\"event\":\"session-created\",\"session\":{\"id\":\"x\",\"ordinal\":3},\
                \"destination\":\"/d\",\"reply\":false,\"tls\":true}\n\
              {\"seq\":17,\"at_ms\":32.0,\"event\":\"request\",\"conn\":4,\"packet\":\"Fragment\",\
                \"faults\":[{\"name\":\"r\",\"effect\":{\"kind\":\"teleported\",\"to\":\"mars\"}}],\
                \"sent\":{\"sent\":\"quantum\"},\"status\":200,\"http2\":true}\n\
              {\"seq\":18}\n",
        );
        let lines = shown(&bytes, Filter::default());
        let tail: Vec<String> = lines[15..]
            .iter()
            .map(|l| l.split_whitespace().skip(2).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(tail[0], r#"host-died after={"n":1} host=b"#);
        assert_eq!(tail[1], "session 3 x created /d tls=true");
        assert_eq!(
            tail[2],
            "4 Fragment - - - - 200→quantum r: teleported to=mars http2=true"
        );
        assert_eq!(tail[3], "(no event kind)");
        assert_eq!(
            lines[18].split_whitespace().nth(1),
            Some("?"),
            "{}",
            lines[18]
        );
    }

    #[test]
    fn a_newer_schema_is_flagged_in_the_started_row() {
        let line = format!(
            "{{\"seq\":1,\"at_ms\":0,\"event\":\"started\",\"schema\":{},\"rules\":[]}}",
            SCHEMA + 1
        );
        let lines = shown(line.as_bytes(), Filter::default());
        assert!(
            lines[1].contains("newer than this reader's schema"),
            "{}",
            lines[1]
        );
        let current = line.replace(&format!("{}", SCHEMA + 1), &SCHEMA.to_string());
        let lines = shown(current.as_bytes(), Filter::default());
        assert!(!lines[1].contains("newer"), "{}", lines[1]);
    }

    #[test]
    fn control_characters_in_the_journal_cannot_break_a_row_or_reach_the_terminal() {
        let line = b"{\"seq\":1,\"event\":\"session-created\",\"session\":null,\
                     \"destination\":\"/a\\nb\\u001b[31m\\u009b\"}\n\x1b[2J\x7f\n";
        let lines = shown(line, Filter::default());
        assert_eq!(lines.len(), 3);
        for l in &lines {
            assert!(!l.chars().any(char::is_control), "{l:?}");
        }
        assert!(
            lines[1].ends_with(r"created /a\nb\u{1b}[31m\u{9b}"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn a_line_arriving_in_pieces_is_read_once_when_its_end_arrives() {
        let bytes = run();
        let whole = read(&bytes);
        for size in [1, 7, 100, 4096] {
            let mut lines = Lines::default();
            let mut pieces = Vec::new();
            for chunk in bytes.chunks(size) {
                pieces.extend(lines.push(chunk));
            }
            assert_eq!(lines.finish(), None, "the run ends with a newline");
            assert_eq!(pieces, whole, "chunks of {size}");
            assert_eq!(lines.count(), 14);
        }
        let mut lines = Lines::default();
        assert!(lines.push(b"{\"seq\":1").is_empty());
        let last = lines.finish().unwrap();
        assert_eq!(last.line, 1);
        assert!(last.event.is_err());
        assert!(read(&bytes).last().is_some_and(Entry::is_stopped));
    }

    #[test]
    fn an_overlong_line_is_skipped_and_reported_and_the_next_line_reads() {
        let mut lines = Lines::default();
        let chunk = vec![b' '; MAX_LINE / 4 + 1];
        for _ in 0..4 {
            assert!(lines.push(&chunk).is_empty());
        }
        let entries = lines.push(b"x\n{\"seq\":2,\"event\":\"reset\"}\n");
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0].event,
            Err(format!("line longer than {MAX_LINE} bytes, skipped"))
        );
        assert_eq!(entries[1].kind(), Some("reset"));
        assert_eq!(entries[1].line, 2);
    }

    #[test]
    fn the_streaming_layout_keeps_its_widths_and_a_wider_cell_only_pushes_its_own_line() {
        let layout = Layout::streaming();
        let entries = read(&run());
        let narrow = layout.show(&row(&entries[4]));
        let mut wide = entries[4].clone();
        if let Ok(event) = &mut wide.event {
            event.insert("conn".into(), serde_json::json!(1234567));
        }
        let wide = layout.show(&row(&wide));
        assert_eq!(narrow.find("Fragment"), layout.heading().find("packet"));
        assert_eq!(
            wide.find("Fragment"),
            narrow.find("Fragment").map(|at| at + 3)
        );
    }
}
