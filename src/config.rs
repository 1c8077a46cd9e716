//! The validated server configuration: what `bitsmock serve` flags (and later, profiles) turn
//! into. After this point nothing needs re-checking.

use crate::fault::Rule;
use crate::proto::Vdir;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a running server needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where `bitsmock serve` binds (the library entry point takes a bound listener instead).
    pub listen: SocketAddr,
    /// Upload root: committed files land here, temp files under `BITS-Sessions/`.
    pub root: PathBuf,
    /// Seed for every random choice (session ids, fault decisions).
    pub seed: u64,
    /// Protocol settings.
    pub vdir: Vdir,
    /// Longest wait for a request's headers, including an idle keep-alive connection.
    pub header_read_timeout: Duration,
    /// Longest stall while reading a fragment body before the connection is dropped.
    pub body_read_timeout: Duration,
    /// Read buffer size, which bounds the size of a request head.
    pub max_head_bytes: usize,
    /// Fault rules, in order (from a profile and/or `--fault`); empty = a correct server.
    pub rules: Vec<Rule>,
    /// Multiplies every duration in the rules (delays, hangs, windows, idle timeouts).
    pub time_scale: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            root: PathBuf::from("uploads"),
            seed: 0,
            vdir: Vdir::default(),
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_head_bytes: 64 * 1024,
            rules: Vec::new(),
            time_scale: 1.0,
        }
    }
}
