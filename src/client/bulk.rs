//! Many uploads at once (`bitsmock upload --concurrency N --count M`): M uploads of one file
//! to M distinct destinations derived from the URL (`/drop/a.bin` → `/drop/a.bin.1`,
//! `/drop/a.bin.2`, …), at most N in flight, with aggregate throughput and per-packet-type
//! latency percentiles. With `reply_out`, upload i saves its reply to `reply_out` + `.i`.

use super::summary::{mib, write_counts};
use super::{Counts, FailedUpload, Latencies, Percentiles, Summary, UploadError, Uploader};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

/// One upload of a bulk run that failed, with what it did until it gave up (as
/// [`FailedUpload`] reports it).
#[derive(Debug, Clone, Serialize)]
pub struct BulkFailure {
    pub url: String,
    pub error: String,
    /// The status of the last answer it received.
    pub status: Option<u16>,
    /// `0x%08X`, as [`UploadError::hresult`].
    pub hresult: Option<String>,
    pub bytes_acked: u64,
    #[serde(flatten)]
    pub counts: Counts,
}

/// The aggregate of a bulk run.
#[derive(Debug, Clone, Serialize)]
pub struct BulkSummary {
    pub file: PathBuf,
    pub uploads: usize,
    pub concurrency: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// Bytes of the successful uploads.
    pub bytes: u64,
    /// Wall-clock time of the whole run.
    pub seconds: f64,
    /// `bytes` over `seconds`.
    pub mib_per_s: f64,
    /// Over every upload, the failed ones included.
    #[serde(flatten)]
    pub counts: Counts,
    /// Per packet type (and `GET reply`), over every answered request of every upload.
    pub latency: BTreeMap<String, Percentiles>,
    /// Whole-upload durations of the successful uploads.
    pub upload_latency: Percentiles,
    pub failures: Vec<BulkFailure>,
    /// Every successful upload's own summary.
    #[serde(skip)]
    pub summaries: Vec<Summary>,
}

impl BulkSummary {
    /// The summary as `bitsmock upload --json --count M` prints it: its fields and `"ok"`,
    /// true when every upload succeeded.
    pub fn json(&self) -> serde_json::Value {
        super::summary::with_ok(self.failed == 0, self)
    }
}

impl fmt::Display for BulkSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} of {} uploads succeeded ({} in flight at most): {} in {:.2} s ({:.1} MiB/s)",
            self.succeeded,
            self.uploads,
            self.concurrency,
            mib(self.bytes),
            self.seconds,
            self.mib_per_s
        )?;
        write_counts(f, &self.counts)?;
        writeln!(f)?;
        writeln!(
            f,
            "  {:<16} {:>7} {:>10} {:>10} {:>10} {:>10}",
            "latency (ms)", "count", "p50", "p90", "p99", "max"
        )?;
        let rows = self
            .latency
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain(std::iter::once(("whole upload", &self.upload_latency)));
        for (name, p) in rows {
            writeln!(
                f,
                "  {name:<16} {:>7} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
                p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms
            )?;
        }
        for failure in &self.failures {
            writeln!(f, "  FAILED {}: {}", failure.url, failure.error)?;
        }
        Ok(())
    }
}

/// The M destination URLs: the URL itself when M is 1, else `.1` … `.M` appended to its path
/// (before any query string).
pub fn destinations(url: &str, count: usize) -> Vec<String> {
    if count == 1 {
        return vec![url.to_owned()];
    }
    let (base, query) = match url.find('?') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    (1..=count).map(|i| format!("{base}.{i}{query}")).collect()
}

impl Uploader {
    /// Uploads `path` `count` times to [`destinations`] of `url`, `concurrency` at a time.
    /// Individual failures are collected in the summary; only unusable arguments are an
    /// `Err`.
    pub async fn upload_many(
        &self,
        path: impl AsRef<Path>,
        url: &str,
        concurrency: usize,
        count: usize,
    ) -> Result<BulkSummary, UploadError> {
        if concurrency == 0 || count == 0 {
            return Err(UploadError::Usage(
                "--concurrency and --count must be at least 1".into(),
            ));
        }
        super::wire::parse_url(url).map_err(UploadError::Usage)?;
        let path = path.as_ref().to_path_buf();
        let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, dest) in destinations(url, count).into_iter().enumerate() {
            let mut uploader = self.clone();
            if count > 1
                && let Some(out) = &uploader.options.reply_out
            {
                // Each upload's reply gets its own file: `reply.json.1`, `reply.json.2`, …
                let mut name = out.clone().into_os_string();
                name.push(format!(".{}", i + 1));
                uploader.options.reply_out = Some(name.into());
            }
            let permits = Arc::clone(&permits);
            let path = path.clone();
            // Log lines (retries) of upload i read `upload{n=i}: …`.
            let span = tracing::info_span!("upload", n = i + 1);
            tasks.spawn(
                async move {
                    let _permit = permits.acquire_owned().await;
                    let began = Instant::now();
                    let result = uploader.upload_reporting(&path, &dest).await;
                    (i, dest, began.elapsed(), result)
                }
                .instrument(span),
            );
        }
        let mut results = Vec::with_capacity(count);
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(r) => results.push(r),
                Err(e) => results.push((
                    usize::MAX,
                    String::new(),
                    Duration::ZERO,
                    Err(Box::new(FailedUpload::before_start(
                        path.clone(),
                        String::new(),
                        UploadError::Usage(format!("an upload task panicked: {e}")),
                    ))),
                )),
            }
        }
        results.sort_by_key(|r| r.0);
        let seconds = started.elapsed().as_secs_f64();
        let mut counts = Counts::default();
        let mut latencies = Latencies::default();
        let mut durations = Vec::new();
        let mut summaries = Vec::new();
        let mut failures = Vec::new();
        for (_, url, took, result) in results {
            match result {
                Ok(summary) => {
                    counts += &summary.counts;
                    latencies.merge(&summary.latencies);
                    durations.push(took);
                    summaries.push(summary);
                }
                Err(failed) => {
                    counts += &failed.counts;
                    latencies.merge(&failed.latencies);
                    failures.push(BulkFailure {
                        url,
                        error: failed.error.to_string(),
                        status: failed.status,
                        hresult: failed.hresult.map(|c| format!("0x{c:08X}")),
                        bytes_acked: failed.bytes_acked,
                        counts: failed.counts.clone(),
                    });
                }
            }
        }
        let bytes: u64 = summaries.iter().map(|s| s.bytes).sum();
        Ok(BulkSummary {
            file: path,
            uploads: count,
            concurrency,
            succeeded: summaries.len(),
            failed: failures.len(),
            bytes,
            seconds,
            mib_per_s: if seconds > 0.0 {
                bytes as f64 / (1024.0 * 1024.0) / seconds
            } else {
                0.0
            },
            counts,
            latency: latencies.percentiles(),
            upload_latency: Percentiles::of(&durations),
            failures,
            summaries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_numbered_before_the_query() {
        assert_eq!(destinations("http://h/a.bin", 1), ["http://h/a.bin"]);
        assert_eq!(
            destinations("http://h/a.bin?x=1", 2),
            ["http://h/a.bin.1?x=1", "http://h/a.bin.2?x=1"]
        );
    }
}
