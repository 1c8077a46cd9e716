//! Session state in the glue: the one lock over the table and the fault layer, the
//! per-session entries, and following the table's changes.
//!
//! The core's table is the only source of "session created" and "session gone"; the glue
//! keeps no second account of it. After every table call it drains [`Change`]s and
//! [`Server::follow`]s them: an entry is made for a created session, removed for a gone one,
//! the temp file deleted where the session's bytes are no longer wanted, and an event
//! recorded for each.

use super::accept::Conn;
use super::body::Hash;
use super::{Server, lock, now};
use crate::fault::rule::SessionLoss;
use crate::fault::{Action, Facts, Faults, Plan};
use crate::journal::{SessionRef, What};
use crate::proto::{Change, Env, Existing, Gone, Head, Packet, SessionId, Step, Table};
use rand::TryRng;
use std::sync::Arc;

/// What the one lock guards.
pub(super) struct State {
    pub table: Table,
    pub faults: Faults,
}

/// One session's glue-side state, locked for the whole of a request on that session. No
/// file stays open here: each fragment opens and closes the temp file (`body::stream`).
#[derive(Default)]
pub(super) struct Entry {
    /// The SHA-256 of the bytes stored so far, when it is kept and still trusted (not after
    /// a failed write or an abandoned request; the digest is then computed when needed).
    pub hash: Option<Hash>,
    pub reply: Option<Reply>,
    /// Notifications of the server application sent for this session so far (the `nth`
    /// of a `notify` fault).
    pub notifications: u64,
}

/// A reply the server serves at the session's reply URL.
#[derive(Clone)]
pub(super) struct Reply {
    pub body: ReplyBody,
    /// The upload's SHA-256, when known (the built-in reply document names it).
    pub sha256: Option<String>,
    /// Fixed when the reply is made, so ranged GETs see one stable reply (§9.8).
    pub last_modified: String,
}

#[derive(Clone)]
pub(super) enum ReplyBody {
    /// The built-in application's JSON document.
    Memory(bytes::Bytes),
    /// A notified application's reply on disk, `len` bytes when it answered.
    File { path: std::path::PathBuf, len: u64 },
}

impl Reply {
    pub fn len(&self) -> u64 {
        match &self.body {
            ReplyBody::Memory(b) => b.len() as u64,
            ReplyBody::File { len, .. } => *len,
        }
    }
}

/// The fault layer's plan for a request and, when the packet is applied, the core's step —
/// decided under one lock.
pub(super) struct Decision {
    pub plan: Plan,
    pub step: Option<Step>,
    pub session: Option<SessionRef>,
    pub changes: Vec<Change>,
}

/// What a followed `Committed` change needs that the table does not hold.
#[derive(Default)]
pub(super) struct Follow {
    /// Keep the temp files of forgotten sessions (a fault's `keep-file`).
    pub keep_file: bool,
    /// Path (relative to the root), size and SHA-256 (if kept) of a file just committed.
    pub committed: Option<(String, u64, Option<String>)>,
}

impl Server {
    /// Plans a request and, unless the plan skips the packet, steps the core — in one lock,
    /// so a Create-Session's ordinal, its fault decision and its creation cannot be split by
    /// a concurrent Create.
    pub(super) fn decide(
        &self,
        packet: &Packet,
        head: &Head<'_>,
        path: &str,
        conn: &Conn,
        existing: Existing,
        origin: &str,
    ) -> Decision {
        // Drawn before taking the lock (a system call), and only for Create-Session.
        let fresh_id = matches!(packet, Packet::CreateSession { .. })
            .then(fresh_id)
            .flatten();
        let env = Env {
            now: now(),
            fresh_id,
            existing,
            origin,
            place: conn.place,
        };
        let mut state = lock(&self.state);
        let known = packet
            .session()
            .and_then(|id| state.table.get(&id).map(|s| s.ordinal));
        let ordinal = match packet {
            Packet::Ping => 0,
            Packet::CreateSession { .. } => state.table.created() + 1,
            _ => known.unwrap_or(0),
        };
        let facts = Facts {
            packet: packet.packet_type(),
            session: ordinal,
            range: match packet {
                Packet::Fragment { range, .. } => Some(*range),
                _ => None,
            },
            path,
            since_start: self.started.elapsed(),
            authorization: head.text("Authorization"),
        };
        let plan = state.faults.plan(&facts, &mut lock(&conn.auth));
        let step = (!matches!(plan.action, Action::Instead(_)))
            .then(|| state.table.step(&self.config.vdir, packet, &env));
        let changes = state.table.take_changes();
        drop(state);
        let session = match packet {
            Packet::CreateSession { .. } => changes.iter().find_map(|c| match c {
                Change::Created { id, ordinal, .. } => Some(SessionRef {
                    id: *id,
                    ordinal: Some(*ordinal),
                }),
                Change::Gone { .. } => None,
            }),
            other => other.session().map(|id| SessionRef { id, ordinal: known }),
        };
        Decision {
            plan,
            step,
            session,
            changes,
        }
    }

