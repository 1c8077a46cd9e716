//! `bitsmock`: argv → validated [`Config`] → the library. Nothing else lives here.

use bitsmock::Config;
use bitsmock::client::progress::Ticker;
use bitsmock::client::{Credentials, Meter, Options, UploadError, Uploader};
use bitsmock::fault::profile::{self, parse_rule_line};
use bitsmock::fault::shipped;
use bitsmock::proto::{ErrorHeader, Overlap, Vdir, destination};
use bitsmock::units::{parse_duration, parse_size};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "bitsmock",
    version,
    about = "A mock and fault-injecting BITS upload server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a BITS upload server (BITS_POST Ping, Create-Session, Fragment, Close-Session,
    /// Cancel-Session) that stores uploads under --dir, optionally injecting faults.
    Serve(Box<ServeArgs>),
    /// Work with fault profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Upload FILE to URL with the reference BITS client (docs/client.md): Create-Session,
    /// Fragments, Close-Session, retrying transient failures and resuming from the server's
    /// offset. Exit status: 0 uploaded, 1 failed, 2 bad arguments.
    Upload(Box<UploadArgs>),
}

#[derive(Args)]
struct UploadArgs {
    /// The file to upload (streamed from disk).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The destination, an absolute http:// URL, e.g. http://127.0.0.1:8080/drop/a.bin.
    #[arg(value_name = "URL")]
    url: String,
    /// Bytes per fragment; halved on 413, never below 5KiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "1MiB")]
    fragment_size: u64,
    /// Ping before Create-Session (a Ping always precedes resuming after a failure and the
    /// first request to a BITS-Host-Id host).
    #[arg(long)]
    ping: bool,
    /// User name for 401 Basic challenges.
    #[arg(long, value_name = "NAME", requires = "password")]
    user: Option<String>,
    /// Password for 401 Basic challenges.
    #[arg(long, value_name = "PASSWORD", requires = "user")]
    password: Option<String>,
    /// Save the reply of an upload-reply job here (implies --expect-reply).
    #[arg(long, value_name = "FILE")]
    reply_out: Option<PathBuf>,
    /// The job is upload-reply: a final Ack without BITS-Reply-URL is a protocol error.
    #[arg(long)]
    expect_reply: bool,
    /// First retry delay after a transient failure; doubles per failure up to --retry-cap.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    retry_base: Duration,
    /// Longest retry delay.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    retry_cap: Duration,
    /// Consecutive transient failures (protocol errors included) before giving up.
    #[arg(long, value_name = "N", default_value_t = 12)]
    max_retries: u32,
    /// Session re-creations after 0x8020001F before giving up.
    #[arg(long, value_name = "N", default_value_t = 10)]
    max_restarts: u32,
    /// Longest wait for one request, sending it and reading its answer.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    timeout: Duration,
    /// Longest wait for a TCP connection.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    connect_timeout: Duration,
    /// Uploads in flight at once (with --count; alone it also sets --count).
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Upload FILE this many times, to URL.1, URL.2, … (before any query string), and report
    /// aggregate throughput and latency percentiles per packet type.
    #[arg(long, value_name = "M")]
    count: Option<usize>,
    /// No progress line and no summary (errors are still printed).
    #[arg(long)]
    quiet: bool,
    /// Print the summary as JSON on stdout (also on failure).
    #[arg(long)]
    json: bool,
}

impl UploadArgs {
    fn options(&self) -> Result<Options, String> {
        if self.fragment_size == 0 {
            return Err("--fragment-size must be at least 1 byte".into());
        }
        if self.retry_base.is_zero() || self.retry_cap < self.retry_base {
            return Err("--retry-base must be above zero and at most --retry-cap".into());
        }
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err("--timeout and --connect-timeout must be above zero".into());
        }
        if self.concurrency == Some(0) || self.count == Some(0) {
            return Err("--concurrency and --count must be at least 1".into());
        }
        Ok(Options {
            fragment_size: self.fragment_size,
            ping: self.ping,
            credentials: match (&self.user, &self.password) {
                (Some(user), Some(password)) => Some(Credentials {
                    user: user.clone(),
                    password: password.clone(),
                }),
                _ => None,
            },
            connect_timeout: self.connect_timeout,
            request_timeout: self.timeout,
            backoff_base: self.retry_base,
            backoff_cap: self.retry_cap,
            max_retries: self.max_retries,
            max_restarts: self.max_restarts,
            expect_reply: self.expect_reply || self.reply_out.is_some(),
            reply_out: self.reply_out.clone(),
            ..Options::default()
        })
    }
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// Validate profile files; errors read FILE:LINE: what is wrong.
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// List the shipped profiles with their descriptions.
    List,
}

