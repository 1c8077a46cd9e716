//! Reference-client throughput: `bitsmock upload --concurrency 8 --count 8` (the library
//! equivalent, `Uploader::upload_many`) of a 64 MiB file, against bitsmock and against a
//! raw-sink baseline server, in the same run.
//!
//! The baseline is a minimal hyper server that answers BITS-shaped Acks (Create-Session gets a
//! session id and the protocol GUID, a Fragment gets `BITS-Received-Content-Range`) and writes
//! each fragment body to its destination file at the `Content-Range` offset the way
//! `benches/upload.rs`'s baseline does (tokio `File`: open, seek, `write_all` per body
//! frame, flush). No session table, no validation, no commit. Contenders alternate for
//! `BENCH_ROUNDS` rounds (default 3) after a warm-up; the target is bitsmock ≥ 0.90×
//! the baseline. See `benches/README.md`.

mod common;

use bitsmock::Config;
use bitsmock::client::{Options, Uploader};
use bytes::Bytes;
use common::median;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::net::TcpListener;

const MIB: u64 = 1024 * 1024;
const TARGET_RATIO: f64 = 0.90;
const DEFAULT_ROUNDS: usize = 3;
const UPLOAD_PROTOCOL: &str = "{7df0354d-249b-430f-820d-3d2a9bef4931}";

/// What one bench configuration uploads.
#[derive(Clone, Copy)]
struct Shape {
    file_size: u64,
    concurrency: usize,
    count: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds = common::rounds(DEFAULT_ROUNDS)?;
    let smoke = common::smoke();
    let shape = if smoke {
        Shape {
            file_size: 4 * MIB,
            concurrency: 8,
            count: 8,
        }
    } else {
        Shape {
            file_size: 64 * MIB,
            concurrency: 8,
            count: 8,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(shape, if smoke { 1 } else { rounds }, !smoke))?;
    if smoke {
        println!("(smoke run of an unoptimized build: figures mean nothing here;");
        println!(" measure with `cargo bench --bench client`)");
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Contender {
    Baseline,
    Bitsmock,
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::Baseline => "raw-sink baseline (hyper + tokio::fs)",
            Contender::Bitsmock => "bitsmock (no profile)",
        }
    }
}

async fn bench(shape: Shape, rounds: usize, judge: bool) -> Result<(), Box<dyn std::error::Error>> {
    // BENCH_DIR=/dev/shm takes the disk out of the comparison (CPU cost only).
    let scratch = match std::env::var_os("BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let source = scratch.path().join("source.bin");
    write_source(&source, shape.file_size)?;
    let uploader = Uploader::new(Options::default());
    println!(
        "client: {} × {} MiB, {} in flight, {} MiB fragments (bitsmock upload defaults), \
         {rounds} round(s), contenders alternating",
        shape.count,
        shape.file_size / MIB,
        shape.concurrency,
        uploader.options().fragment_size / MIB,
    );
    let contenders = [Contender::Baseline, Contender::Bitsmock];
    let mut samples = vec![Vec::new(); contenders.len()];
    let first = if judge { 0 } else { 1 };
    for round in first..=rounds {
        // ABBA: the contender that goes first alternates, so neither always inherits the
        // other's page-cache writeback.
        let mut order: Vec<usize> = (0..contenders.len()).collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for i in order {
            let contender = contenders[i];
            settle();
            let dir = scratch.path().join(format!("c{i}-r{round}"));
            let (mibps, p99) = run(contender, &uploader, &source, &dir, shape).await?;
            tokio::fs::remove_dir_all(&dir).await?;
            let label = if round == 0 {
                "warm-up".to_owned()
            } else {
                format!("round {round}/{rounds}")
            };
            println!(
                "  {label:<11}  {:<38} {mibps:>8.1} MiB/s   Fragment p99 {p99:>7.1} ms",
                contender.name()
            );
            if round > 0 {
                samples[i].push(mibps);
            }
        }
    }
    println!();
    println!("median over {rounds} round(s):");
    let medians: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
    let base = medians[0];
    for (contender, m) in contenders.iter().zip(&medians) {
        println!(
            "  {:<38} {m:>8.1} MiB/s   {:.3}× baseline",
            contender.name(),
            m / base
        );
    }
    if judge {
        let ratio = medians[1] / base;
        let verdict = if ratio >= TARGET_RATIO {
            "meets"
        } else {
            "MISSES"
        };
        println!(
            "  {}: {ratio:.3}× {verdict} the {TARGET_RATIO:.2}× target",
            Contender::Bitsmock.name()
        );
    }
    Ok(())
}

/// One bulk upload against a fresh server; returns aggregate MiB/s and the Fragment p99.
async fn run(
    contender: Contender,
    uploader: &Uploader,
    source: &Path,
    dir: &Path,
    shape: Shape,
) -> io::Result<(f64, f64)> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = match contender {
        Contender::Baseline => {
            tokio::fs::create_dir_all(dir).await?;
            tokio::spawn(serve_baseline(listener, dir.to_path_buf(), stopped))
        }
        Contender::Bitsmock => {
            let server = bitsmock::Server::new(Config {
                listen: addr,
                root: dir.to_path_buf(),
                ..Config::default()
            })?;
            tokio::spawn(async move {
                server
                    .run(listener, async {
                        let _ = stopped.await;
                    })
                    .await
            })
        }
    };
    let url = format!("http://{addr}/bench/upload.bin");
    let summary = uploader
        .upload_many(source, &url, shape.concurrency, shape.count)
        .await
        .map_err(io::Error::other)?;
    let _ = stop.send(());
    server.await.map_err(io::Error::other)??;
    if summary.failed > 0 {
        return Err(io::Error::other(format!(
            "{}: {} upload(s) failed: {:?}",
            contender.name(),
            summary.failed,
            summary.failures
        )));
    }
    for i in 1..=shape.count {
        let stored = dir.join("bench").join(format!("upload.bin.{i}"));
        let len = tokio::fs::metadata(&stored).await?.len();
        if len != shape.file_size {
            return Err(io::Error::other(format!(
                "{}: {} holds {len} bytes, expected {}",
                contender.name(),
                stored.display(),
                shape.file_size
            )));
        }
    }
    let p99 = summary.latency.get("Fragment").map_or(0.0, |p| p.p99_ms);
    Ok((summary.mib_per_s, p99))
}

/// Flushes dirty pages (`sync`) so a run does not pay for the previous run's writes.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

fn write_source(path: &Path, size: u64) -> io::Result<()> {
    let mut out = io::BufWriter::new(std::fs::File::create(path)?);
    let block: Vec<u8> = (0..MIB)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for _ in 0..size / MIB {
        out.write_all(&block)?;
    }
    out.write_all(&block[..(size % MIB) as usize])?;
    out.flush()
}

/// The raw-sink baseline: many connections, BITS-shaped Acks, fragment bodies written at
/// their offset into `root` + URL path. Nothing is checked beyond what the Acks need.
async fn serve_baseline(
    listener: TcpListener,
    root: PathBuf,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> io::Result<()> {
    let state = Arc::new(Sink {
        root,
        next_id: AtomicU64::new(1),
        sessions: Mutex::new(HashMap::new()),
    });
    tokio::pin!(stopped);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                stream.set_nodelay(true)?;
                let state = Arc::clone(&state);
                let service = service_fn(move |req| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, io::Error>(state.answer(req).await) }
                });
                connections.spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            _ = &mut stopped => break,
        }
    }
    connections.abort_all();
    Ok(())
}

