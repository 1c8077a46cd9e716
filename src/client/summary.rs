//! What an upload reports: the [`Summary`] of one upload (bytes, time, [`Counts`] of
//! retries, resumes and session re-creations, latency [`Percentiles`] per packet type), the
//! [`FailedUpload`] of one that gave up (the error, the last status and HRESULT, the same
//! counts so far), and the [`Meter`] that progress lines read while uploads run.

use super::UploadError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Progress counters shared by any number of uploads.
#[derive(Debug, Default)]
pub struct Meter {
    /// Bytes the server has acknowledged, over all uploads (goes back on a restart).
    pub acked: AtomicU64,
    /// Bytes to upload, over all uploads started.
    pub total: AtomicU64,
    pub retries: AtomicU64,
    pub restarts: AtomicU64,
    pub finished: AtomicU64,
    pub failed: AtomicU64,
}

/// What went on during an upload, beyond the bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Requests sent, every retry and auth round trip included.
    pub requests: u64,
    /// Fragment body bytes put on the wire (resent bytes included).
    pub bytes_sent: u64,
    /// Transient failures that were retried (protocol errors included).
    pub retries: u64,
    /// Times the same session was resumed (Ping, then the last acknowledged offset) after a
    /// failure.
    pub resumes: u64,
    /// Fragment Acks that moved the offset somewhere other than the end of the fragment sent
    /// (416, or a 200 behind or beyond it).
    pub offset_corrections: u64,
    /// New sessions after `0x8020001F`, each restarting from byte 0.
    pub session_restarts: u64,
    /// Answers rejected as untrustworthy (and retried).
    pub protocol_errors: u64,
    /// 401 challenges answered with credentials.
    pub auth_challenges: u64,
    /// 413 answers that halved the fragment size.
    pub fragment_shrinks: u64,
    /// Returns from a `BITS-Host-Id` host to the origin after its fallback timeout.
    pub host_fallbacks: u64,
}

impl std::ops::AddAssign<&Counts> for Counts {
    fn add_assign(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.bytes_sent += o.bytes_sent;
        self.retries += o.retries;
        self.resumes += o.resumes;
        self.offset_corrections += o.offset_corrections;
        self.session_restarts += o.session_restarts;
        self.protocol_errors += o.protocol_errors;
        self.auth_challenges += o.auth_challenges;
        self.fragment_shrinks += o.fragment_shrinks;
        self.host_fallbacks += o.host_fallbacks;
    }
}

/// Response times per packet type (answered requests only).
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    samples: BTreeMap<&'static str, Vec<Duration>>,
}

impl Latencies {
    pub fn record(&mut self, packet: &'static str, latency: Duration) {
        self.samples.entry(packet).or_default().push(latency);
    }

    pub fn merge(&mut self, other: &Latencies) {
        for (packet, samples) in &other.samples {
            self.samples
                .entry(packet)
                .or_default()
                .extend_from_slice(samples);
        }
    }

    /// p50/p90/p99/max per packet type.
    pub fn percentiles(&self) -> BTreeMap<String, Percentiles> {
        self.samples
            .iter()
            .map(|(packet, samples)| ((*packet).to_owned(), Percentiles::of(samples)))
            .collect()
    }
}

/// Nearest-rank percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(samples: &[Duration]) -> Percentiles {
        let mut sorted = samples.to_vec();
        sorted.sort();
        let at = |p: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
            sorted[rank.min(sorted.len()) - 1].as_secs_f64() * 1000.0
        };
        Percentiles {
            count: sorted.len(),
            p50_ms: at(50.0),
            p90_ms: at(90.0),
            p99_ms: at(99.0),
            max_ms: sorted.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        }
    }
}

/// The reply of an upload-reply job.
#[derive(Debug, Clone, Serialize)]
pub struct ReplySummary {
    pub url: String,
    pub bytes: u64,
    pub saved_to: Option<PathBuf>,
    /// The reply itself when it was not saved to a file and is at most 1 MiB.
    #[serde(skip)]
    pub body: Option<Vec<u8>>,
}

