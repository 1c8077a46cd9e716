//! Steering a running server: what the control API (`src/admin/`) and `MockServer` call.
//!
//! Every change goes through the same locks and the same event stream as requests do: a rule
//! swap is a `rules-changed` event, a forgotten session a `session-gone` one, a reset a
//! `reset` one, so a journal shows what a test did to the server as well as what the client
//! did.

use super::sessions::Follow;
use super::{Server, lock};
use crate::fault::Rule;
use crate::journal::{RuleState, Tally, What};
use crate::proto::{SessionId, Table};
use std::time::Duration;

/// A committed file, as `GET /uploads` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Upload {
    /// Relative to the upload root, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the file as committed (computed on first request when the
    /// server did not keep it while writing).
    pub sha256: Option<String>,
    pub session: SessionId,
    pub ordinal: u64,
}

/// Live counts that are not totals over events.
#[derive(Debug, Clone)]
pub struct Gauges {
    pub live_sessions: usize,
    pub open_connections: u64,
    pub connections: u64,
    /// Each rule's id, name and fire count.
    pub rules: Vec<RuleState>,
}

/// Uploads remembered for `uploads()`; the oldest are forgotten beyond this.
const UPLOADS_KEPT: usize = 100_000;

impl Server {
    /// The current rules with their ids and fire counts.
    pub fn rules(&self) -> Vec<RuleState> {
        let state = lock(&self.state);
        let faults = &state.faults;
        faults
            .rules()
            .iter()
            .zip(faults.ids())
            .zip(faults.fire_counts())
            .map(|((rule, id), fired)| RuleState {
                id: *id,
                name: rule.name.clone(),
                origin: rule.origin.clone(),
                fault: rule.fault.kind().to_owned(),
                line: rule.to_string(),
                fired: *fired,
            })
            .collect()
    }

    /// Replaces every rule (live sessions carry on under the new ones).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        lock(&self.state).faults.replace(rules);
        self.rules_changed();
    }

    /// Adds a rule after the others and returns its id. `window`: the rule applies from now
    /// for this long (an outage on demand), whatever `from`/`until` it had.
    pub fn arm(&self, mut rule: Rule, window: Option<Duration>) -> u64 {
        if let Some(window) = window {
            // Rule windows are scaled by --time-scale like every fault duration; a window
            // "from now" is real time, so it is stored unscaled.
            let scale = self.config.time_scale;
            let unscale = |d: Duration| {
                if scale > 0.0 {
                    Duration::try_from_secs_f64(d.as_secs_f64() / scale).unwrap_or(Duration::MAX)
                } else {
                    Duration::ZERO
                }
            };
            let now = self.started.elapsed();
            rule.trigger.from = Some(unscale(now));
            rule.trigger.until = Some(unscale(now.saturating_add(window)));
        }
        let id = lock(&self.state).faults.push(rule);
        self.rules_changed();
        id
    }

    /// Removes one rule; false if no rule has that id.
    pub fn disarm(&self, id: u64) -> bool {
        let removed = lock(&self.state).faults.remove(id);
        if removed {
            self.rules_changed();
        }
        removed
    }

    fn rules_changed(&self) {
        let rules = self.rules();
        self.emit(What::RulesChanged { rules });
    }

    /// Forgets one live session and deletes its temp file, as a `lose-session` fault would;
    /// false if it is not live.
    pub async fn forget_session(&self, id: &SessionId) -> bool {
        self.with_table(Follow::default(), |t| t.forget(id)).await
    }

    /// Back to the start: rules as configured, no sessions (temp files deleted, ordinals
    /// from 1 again), no kept events or totals. `uploads`: also empty the upload root.
    pub async fn reset(&self, uploads: bool) {
        {
            let mut state = lock(&self.state);
            state.faults.replace(self.config.rules.clone());
            state.faults.forget_sessions();
        }
        self.with_table(Follow::default(), Table::reset).await;
        if uploads {
            self.store.clear_uploads().await;
        }
        lock(&self.uploads).clear();
        lock(&self.journal).clear();
        self.emit(What::Reset {
            uploads_cleared: uploads,
        });
        self.rules_changed();
    }

    /// The committed files, oldest first, with their SHA-256 (computed now for files the
    /// server did not hash while writing, and remembered).
    pub async fn uploads(&self) -> Vec<Upload> {
        let unhashed = lock(&self.uploads).unhashed();
        for (key, path) in unhashed {
            let digest = self.hash_file(self.store.root().join(&path)).await;
            if !digest.is_empty() {
                lock(&self.uploads).set_sha256(key, digest);
            }
        }
        lock(&self.uploads).list()
    }

    /// Totals over the kept events.
    /// The verdict on the client's behaviour so far, over the kept events (docs/verdicts.md).
    pub fn verdict(&self, options: &crate::verdict::Options) -> crate::verdict::Verdict {
        crate::verdict::judge_events(&self.events(), options)
    }

    pub fn tally(&self) -> Tally {
        lock(&self.journal).tally().clone()
    }

    /// Live sessions, connections and each rule's fire count.
    pub fn gauges(&self) -> Gauges {
        use std::sync::atomic::Ordering;
        Gauges {
            live_sessions: self.session_count(),
            open_connections: self.open_connections.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            rules: self.rules(),
        }
    }

    /// Asks [`Server::run`] to shut down gracefully, as Ctrl-C does.
    pub fn shutdown(&self) {
        self.stopping.notify_one();
    }

    /// Remembers a committed file (called when a `committed` event is emitted).
    pub(super) fn remember_upload(&self, upload: Upload) {
        // Memory of the past has one knob: as many uploads as the journal keeps events.
        let kept = UPLOADS_KEPT.min(self.config.journal_keep);
        lock(&self.uploads).remember(upload, kept);
    }
}
