//! The checks: each reads the [`Model`] and says how many situations it judged and what it
//! found wrong, with the sequence numbers of the events that prove it.

use super::model::{Model, SESSION_NOT_FOUND, Session, TOO_LARGE, Told};
use super::{Finding, Judged, Options};
use crate::client::MIN_FRAGMENT_SIZE;
use crate::proto::PacketType;
use std::collections::BTreeMap;

/// Transient failures in a row that must show a growing wait.
const GROWTH_AFTER: usize = 3;
/// How much longer the third wait of a run must be than the first: an exponential backoff
/// doubles twice (×4, ×2 with full jitter), a fixed delay stays at ×1 give or take noise.
const GROWTH: f64 = 1.5;
/// A wait this long counts as backing off whatever came before (a fixed retry delay of this
/// size is what Windows itself uses).
const LONG_WAIT_MS: f64 = 10_000.0;
/// Consecutive 409 answers to Create-Session on one URL that make a retry loop.
const CONFLICT_LOOP: usize = 5;

fn finding(message: String, session: Option<&Session>, evidence: Vec<u64>) -> Finding {
    Finding {
        message,
        session: session.map(Session::label),
        evidence,
    }
}

/// After a Fragment Ack or 416 naming offset R, the session's next fragment starts at R.
pub fn resumes_from_ack(m: &Model, _: &Options) -> Judged {
    let mut j = Judged::default();
    for s in m.sessions.values() {
        let fragments: Vec<usize> = m.of_type(s, PacketType::Fragment).map(|(i, _)| i).collect();
        for (i, told) in m.told(s) {
            let Told::Offset(offset) = told else { continue };
            let total = m.requests[i].range.map_or(0, |r| r.total);
            if offset >= total {
                continue;
            }
            // The next fragment the client sent after it could read this Ack.
            let Some(&next) = fragments
                .iter()
                .find(|&&k| k > i && m.answered_before(i, k))
            else {
                continue;
            };
            let Some(range) = m.requests[next].range else {
                continue;
            };
            j.judged += 1;
            let evidence = vec![m.requests[i].seq, m.requests[next].seq];
            if range.first < offset {
                j.findings.push(finding(
                    format!(
                        "re-sent {} bytes the server had acknowledged: the Ack said {offset}, the next fragment started at {}",
                        offset - range.first,
                        range.first
                    ),
                    Some(s),
                    evidence,
                ));
            } else if range.first > offset {
                j.findings.push(finding(
                    format!(
                        "left a gap of {} bytes: the Ack said {offset}, the next fragment started at {}",
                        range.first - offset,
                        range.first
                    ),
                    Some(s),
                    evidence,
                ));
            }
        }
    }
    j
}

