//! Where the `tracing` log goes: a writer thread of its own, so a request never waits for
//! stderr (a slow terminal, a full pipe) and lines leave in batches, not one system call
//! each. `bitsmock serve` logs one line per request at its default level, and users run with
//! it on; written in place it cost more than the protocol work (benches/ping.rs).

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Write};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
pub use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{Full, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How long the writer lets lines gather after each flush: a burst of requests shares one
/// write and one wake-up, and no line waits much longer than this.
const GATHER: Duration = Duration::from_millis(1);

/// A non-blocking writer into `out` and the guard that flushes it when dropped (keep it
/// until the program ends). Never lossy: a writer that falls 128,000 lines behind makes
/// logging wait rather than drop a line, since the log is a record of what happened.
pub fn non_blocking<W: Write + Send + 'static>(out: W) -> (NonBlocking, WorkerGuard) {
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("bitsmock-log")
        .finish(Gathering(io::BufWriter::with_capacity(1 << 16, out)))
}

/// The writer thread's side: buffered, and resting briefly after each flush (the thread
/// flushes when it has drained every queued line).
struct Gathering<W: Write>(io::BufWriter<W>);

impl<W: Write> Write for Gathering<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        std::thread::sleep(GATHER);
        Ok(())
    }
}

/// How a log line is laid out: byte for byte as `tracing-subscriber`'s default ("full")
/// format with the timer `T` — time, level, target, then the fields — but written straight
/// into the line, where the default goes through a formatter for each part and pads the
/// level. The request line is written at the default level for every request, and that
/// layout cost as much as the protocol work of a Ping (benches/ping.rs).
///
/// A line that carries more than that — one inside a span, or one from the `log` crate's
/// bridge, whose target is in its fields — is left to the default format itself, so every
/// line reads as the default writes it.
#[derive(Debug, Clone)]
pub struct Format<T = Time> {
    timer: T,
    full: tracing_subscriber::fmt::format::Format<Full, T>,
}

impl Default for Format<Time> {
    fn default() -> Self {
        Format::with_timer(Time)
    }
}

impl<T: FormatTime + Clone> Format<T> {
    pub fn with_timer(timer: T) -> Self {
        Format {
            full: tracing_subscriber::fmt::format().with_timer(timer.clone()),
            timer,
        }
    }
}

/// The escape sequences that start dimmed text and end any styling, as the default
/// format's `nu-ansi-term` styles write them.
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

impl<S, N, T> FormatEvent<S, N> for Format<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if ctx.event_scope().is_some() || meta.fields().field("log.target").is_some() {
            return self.full.format_event(ctx, writer, event);
        }
        let ansi = writer.has_ansi_escapes();
        if ansi {
            writer.write_str(DIM)?;
        }
        // As the default does: a clock that fails is noted, not a reason to drop the line.
        if self.timer.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        if ansi {
            writer.write_str(RESET)?;
        }
        writer.write_char(' ')?;
        let (level, colour) = match *meta.level() {
            Level::TRACE => ("TRACE", "\x1b[35m"),
            Level::DEBUG => ("DEBUG", "\x1b[34m"),
            Level::INFO => (" INFO", "\x1b[32m"),
            Level::WARN => (" WARN", "\x1b[33m"),
            Level::ERROR => ("ERROR", "\x1b[31m"),
        };
        if ansi {
            for part in [
                colour,
                level,
                RESET,
                " ",
                DIM,
                meta.target(),
                RESET,
                DIM,
                ":",
                RESET,
                " ",
            ] {
                writer.write_str(part)?;
            }
        } else {
            for part in [level, " ", meta.target(), ": "] {
                writer.write_str(part)?;
            }
        }
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

