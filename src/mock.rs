//! `MockServer`: a bitsmock server for one Rust test, started in a line and stopped on drop.
//!
//! ```no_run
//! # async fn test() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! let server = bitsmock::MockServer::builder()
//!     .profile("lost-acks")
//!     .seed(7)
//!     .start()
//!     .await?;
//! // … point the client under test at server.url() …
//! let closed = server
//!     .wait_for(|e| e.request().is_some_and(|r| r.path == "/a.bin"), Duration::from_secs(5))
//!     .await;
//! assert!(closed.is_some());
//! assert_eq!(server.uploads().await.len(), 1);
//! # Ok(()) }
//! ```
//!
//! Everything it shows comes from the server's event stream and steering API
//! ([`Server`]); the control API (`serve --admin`) offers the same to tests in
//! other languages.

use crate::config::{self, Config, Settings};
use crate::fault::profile::parse_rule_line;
use crate::fault::{ProfileError, Rule};
use crate::journal::{Event, RuleState};
use crate::proto::Session;
use crate::server::{Server, Upload};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why a mock server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Profile(String),
    #[error("{0}")]
    Rule(#[from] ProfileError),
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("cannot start the server: {0}")]
    Io(#[from] std::io::Error),
}

/// Settings for a [`MockServer`]; every one is optional.
#[derive(Default)]
#[must_use]
pub struct Builder {
    profile: Option<String>,
    faults: Vec<String>,
    settings: Settings,
    dir: Option<PathBuf>,
    adjust: Option<Adjust>,
}

/// A last change to the merged configuration.
type Adjust = Box<dyn FnOnce(&mut Config) + Send>;

impl Builder {
    /// A shipped profile name or a profile file.
    pub fn profile(mut self, name_or_path: &str) -> Self {
        self.profile = Some(name_or_path.to_owned());
        self
    }

    /// Adds a rule in the `--fault` one-line syntax (after the profile's).
    pub fn fault(mut self, line: &str) -> Self {
        self.faults.push(line.to_owned());
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.settings.seed = Some(seed);
        self
    }

    pub fn time_scale(mut self, factor: f64) -> Self {
        self.settings.time_scale = Some(factor);
        self
    }

    /// Any other setting, as the flags give them (`Settings { max_fragment_size: …, .. }`).
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = Settings {
            rules: std::mem::take(&mut self.settings.rules),
            ..settings
        };
        self
    }

    /// Upload root (default: a fresh temp directory, deleted when the server is dropped).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// A last look at the merged configuration before the server starts.
    pub fn configure(mut self, adjust: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.adjust = Some(Box::new(adjust));
        self
    }

    /// Merges the settings (defaults < profile < these, as the CLI does), binds 127.0.0.1 on
    /// a free port and starts serving in the background of the current tokio runtime.
    pub async fn start(self) -> Result<MockServer, StartError> {
        let profile = match &self.profile {
            Some(name) => Some(config::load_profile(name).map_err(StartError::Profile)?),
            None => None,
        };
        let first = profile.as_ref().map_or(0, |p| p.rules.len());
        let mut settings = self.settings;
        for (i, line) in self.faults.iter().enumerate() {
            settings
                .rules
                .push(parse_rule_line(line, "MockServer::fault", first + i + 1)?);
        }
        let (root, owned) = match self.dir {
            Some(dir) => (dir, None),
            None => {
                let dir = fresh_dir();
                (dir.clone(), Some(dir))
            }
        };
        settings.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        settings.root = Some(root);
        // Reproducible unless asked otherwise: a test that fails replays the same faults.
        settings.seed = settings
            .seed
            .or(profile.as_ref().and_then(|p| p.seed))
            .or(Some(0));
        let mut config = Config::from_parts(profile.as_ref(), settings)?;
        if let Some(adjust) = self.adjust {
            adjust(&mut config);
        }
        let running = crate::spawn(config).await?;
        Ok(MockServer {
            server: Arc::clone(&running.server),
            addr: running.addr,
            running: Some(running),
            owned_dir: owned,
        })
    }
}