/// After `0x8020001F` the client creates a new session and starts again from byte 0; it does
/// not keep using the dead id.
pub fn recreates_after_session_loss(m: &Model, _: &Options) -> Judged {
    let mut j = Judged::default();
    for s in m.sessions.values() {
        let Some(&lost) = s.requests.iter().find(|&&i| {
            let r = &m.requests[i];
            (r.is(PacketType::Fragment) || r.is(PacketType::CloseSession))
                && r.code() == Some(SESSION_NOT_FOUND)
        }) else {
            continue;
        };
        let loss = &m.requests[lost];
        // A Close-Session resent after its Ack was lost finds the session committed: the
        // upload is done, whatever the client makes of the answer.
        if s.ended
            .as_ref()
            .is_some_and(|(seq, why)| why == "committed" && *seq < loss.seq)
        {
            continue;
        }
        j.judged += 1;
        let reused: Vec<u64> = s
            .requests
            .iter()
            .filter(|&&i| i > lost && m.answered_before(lost, i))
            .map(|&i| &m.requests[i])
            .filter(|r| !r.is(PacketType::CancelSession))
            .map(|r| r.seq)
            .collect();
        if !reused.is_empty() {
            let mut evidence = vec![loss.seq];
            evidence.extend(reused.iter().take(20));
            j.findings.push(finding(
                format!(
                    "kept using the lost session's id {} time(s) after {} was answered 0x8020001F",
                    reused.len(),
                    loss.describe()
                ),
                Some(s),
                evidence,
            ));
        }
        // The next session created on the same URL must start from byte 0.
        let next = m.requests.iter().enumerate().skip(lost + 1).find(|(_, r)| {
            r.is(PacketType::CreateSession)
                && r.path == loss.path
                && r.sent.delivered().is_some_and(|st| st < 300)
        });
        match next {
            None => j.findings.push(finding(
                format!(
                    "did not create a new session after {} was answered 0x8020001F",
                    loss.describe()
                ),
                Some(s),
                vec![loss.seq],
            )),
            Some((_, create)) => {
                if let Some(fresh) = m.session_of(create)
                    && let Some((_, first)) = m.of_type(fresh, PacketType::Fragment).next()
                    && let Some(range) = first.range
                    && range.first != 0
                {
                    j.findings.push(finding(
                        format!(
                            "the new {} started at byte {} instead of 0",
                            fresh.label(),
                            range.first
                        ),
                        Some(s),
                        vec![loss.seq, first.seq],
                    ));
                }
            }
        }
    }
    j
}

/// The offset a session ended at, as the client was told: the last believable Ack.
fn last_told(m: &Model, s: &Session, before: usize) -> Option<(usize, Told)> {
    m.told(s).into_iter().rfind(|(i, _)| *i < before)
}

/// Every session that received all its bytes gets a Close-Session.
pub fn closes_complete_uploads(m: &Model, _: &Options) -> Judged {
    let mut j = Judged::default();
    for s in m.sessions.values() {
        let Some((i, _)) = m.told(s).into_iter().find(|(i, told)| {
            *told == Told::Offset(m.requests[*i].range.map_or(u64::MAX, |r| r.total))
        }) else {
            continue;
        };
        j.judged += 1;
        let later = |p: PacketType| s.requests.iter().any(|&k| k > i && m.requests[k].is(p));
        let lost = s
            .requests
            .iter()
            .any(|&k| k > i && m.requests[k].code() == Some(SESSION_NOT_FOUND));
        if !later(PacketType::CloseSession) && !later(PacketType::CancelSession) && !lost {
            j.findings.push(finding(
                "received all its bytes but the client never sent Close-Session: the upload was never committed".into(),
                Some(s),
                vec![m.requests[i].seq],
            ));
        }
    }
    j
}

/// No Close-Session before the client was told all bytes arrived.
pub fn no_premature_close(m: &Model, _: &Options) -> Judged {
    let mut j = Judged::default();
    for s in m.sessions.values() {
        for (c, close) in m.of_type(s, PacketType::CloseSession) {
            // An answer mutated after the last believable Ack may have been read as a good
            // one (a header name in another case): what the client knew is not known.
            let since = last_told(m, s, c).map_or(0, |(i, _)| i + 1);
            if s.requests.iter().any(|&k| {
                k >= since && k < c && matches!(m.requests[k].sent, super::input::Sent::Mutated(_))
            }) {
                continue;
            }
            j.judged += 1;
            let total = m
                .of_type(s, PacketType::Fragment)
                .find_map(|(_, r)| r.range.map(|r| r.total));
            let Some(total) = total else {
                // No fragment at all: only an empty file may be closed so.
                if s.ended.as_ref().is_some_and(|(_, why)| why == "discarded") {
                    j.findings.push(finding(
                        "closed before sending any fragment: the upload was discarded".into(),
                        Some(s),
                        vec![close.seq],
                    ));
                }
                continue;
            };
            match last_told(m, s, c) {
                // distrusts-lies judges a Close that followed a lie.
                Some((_, Told::Lie(_))) => {}
                Some((i, Told::Offset(n))) if n < total => j.findings.push(finding(
                    format!("sent Close-Session when the server had acknowledged {n} of {total} bytes: the upload is discarded"),
                    Some(s),
                    vec![m.requests[i].seq, close.seq],
                )),
                Some(_) => {}
                None => j.findings.push(finding(
                    format!("sent Close-Session before any fragment of the {total} bytes was acknowledged"),
                    Some(s),
                    vec![close.seq],
                )),
            }
        }
    }
    j
}