/// Flags left unset fall back to the profile's `[server]` table, then to the default shown.
#[derive(Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Upload root: committed files land at DIR + URL path; created if missing [default: ./uploads].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Fault profile: a shipped name (see `bitsmock profile list`) or a TOML file.
    #[arg(long, value_name = "NAME|FILE")]
    profile: Option<String>,
    /// Add a fault rule, in the one-line syntax (the keys of a [[rule]] table as key=value
    /// pairs), e.g. --fault 'packet=fragment nth=3 fault=lose-ack how=reset'. Repeatable;
    /// rules run after the profile's.
    #[arg(long = "fault", value_name = "RULE")]
    faults: Vec<String>,
    /// Seed for every random choice (session ids, fault decisions); overrides the profile's
    /// seed [default: the profile's seed, else 0].
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Multiply every fault duration (delays, hangs, time windows, idle timeouts) by this
    /// factor, e.g. 0.01 to run a slow profile quickly in a test [default: 1].
    #[arg(long, value_name = "FACTOR")]
    time_scale: Option<f64>,
    /// Largest whole file accepted, e.g. 100MiB; bigger uploads get 500 + 0x80200020
    /// (BG_E_TOO_LARGE) at their first fragment [default: no limit].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_upload_size: Option<u64>,
    /// Largest fragment body accepted; bigger fragments get 413 and the client shrinks them
    /// [default: 32MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_fragment_size: Option<u64>,
    /// Idle time after which a session and its temp file are deleted (e.g. 30s, 10m, 14d);
    /// later packets for it get 500 + 0x8020001F [default: 14d].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    session_timeout: Option<Duration>,
    /// Let Close-Session replace an existing destination file (otherwise Create-Session
    /// answers 409 when the destination exists).
    #[arg(long)]
    allow_overwrites: bool,
    /// URL prefix whose destinations are upload-reply jobs: their final fragment Ack carries
    /// BITS-Reply-URL, serving a JSON reply (name, size, sha256). Empty string: none
    /// [default: /reply/].
    #[arg(long, value_name = "PREFIX")]
    reply_path: Option<String>,
    /// Send this BITS-Host-Id in every Create-Session Ack (web-farm redirection).
    #[arg(long, value_name = "HOST")]
    host_id: Option<String>,
    /// BITS-Host-Id-Fallback-Timeout in seconds, sent with the host id [default: 86400].
    #[arg(long, value_name = "SECONDS")]
    host_id_fallback_timeout: Option<u64>,
    /// Fragments overlapping stored bytes: `tail` writes only the new tail and answers 200
    /// (Windows behaviour); `strict` answers 416 with the expected offset ([MC-BUP])
    /// [default: tail].
    #[arg(long, value_enum)]
    overlap: Option<OverlapArg>,
    /// Name of the error-code header: `code` (BITS-Error-Code, what clients read), `spec`
    /// (BITS-Error, the [MC-BUP] name) or `both` [default: code].
    #[arg(long, value_enum)]
    error_header: Option<ErrorHeaderArg>,
    /// Longest wait for a request's headers, idle keep-alive included [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    header_timeout: Option<Duration>,
    /// Longest stall while reading a fragment body before the connection is dropped
    /// [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    body_timeout: Option<Duration>,
}

#[derive(Clone, Copy, ValueEnum)]
enum OverlapArg {
    Tail,
    Strict,
}

#[derive(Clone, Copy, ValueEnum)]
enum ErrorHeaderArg {
    Code,
    Spec,
    Both,
}