    /// The entry of a live session, if any.
    pub(super) fn entry(&self, id: &SessionId) -> Option<Arc<tokio::sync::Mutex<Entry>>> {
        lock(&self.entries).get(id).cloned()
    }

    /// The ordinal of a session id, if it is live.
    pub(super) fn ordinal(&self, id: &SessionId) -> Option<u64> {
        lock(&self.state).table.get(id).map(|s| s.ordinal)
    }

    /// Runs a table call under the lock and follows the changes it made.
    pub(super) async fn with_table<T>(
        &self,
        follow: Follow,
        call: impl FnOnce(&mut Table) -> T,
    ) -> T {
        let (result, changes) = {
            let mut state = lock(&self.state);
            let result = call(&mut state.table);
            (result, state.table.take_changes())
        };
        self.follow(changes, follow).await;
        result
    }

    /// Makes the glue agree with the table: entries, temp files, events.
    pub(super) async fn follow(&self, changes: Vec<Change>, mut follow: Follow) {
        for change in changes {
            match change {
                Change::Created {
                    id,
                    ordinal,
                    destination,
                    reply,
                } => {
                    lock(&self.entries).insert(id, Arc::default());
                    self.emit(What::SessionCreated {
                        session: SessionRef {
                            id,
                            ordinal: Some(ordinal),
                        },
                        destination: destination.to_string(),
                        reply,
                    });
                }
                Change::Gone { id, ordinal, why } => {
                    lock(&self.entries).remove(&id);
                    let session = SessionRef {
                        id,
                        ordinal: Some(ordinal),
                    };
                    let kept_file = why == Gone::Forgotten && follow.keep_file;
                    if why != Gone::Committed && !kept_file {
                        self.store.discard(&id).await;
                    }
                    // A notified application's reply lives until the session ends.
                    if !self.config.notify.applications.is_empty() {
                        self.store.discard_reply(&id).await;
                    }
                    match (why, follow.committed.take()) {
                        (Gone::Committed, Some((path, size, sha256))) => {
                            self.remember_upload(super::Upload {
                                path: path.clone(),
                                size,
                                sha256: sha256.clone(),
                                session: id,
                                ordinal,
                            });
                            self.emit(What::Committed {
                                session,
                                path,
                                size,
                                sha256,
                            })
                        }
                        _ => self.emit(What::SessionGone {
                            session,
                            why,
                            kept_file,
                        }),
                    }
                }
            }
        }
    }

    /// Forgets sessions after their packet was answered (fault `lose-session`).
    pub(super) async fn lose(&self, id: Option<SessionId>, loss: SessionLoss) {
        match loss {
            SessionLoss::This { keep_file } => {
                if let Some(id) = id {
                    let follow = Follow {
                        keep_file,
                        ..Follow::default()
                    };
                    self.with_table(follow, |t| t.forget(&id)).await;
                }
            }
            SessionLoss::All { keep_file } => {
                let follow = Follow {
                    keep_file,
                    ..Follow::default()
                };
                self.with_table(follow, Table::clear).await;
            }
            SessionLoss::Expire(idle) => {
                if let Some(id) = id {
                    lock(&self.state).table.set_idle_timeout(&id, idle);
                }
            }
        }
    }

    /// Removes idle sessions and their files, so expiry happens even if no client asks.
    pub(super) async fn sweep(self: Arc<Self>) {
        let timeout = self.config.vdir.session_timeout;
        let period = (timeout / 4).clamp(
            std::time::Duration::from_millis(20),
            std::time::Duration::from_secs(30),
        );
        loop {
            tokio::time::sleep(period).await;
            self.with_table(Follow::default(), |t| t.expire(now(), timeout))
                .await;
        }
    }
}

/// A new session id from the operating system's randomness: never from the fault seed, so
/// ids differ across runs, restarts and servers. `None` if the OS cannot supply one.
fn fresh_id() -> Option<SessionId> {
    let mut bytes = [0u8; 16];
    match rand::rngs::SysRng.try_fill_bytes(&mut bytes) {
        Ok(()) => Some(SessionId::from_bytes(bytes)),
        Err(e) => {
            tracing::error!(error = %e, "no randomness for a session id");
            None
        }
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
