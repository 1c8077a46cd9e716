//! Judging the client: named checks over the journal's events (docs/verdicts.md).
//!
//! ```text
//!  journal events (JSON) ─▶ input::read ─▶ Model ─▶ every Check in CATALOGUE ─▶ Verdict ─▶ report
//! ```
//!
//! Pure: no files, no clock. The server knows what it told the client (each answer's BITS
//! headers as sent, after faults) and what the client did next, so each check compares the
//! two against the rule of docs/protocol.md it enforces, and names the events that prove a
//! failure by their sequence numbers. A check that found nothing to judge (no 413 was ever
//! answered, say) is *not exercised*, which is not a failure.

pub mod checks;
pub mod input;
pub mod model;
pub mod report;
#[cfg(test)]
mod tests;

use self::input::Seen;
use self::model::Model;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How much a broken rule matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// The client loses data, time or the upload, or breaks the protocol.
    Error,
    /// Wasteful or untidy, not wrong.
    Warning,
}

/// What the checks need besides the events.
#[derive(Debug, Clone)]
pub struct Options {
    /// The shortest wait after a transient failure that counts as backing off.
    pub backoff_floor: Duration,
    /// `Retry-After` is honoured up to this long (a client may cap a server's wish).
    pub retry_after_cap: Duration,
    /// The uploaded file, when known (`upload-intact`).
    pub source: Option<Source>,
    /// SHA-256 (lower-case hex) of committed files as read back from disk, by path relative
    /// to the upload root; preferred over the digest the journal carries.
    pub stored: BTreeMap<String, String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            backoff_floor: DEFAULT_BACKOFF_FLOOR,
            retry_after_cap: Duration::from_secs(60),
            source: None,
            stored: BTreeMap::new(),
        }
    }
}

/// The default floor of `backs-off`: a tenth of the quickest retry a careful client makes
/// would be too lenient to catch anything, an immediate retry is what it must catch.
pub const DEFAULT_BACKOFF_FLOOR: Duration = Duration::from_millis(250);

/// The file the client was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// One broken rule, with its proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub message: String,
    /// `session #2`, when the finding is about one session.
    pub session: Option<String>,
    /// Sequence numbers of the events that show it.
    pub evidence: Vec<u64>,
}

/// What one check saw.
#[derive(Debug, Clone, Default)]
pub struct Judged {
    /// Situations the check looked at (0: not exercised).
    pub judged: usize,
    pub findings: Vec<Finding>,
}

/// A named check.
pub struct Check {
    pub name: &'static str,
    pub severity: Severity,
    /// The rule, in one sentence.
    pub rule: &'static str,
    /// Where docs/protocol.md explains it.
    pub section: &'static str,
    run: fn(&Model, &Options) -> Judged,
}