/// A running server that stops when dropped.
pub struct MockServer {
    server: Arc<Server>,
    addr: SocketAddr,
    /// Taken by `stop` or on drop.
    running: Option<crate::Running>,
    /// The temp directory it made, removed after it stops.
    owned_dir: Option<PathBuf>,
}

impl MockServer {
    pub fn builder() -> Builder {
        Builder::default()
    }

    fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// `http://127.0.0.1:PORT`; append a path to name the destination.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upload root.
    pub fn root(&self) -> &std::path::Path {
        self.server().store().root()
    }

    /// The server itself, for everything else.
    pub fn inner(&self) -> &Arc<Server> {
        self.server()
    }

    /// Every kept event, oldest first.
    pub fn journal(&self) -> Vec<Event> {
        self.server().events()
    }

    /// The verdict on what the client did so far, with the default options
    /// (docs/verdicts.md); `inner().verdict(&options)` takes others.
    pub fn verdict(&self) -> crate::verdict::Verdict {
        self.server().verdict(&crate::verdict::Options::default())
    }

    pub fn sessions(&self) -> Vec<Session> {
        self.server().sessions()
    }

    pub async fn uploads(&self) -> Vec<Upload> {
        self.server().uploads().await
    }

    pub fn rules(&self) -> Vec<RuleState> {
        self.server().rules()
    }

    /// Arms one rule (the `--fault` one-line syntax); returns its id.
    pub fn arm(&self, line: &str) -> Result<u64, ProfileError> {
        let rule = parse_rule_line(line, "MockServer::arm", self.rules().len() + 1)?;
        Ok(self.server().arm(rule, None))
    }

    /// Arms a rule that applies from now for `window` (an outage on demand).
    pub fn arm_for(&self, line: &str, window: Duration) -> Result<u64, ProfileError> {
        let rule = parse_rule_line(line, "MockServer::arm", self.rules().len() + 1)?;
        Ok(self.server().arm(rule, Some(window)))
    }

    pub fn disarm(&self, id: u64) -> bool {
        self.server().disarm(id)
    }

    /// Replaces every rule (one-line syntax each); live sessions carry on.
    pub fn set_rules(&self, lines: &[&str]) -> Result<(), ProfileError> {
        let rules: Vec<Rule> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| parse_rule_line(line, "MockServer::set_rules", i + 1))
            .collect::<Result<_, _>>()?;
        self.server().set_rules(rules);
        Ok(())
    }

    /// The first event from now on (or already kept) that `matches`, waiting up to
    /// `timeout`; `None` if none came. Scans from the start of the kept journal, so an event
    /// that happened just before the call is found too.
    pub async fn wait_for(
        &self,
        mut matches: impl FnMut(&Event) -> bool,
        timeout: Duration,
    ) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let events = self.server().wait_for_events(seen, left).await;
            if events.is_empty() {
                return None;
            }
            for event in events {
                seen = event.seq;
                if matches(&event) {
                    return Some(event);
                }
            }
        }
    }

    /// Rules back to the configured ones, sessions dropped, journal cleared.
    pub async fn reset(&self) {
        self.server().reset(false).await;
    }

    /// Stops gracefully and waits for it (dropping stops too, without waiting).
    pub async fn stop(mut self) -> std::io::Result<()> {
        let result = match self.running.take() {
            Some(running) => running.stop().await,
            None => Ok(()),
        };
        if let Some(dir) = self.owned_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        result
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        let dir = self.owned_dir.take();
        // Stop in the background and remove the temp dir once nothing writes to it.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let _ = running.stop().await;
                    if let Some(dir) = dir {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                });
            }
            Err(_) => {
                drop(running);
                if let Some(dir) = dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
    }
}

/// A new directory under the system temp dir, unique within and across processes.
fn fresh_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("bitsmock-{}-{n}", std::process::id()))
}
