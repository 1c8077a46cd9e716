//! Resource bounds under hostile load, measured on the real `bitsmock serve` process (its
//! RSS and descriptors from /proc), driven over loopback. Each check prints its figures and
//! `meets` or `MISSES` its bound; the binary exits 1 if any check misses (unlike the speed
//! benches, these are promises: README "Limits and guarantees"). See benches/README.md.
//!
//! ```sh
//! cargo bench --bench bounds                      # every check
//! cargo bench --bench bounds -- sessions soak     # some of them
//! SOAK_SECONDS=120 cargo bench --bench bounds -- soak
//! ```

mod common;

use common::Client;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const BIN: &str = env!("CARGO_BIN_EXE_bitsmock");
const MIB: u64 = 1024 * 1024;
const PROTOCOL: &str = "{7df0354d-249b-430f-820d-3d2a9bef4931}";

/// Sizes of each check: the issue's in a real run, small ones in a smoke run.
struct Scale {
    sessions: usize,
    fragment: u64,
    idle: usize,
    slowloris: usize,
    soak_uploads: usize,
}

const FULL: Scale = Scale {
    sessions: 10_000,
    fragment: 1024 * MIB,
    idle: 1_000,
    slowloris: 200,
    soak_uploads: 1_000,
};

const SMOKE: Scale = Scale {
    sessions: 300,
    fragment: 64 * MIB,
    idle: 50,
    slowloris: 20,
    soak_uploads: 48,
};

const CHECKS: [&str; 6] = [
    "sessions",
    "fragment",
    "notify",
    "idle",
    "exhaustion",
    "soak",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let smoke = common::smoke();
    let scale = if smoke { &SMOKE } else { &FULL };
    let soak_seconds = match std::env::var("SOAK_SECONDS") {
        Ok(v) => Some(
            v.parse::<u64>()
                .map_err(|_| format!("SOAK_SECONDS must be a whole number, got {v:?}"))?,
        ),
        Err(_) => None,
    };
    let asked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if let Some(unknown) = asked.iter().find(|a| !CHECKS.contains(&a.as_str())) {
        return Err(format!("unknown check {unknown:?}; checks: {}", CHECKS.join(", ")).into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let scratch = match std::env::var_os("BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let mut missed = Vec::new();
    for check in CHECKS {
        if !asked.is_empty() && !asked.iter().any(|a| a == check) {
            continue;
        }
        let dir = scratch.path().join(check);
        std::fs::create_dir_all(&dir)?;
        let met = runtime.block_on(async {
            match check {
                "sessions" => sessions(scale, &dir).await,
                "fragment" => fragment(scale, &dir).await,
                "notify" => notify(scale, &dir).await,
                "idle" => idle(scale, &dir).await,
                "exhaustion" => exhaustion(&dir).await,
                _ => soak(scale, soak_seconds, &dir).await,
            }
        })?;
        if !met {
            missed.push(check);
        }
        std::fs::remove_dir_all(&dir)?;
    }
    if smoke {
        println!("(smoke run of an unoptimized build at small sizes; measure with");
        println!(" `cargo bench --bench bounds`)");
    }
    if missed.is_empty() {
        Ok(())
    } else {
        Err(format!("bounds missed: {}", missed.join(", ")).into())
    }
}

/// Prints a bound's verdict and returns whether it holds.
fn verdict(what: &str, holds: bool) -> bool {
    println!("  {what}: {}", if holds { "meets" } else { "MISSES" });
    holds
}

// ---------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------

/// Live sessions, each holding one fragment: memory stays small and no session holds a
/// descriptor.
async fn sessions(scale: &Scale, dir: &Path) -> Result<bool, Box<dyn std::error::Error>> {
    const CONNECTIONS: usize = 10;
    let n = scale.sessions;
    let server = Serve::start(dir, &[&format!("--max-sessions={n}")], None)?;
    let idle_fds = server.fds();
    let started = Instant::now();
    let addr = server.addr;
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await?;
                for i in (c..n).step_by(CONNECTIONS) {
                    let target = format!("/live/{i}.bin");
                    let id = create(&mut client, &target).await?;
                    let range = "bytes 0-1023/2048";
                    client
                        .send(&target, &fragment_headers(&id, range), &[7; 1024])
                        .await?
                        .expect_ok("Fragment")?;
                }
                Ok::<_, std::io::Error>(client)
            })
        })
        .collect();
    let mut clients = Vec::new();
    for w in workers {
        clients.push(w.await??);
    }
    // One more than the limit is refused, transiently.
    let over = clients[0]
        .send("/live/over.bin", &create_headers(), &[])
        .await?;
    let refused = over.status == 500 && over.header("BITS-Error-Code")? == "0x8007000E";
    let rss = server.rss_mib();
    let fds = server.fds();
    println!(
        "sessions: {n} live sessions with one 1 KiB fragment each over {CONNECTIONS} connections in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("  RSS {rss:.1} MiB; descriptors {fds} ({idle_fds} idle + {CONNECTIONS} connections)");
    let ok = verdict("RSS <= 50 MiB", rss <= 50.0)
        & verdict(
            "descriptors <= idle + connections + 4",
            fds <= idle_fds + CONNECTIONS + 4,
        )
        & verdict("a Create-Session past --max-sessions gets 500", refused);
    drop(clients);
    server.stop();
    Ok(ok)
}