/// Every check, in the order reports list them.
pub static CATALOGUE: &[Check] = &[
    Check {
        name: "resumes-from-ack",
        severity: Severity::Error,
        rule: "After a Fragment Ack or 416 naming offset R, the session's next fragment starts at R: not before (re-sending acknowledged bytes), not after (a gap).",
        section: "§9.3, §7.5",
        run: checks::resumes_from_ack,
    },
    Check {
        name: "recreates-after-session-loss",
        severity: Severity::Error,
        rule: "After 0x8020001F (BG_E_SESSION_NOT_FOUND) on a Fragment or Close-Session, the client creates a new session and starts again from byte 0; it does not keep using the dead id.",
        section: "§9.3",
        run: checks::recreates_after_session_loss,
    },
    Check {
        name: "closes-complete-uploads",
        severity: Severity::Error,
        rule: "A session that was told all its bytes arrived gets a Close-Session; until then the file is not committed.",
        section: "§7.6",
        run: checks::closes_complete_uploads,
    },
    Check {
        name: "no-premature-close",
        severity: Severity::Error,
        rule: "No Close-Session before the server acknowledged every byte: the server discards a partial upload.",
        section: "§7.6",
        run: checks::no_premature_close,
    },
    Check {
        name: "no-abandoned-sessions",
        severity: Severity::Warning,
        rule: "Every session the client created is closed or cancelled, so the server can free its temp file.",
        section: "§7.8",
        run: checks::no_abandoned_sessions,
    },
    Check {
        name: "backs-off",
        severity: Severity::Error,
        rule: "After a transient failure (5xx, 408, 429, reset, closed connection, no answer) the next attempt waits at least the floor, waits longer under repeated failures, and honours Retry-After.",
        section: "§9.4",
        run: checks::backs_off,
    },
    Check {
        name: "stops-on-fatal",
        severity: Severity::Error,
        rule: "No retry after a fatal answer (400, 403, 404, 501, 0x80200020, 0x80070057, 0x80070005), and no endless loop of Create-Sessions answered 409.",
        section: "§9.3, §9.4",
        run: checks::stops_on_fatal,
    },
    Check {
        name: "adapts-fragment-size",
        severity: Severity::Error,
        rule: "After 413 the next fragment is smaller (not below 5 KiB).",
        section: "§9.5",
        run: checks::adapts_fragment_size,
    },
    Check {
        name: "consistent-session",
        severity: Severity::Error,
        rule: "Total length, Content-Name and URL path stay the same for all packets of a session.",
        section: "§3.3, §7.5",
        run: checks::consistent_session,
    },
    Check {
        name: "framing",
        severity: Severity::Error,
        rule: "Every BITS_POST carries Content-Length (IIS answers 411 without it), Create-Session offers the BITS 1.5 protocol GUID, and the packet type is a known one.",
        section: "§2.3, §3.2",
        run: checks::framing,
    },
    Check {
        name: "fetches-reply-before-close",
        severity: Severity::Error,
        rule: "An upload-reply job downloads its reply before Close-Session, which deletes it.",
        section: "§7.7, §9.8",
        run: checks::fetches_reply_before_close,
    },
    Check {
        name: "distrusts-lies",
        severity: Severity::Error,
        rule: "After an Ack that cannot be true (offset missing, not a number, beyond the total, ahead of what was sent, another session id) the client neither closes as if complete nor skips ahead.",
        section: "§9.3",
        run: checks::distrusts_lies,
    },
    Check {
        name: "upload-intact",
        severity: Severity::Error,
        rule: "The committed file equals the source byte for byte.",
        section: "§7.6",
        run: checks::upload_intact,
    },
];

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub check: &'static str,
    pub severity: Severity,
    pub rule: &'static str,
    pub section: &'static str,
    /// Situations judged; 0 means the run never exercised the rule.
    pub judged: usize,
    pub findings: Vec<Finding>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }

    /// `pass`, `fail`, `warn` or `not exercised`.
    pub fn status(&self) -> &'static str {
        match (self.findings.is_empty(), self.severity, self.judged) {
            (false, Severity::Error, _) => "fail",
            (false, Severity::Warning, _) => "warn",
            (true, _, 0) => "not exercised",
            (true, _, _) => "pass",
        }
    }
}

/// Every check's outcome for one journal.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Requests judged.
    pub requests: usize,
    pub sessions: usize,
    /// Whether the journal ran to the server's stop (otherwise sessions may still be open).
    pub complete: bool,
    pub outcomes: Vec<Outcome>,
}

impl Verdict {
    /// Checks of severity error that found something.
    pub fn errors(&self) -> usize {
        self.failed(Severity::Error).count()
    }

    pub fn warnings(&self) -> usize {
        self.failed(Severity::Warning).count()
    }

    /// Whether no error-severity check failed.
    pub fn passed(&self) -> bool {
        self.errors() == 0
    }

    /// The checks of a severity that found something.
    pub fn failed(&self, severity: Severity) -> impl Iterator<Item = &Outcome> {
        self.outcomes
            .iter()
            .filter(move |o| o.severity == severity && !o.passed())
    }

    pub fn outcome(&self, check: &str) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.check == check)
    }

    /// `pass`, or `fail: backs-off, resumes-from-ack`: one cell of a matrix.
    pub fn summary(&self) -> String {
        let failed: Vec<&str> = self.failed(Severity::Error).map(|o| o.check).collect();
        if failed.is_empty() {
            "pass".into()
        } else {
            format!("fail: {}", failed.join(", "))
        }
    }
}

/// Judges the events of one run.
pub fn judge(events: &[Seen], options: &Options) -> Verdict {
    let model = Model::new(events);
    let outcomes = CATALOGUE
        .iter()
        .map(|c| {
            let judged = (c.run)(&model, options);
            Outcome {
                check: c.name,
                severity: c.severity,
                rule: c.rule,
                section: c.section,
                judged: judged.judged,
                findings: judged.findings,
            }
        })
        .collect();
    Verdict {
        requests: model.requests.len(),
        sessions: model.sessions.len(),
        complete: model.stopped,
        outcomes,
    }
}

/// Judges events as JSON values (a journal file's lines, the control API's events).
pub fn judge_values(values: &[serde_json::Value], options: &Options) -> Verdict {
    judge(&input::read(values), options)
}

/// Judges the server's own typed events (the in-memory journal).
pub fn judge_events(events: &[crate::journal::Event], options: &Options) -> Verdict {
    let values: Vec<serde_json::Value> = events
        .iter()
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    judge_values(&values, options)
}
