//! Ping rate: bitsmock with its default per-request log line on, against a minimal hyper
//! server answering the same Ack, same run; bitsmock with logging off and with `--journal
//! FILE` too.
//!
//! Ping is the cheapest packet, so it shows the per-request cost of everything around the
//! protocol most plainly: the log line, the journal. `CONNECTIONS` keep-alive connections
//! each send Pings back to back for a fixed count; the rate is all Pings over the wall time.
//! Contenders alternate, and every other round runs them in reverse order; verdicts use the
//! median of per-round ratios. The servers run on a runtime of their own whose threads are
//! named `server`, so their CPU time (utime + stime from /proc/self/task/*/stat, the log
//! writer's thread included) is reported per Ping apart from the client's. See
//! benches/README.md.

mod common;

use bitsmock::Config;
use bytes::Bytes;
use common::{Client, median};
use http::Response;
use http_body_util::Empty;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;
use tokio::net::TcpListener;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::reload;

/// Connections sending Pings at once.
const CONNECTIONS: usize = 16;
/// Pings per connection per run.
const PINGS: usize = 2_000;
/// bitsmock with its default log line against the minimal hyper server.
const TARGET_RATIO: f64 = 0.85;
/// `--journal FILE` against no journal.
const JOURNAL_TARGET_RATIO: f64 = 0.90;
const DEFAULT_ROUNDS: usize = 7;
/// The Ack the baseline sends; bitsmock's Ping Ack has the same headers.
const ACK_HEADERS: [(&str, &str); 1] = [("BITS-Packet-Type", "Ack")];

enum Contender {
    Baseline,
    Bitsmock { log: Log, journal: bool },
}

/// Where bitsmock's log line goes in a run.
#[derive(Clone, Copy, PartialEq)]
enum Log {
    Off,
    /// `bitsmock serve`'s writer: [`bitsmock::log::non_blocking`].
    NonBlocking,
    /// Written in place by the request's thread, as before issue 14, for comparison.
    InPlace,
}

/// Sets one log layer's level.
type Reload = Box<dyn Fn(LevelFilter) -> io::Result<()>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds = common::rounds(DEFAULT_ROUNDS)?;
    let smoke = common::smoke();
    let scratch = tempfile::tempdir()?;
    // bitsmock serve's log: the same fmt layer and non-blocking writer, into a file here;
    // beside it the same layer writing in place (a mutex around a file), each switched on
    // and off per run.
    let (level, handle) = reload::Layer::new(LevelFilter::OFF);
    let (in_place_level, in_place_handle) = reload::Layer::new(LevelFilter::OFF);
    let (writer, _flush) =
        bitsmock::log::non_blocking(std::fs::File::create(scratch.path().join("serve.log"))?);
    let in_place = std::sync::Mutex::new(std::fs::File::create(
        scratch.path().join("serve-in-place.log"),
    )?);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .fmt_fields(bitsmock::log::Fields)
                .event_format(bitsmock::log::Format::default())
                .with_ansi(false)
                .with_filter(level),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(in_place)
                .fmt_fields(bitsmock::log::Fields)
                .event_format(bitsmock::log::Format::default())
                .with_ansi(false)
                .with_filter(in_place_level),
        )
        .init();
    let reload: Reload = Box::new(move |l| handle.modify(|f| *f = l).map_err(io::Error::other));
    let in_place_reload: Reload =
        Box::new(move |l| in_place_handle.modify(|f| *f = l).map_err(io::Error::other));
    let clients = tokio::runtime::Builder::new_multi_thread()
        .thread_name("client")
        .enable_all()
        .build()?;
    let servers = tokio::runtime::Builder::new_multi_thread()
        .thread_name("server")
        .enable_all()
        .build()?;
    let bench = Bench {
        servers: servers.handle().clone(),
        reload,
        in_place_reload,
        dir: scratch.path(),
    };
    if smoke {
        clients.block_on(bench.run_all(1, 100, false))?;
        println!("(smoke run of an unoptimized build: figures mean nothing here;");
        println!(" measure with `cargo bench --bench ping`)");
        Ok(())
    } else {
        clients.block_on(bench.run_all(rounds, PINGS, true))
    }
}

struct Bench<'a> {
    servers: tokio::runtime::Handle,
    reload: Reload,
    in_place_reload: Reload,
    dir: &'a Path,
}