/// How a log line's fields are written: as `tracing-subscriber`'s default (the message,
/// then ` name=value` for each other field), and just as safe for a terminal — a value with
/// control characters has them escaped — but a value is checked in one pass and copied
/// whole, where the default escapes character by character through a formatter. On the
/// request line that escaping cost more than all the rest of logging (benches/ping.rs).
#[derive(Debug, Default, Clone, Copy)]
pub struct Fields;

impl<'writer> FormatFields<'writer> for Fields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = Visitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

thread_local! {
    /// Where a value is formatted before it is checked: one buffer per thread, reused.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

impl Visitor<'_> {
    /// Writes one field: `value` formatted, as is when it is clean, else escaped.
    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        // A value that is one piece of text needs no formatting first.
        if let Some(text) = value.as_str() {
            return self.text(field, text);
        }
        SCRATCH.with(|scratch| {
            let mut fresh = String::new();
            let mut held = scratch.try_borrow_mut();
            let text = match held.as_deref_mut() {
                Ok(text) => text,
                Err(_) => &mut fresh,
            };
            text.clear();
            match fmt::write(text, value) {
                Ok(()) => self.text(field, text),
                Err(e) => self.result = Err(e),
            }
        });
    }

    /// Writes one field whose value is `text`: as is when it is clean, else escaped.
    fn text(&mut self, field: &Field, text: &str) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        // Fields the `log` crate's bridge adds say where a line came from, as the default does not print.
        if name.starts_with("log.") {
            return;
        }
        let separator = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        self.result = (|| {
            self.writer.write_str(separator)?;
            if name != "message" {
                self.writer.write_str(name)?;
                self.writer.write_char('=')?;
            }
            write_escaped(&mut self.writer, text)
        })();
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.text(field, value);
        } else {
            self.field(field, format_args!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }
}

/// `text` with every character a terminal could act on (C0 controls but tab, DEL, C1
/// controls) written as an escape; clean text, nearly always, in one write.
fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    let unsafe_char = |c: char| c.is_control() && c != '\t';
    // No early exit, so the check runs over whole words at a time.
    let suspect = text.bytes().fold(false, |seen, b| {
        seen | (b < 0x20) | (b == 0x7f) | (b == 0xc2)
    });
    if !suspect {
        return out.write_str(text);
    }
    for c in text.chars() {
        if unsafe_char(c) {
            write!(out, "\\u{{{:x}}}", c as u32)?;
        } else {
            out.write_char(c)?;
        }
    }
    Ok(())
}

/// The time at the start of each log line, as `tracing-subscriber`'s default writes it
/// (RFC 3339, UTC, microseconds): the date and time of day are formatted once per second
/// per thread, and only the microseconds on every line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Time;

thread_local! {
    /// The second last formatted, and its text up to the fraction (`2026-12-01T13:55:10.`).
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl FormatTime for Time {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let second = now.as_secs();
        SECOND.with(|cached| {
            let mut cached = cached.borrow_mut();
            if cached.0 != second {
                let text = &mut cached.1;
                text.clear();
                write_second(text, second)?;
                cached.0 = second;
            }
            w.write_str(&cached.1)?;
            let fraction = fraction(now.subsec_micros());
            w.write_str(std::str::from_utf8(&fraction).map_err(|_| fmt::Error)?)
        })
    }
}

/// `micros` (below a million) as six digits and the zone, `000042Z`: by hand, as this is
/// written on every line.
fn fraction(mut micros: u32) -> [u8; 7] {
    let mut text = *b"000000Z";
    for digit in text[..6].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    text
}

