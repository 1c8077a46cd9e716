//! Ping rate: bitsmock with `--journal FILE` against the same server without it, same run.
//!
//! Ping is the cheapest packet, so it shows the per-request cost of recording an event most
//! plainly. `CONNECTIONS` keep-alive connections each send Pings back to back for a fixed
//! count; the rate is all Pings over the wall time. Contenders alternate, and every other
//! round runs them in reverse order; the verdict is the median of the per-round ratios
//! (target: journal ≥ 0.90× no journal). A minimal hyper server answering the same Ack is
//! measured too, for scale. See benches/README.md.

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

/// Connections sending Pings at once.
const CONNECTIONS: usize = 4;
/// Pings per connection per run.
const PINGS: usize = 5_000;
const TARGET_RATIO: f64 = 0.90;
const DEFAULT_ROUNDS: usize = 7;

enum Contender {
    Baseline,
    Bitsmock { journal: bool },
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds = common::rounds(DEFAULT_ROUNDS)?;
    let smoke = common::smoke();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if smoke {
        runtime.block_on(bench(1, 200, false))?;
        println!("(smoke run of an unoptimized build: figures mean nothing here;");
        println!(" measure with `cargo bench --bench ping`)");
        Ok(())
    } else {
        runtime.block_on(bench(rounds, PINGS, true))
    }
}

async fn bench(rounds: usize, pings: usize, judge: bool) -> Result<(), Box<dyn std::error::Error>> {
    let contenders = [
        ("baseline (hyper, fixed Ack)", Contender::Baseline),
        ("bitsmock", Contender::Bitsmock { journal: false }),
        (
            "bitsmock --journal FILE",
            Contender::Bitsmock { journal: true },
        ),
    ];
    let scratch = tempfile::tempdir()?;
    println!(
        "ping: {CONNECTIONS} connections x {pings} Pings over loopback, {rounds} round(s), alternating"
    );
    if judge {
        for (name, contender) in &contenders {
            let rate = run(contender, pings, scratch.path()).await?;
            println!("  warm-up      {name:<30} {rate:>9.0} Pings/s");
        }
    }
    let mut samples = vec![Vec::with_capacity(rounds); contenders.len()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..contenders.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (name, contender) = &contenders[i];
            let rate = run(contender, pings, scratch.path()).await?;
            println!(
                "  round {}/{rounds}    {name:<30} {rate:>9.0} Pings/s",
                round + 1
            );
            samples[i].push(rate);
        }
    }
    let mut ratios: Vec<f64> = samples[2]
        .iter()
        .zip(&samples[1])
        .map(|(with, without)| with / without)
        .collect();
    let medians: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
    println!("median over {rounds} round(s):");
    for ((name, _), m) in contenders.iter().zip(&medians) {
        println!(
            "  {name:<30} {m:>9.0} Pings/s   {:.3}× baseline",
            m / medians[0]
        );
    }
    if judge {
        let ratio = median(&mut ratios);
        let verdict = if ratio >= TARGET_RATIO {
            "meets"
        } else {
            "MISSES"
        };
        println!(
            "  --journal vs no journal: {ratio:.3}× (median of per-round ratios) {verdict} the {TARGET_RATIO:.2}× target"
        );
    }
    Ok(())
}

/// One run: a fresh server, `CONNECTIONS` clients sending `pings` Pings each. Pings/s.
async fn run(contender: &Contender, pings: usize, dir: &Path) -> io::Result<f64> {
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    type Stop = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
    let (addr, stop): (SocketAddr, Stop) = match contender {
        Contender::Baseline => {
            let listener = TcpListener::bind(local).await?;
            let addr = listener.local_addr()?;
            let task = tokio::spawn(serve_baseline(listener));
            (addr, Box::pin(async move { task.abort() }))
        }
        Contender::Bitsmock { journal } => {
            let root = dir.join("root");
            let config = Config {
                listen: local,
                root,
                journal: journal.then(|| dir.join("journal.ndjson")),
                ..Config::default()
            };
            let running = bitsmock::spawn(config).await?;
            let addr = running.addr;
            (
                addr,
                Box::pin(async move {
                    let _ = running.stop().await;
                }),
            )
        }
    };
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
    // Stopped before the next run opens the same root.
    stop.await;
    Ok((CONNECTIONS * pings) as f64 / elapsed.as_secs_f64())
}

/// A hyper server that answers every request with a fixed Ping Ack: the floor of "HTTP in,
/// Ack out" on this machine.
async fn serve_baseline(listener: TcpListener) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_req| async {
                Response::builder()
                    .header("BITS-Packet-Type", "Ack")
                    .header("Content-Length", "0")
                    .body(Empty::<Bytes>::new())
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