/// Sessions the client knew of are closed or cancelled in the end.
pub fn no_abandoned_sessions(m: &Model, _: &Options) -> Judged {
    let mut j = Judged::default();
    for s in m.sessions.values().filter(|s| s.known_to_client) {
        j.judged += 1;
        let told_lost = s
            .requests
            .iter()
            .any(|&i| m.requests[i].code() == Some(SESSION_NOT_FOUND));
        let ended_by_client = s.requests.iter().any(|&i| {
            let r = &m.requests[i];
            r.is(PacketType::CloseSession) || r.is(PacketType::CancelSession)
        });
        if !told_lost && !ended_by_client && s.ended.is_none() {
            j.findings.push(finding(
                "was neither closed nor cancelled: its temp file stays on the server until it expires".into(),
                Some(s),
                vec![s.created_seq],
            ));
        }
    }
    j
}

/// Whether a request's outcome was a transient failure, and when the client could have
/// noticed it (ms): a dropped answer counts from the request's arrival, since the client
/// notices only at its own timeout.
fn transient(r: &super::input::Req) -> Option<f64> {
    // A mutated answer may be harmless (a header name in another case) or a protocol error:
    // whether the client had to back off is not known.
    if matches!(r.sent, super::input::Sent::Mutated(_)) {
        return None;
    }
    match r.sent.delivered() {
        None => Some(match r.sent {
            super::input::Sent::Hung => r.start_ms,
            _ => r.end_ms,
        }),
        Some(408 | 429) => Some(r.end_ms),
        Some(status) if status >= 500 && r.code() != Some(SESSION_NOT_FOUND) => {
            // 501 and 505 say "never", not "later".
            (status != 501 && status != 505).then_some(r.end_ms)
        }
        _ => None,
    }
}

/// After a transient failure the next attempt waits at least the floor, longer after
/// repeated failures, and at least `Retry-After`.
pub fn backs_off(m: &Model, o: &Options) -> Judged {
    let mut j = Judged::default();
    // One client's story per URL path: its Pings, Creates, Fragments and Closes.
    let mut by_path: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in m.requests.iter().enumerate() {
        if r.is_bits_post() {
            by_path.entry(r.path.as_str()).or_default().push(i);
        }
    }
    let floor = o.backoff_floor.as_secs_f64() * 1000.0;
    for requests in by_path.values() {
        // (gap, failure index) of the failures in a row so far.
        let mut run: Vec<(f64, usize)> = Vec::new();
        for (n, &i) in requests.iter().enumerate() {
            let r = &m.requests[i];
            let Some(noticed) = transient(r) else {
                // A good answer to anything but a Ping ends the run of failures.
                if !r.is(PacketType::Ping) {
                    run.clear();
                }
                continue;
            };
            let Some(&k) = requests.get(n + 1) else {
                continue;
            };
            let next = &m.requests[k];
            j.judged += 1;
            let gap = next.start_ms - noticed;
            let evidence = vec![r.seq, next.seq];
            let asked = r
                .ack
                .as_ref()
                .and_then(|a| a.retry_after_s())
                .filter(|_| r.sent.delivered().is_some())
                .map(|s| (s as f64 * 1000.0).min(o.retry_after_cap.as_secs_f64() * 1000.0));
            let what = match r.sent.delivered() {
                Some(status) => format!("{} was answered {status}", r.describe()),
                None => format!("{} got {}", r.describe(), r.sent),
            };
            if let Some(asked) = asked
                && gap < asked * 0.95
            {
                j.findings.push(finding(
                    format!(
                        "{what} with Retry-After {:.0} s, but the client came back after {:.0} ms",
                        asked / 1000.0,
                        gap
                    ),
                    m.session_of(r),
                    evidence.clone(),
                ));
            } else if gap < floor {
                j.findings.push(finding(
                    format!(
                        "{what}; the client tried again after {gap:.0} ms, under the {floor:.0} ms floor"
                    ),
                    m.session_of(r),
                    evidence.clone(),
                ));
            }
            run.push((gap, i));
            if run.len() >= GROWTH_AFTER {
                let first = run[0].0;
                let last = run[run.len() - 1].0;
                // Grown means by half and by half the floor at least, so that timing noise
                // on waits of a millisecond cannot pass for a backoff.
                let grown = last >= first * GROWTH && last - first >= floor / 2.0;
                if last < LONG_WAIT_MS && !grown && run.len() == GROWTH_AFTER {
                    j.findings.push(finding(
                        format!(
                            "{} transient failures in a row, and the wait did not grow ({first:.0} ms, then {last:.0} ms)",
                            run.len()
                        ),
                        m.session_of(r),
                        run.iter().map(|&(_, i)| m.requests[i].seq).collect(),
                    ));
                }
            }
        }
    }
    j
}