impl Bench<'_> {
    async fn run_all(
        &self,
        rounds: usize,
        pings: usize,
        judge: bool,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let contenders = [
            ("baseline (hyper, fixed Ack)", Contender::Baseline),
            (
                "bitsmock (default log line)",
                Contender::Bitsmock {
                    log: Log::NonBlocking,
                    journal: false,
                },
            ),
            (
                "bitsmock (log off)",
                Contender::Bitsmock {
                    log: Log::Off,
                    journal: false,
                },
            ),
            (
                "bitsmock --journal FILE (log off)",
                Contender::Bitsmock {
                    log: Log::Off,
                    journal: true,
                },
            ),
            (
                "bitsmock (log line in place)",
                Contender::Bitsmock {
                    log: Log::InPlace,
                    journal: false,
                },
            ),
        ];
        // For a profiler (`perf record`): only the contenders whose name holds the text, no
        // verdict.
        if let Ok(only) = std::env::var("BENCH_ONLY") {
            for (name, contender) in contenders.iter().filter(|(n, _)| n.contains(&only)) {
                for _ in 0..rounds {
                    let (rate, cpu) = self.run(contender, pings).await?;
                    println!("  {name:<34} {rate:>9.0} Pings/s   server CPU {cpu:>5.1} µs/Ping");
                }
            }
            return Ok(());
        }
        println!(
            "ping: {CONNECTIONS} connections x {pings} Pings over loopback, {rounds} round(s), alternating"
        );
        if judge {
            for (name, contender) in &contenders {
                let (rate, cpu) = self.run(contender, pings).await?;
                println!(
                    "  warm-up      {name:<34} {rate:>9.0} Pings/s   server CPU {cpu:>5.1} µs/Ping"
                );
            }
        }
        let mut rates = vec![Vec::with_capacity(rounds); contenders.len()];
        let mut cpus = vec![Vec::with_capacity(rounds); contenders.len()];
        for round in 0..rounds {
            let mut order: Vec<usize> = (0..contenders.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let (name, contender) = &contenders[i];
                let (rate, cpu) = self.run(contender, pings).await?;
                println!(
                    "  round {}/{rounds}    {name:<34} {rate:>9.0} Pings/s   server CPU {cpu:>5.1} µs/Ping",
                    round + 1
                );
                rates[i].push(rate);
                cpus[i].push(cpu);
            }
        }
        let ratios = |a: usize, b: usize| -> Vec<f64> {
            rates[a].iter().zip(&rates[b]).map(|(x, y)| x / y).collect()
        };
        let ratio = |a: usize, b: usize| median(&mut ratios(a, b));
        let logged = ratio(1, 0);
        // This machine's rounds fall into a fast and a slow mode (benches/README.md): the
        // spread says how far one median can be trusted.
        let spread = ratios(1, 0)
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        let journal = ratio(3, 2);
        let writer = ratio(1, 4);
        println!("median over {rounds} round(s):");
        let base = median(&mut rates[0].clone());
        for (i, (name, _)) in contenders.iter().enumerate() {
            let m = median(&mut rates[i].clone());
            let cpu = median(&mut cpus[i].clone());
            println!(
                "  {name:<34} {m:>9.0} Pings/s   {:.3}× baseline   server CPU {cpu:>5.1} µs/Ping",
                m / base
            );
        }
        if judge {
            let says = |r: f64, target: f64| if r >= target { "meets" } else { "MISSES" };
            println!(
                "  default log line vs baseline: {logged:.3}× (median of per-round ratios, {:.3}–{:.3}) {} the {TARGET_RATIO:.2}× target",
                spread.0,
                spread.1,
                says(logged, TARGET_RATIO)
            );
            println!(
                "  --journal vs no journal: {journal:.3}× {} the {JOURNAL_TARGET_RATIO:.2}× target",
                says(journal, JOURNAL_TARGET_RATIO)
            );
            println!("  non-blocking log writer vs writing in place: {writer:.3}×");
        }
        Ok(())
    }

    /// One run: a fresh server, `CONNECTIONS` clients sending `pings` Pings each. Returns
    /// Pings/s and the servers' CPU time per Ping in µs.
    async fn run(&self, contender: &Contender, pings: usize) -> io::Result<(f64, f64)> {
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        type Stop = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
        let (addr, stop): (SocketAddr, Stop) = match contender {
            Contender::Baseline => {
                let listener = std::net::TcpListener::bind(local)?;
                listener.set_nonblocking(true)?;
                let addr = listener.local_addr()?;
                let task = self
                    .servers
                    .spawn(async move { serve_baseline(TcpListener::from_std(listener)?).await });
                (addr, Box::pin(async move { task.abort() }))
            }
            Contender::Bitsmock { log, journal } => {
                let level = |on: bool| {
                    if on {
                        LevelFilter::INFO
                    } else {
                        LevelFilter::OFF
                    }
                };
                (self.reload)(level(*log == Log::NonBlocking))?;
                (self.in_place_reload)(level(*log == Log::InPlace))?;
                let config = Config {
                    listen: local,
                    root: self.dir.join("root"),
                    journal: journal.then(|| self.dir.join("journal.ndjson")),
                    ..Config::default()
                };
                let running = self
                    .servers
                    .spawn(bitsmock::spawn(config))
                    .await
                    .map_err(io::Error::other)??;
                let addr = running.addr;
                (
                    addr,
                    Box::pin(async move {
                        let _ = running.stop().await;
                    }),
                )
            }
        };
        let cpu_before = common::server_cpu_seconds(&["server", "bitsmock-log"]);
        let started = Instant::now();
        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                tokio::spawn(async move {
                    let mut client = Client::connect(addr).await?;
                    for _ in 0..pings {
                        client
                            .send("/ping", &[("BITS-Packet-Type", "Ping")], &[])
                            .await?
                            .expect_ok("Ping")?;
                    }
                    Ok::<(), io::Error>(())
                })
            })
            .collect();
        for client in clients {
            client.await.map_err(io::Error::other)??;
        }
        let elapsed = started.elapsed();
        let cpu = common::server_cpu_seconds(&["server", "bitsmock-log"]) - cpu_before;
        // Stopped before the next run opens the same root.
        stop.await;
        let n = (CONNECTIONS * pings) as f64;
        Ok((n / elapsed.as_secs_f64(), cpu / n * 1e6))
    }
}

/// A hyper server that answers every request with a fixed Ping Ack: the floor of "HTTP in,
/// Ack out" on this machine.
async fn serve_baseline(listener: TcpListener) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_req| async {
                let mut ack = Response::builder();
                for (name, value) in ACK_HEADERS {
                    ack = ack.header(name, value);
                }
                ack.header("Content-Length", "0")
                    .body(Empty::<Bytes>::new())
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
