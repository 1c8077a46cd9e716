//! Target `connection`: raw bytes, in arbitrary read chunks, through the real server
//! ([`Server::serve_io`]) over an in-memory duplex stream.
//!
//! ```text
//!  byte 0      server settings (bit 0 strict overlap, 1 tiny fragment limit, 2 overwrites,
//!              3 tiny upload limit, 4 both error headers, 5 host id, 6 small read buffer)
//!  byte 1      fault rules: one of RULE_SETS (none, lies, resets, lost acks, auth)
//!  bytes 2-3   chunking: 0 = one write, else the seed of the chunk sizes (big endian)
//!  bytes 4..   what the client sends: HTTP/1.1 requests, or anything at all
//! ```
//!
//! Each input gets a fresh server with its own upload root, one level below a private
//! parent directory, and one connection. The client writes its chunks, yielding between
//! them so the server sees the pieces, then half-closes and reads until the server closes.
//!
//! Properties: nothing panics (the runtime and the handler); the exchange ends within
//! [`DEADLINE`]; whatever the server sends starts as an HTTP/1.x response (1.0 answers a
//! 1.0 request); the server creates nothing outside its upload root, and no symbolic link
//! inside it.

use crate::config::Config;
use crate::fault::profile::parse_rule_line;
use crate::proto::{ErrorHeader, Overlap, Vdir};
use crate::server::Server;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest a single input may take; server timeouts are set well below it.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// Bytes of control before the stream.
pub const CONTROL: usize = 4;

/// Fault rules that act without sleeping, so inputs stay fast.
pub const RULE_SETS: &[&[&str]] = &[
    &[],
    &[
        "packet=fragment every=2 fault=lie lie=behind by=3",
        "packet=fragment nth=3 fault=lie lie=416 at=0",
        "packet=fragment session=1 nth=2 fault=lose-session scope=this",
    ],
    &[
        "packet=fragment every=2 fault=reset-mid-body after-fraction=0.5 keep=true",
        "packet=close-session every=2 fault=status status=503 code=\"0x80070057\"",
        "packet=fragment nth=4 fault=lose-session scope=all keep-file=true",
    ],
    &[
        "packet=fragment every=2 fault=lose-ack how=close",
        "packet=create-session session=2 fault=lose-request how=reset",
        "packet=fragment fragment=final fault=broken broken=wrong-length",
    ],
    &["fault=auth scheme=basic user=bits password=mock again-after=2"],
];

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

/// The `connection` target. Reuses one runtime and parent directory per thread.
pub fn check(data: &[u8]) {
    HARNESS.with(|h| {
        h.borrow_mut()
            .get_or_insert_with(|| Harness::new(&std::env::temp_dir()))
            .run(data)
    });
}

/// A runtime and a private directory for running inputs one after another.
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    parent: PathBuf,
}

impl Harness {
    /// A harness whose upload roots live in a new directory under `base`.
    pub fn new(base: &Path) -> Harness {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot build a runtime: {e}"));
        let thread = format!("{:?}", std::thread::current().id());
        let name: String = thread.chars().filter(char::is_ascii_digit).collect();
        let parent = base.join(format!("bitsmock-fuzz-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&parent);
        std::fs::create_dir_all(&parent)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        Harness { runtime, parent }
    }

    /// Runs one input.
    pub fn run(&mut self, data: &[u8]) {
        let mut control = [0u8; CONTROL];
        let split = data.len().min(CONTROL);
        control[..split].copy_from_slice(&data[..split]);
        let stream = data[split..].to_vec();
        let root = self.parent.join("root");
        let config = config(control, &root);
        let chunks = chunks(stream.len(), u16::from_be_bytes([control[2], control[3]]));
        let exchange = self.runtime.block_on(async move {
            let server =
                Server::new(config).unwrap_or_else(|e| panic!("cannot open the upload root: {e}"));
            tokio::time::timeout(DEADLINE, exchange(server, stream, chunks)).await
        });
        let Ok(output) = exchange else {
            panic!("the connection did not finish within {DEADLINE:?}");
        };
        assert!(
            output.is_empty()
                || output.starts_with(b"HTTP/1.1 ")
                || output.starts_with(b"HTTP/1.0 "),
            "the server sent something that is not an HTTP response: {:?}",
            String::from_utf8_lossy(&output[..output.len().min(200)])
        );
        self.assert_confined(&root);
        std::fs::remove_dir_all(&root)
            .unwrap_or_else(|e| panic!("cannot remove {}: {e}", root.display()));
    }

    /// Nothing but the upload root appeared in the parent, and the root holds no links.
    fn assert_confined(&self, root: &Path) {
        let entries: Vec<PathBuf> = std::fs::read_dir(&self.parent)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        assert_eq!(
            entries,
            vec![root.to_path_buf()],
            "the server created something beside its upload root"
        );
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let Ok(listing) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in listing.flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                assert!(
                    !kind.is_symlink(),
                    "the server created a link: {}",
                    path.display()
                );
                if kind.is_dir() {
                    pending.push(path);
                }
            }
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.parent);
    }
}

fn config(control: [u8; CONTROL], root: &Path) -> Config {
    let bit = |n: u8| control[0] & (1 << n) != 0;
    let rules = RULE_SETS[usize::from(control[1]) % RULE_SETS.len()]
        .iter()
        .enumerate()
        .map(|(i, line)| {
            parse_rule_line(line, "connection", i + 1)
                .unwrap_or_else(|e| panic!("fixture rule does not parse: {e}"))
        })
        .collect();
    let defaults = Vdir::default();
    Config {
        root: root.to_path_buf(),
        seed: 0,
        vdir: Vdir {
            overlap: if bit(0) {
                Overlap::Strict
            } else {
                Overlap::Tail
            },
            max_fragment_size: if bit(1) {
                16
            } else {
                defaults.max_fragment_size
            },
            allow_overwrites: bit(2),
            max_upload_size: bit(3).then_some(100),
            error_header: if bit(4) {
                ErrorHeader::Both
            } else {
                ErrorHeader::Code
            },
            host_id: bit(5).then(|| "node1.farm.test".to_owned()),
            host_id_fallback_timeout: bit(5).then_some(600),
            ..defaults
        },
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
        max_head_bytes: if bit(6) { 8192 } else { 64 * 1024 },
        rules,
        time_scale: 1.0,
        ..Config::default()
    }
}

/// Splits `len` bytes into chunk lengths drawn from `seed` (0: one chunk).
fn chunks(len: usize, seed: u16) -> Vec<usize> {
    if seed == 0 {
        return vec![len];
    }
    let largest = usize::from(seed >> 8).max(1) * 4;
    let mut state = u32::from(seed) | 0x1_0000;
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        // xorshift32: cheap and deterministic.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % largest + 1).min(left);
        out.push(n);
        left -= n;
    }
    out
}

/// Plays the client's side; returns everything the server sent.
async fn exchange(server: Arc<Server>, stream: Vec<u8>, chunks: Vec<usize>) -> Vec<u8> {
    let (client, io) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(async move {
        let _ = server.serve_io(io).await;
    });
    let (mut rd, mut wr) = tokio::io::split(client);
    let reading = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        out
    });
    let mut at = 0;
    for n in chunks {
        if wr.write_all(&stream[at..at + n]).await.is_err() {
            break;
        }
        at += n;
        tokio::task::yield_now().await;
    }
    let _ = wr.shutdown().await;
    let served = serving.await;
    drop(wr);
    if let Err(e) = served
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
    match reading.await {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Vec::new(),
    }
}