/// Whether an answer says "do not try again".
fn fatal(r: &super::input::Req) -> Option<String> {
    let status = r.sent.delivered()?;
    let code = r.code();
    if code == Some(TOO_LARGE) {
        return Some("0x80200020 (too large)".into());
    }
    if matches!(code, Some(0x8007_0057 | 0x8007_0005)) {
        return Some(format!("{status} + 0x{:08X}", code.unwrap_or(0)));
    }
    match status {
        400 | 403 | 501 => Some(status.to_string()),
        404 if !r.is(PacketType::CancelSession) => Some("404".into()),
        _ => None,
    }
}

/// No retry loop after a fatal answer, nor after 409s that keep coming.
pub fn stops_on_fatal(m: &Model, _: &Options) -> Judged {
    let mut j = Judged::default();
    for (i, r) in m.requests.iter().enumerate() {
        if !r.is_bits_post() {
            continue;
        }
        let Some(why) = fatal(r) else { continue };
        j.judged += 1;
        let again: Vec<u64> = m.requests[i + 1..]
            .iter()
            .filter(|n| {
                n.is_bits_post()
                    && n.path == r.path
                    && n.kind() == r.kind()
                    && n.session_id() == r.session_id()
                    && !n.is(PacketType::CancelSession)
            })
            .map(|n| n.seq)
            .collect();
        if !again.is_empty() {
            let mut evidence = vec![r.seq];
            evidence.extend(again.iter().take(20));
            j.findings.push(finding(
                format!(
                    "{} was answered {why}, a fatal error, and the client sent it again {} time(s)",
                    r.describe(),
                    again.len()
                ),
                m.session_of(r),
                evidence,
            ));
            // One finding per retry loop, not one per repetition.
            break;
        }
    }
    // 409 (destination exists) is worth a later try, but not an endless one.
    let mut runs: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for r in m
        .requests
        .iter()
        .filter(|r| r.is(PacketType::CreateSession))
    {
        let run = runs.entry(r.path.as_str()).or_default();
        if r.sent.delivered() == Some(409) {
            run.push(r.seq);
            if run.len() == CONFLICT_LOOP {
                j.judged += 1;
                j.findings.push(finding(
                    format!(
                        "Create-Session on {} was answered 409 (destination exists) {CONFLICT_LOOP} times in a row and the client kept trying",
                        r.path
                    ),
                    None,
                    run.clone(),
                ));
            }
        } else {
            run.clear();
        }
    }
    j
}