impl ServeArgs {
    /// Merges flags over the profile's `[server]` settings over the defaults.
    fn into_config(self) -> Result<Config, String> {
        let profile = match &self.profile {
            Some(name) => Some(shipped::load(name)?),
            None => None,
        };
        let mut rules = profile
            .as_ref()
            .map(|p| p.rules.clone())
            .unwrap_or_default();
        for (i, line) in self.faults.iter().enumerate() {
            rules.push(parse_rule_line(line, "--fault", i + 1).map_err(|e| e.to_string())?);
        }
        let server = profile
            .as_ref()
            .map(|p| p.server.clone())
            .unwrap_or_default();
        let defaults = Config::default();
        let vdir = Vdir::default();
        let max_fragment_size = self
            .max_fragment_size
            .or(server.max_fragment_size)
            .unwrap_or(vdir.max_fragment_size);
        if max_fragment_size == 0 {
            return Err("--max-fragment-size must be at least 1 byte".into());
        }
        let session_timeout = self
            .session_timeout
            .or(server.session_timeout)
            .unwrap_or(vdir.session_timeout);
        if session_timeout.is_zero() {
            return Err("--session-timeout must be longer than zero".into());
        }
        let host_id = self.host_id.or(server.host_id);
        if let Some(host) = &host_id
            && (host.is_empty() || host.len() > 300 || !host.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(
                "--host-id must be a host name or address of at most 300 characters".into(),
            );
        }
        let time_scale = self.time_scale.unwrap_or(1.0);
        if !time_scale.is_finite() || time_scale < 0.0 {
            return Err("--time-scale must be a number of at least 0".into());
        }
        let overlap = match (self.overlap, server.overlap.as_deref()) {
            (Some(OverlapArg::Strict), _) | (None, Some("strict")) => Overlap::Strict,
            _ => Overlap::Tail,
        };
        let error_header = match (self.error_header, server.error_header.as_deref()) {
            (Some(ErrorHeaderArg::Spec), _) | (None, Some("spec")) => ErrorHeader::Spec,
            (Some(ErrorHeaderArg::Both), _) | (None, Some("both")) => ErrorHeader::Both,
            _ => ErrorHeader::Code,
        };
        let reply_path = self
            .reply_path
            .or(server.reply_path)
            .unwrap_or_else(|| "/reply/".to_owned());
        Ok(Config {
            listen: self.listen.unwrap_or(defaults.listen),
            root: self.dir.unwrap_or_else(|| PathBuf::from("./uploads")),
            seed: self
                .seed
                .or(profile.as_ref().and_then(|p| p.seed))
                .unwrap_or(0),
            vdir: Vdir {
                max_upload_size: self.max_upload_size.or(server.max_upload_size),
                max_fragment_size,
                session_timeout,
                allow_overwrites: self.allow_overwrites || server.allow_overwrites.unwrap_or(false),
                reply_prefix: destination::prefix_segments(&reply_path),
                host_id_fallback_timeout: host_id.as_ref().and(
                    self.host_id_fallback_timeout
                        .or(server.host_id_fallback_timeout)
                        .or(Some(86_400)),
                ),
                host_id,
                overlap,
                error_header,
            },
            header_read_timeout: self.header_timeout.unwrap_or(defaults.header_read_timeout),
            body_read_timeout: self.body_timeout.unwrap_or(defaults.body_read_timeout),
            rules,
            time_scale,
            ..defaults
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Upload(args) => upload(*args),
        Command::Serve(args) => match args.into_config() {
            Ok(config) => serve(config),
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
        },
        Command::Profile(ProfileCommand::List) => {
            for (name, _) in shipped::SHIPPED {
                match shipped::shipped(name) {
                    Some(Ok(p)) => println!("{name:<16} {}", p.description),
                    Some(Err(e)) => println!("{name:<16} (invalid: {e})"),
                    None => {}
                }
            }
            ExitCode::SUCCESS
        }
        Command::Profile(ProfileCommand::Check { files }) => {
            let mut failed = false;
            for file in files {
                let shown = file.display().to_string();
                let result = std::fs::read_to_string(&file)
                    .map_err(|e| format!("{shown}: cannot read: {e}"))
                    .and_then(|text| profile::parse(&text, &shown).map_err(|e| e.to_string()));
                match result {
                    Ok(p) => println!("{shown}: ok ({}, {} rules)", p.name, p.rules.len()),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

fn serve(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", config.listen);
                return ExitCode::FAILURE;
            }
        };
        let addr = listener.local_addr().unwrap_or(config.listen);
        let server = match bitsmock::Server::new(config) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot open the upload directory: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "bitsmock listening on http://{addr}/ (uploads go to {})",
            server.store().root().display()
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("shutting down");
        };
        let rules = server.fire_counts();
        if !rules.is_empty() {
            println!(
                "{} fault rule(s) loaded, seed {}",
                rules.len(),
                server.config().seed
            );
        }
        let result = Arc::clone(&server).run(listener, shutdown).await;
        for (i, (name, fired)) in server.fire_counts().iter().enumerate() {
            println!("rule {}: {name}: fired {fired} time(s)", i + 1);
        }
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn upload(args: UploadArgs) -> ExitCode {
    let options = match args.options() {
        Ok(o) => o,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let count = args.count.or(args.concurrency).unwrap_or(1);
    let concurrency = args.concurrency.unwrap_or(1).min(count);
    runtime.block_on(async move {
        let meter = Arc::new(Meter::default());
        let ticker = (!args.quiet && !args.json && std::io::stderr().is_terminal())
            .then(|| Ticker::start(Arc::clone(&meter), Duration::from_millis(200)));
        let uploader = Uploader::new(Options {
            meter: Some(meter),
            ..options
        });
        let bulk = count > 1 || args.count.is_some();
        let (ok, text, json) = if bulk {
            match uploader
                .upload_many(&args.file, &args.url, concurrency, count)
                .await
            {
                Ok(summary) => (
                    summary.failed == 0,
                    summary.to_string(),
                    Ok(serde_json::to_value(&summary).unwrap_or_default()),
                ),
                Err(e) => (false, String::new(), Err(e)),
            }
        } else {
            match uploader.upload(&args.file, &args.url).await {
                Ok(summary) => (
                    true,
                    summary.to_string(),
                    Ok(serde_json::to_value(&summary).unwrap_or_default()),
                ),
                Err(e) => (false, String::new(), Err(e)),
            }
        };
        if let Some(t) = ticker {
            t.finish().await;
        }
        let json = match json {
            Ok(json) => json,
            Err(e) => {
                if args.json {
                    println!("{}", failure_json(&e));
                }
                eprintln!("error: {e}");
                return match e {
                    UploadError::Usage(_) => ExitCode::from(2),
                    _ => ExitCode::FAILURE,
                };
            }
        };
        if args.json {
            println!("{json}");
        } else if !args.quiet || !ok {
            println!("{}", text.trim_end());
        }
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

fn failure_json(e: &UploadError) -> serde_json::Value {
    serde_json::json!({
        "ok": false,
        "error": e.to_string(),
        "hresult": e.hresult().map(|c| format!("0x{c:08X}")),
        "status": e.status(),
    })
}
