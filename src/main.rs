//! `bitsmock`: argv → validated [`Config`] → the library. Nothing else lives here.

use bitsmock::Config;
use bitsmock::proto::{ErrorHeader, Overlap, Vdir, destination};
use bitsmock::units::{parse_duration, parse_size};
use clap::{Args, Parser, Subcommand, ValueEnum};
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
    /// Cancel-Session) that stores uploads under --dir.
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// Upload root: committed files land at DIR + URL path; created if missing.
    #[arg(long, default_value = "./uploads", value_name = "DIR")]
    dir: PathBuf,
    /// Seed for every random choice (session ids, and fault decisions once a profile is loaded).
    #[arg(long, default_value_t = 0, value_name = "N")]
    seed: u64,
    /// Largest whole file accepted, e.g. 100MiB; bigger uploads get 500 + 0x80200020
    /// (BG_E_TOO_LARGE) at their first fragment. Default: no limit.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_upload_size: Option<u64>,
    /// Largest fragment body accepted; bigger fragments get 413 and the client shrinks them.
    #[arg(long, default_value = "32MiB", value_name = "SIZE", value_parser = parse_size)]
    max_fragment_size: u64,
    /// Idle time after which a session and its temp file are deleted (e.g. 30s, 10m, 14d);
    /// later packets for it get 500 + 0x8020001F.
    #[arg(long, default_value = "14d", value_name = "DURATION", value_parser = parse_duration)]
    session_timeout: Duration,
    /// Let Close-Session replace an existing destination file (otherwise Create-Session
    /// answers 409 when the destination exists).
    #[arg(long)]
    allow_overwrites: bool,
    /// URL prefix whose destinations are upload-reply jobs: their final fragment Ack carries
    /// BITS-Reply-URL, serving a JSON reply (name, size, sha256). Empty string: none.
    #[arg(long, default_value = "/reply/", value_name = "PREFIX")]
    reply_path: String,
    /// Send this BITS-Host-Id in every Create-Session Ack (web-farm redirection).
    #[arg(long, value_name = "HOST")]
    host_id: Option<String>,
    /// BITS-Host-Id-Fallback-Timeout in seconds, sent with --host-id.
    #[arg(long, value_name = "SECONDS", requires = "host_id")]
    host_id_fallback_timeout: Option<u64>,
    /// Fragments overlapping stored bytes: `tail` writes only the new tail and answers 200
    /// (Windows behaviour); `strict` answers 416 with the expected offset ([MC-BUP]).
    #[arg(long, value_enum, default_value = "tail")]
    overlap: OverlapArg,
    /// Name of the error-code header: `code` (BITS-Error-Code, what clients read), `spec`
    /// (BITS-Error, the [MC-BUP] name) or `both`.
    #[arg(long, value_enum, default_value = "code")]
    error_header: ErrorHeaderArg,
    /// Longest wait for a request's headers, idle keep-alive included.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    header_timeout: Duration,
    /// Longest stall while reading a fragment body before the connection is dropped.
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_duration)]
    body_timeout: Duration,
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
    fn into_config(self) -> Result<Config, String> {
        if self.max_fragment_size == 0 {
            return Err("--max-fragment-size must be at least 1 byte".into());
        }
        if self.session_timeout.is_zero() {
            return Err("--session-timeout must be longer than zero".into());
        }
        if let Some(host) = &self.host_id
            && (host.is_empty() || host.len() > 300 || !host.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(
                "--host-id must be a host name or address of at most 300 characters".into(),
            );
        }
        Ok(Config {
            listen: self.listen,
            root: self.dir,
            seed: self.seed,
            vdir: Vdir {
                max_upload_size: self.max_upload_size,
                max_fragment_size: self.max_fragment_size,
                session_timeout: self.session_timeout,
                allow_overwrites: self.allow_overwrites,
                reply_prefix: destination::prefix_segments(&self.reply_path),
                host_id_fallback_timeout: self
                    .host_id
                    .as_ref()
                    .and(self.host_id_fallback_timeout.or(Some(86_400))),
                host_id: self.host_id,
                overlap: match self.overlap {
                    OverlapArg::Tail => Overlap::Tail,
                    OverlapArg::Strict => Overlap::Strict,
                },
                error_header: match self.error_header {
                    ErrorHeaderArg::Code => ErrorHeader::Code,
                    ErrorHeaderArg::Spec => ErrorHeader::Spec,
                    ErrorHeaderArg::Both => ErrorHeader::Both,
                },
            },
            header_read_timeout: self.header_timeout,
            body_read_timeout: self.body_timeout,
            ..Config::default()
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
        Command::Serve(args) => match args.into_config() {
            Ok(config) => serve(config),
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
        },
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
        match Arc::clone(&server).run(listener, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