/// Smaller fragments after a 413.
pub fn adapts_fragment_size(m: &Model, _: &Options) -> Judged {
    let mut j = Judged::default();
    for (i, r) in m.requests.iter().enumerate() {
        if !r.is(PacketType::Fragment) || r.sent.delivered() != Some(413) {
            continue;
        }
        let Some(range) = r.range else { continue };
        if range.len() <= MIN_FRAGMENT_SIZE {
            continue;
        }
        let Some(next) = m.requests[i + 1..]
            .iter()
            .find(|n| n.is(PacketType::Fragment) && n.path == r.path && n.start_ms >= r.end_ms)
        else {
            continue;
        };
        let Some(next_range) = next.range else {
            continue;
        };
        j.judged += 1;
        let end_of_file = next_range.end() == next_range.total;
        if next_range.len() >= range.len() && !end_of_file {
            j.findings.push(finding(
                format!(
                    "a {}-byte fragment was answered 413 (too large), and the next one was {} bytes",
                    range.len(),
                    next_range.len()
                ),
                m.session_of(r),
                vec![r.seq, next.seq],
            ));
        }
    }
    j
}

/// Total length, Content-Name and URL path do not change within a session.
pub fn consistent_session(m: &Model, _: &Options) -> Judged {
    let mut j = Judged::default();
    for s in m.sessions.values() {
        let requests: Vec<_> = s
            .requests
            .iter()
            .map(|&i| &m.requests[i])
            .filter(|r| r.is_bits_post())
            .collect();
        if requests.is_empty() {
            continue;
        }
        j.judged += 1;
        if let Some(r) = requests.iter().find(|r| r.path != s.path) {
            j.findings.push(finding(
                format!(
                    "{} went to {} though the session was created at {}",
                    r.describe(),
                    r.path,
                    s.path
                ),
                Some(s),
                vec![r.seq],
            ));
        }
        let fragments: Vec<_> = requests
            .iter()
            .filter(|r| r.is(PacketType::Fragment))
            .collect();
        if let Some(first) = fragments.iter().find_map(|r| r.range.map(|g| (g, r.seq)))
            && let Some(r) = fragments
                .iter()
                .find(|r| r.range.is_some_and(|g| g.total != first.0.total))
        {
            j.findings.push(finding(
                format!(
                    "the total length changed within the session: {} bytes, then {}",
                    first.0.total,
                    r.range.map_or(0, |g| g.total)
                ),
                Some(s),
                vec![first.1, r.seq],
            ));
        }
        let names: Vec<_> = requests
            .iter()
            .filter_map(|r| r.content_name.as_deref().map(|n| (n, r.seq)))
            .collect();
        if let Some(&(first, seq)) = names.first()
            && let Some(&(other, later)) = names.iter().find(|(n, _)| *n != first)
        {
            j.findings.push(finding(
                format!("Content-Name changed within the session: `{first}`, then `{other}`"),
                Some(s),
                vec![seq, later],
            ));
        }
    }
    j
}

/// Content-Length on every packet, the BITS 1.5 protocol offered, known packet types.
pub fn framing(m: &Model, _: &Options) -> Judged {
    let mut j = Judged::default();
    let posts: Vec<_> = m.requests.iter().filter(|r| r.is_bits_post()).collect();
    j.judged = posts.len();
    let mut missing: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in &posts {
        if r.content_length_missing {
            missing.entry(r.describe()).or_default().push(r.seq);
        }
    }
    for (packet, seqs) in missing {
        j.findings.push(finding(
            format!(
                "{packet} was sent without Content-Length {} time(s): IIS answers 411 Length Required",
                seqs.len()
            ),
            None,
            seqs.into_iter().take(20).collect(),
        ));
    }
    if let Some(r) = posts.iter().find(|r| r.offers_bits15 == Some(false)) {
        j.findings.push(finding(
            "Create-Session did not offer the BITS 1.5 protocol {7df0354d-249b-430f-820d-3d2a9bef4931} in BITS-Supported-Protocols".into(),
            None,
            vec![r.seq],
        ));
    }
    let unknown: Vec<u64> = posts
        .iter()
        .filter(|r| r.kind().is_none())
        .map(|r| r.seq)
        .collect();
    if let Some(&first) = unknown.first() {
        let r = posts.iter().find(|r| r.seq == first);
        j.findings.push(finding(
            format!(
                "{} BITS_POST request(s) had no known BITS-Packet-Type (first: {})",
                unknown.len(),
                r.map_or_else(String::new, |r| r.describe())
            ),
            None,
            unknown.into_iter().take(20).collect(),
        ));
    }
    j
}