/// `YYYY-MM-DDTHH:MM:SS.` for seconds since 1970 (UTC; the proleptic Gregorian calendar).
fn write_second(out: &mut String, secs: u64) -> fmt::Result {
    use fmt::Write as _;
    let days = secs / 86_400;
    let in_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// The calendar date `days` after 1970-01-01 (Howard Hinnant's days-to-civil algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_six_digits_and_the_zone() {
        assert_eq!(&fraction(0), b"000000Z");
        assert_eq!(&fraction(7), b"000007Z");
        assert_eq!(&fraction(123_456), b"123456Z");
        assert_eq!(&fraction(999_999), b"999999Z");
        assert_eq!(&fraction(10_020), b"010020Z");
    }

    #[test]
    fn dates_match_the_calendar() {
        let second = |s| {
            let mut text = String::new();
            write_second(&mut text, s).unwrap();
            text
        };
        assert_eq!(second(0), "1970-01-01T00:00:00.");
        assert_eq!(second(951_782_400), "2000-02-29T00:00:00.");
        assert_eq!(second(1_796_137_510), "2026-12-01T15:05:10.");
        assert_eq!(second(4_107_542_399), "2100-02-28T23:59:59.");
        assert_eq!(second(4_107_542_400), "2100-03-01T00:00:00.");
    }

    #[test]
    fn clean_text_is_written_whole_and_controls_are_escaped() {
        let escaped = |t: &str| {
            let mut out = String::new();
            write_escaped(&mut out, t).unwrap();
            out
        };
        assert_eq!(escaped("path=/a b c é"), "path=/a b c é");
        assert_eq!(escaped("tab\tkept"), "tab\tkept");
        assert_eq!(escaped("\x1b[31mred\x07"), "\\u{1b}[31mred\\u{7}");
        assert_eq!(escaped("line\nforged\r"), "line\\u{a}forged\\u{d}");
        assert_eq!(
            escaped("del\x7f c1\u{9b} latin\u{a0}"),
            "del\\u{7f} c1\\u{9b} latin\u{a0}"
        );
        // Text that is nothing but controls: the one-pass check must still see them.
        assert_eq!(escaped("\x1b"), "\\u{1b}");
        assert_eq!(escaped("\x7f"), "\\u{7f}");
        assert_eq!(escaped("\x1b\x1b"), "\\u{1b}\\u{1b}");
        assert_eq!(escaped("\u{85}"), "\\u{85}");
        // Two of a kind: each must keep the text suspect, not cancel the other out.
        assert_eq!(escaped("\x7f\x7f"), "\\u{7f}\\u{7f}");
        assert_eq!(escaped("\u{85}\u{9b}"), "\\u{85}\\u{9b}");
        assert_eq!(escaped(" "), " ");
    }
    /// A writer the tests can read back while the log's thread holds the other end.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    struct To(Shared);

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for To {
        type Writer = Shared;
        fn make_writer(&'a self) -> Shared {
            self.0.clone()
        }
    }

    /// A clock that always reads the same, so two formats' lines can be compared whole.
    #[derive(Clone, Copy)]
    struct Fixed;

    impl FormatTime for Fixed {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str("2026-12-01T13:55:10.123456Z")
        }
    }

    #[derive(Clone, Copy)]
    struct Broken;

    impl FormatTime for Broken {
        fn format_time(&self, _: &mut Writer<'_>) -> fmt::Result {
            Err(fmt::Error)
        }
    }

    /// Lines of every kind: each level, fields, a line inside spans, one carrying the
    /// `log` bridge's field.
    fn every_kind_of_line() {
        tracing::trace!(n = 1, "trace line");
        tracing::debug!("debug line");
        tracing::info!(message = "request seq=1 path=/a\x1b b");
        tracing::info!(target: "bitsmock::elsewhere", seq = 2, "info line");
        tracing::warn!(why = "slow", "warn line");
        tracing::error!(error = %"disk full", "error line");
        tracing::info_span!("upload", n = 3).in_scope(|| {
            tracing::info!("inside a span");
            tracing::debug_span!("inner").in_scope(|| tracing::warn!(k = 4, "two deep"));
        });
        tracing::info!("log.target" = "hyper::proto", "from the log bridge");
    }

    /// What `every_kind_of_line` writes through `format` (else the default format) with
    /// the clock `timer`.
    fn written<T: FormatTime + Clone + Send + Sync + 'static>(
        timer: T,
        ansi: bool,
        ours: bool,
    ) -> String {
        let out = Shared::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(To(out.clone()))
            .with_max_level(Level::TRACE)
            .fmt_fields(Fields)
            .with_ansi(ansi);
        if ours {
            let subscriber = builder.event_format(Format::with_timer(timer)).finish();
            tracing::subscriber::with_default(subscriber, every_kind_of_line);
        } else {
            let subscriber = builder.with_timer(timer).finish();
            tracing::subscriber::with_default(subscriber, every_kind_of_line);
        }
        out.text()
    }

    #[test]
    fn lines_read_byte_for_byte_as_the_default_format_writes_them() {
        for ansi in [false, true] {
            let ours = written(Fixed, ansi, true);
            assert_eq!(ours, written(Fixed, ansi, false), "ansi {ansi}");
            assert_eq!(ours.lines().count(), 9, "{ours}");
            assert_eq!(
                written(Broken, ansi, true),
                written(Broken, ansi, false),
                "ansi {ansi}"
            );
        }
        let plain = written(Fixed, false, true);
        let lines: Vec<&str> = plain.lines().collect();
        let here = module_path!();
        assert_eq!(
            lines[2],
            format!("2026-12-01T13:55:10.123456Z  INFO {here}: request seq=1 path=/a\\u{{1b}} b")
        );
        assert!(lines[0].starts_with("2026-12-01T13:55:10.123456Z TRACE "));
        assert!(lines[5].starts_with("2026-12-01T13:55:10.123456Z ERROR "));
        assert!(written(Broken, false, true).starts_with("<unknown time> TRACE "));
        let coloured = written(Fixed, true, true);
        assert!(
            coloured.starts_with(
                "\x1b[2m2026-12-01T13:55:10.123456Z\x1b[0m \x1b[35mTRACE\x1b[0m \x1b[2m"
            ),
            "{coloured:?}"
        );
    }

    #[test]
    fn lines_reach_the_output_while_the_writer_runs_and_all_of_them_at_the_end() {
        let out = Shared::default();
        let (mut writer, guard) = non_blocking(out.clone());
        writer.write_all(b"first line\n").unwrap();
        // Flushed once the queue is drained, not only when the guard goes.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.text().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.text(), "first line\n");
        for i in 0..1000 {
            writeln!(writer, "line {i}").unwrap();
        }
        drop(guard);
        let text = out.text();
        assert_eq!(text.lines().count(), 1001);
        assert!(text.ends_with("line 999\n"), "{text}");
    }

    #[test]
    fn fields_read_as_the_default_formatter_writes_them() {
        let out = Shared::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(To(out.clone()))
            .fmt_fields(Fields)
            .with_timer(Time)
            .with_ansi(false)
            .finish();
        let error = io::Error::other("disk \x1b[2Jfull");
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                seq = 7,
                name = "a\nb",
                path = %"/x y",
                ok = true,
                error = &error as &dyn std::error::Error,
                "request path=/p\x07 n={}",
                3
            );
            tracing::warn!("only a message");
        });
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let (time, rest) = lines[0].split_once(' ').unwrap();
        // 2026-12-01T13:55:10.123456Z, today's date.
        assert_eq!(time.len(), 27, "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T' && time.as_bytes()[19] == b'.');
        let mut today = String::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        write_second(&mut today, now).unwrap();
        assert_eq!(&time[..10], &today[..10]);
        let here = module_path!();
        assert_eq!(
            rest.trim_start(),
            format!(
                "INFO {here}: request path=/p\\u{{7}} n=3 seq=7 \
                 name=\"a\\nb\" path=/x y ok=true error=disk \\u{{1b}}[2Jfull"
            )
        );
        let warned = format!("WARN {here}: only a message");
        assert!(lines[1].ends_with(&warned), "{}", lines[1]);
    }
}