/// One huge fragment streams to disk without being held in memory.
async fn fragment(scale: &Scale, dir: &Path) -> Result<bool, Box<dyn std::error::Error>> {
    let len = scale.fragment;
    let server = Serve::start(dir, &["--max-fragment-size=2GiB"], None)?;
    let mut client = Client::connect(server.addr).await?;
    let id = create(&mut client, "/big.bin").await?;
    let range = format!("bytes 0-{}/{len}", len - 1);
    let headers = fragment_headers(&id, &range);
    let chunk = vec![0x5a; MIB as usize];
    let before = server.peak_rss_mib();
    let started = Instant::now();
    let ack = client
        .send_repeated("/big.bin", &headers, len, &chunk)
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = server.peak_rss_mib();
    let ack = ack.expect_ok("Fragment")?;
    let received: u64 = ack.header("BITS-Received-Content-Range")?.parse()?;
    println!(
        "fragment: one {} MiB fragment in {seconds:.1} s ({:.0} MiB/s)",
        len / MIB,
        (len / MIB) as f64 / seconds
    );
    // The kernel's high-water mark: the peak over the whole stream, not a sample.
    println!(
        "  peak RSS {before:.1} MiB before, {peak:.1} MiB after; RSS now {:.1} MiB",
        server.rss_mib()
    );
    let ok = verdict("every byte acknowledged", received == len)
        & verdict("peak RSS < 64 MiB", peak < 64.0);
    server.stop();
    Ok(ok)
}