/// An upload-reply job downloads its reply before Close-Session.
pub fn fetches_reply_before_close(m: &Model, _: &Options) -> Judged {
    let mut j = Judged::default();
    for s in m.sessions.values().filter(|s| s.reply) {
        let Some((_, close)) = m.of_type(s, PacketType::CloseSession).next() else {
            continue;
        };
        let offered = m.of_type(s, PacketType::Fragment).any(|(_, r)| {
            r.sent.delivered().is_some() && r.ack.as_ref().is_some_and(|a| a.reply_url)
        });
        if !offered {
            continue;
        }
        j.judged += 1;
        if !s.replies.iter().any(|&seq| seq < close.seq) {
            j.findings.push(finding(
                "an upload-reply session was closed before its reply was downloaded: the reply is deleted at Close".into(),
                Some(s),
                vec![close.seq],
            ));
        }
    }
    j
}

/// After a lying Ack the client neither closes as if complete nor resumes from the lie.
pub fn distrusts_lies(m: &Model, _: &Options) -> Judged {
    let mut j = Judged::default();
    for s in m.sessions.values() {
        let told = m.told(s);
        for (n, (i, what)) in told.iter().enumerate() {
            let Told::Lie(lie) = what else { continue };
            j.judged += 1;
            let ack = &m.requests[*i];
            // What the client did next on the session, once it could read the lie.
            let Some(&k) = s.requests.iter().find(|&&k| {
                k > *i && m.answered_before(*i, k) && !m.requests[k].is(PacketType::Ping)
            }) else {
                continue;
            };
            let next = &m.requests[k];
            let truthful_since = told[n + 1..]
                .iter()
                .any(|(t, told)| *t < k && matches!(told, Told::Offset(_)));
            if truthful_since {
                continue;
            }
            if next.is(PacketType::CloseSession) {
                j.findings.push(finding(
                    format!("closed the session right after a lying Ack ({lie}), as if the upload were complete"),
                    Some(s),
                    vec![ack.seq, next.seq],
                ));
            } else if let (Some(claimed), Some(range)) =
                (ack.ack.as_ref().and_then(|a| a.offset()), next.range)
                && next.is(PacketType::Fragment)
                && range.first == claimed
                && range.first > ack.range.map_or(0, |r| r.end())
            {
                j.findings.push(finding(
                    format!("believed a lying Ack ({lie}) and skipped ahead to byte {claimed}"),
                    Some(s),
                    vec![ack.seq, next.seq],
                ));
            }
        }
    }
    j
}

/// The committed file equals the source.
pub fn upload_intact(m: &Model, o: &Options) -> Judged {
    let mut j = Judged::default();
    let Some(source) = &o.source else { return j };
    for s in m.sessions.values() {
        let Some((path, digest)) = &s.committed else {
            continue;
        };
        let digest = o.stored.get(path).or(digest.as_ref());
        let Some(digest) = digest else { continue };
        j.judged += 1;
        if !digest.eq_ignore_ascii_case(&source.sha256) {
            j.findings.push(finding(
                format!(
                    "the committed file {path} differs from the source (SHA-256 {} instead of {})",
                    short(digest),
                    short(&source.sha256)
                ),
                Some(s),
                vec![s.ended.as_ref().map_or(s.created_seq, |e| e.0)],
            ));
        }
    }
    j
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}
