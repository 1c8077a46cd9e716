//! The real `bitsmock` binary as a child process: run a subcommand to the end, or start
//! `bitsmock serve`, read its banner for the address, signal it with `kill`, and collect what
//! it printed. Every wait has a time limit, so a hang fails the test instead of stalling CI.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_bitsmock");

/// Long enough for a loaded machine, short enough that a hang fails instead of stalling CI.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// `bitsmock ARGS…`, with `NO_COLOR` removed so colour decisions rest on the terminal alone.
pub fn bitsmock(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("NO_COLOR");
    command
}

/// Runs to the end, killing it after [`PATIENCE`] (a server that should have refused to
/// start would otherwise hang the test).
pub fn run(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bitsmock");
    let status = wait(&mut child, PATIENCE);
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    child.stdout.take().map(|mut s| s.read_to_end(&mut stdout));
    child.stderr.take().map(|mut s| s.read_to_end(&mut stderr));
    Output {
        status: status.unwrap_or_else(|| panic!("still running after {PATIENCE:?}; killed")),
        stdout,
        stderr,
    }
}

/// The exit status, or `None` (and the process killed) if it took longer than `limit`.
pub fn wait(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait for bitsmock") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The address in the banner `bitsmock listening on http://ADDR/`.
fn banner_addr(banner: &str) -> Option<SocketAddr> {
    banner
        .strip_prefix("bitsmock listening on http://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running `bitsmock serve`, its banner read.
pub struct Serve {
    child: Child,
    stdout: BufReader<ChildStdout>,
    /// The first line of stdout, without its line ending.
    pub banner: String,
    pub addr: SocketAddr,
    /// The private temp directory; `--dir` is its `uploads` child.
    pub dir: TempDir,
}

impl Serve {
    /// `bitsmock serve --dir TMP/uploads ARGS…`; give `--listen` in `args`.
    pub fn start(args: &[&str]) -> Serve {
        Serve::start_with(args, |_| {})
    }

    /// As [`Serve::start`], after letting the test adjust the command (its environment, say).
    pub fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> Serve {
        Serve::start_reading(args, adjust, banner_addr)
    }

    /// `bitsmock serve --json …`: the first stdout line is the JSON object (kept in
    /// `banner`), whose `url` gives the address.
    pub fn start_json(args: &[&str], adjust: impl FnOnce(&mut Command)) -> Serve {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        Serve::start_reading(&all, adjust, |line| {
            let ready: serde_json::Value = serde_json::from_str(line).ok()?;
            ready["url"].as_str()?.strip_prefix("http://")?.parse().ok()
        })
    }

    /// As [`Serve::start`] with at most `nofile` open file descriptors (`ulimit -n` in `sh`,
    /// which then execs the server, so the limit is the server's own).
    pub fn start_limited(nofile: u32, args: &[&str]) -> Serve {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(BIN)
            .arg("serve")
            .arg("--dir")
            .arg(dir.path().join("uploads"))
            .args(args)
            .env_remove("NO_COLOR")
            // Nobody reads stderr until the end: a log line per request would fill the pipe.
            .env("RUST_LOG", "warn");
        Serve::spawn(command, dir, banner_addr)
    }

    /// Starts it and reads the address from the first stdout line with `addr_of`.
    fn start_reading(
        args: &[&str],
        adjust: impl FnOnce(&mut Command),
        addr_of: impl FnOnce(&str) -> Option<SocketAddr>,
    ) -> Serve {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = bitsmock(&["serve", "--dir"]);
        command.arg(dir.path().join("uploads")).args(args);
        adjust(&mut command);
        Serve::spawn(command, dir, addr_of)
    }

    fn spawn(
        mut command: Command,
        dir: TempDir,
        addr_of: impl FnOnce(&str) -> Option<SocketAddr>,
    ) -> Serve {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run bitsmock serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut banner = String::new();
        let _ = stdout.read_line(&mut banner);
        let Some(addr) = addr_of(banner.trim_end()) else {
            let _ = child.kill();
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .map(|mut s| s.read_to_string(&mut stderr));
            panic!("no address in the first line {banner:?}; stderr: {stderr}");
        };
        Serve {
            child,
            stdout,
            banner: banner.trim_end().to_owned(),
            addr,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the child's stdin (start it with `Stdio::piped()` stdin for this to matter).
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Whether it has exited yet.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The `--dir` it was started with.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("uploads")
    }

    /// `kill -NAME PID`, e.g. `signal("TERM")`.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{name} failed");
    }

    /// Kills it with SIGKILL (an unclean stop: no cleanup runs) and waits for the exit;
    /// returns the private temp directory, upload root included, for the next server.
    pub fn kill_keeping_dir(mut self) -> TempDir {
        self.signal("KILL");
        assert!(
            wait(&mut self.child, PATIENCE).is_some(),
            "bitsmock still running after SIGKILL"
        );
        self.dir
    }

    /// Waits for the exit; returns its status, the rest of stdout, and stderr.
    pub fn finish(mut self, limit: Duration) -> (Option<ExitStatus>, Vec<String>, String) {
        let status = wait(&mut self.child, limit);
        let rest = self.stdout.lines().map_while(Result::ok).collect();
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .map(|mut s| s.read_to_string(&mut stderr));
        (status, rest, stderr)
    }

    /// Stops it with SIGTERM; it must exit cleanly. Returns the rest of stdout, and stderr.
    pub fn stop(self) -> (Vec<String>, String) {
        self.stop_with("TERM")
    }

    /// Stops it with the named signal; it must exit cleanly within [`PATIENCE`].
    pub fn stop_with(self, signal: &str) -> (Vec<String>, String) {
        self.signal(signal);
        let (status, rest, stderr) = self.finish(PATIENCE);
        let status = status.unwrap_or_else(|| panic!("bitsmock still running after SIG{signal}"));
        assert!(
            status.success(),
            "{status:?} after SIG{signal}; stderr: {stderr}"
        );
        (rest, stderr)
    }
}
