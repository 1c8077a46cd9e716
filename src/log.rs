//! Where the `tracing` log goes: a writer thread of its own, so a request never waits for
//! stderr (a slow terminal, a full pipe) and lines leave in batches, not one system call
//! each. `bitsmock serve` logs one line per request at its default level, and users run with
//! it on; written in place it cost more than the protocol work (benches/ping.rs).

use std::io::{self, Write};
use std::time::Duration;
pub use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};

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