struct Sink {
    root: PathBuf,
    next_id: AtomicU64,
    /// Session id → destination path.
    sessions: Mutex<HashMap<String, PathBuf>>,
}

impl Sink {
    async fn answer(&self, req: http::Request<Incoming>) -> Response<Full<Bytes>> {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let packet = header("BITS-Packet-Type").unwrap_or_default();
        let session = header("BITS-Session-Id");
        let mut headers = vec![("BITS-Packet-Type", "Ack".to_owned())];
        let status = match packet.to_ascii_lowercase().as_str() {
            "ping" => StatusCode::OK,
            "create-session" => {
                let id = format!(
                    "{{00000000-0000-0000-0000-{:012X}}}",
                    self.next_id.fetch_add(1, Ordering::Relaxed)
                );
                let mut path = self.root.clone();
                path.extend(req.uri().path().split('/').filter(|s| !s.is_empty()));
                if let Some(parent) = path.parent() {
                    let _ = tokio::fs::create_dir_all(parent).await;
                }
                lock(&self.sessions).insert(id.clone(), path);
                headers.push(("BITS-Protocol", UPLOAD_PROTOCOL.to_owned()));
                headers.push(("BITS-Session-Id", id));
                StatusCode::OK
            }
            "fragment" => {
                let path = session
                    .as_ref()
                    .and_then(|id| lock(&self.sessions).get(id).cloned());
                let range = header("Content-Range").and_then(|r| parse_range(&r));
                match (path, range) {
                    (Some(path), Some((first, last))) => {
                        match store(req.into_body(), &path, first).await {
                            Ok(()) => {
                                headers
                                    .push(("BITS-Received-Content-Range", (last + 1).to_string()));
                                StatusCode::OK
                            }
                            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
                        }
                    }
                    _ => StatusCode::BAD_REQUEST,
                }
            }
            "close-session" | "cancel-session" => {
                if let Some(id) = &session {
                    lock(&self.sessions).remove(id);
                }
                StatusCode::OK
            }
            _ => StatusCode::BAD_REQUEST,
        };
        if let Some(id) = session {
            headers.push(("BITS-Session-Id", id));
        }
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = status;
        for (name, value) in headers {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                response.headers_mut().append(name, v);
            }
        }
        response
    }
}

/// `bytes F-L/T` → (F, L).
fn parse_range(value: &str) -> Option<(u64, u64)> {
    let (range, _) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// Writes a body at `first` the way benches/upload.rs's baseline does.
async fn store(mut body: Incoming, path: &Path, first: u64) -> io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)
        .await?;
    file.seek(io::SeekFrom::Start(first)).await?;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(io::Error::other)?.into_data() {
            file.write_all(&data).await?;
        }
    }
    file.flush().await
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
