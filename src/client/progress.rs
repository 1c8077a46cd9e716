//! A progress line on stderr, redrawn with a carriage return from a shared [`Meter`]. The
//! CLI starts it only when stderr is a terminal and `--quiet` is not given.

use super::Meter;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// A running progress line.
pub struct Ticker {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Ticker {
    /// Redraws the line every `every` until [`Ticker::finish`].
    pub fn start(meter: Arc<Meter>, every: Duration) -> Ticker {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => draw(&line(&meter, started.elapsed())),
                    _ = &mut stopped => break,
                }
            }
            // Leave the last figures on screen, then a new line for the summary.
            draw(&line(&meter, started.elapsed()));
            let _ = writeln!(std::io::stderr());
        });
        Ticker { stop, task }
    }

    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

fn draw(text: &str) {
    let mut err = std::io::stderr().lock();
    // `\x1b[K` clears what a longer previous line left behind.
    let _ = write!(err, "\r{text}\x1b[K");
    let _ = err.flush();
}

/// `  12.0 / 64.0 MiB  18.8%  41.2 MiB/s  retries 3  restarts 0  done 1/8`
pub fn line(meter: &Meter, elapsed: Duration) -> String {
    let acked = meter.acked.load(Ordering::Relaxed);
    let total = meter.total.load(Ordering::Relaxed);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let percent = if total > 0 {
        100.0 * acked as f64 / total as f64
    } else {
        0.0
    };
    let rate = if elapsed.as_secs_f64() > 0.0 {
        mib(acked) / elapsed.as_secs_f64()
    } else {
        0.0
    };
    let finished = meter.finished.load(Ordering::Relaxed);
    let failed = meter.failed.load(Ordering::Relaxed);
    let mut text = format!(
        "{:>8.1} / {:.1} MiB {:>5.1}%  {:>7.1} MiB/s  retries {}  restarts {}",
        mib(acked),
        mib(total),
        percent,
        rate,
        meter.retries.load(Ordering::Relaxed),
        meter.restarts.load(Ordering::Relaxed),
    );
    if finished + failed > 0 {
        text.push_str(&format!("  done {finished}"));
        if failed > 0 {
            text.push_str(&format!("  failed {failed}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_bytes_percent_rate_and_retries() {
        let meter = Meter::default();
        meter.total.store(64 << 20, Ordering::Relaxed);
        meter.acked.store(16 << 20, Ordering::Relaxed);
        meter.retries.store(3, Ordering::Relaxed);
        let text = line(&meter, Duration::from_secs(2));
        assert!(text.contains("16.0 / 64.0 MiB"), "{text}");
        assert!(text.contains("25.0%"), "{text}");
        assert!(text.contains("8.0 MiB/s"), "{text}");
        assert!(text.contains("retries 3"), "{text}");
    }
}