/// The result of a successful upload.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub file: PathBuf,
    pub url: String,
    pub bytes: u64,
    pub seconds: f64,
    pub mib_per_s: f64,
    #[serde(flatten)]
    pub counts: Counts,
    /// The fragment size at the end (smaller than asked after 413s).
    pub fragment_size: u64,
    /// The session that was closed.
    pub session_id: Option<String>,
    /// The `BITS-Host-Id` the last session was sent to, if any.
    pub host_id: Option<String>,
    pub reply: Option<ReplySummary>,
    pub latency: BTreeMap<String, Percentiles>,
    #[serde(skip)]
    pub latencies: Latencies,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "uploaded {} ({} bytes) in {:.2} s ({:.1} MiB/s) to {}",
            mib(self.bytes),
            self.bytes,
            self.seconds,
            self.mib_per_s,
            self.url
        )?;
        write_counts(f, &self.counts)?;
        if let Some(reply) = &self.reply {
            write!(f, "\n  reply: {} bytes from {}", reply.bytes, reply.url)?;
            if let Some(path) = &reply.saved_to {
                write!(f, ", saved to {}", path.display())?;
            }
        }
        Ok(())
    }
}

impl Summary {
    /// The summary as `bitsmock upload --json` prints it: its fields and `"ok": true`.
    pub fn json(&self) -> serde_json::Value {
        with_ok(true, self)
    }
}

/// What an upload that failed reports: why, and what happened until it gave up.
///
/// `counts` are the same a [`Summary`] carries, up to the failure (the best-effort
/// Cancel-Session sent on the way out included in `requests`).
#[derive(Debug, Serialize)]
pub struct FailedUpload {
    pub file: PathBuf,
    pub url: String,
    #[serde(serialize_with = "shown")]
    pub error: UploadError,
    /// The HTTP status of the last answer the client received before giving up, if any.
    pub status: Option<u16>,
    /// The HRESULT a BITS client would report ([`UploadError::hresult`]), as `0x%08X`.
    #[serde(serialize_with = "hex")]
    pub hresult: Option<u32>,
    /// The file's length.
    pub bytes: u64,
    /// Bytes the server had acknowledged in the last session when the upload ended.
    pub bytes_acked: u64,
    pub seconds: f64,
    #[serde(flatten)]
    pub counts: Counts,
    /// The fragment size at the end (smaller than asked after 413s).
    pub fragment_size: u64,
    pub latency: BTreeMap<String, Percentiles>,
    #[serde(skip)]
    pub latencies: Latencies,
}

impl FailedUpload {
    /// A failure before the first request (bad arguments, an unreadable file): nothing counted.
    pub fn before_start(file: PathBuf, url: String, error: UploadError) -> FailedUpload {
        FailedUpload {
            file,
            url,
            hresult: error.hresult(),
            error,
            status: None,
            bytes: 0,
            bytes_acked: 0,
            seconds: 0.0,
            counts: Counts::default(),
            fragment_size: 0,
            latency: BTreeMap::new(),
            latencies: Latencies::default(),
        }
    }

    /// The report as `bitsmock upload --json` prints it: its fields and `"ok": false`.
    pub fn json(&self) -> serde_json::Value {
        with_ok(false, self)
    }
}

/// A report's JSON with `"ok"` added, so a script reads one field to know which it got.
pub(super) fn with_ok(ok: bool, report: &impl Serialize) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or_else(
        |e| serde_json::json!({ "error": format!("cannot serialise the report: {e}") }),
    );
    if let Some(fields) = value.as_object_mut() {
        fields.insert("ok".into(), ok.into());
    }
    value
}

fn shown<T: fmt::Display, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// `0x8020001F`, or null.
pub(super) fn hex<S: serde::Serializer>(code: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match code {
        Some(code) => s.collect_str(&format_args!("0x{code:08X}")),
        None => s.serialize_none(),
    }
}

pub(super) fn write_counts(f: &mut fmt::Formatter<'_>, c: &Counts) -> fmt::Result {
    write!(
        f,
        "  {} requests, {} retries, {} resumes, {} session re-creations, {} offset corrections, \
         {} protocol errors",
        c.requests,
        c.retries,
        c.resumes,
        c.session_restarts,
        c.offset_corrections,
        c.protocol_errors
    )?;
    for (n, what) in [
        (c.auth_challenges, "auth challenges answered"),
        (c.fragment_shrinks, "fragment shrinks"),
        (c.host_fallbacks, "host-id fallbacks"),
    ] {
        if n > 0 {
            write!(f, ", {n} {what}")?;
        }
    }
    Ok(())
}

pub(super) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(&samples);
        assert_eq!(p.count, 100);
        assert_eq!(p.p50_ms, 50.0);
        assert_eq!(p.p90_ms, 90.0);
        assert_eq!(p.p99_ms, 99.0);
        assert_eq!(p.max_ms, 100.0);
        assert_eq!(Percentiles::of(&[]).count, 0);
    }
}
