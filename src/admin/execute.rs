//! Carrying out a validated [`Command`] against the running server: the one place the
//! control API steers or reads the [`Server`], through its public control surface
//! (`src/server/control.rs`) only.

use super::metrics;
use super::routes::{AdminError, Arm, Command, JournalQuery, Reply, VerdictFormat, VerdictQuery};
use crate::Server;
use crate::journal::Event;
use serde_json::json;
use tokio::sync::watch;

/// Runs one command. `closing` turns true when the control API shuts down, so a long-poll
/// ends instead of holding the shutdown up.
pub async fn run(
    server: &Server,
    command: Command,
    closing: &mut watch::Receiver<bool>,
) -> Result<Reply, AdminError> {
    let ok = || Reply::json(200, &json!({ "ok": true }));
    Ok(match command {
        Command::Health => ok(),
        Command::Config => {
            let mut summary = server.config().summary();
            summary["rules"] = json!(server.rules());
            Reply::json(200, &summary)
        }
        Command::Sessions => sessions(server),
        Command::ForgetSession(id) => {
            if !server.forget_session(&id).await {
                return Err(AdminError::Unknown(format!("no live session {id}")));
            }
            ok()
        }
        Command::Journal(query) => journal(server, &query, closing).await,
        Command::Uploads => Reply::json(200, &json!(server.uploads().await)),
        Command::Verdict(query) => verdict(server, &query),
        Command::Rules => Reply::json(200, &json!(server.rules())),
        Command::SetRules(rules) => {
            server.set_rules(rules);
            Reply::json(200, &json!(server.rules()))
        }
        Command::Arm(arm) => {
            let Arm {
                mut rule,
                unnamed,
                window,
            } = *arm;
            if unnamed {
                // Named after its place in the whole list, as `--fault` rules are.
                rule.name = format!("rule {}", server.rules().len() + 1);
            }
            let id = server.arm(rule, window);
            Reply::json(201, &json!({ "id": id }))
        }
        Command::Disarm(id) => {
            if !server.disarm(id) {
                return Err(AdminError::Unknown(format!("no rule with id {id}")));
            }
            ok()
        }
        Command::Reset { uploads } => {
            server.reset(uploads).await;
            ok()
        }
        Command::Metrics => Reply {
            status: 200,
            content_type: metrics::CONTENT_TYPE,
            headers: Vec::new(),
            body: metrics::render(&server.tally(), &server.gauges()).into_bytes(),
        },
        Command::Shutdown => {
            // The answer still goes out: the server drains open connections, and the control
            // API's own graceful shutdown lets this request finish.
            server.shutdown();
            Reply::json(202, &json!({ "ok": true }))
        }
    })
}

fn sessions(server: &Server) -> Reply {
    // The core's clock is tokio's, so idle times agree with expiry (even under paused time).
    let now = tokio::time::Instant::now().into_std();
    let mut sessions = server.sessions();
    sessions.sort_by_key(|s| s.ordinal);
    let listed: Vec<serde_json::Value> = sessions
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "ordinal": s.ordinal,
                "destination": s.destination.to_string(),
                "reply": s.reply,
                "total": s.total,
                "received": s.received,
                "idle_ms": u64::try_from(now.saturating_duration_since(s.last_activity).as_millis())
                    .unwrap_or(u64::MAX),
            })
        })
        .collect();
    Reply::json(200, &json!(listed))
}

/// `GET /journal`: matching events above `since`; with `wait`, waits until at least one
/// matching event exists or the wait is over. Events that do not match move the cursor on,
/// so the answer's `last_seq` is where the next poll should start.
async fn journal(
    server: &Server,
    query: &JournalQuery,
    closing: &mut watch::Receiver<bool>,
) -> Reply {
    let deadline = query.wait.map(|w| tokio::time::Instant::now() + w);
    let mut cursor = query.since;
    let mut pending = server.events_since(cursor);
    loop {
        let (events, last) = pick(query, pending, cursor);
        cursor = last;
        let remaining = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
        let done = !events.is_empty() || remaining.is_none_or(|r| r.is_zero());
        if done {
            return Reply::json(200, &json!({ "events": events, "last_seq": cursor }));
        }
        let remaining = remaining.unwrap_or_default();
        pending = tokio::select! {
            events = server.wait_for_events(cursor, remaining) => events,
            _ = closing.wait_for(|closing| *closing) => Vec::new(),
        };
        if pending.is_empty() {
            // The wait is over (or the API is closing) with nothing new.
            return Reply::json(200, &json!({ "events": [], "last_seq": cursor }));
        }
    }
}

/// The matching events among `events` (up to the limit), and the last sequence number
/// looked at (`cursor` when none was).
fn pick(query: &JournalQuery, events: Vec<Event>, cursor: u64) -> (Vec<Event>, u64) {
    let limit = query.limit.unwrap_or(usize::MAX);
    let mut last = cursor;
    let mut picked = Vec::new();
    for event in events {
        if picked.len() >= limit {
            break;
        }
        last = event.seq;
        if query.matches(&event) {
            picked.push(event);
        }
    }
    (picked, last)
}

/// The verdict over the kept events, in the asked format.
fn verdict(server: &Server, query: &VerdictQuery) -> Reply {
    use crate::verdict::{self, report};
    let mut options = verdict::Options::default();
    if let Some(floor) = query.backoff_floor {
        options.backoff_floor = floor;
    }
    let v = server.verdict(&options);
    let (content_type, body) = match query.format {
        VerdictFormat::Json => return Reply::json(200, &report::json(&v)),
        VerdictFormat::Text => ("text/plain; charset=utf-8", report::text(&v)),
        VerdictFormat::Junit => {
            let run = report::Run {
                name: "bitsmock".into(),
                verdict: v,
                problems: Vec::new(),
                events: Vec::new(),
            };
            ("application/xml", report::junit(&[run]))
        }
    };
    Reply {
        status: 200,
        content_type,
        headers: Vec::new(),
        body: body.into_bytes(),
    }
}