/// One upload-reply job as large as the `fragment` check, by value to `bitsmock notify-echo`:
/// the upload streams in, out to the application, and the reply back, in bounded memory.
async fn notify(scale: &Scale, dir: &Path) -> Result<bool, Box<dyn std::error::Error>> {
    let len = scale.fragment;
    let mut echo = Command::new(BIN)
        .args(["notify-echo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut banner = String::new();
    if let Some(stdout) = echo.stdout.take() {
        BufReader::new(stdout).read_line(&mut banner)?;
    }
    let app = banner
        .trim()
        .strip_prefix("bitsmock notify-echo listening on ")
        .map(str::to_owned)
        .ok_or_else(|| std::io::Error::other(format!("no address in {banner:?}")))?;
    let server = Serve::start(
        dir,
        &[
            "--max-fragment-size=2GiB",
            "--notify",
            &app,
            "--notify-type",
            "value",
        ],
        None,
    )?;
    let mut client = Client::connect(server.addr).await?;
    let id = create(&mut client, "/reply/big.bin").await?;
    let range = format!("bytes 0-{}/{len}", len - 1);
    let headers = fragment_headers(&id, &range);
    let chunk = vec![0x5a; MIB as usize];
    let before = server.peak_rss_mib();
    let started = Instant::now();
    let ack = client
        .send_repeated("/reply/big.bin", &headers, len, &chunk)
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let peak = server.peak_rss_mib();
    let _ = echo.kill();
    let _ = echo.wait();
    let ack = ack?.expect_ok("final Fragment")?;
    let received: u64 = ack.header("BITS-Received-Content-Range")?.parse()?;
    let replied = ack.header("BITS-Reply-URL").is_ok();
    println!(
        "notify: one {} MiB upload-reply fragment, notified by value, in {seconds:.1} s ({:.0} MiB/s, upload and notification)",
        len / MIB,
        (len / MIB) as f64 / seconds
    );
    println!("  peak RSS {before:.1} MiB before, {peak:.1} MiB after");
    let ok = verdict(
        "every byte acknowledged, with a reply URL",
        received == len && replied,
    ) & verdict("peak RSS < 64 MiB", peak < 64.0);
    server.stop();
    Ok(ok)
}

/// Idle keep-alive connections and slowloris clients do not slow down anyone else.
async fn idle(scale: &Scale, dir: &Path) -> Result<bool, Box<dyn std::error::Error>> {
    let server = Serve::start(dir, &[], None)?;
    let addr = server.addr;
    let mut idle = Vec::new();
    for _ in 0..scale.idle {
        let mut client = Client::connect(addr).await?;
        client
            .send("/idle", &[("BITS-Packet-Type", "Ping")], &[])
            .await?;
        idle.push(client);
    }
    // Slowloris: a request head that never ends, one byte at a time.
    let mut loris = Vec::new();
    for _ in 0..scale.slowloris {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"BITS_POST /slow HTTP/1.1\r\nHost: x\r\n")
            .await?;
        loris.push(stream);
    }
    let drip = tokio::spawn(async move {
        loop {
            for s in &mut loris {
                let _ = s.write_all(b"X").await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut latencies = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let mut client = Client::connect(addr).await?;
        client
            .send("/other", &[("BITS-Packet-Type", "Ping")], &[])
            .await?
            .expect_ok("Ping")?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    // Measured while every idle and slowloris connection is still open.
    let (rss, fds) = (server.rss_mib(), server.fds());
    drip.abort();
    let median = common::median(&mut latencies);
    let p99 = latencies[latencies.len() * 99 / 100];
    println!(
        "idle: {} idle keep-alive connections and {} slowloris heads; 200 Pings on new connections",
        scale.idle, scale.slowloris
    );
    println!(
        "  connect + Ping: median {median:.2} ms, p99 {p99:.2} ms; server RSS {rss:.1} MiB, {fds} descriptors"
    );
    let ok = verdict("median <= 10 ms", median <= 10.0);
    drop(idle);
    server.stop();
    Ok(ok)
}

/// 400 connections against 256 descriptors: accepting pauses, then everything recovers.
async fn exhaustion(dir: &Path) -> Result<bool, Box<dyn std::error::Error>> {
    const LIMIT: u32 = 256;
    const FLOOD: usize = 400;
    let server = Serve::start(dir, &[], Some(LIMIT))?;
    let addr = server.addr;
    let before = server.fds();
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"BITS_POST /f HTTP/1.1\r\nHost: x\r\nBITS-Packet-Type: Ping\r\nContent-Length: 0\r\n\r\n")
            .await?;
        flood.push(stream);
    }
    // Until the server has taken all it can (it stops growing).
    let mut during = server.fds();
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = server.fds();
        if now == during {
            break;
        }
        during = now;
    }
    let refusals = std::fs::read_to_string(dir.join("serve.log"))?
        .matches("accept failed")
        .count();
    drop(flood);
    let started = Instant::now();
    let mut answered = 0;
    while answered < 100 && started.elapsed() < Duration::from_secs(30) {
        let ping = async {
            let mut client = Client::connect(addr).await?;
            client
                .send("/after", &[("BITS-Packet-Type", "Ping")], &[])
                .await
        };
        if let Ok(Ok(ack)) = tokio::time::timeout(Duration::from_secs(2), ping).await
            && ack.status == 200
        {
            answered += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = server.fds();
    println!("exhaustion: ulimit -n {LIMIT}, {FLOOD} connections sending a Ping, then closed");
    println!(
        "  descriptors: {before} before, {during} during (limit {LIMIT}; {refusals} failed accepts logged), \
         {after} after; 100 Pings on new connections answered in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let mut client = Client::connect(addr).await?;
    let id = create(&mut client, "/after.bin").await?;
    let stored = client
        .send(
            "/after.bin",
            &fragment_headers(&id, "bytes 0-9/10"),
            b"0123456789",
        )
        .await?
        .status;
    let ok = verdict("the descriptor limit was reached", refusals > 0)
        & verdict("all 100 answered after the flood", answered == 100)
        & verdict("descriptors back to their level", after <= before + 2)
        & verdict("uploads work again", stored == 200);
    server.stop();
    Ok(ok)
}

/// The reference client through the `hostile` profile, batch after batch: every file
/// byte-identical, no temp file left, RSS flat.
async fn soak(
    scale: &Scale,
    seconds: Option<u64>,
    dir: &Path,
) -> Result<bool, Box<dyn std::error::Error>> {
    const BATCH: usize = 100;
    // The journal's memory ring is bounded by design (`--journal-keep` events, about
    // 0.85 KiB each: 85 MiB at the default 100,000); a soak of minutes would spend it all
    // filling that ring. With a small ring, growth that remains is a leak.
    let server = Serve::start(dir, &["--profile=hostile", "--journal-keep=1000"], None)?;
    let source = dir.join("source.bin");
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&source, &data)?;
    let root = server.root();
    let started = Instant::now();
    let mut done = 0;
    let mut rss = Vec::new();
    let mut identical = true;
    let mut leftovers = 0;
    let mut failures = 0;
    let mut batch = 0;
    let more = |done: usize, started: Instant| match seconds {
        Some(s) => started.elapsed() < Duration::from_secs(s),
        None => done < scale.soak_uploads,
    };
    while more(done, started) {
        batch += 1;
        let count = match seconds {
            Some(_) => BATCH,
            None => BATCH.min(scale.soak_uploads - done),
        };
        let url = format!("http://{}/soak/{batch}/f.bin", server.addr);
        let out = Command::new(BIN)
            .args(["upload", "--concurrency", "16", "--count"])
            .arg(count.to_string())
            .args([
                "--fragment-size=64KiB",
                "--retry-base=10ms",
                "--retry-cap=200ms",
                "--json",
                "--quiet",
            ])
            .arg(&source)
            .arg(&url)
            .stderr(Stdio::null())
            .output()?;
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        if report["ok"] != serde_json::Value::Bool(true) {
            failures += 1;
            println!("  batch {batch}: the client failed: {report}");
        }
        for i in 1..=count {
            let file = root.join(format!("soak/{batch}/f.bin.{i}"));
            if std::fs::read(&file).ok().as_deref() != Some(&data[..]) {
                identical = false;
                println!("  batch {batch}: {} differs or is missing", file.display());
            }
        }
        leftovers += std::fs::read_dir(root.join("BITS-Sessions/Requests"))?.count();
        std::fs::remove_dir_all(root.join(format!("soak/{batch}")))?;
        done += count;
        rss.push(server.rss_mib());
    }
    let tenth = rss.len().div_ceil(10);
    let first = rss[..tenth].iter().sum::<f64>() / tenth as f64;
    let last = rss[rss.len() - tenth..].iter().sum::<f64>() / tenth as f64;
    println!(
        "soak: {done} uploads of 300,000 bytes through `hostile` with `bitsmock upload --concurrency 16`, \
         {batch} batches in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "  RSS after each batch: first decile {first:.1} MiB, last decile {last:.1} MiB ({:+.1}%); \
         temp files left after batches: {leftovers}",
        (last / first - 1.0) * 100.0
    );
    let ok = verdict("every upload succeeded", failures == 0)
        & verdict("every committed file byte-identical", identical)
        & verdict("zero temp files after the last Close", leftovers == 0)
        & verdict(
            "RSS flat (last decile within 10% of the first, journal ring of 1,000 events)",
            last <= first * 1.10,
        );
    server.stop();
    Ok(ok)
}

// ---------------------------------------------------------------------------------------
// The server process and the packets
// ---------------------------------------------------------------------------------------

/// A `bitsmock serve` child with its default log level on; the log goes to a file.
struct Serve {
    child: Child,
    addr: SocketAddr,
    root: PathBuf,
}

impl Serve {
    /// `bitsmock serve --dir DIR/uploads ARGS…`, under `ulimit -n NOFILE` if given.
    fn start(dir: &Path, args: &[&str], nofile: Option<u32>) -> std::io::Result<Serve> {
        let root = dir.join("uploads");
        let mut command = match nofile {
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--dir"])
            .arg(&root)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("serve.log"))?);
        let mut child = command.spawn()?;
        let mut banner = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout).read_line(&mut banner)?;
        }
        let addr = banner
            .strip_prefix("bitsmock listening on http://")
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no address in {banner:?}")))?;
        Ok(Serve { child, addr, root })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn root(&self) -> PathBuf {
        self.root.clone()
    }

    fn rss_mib(&self) -> f64 {
        status_mib(self.pid(), "VmRSS:")
    }

    /// The resident set's high-water mark over the process' life.
    fn peak_rss_mib(&self) -> f64 {
        status_mib(self.pid(), "VmHWM:")
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A size field of /proc/PID/status (`VmRSS:`, `VmHWM:`), MiB; -1 if the process is gone.
fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(-1.0, |kib| kib / 1024.0)
}

fn create_headers() -> [(&'static str, &'static str); 2] {
    [
        ("BITS-Packet-Type", "Create-Session"),
        ("BITS-Supported-Protocols", PROTOCOL),
    ]
}

fn fragment_headers<'a>(id: &'a str, range: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("BITS-Packet-Type", "Fragment"),
        ("BITS-Session-Id", id),
        ("Content-Range", range),
    ]
}

async fn create(client: &mut Client, target: &str) -> std::io::Result<String> {
    client
        .send(target, &create_headers(), &[])
        .await?
        .expect_ok("Create-Session")?
        .header("BITS-Session-Id")
}
