//! What the reference client makes of an answer: the reaction tables of docs/protocol.md §9.3 and
//! the transient/fatal split of §8.5 and §9.4, plus the checks that keep it from believing a
//! lying Ack. Pure: no I/O, no clock; the uploader in [`super`] acts on the values returned.

use crate::proto::PacketType;
use std::time::Duration;

/// `BG_E_SESSION_NOT_FOUND`: the session is gone; start over (except for Cancel-Session).
pub const SESSION_NOT_FOUND: u32 = 0x8020_001F;
/// `BG_E_TOO_LARGE`: the file exceeds the server's maximum upload size.
pub const TOO_LARGE: u32 = 0x8020_0020;
/// `E_INVALIDARG`: the server considers the request invalid.
pub const INVALID_ARG: u32 = 0x8007_0057;
/// `E_ACCESSDENIED`: the caller may not upload here (403) or uploads are disabled (501).
pub const ACCESS_DENIED: u32 = 0x8007_0005;
/// `ERROR_DISK_FULL` as an HRESULT.
pub const DISK_FULL: u32 = 0x8007_0112;
/// `BG_E_CLIENT_SERVER_PROTOCOL_MISMATCH`: no protocol could be negotiated.
pub const PROTOCOL_MISMATCH: u32 = 0x8020_0022;
/// `BG_E_LOCAL_FILE_CHANGED`: the source file changed during the upload.
pub const LOCAL_FILE_CHANGED: u32 = 0x8020_001D;
/// `BG_E_MISSING_FILE_SIZE`: reply download without `Content-Length`.
pub const MISSING_FILE_SIZE: u32 = 0x8020_0011;
/// `BG_E_INSUFFICIENT_RANGE_SUPPORT`: reply download whose server ignores ranges.
pub const INSUFFICIENT_RANGE_SUPPORT: u32 = 0x8020_0013;

/// `BG_E_HTTP_ERROR_<status>`: what a failure without a BITS error code becomes (§5.4).
pub fn http_error(status: u16) -> u32 {
    0x8019_0000 + u32::from(status)
}

/// The symbolic name of an HRESULT the client may report, for messages.
pub fn code_name(code: u32) -> String {
    match code {
        SESSION_NOT_FOUND => "BG_E_SESSION_NOT_FOUND".into(),
        TOO_LARGE => "BG_E_TOO_LARGE".into(),
        INVALID_ARG => "E_INVALIDARG".into(),
        ACCESS_DENIED => "E_ACCESSDENIED".into(),
        DISK_FULL => "ERROR_DISK_FULL".into(),
        PROTOCOL_MISMATCH => "BG_E_CLIENT_SERVER_PROTOCOL_MISMATCH".into(),
        LOCAL_FILE_CHANGED => "BG_E_LOCAL_FILE_CHANGED".into(),
        MISSING_FILE_SIZE => "BG_E_MISSING_FILE_SIZE".into(),
        INSUFFICIENT_RANGE_SUPPORT => "BG_E_INSUFFICIENT_RANGE_SUPPORT".into(),
        c if (0x8019_0064..=0x8019_03E7).contains(&c) => {
            format!("BG_E_HTTP_ERROR_{}", c - 0x8019_0000)
        }
        _ => "an HRESULT".into(),
    }
}

/// `0x8020001F (BG_E_SESSION_NOT_FOUND)`.
pub fn describe_code(code: u32) -> String {
    format!("0x{code:08X} ({})", code_name(code))
}

/// `401 Unauthorized`.
pub fn describe_status(status: u16) -> String {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("{status} {reason}").trim_end().to_owned()
}

/// The client's reaction to one answered request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The packet did what it should; validate the Ack and carry on.
    Success,
    /// 416 on a Fragment: continue from the offset the Ack names.
    Reposition,
    /// 413 on a Fragment: resend in smaller pieces.
    Shrink,
    /// `0x8020001F` on Fragment or Close-Session: new session, restart from byte 0.
    SessionLost,
    /// 401 / 407: answer the challenge, or fail without usable credentials.
    Challenge,
    /// Worth retrying after a delay.
    Transient,
    /// Stop and report.
    Fatal,
}

/// Classifies an answer by packet, HTTP status and `BITS-Error-Code`.
///
/// A BITS error code beats the status: `0x8020001F` restarts (§9.3), `0x80200020`,
/// `0x80070057` and `0x80070005` are fatal whatever status carries them. Otherwise the
/// status decides, as the Windows job layer does (§8.5): 3xx transient except 300–305 and
/// 307; 4xx fatal except 408, 409 (and 429, which asks for exactly that); 5xx transient except
/// 501 and 505. Close- and Cancel-Session are resent on 5xx only (§4.4, §4.5).
pub fn judge(packet: PacketType, status: u16, code: Option<u32>) -> Verdict {
    let success = match packet {
        PacketType::CreateSession => status == 200 || status == 201,
        _ => status == 200,
    };
    if success {
        return Verdict::Success;
    }
    match code {
        Some(SESSION_NOT_FOUND) => {
            return match packet {
                PacketType::Fragment | PacketType::CloseSession => Verdict::SessionLost,
                // Cancelling a session the server no longer has: nothing left to cancel.
                PacketType::CancelSession => Verdict::Success,
                PacketType::Ping | PacketType::CreateSession => Verdict::Transient,
            };
        }
        Some(TOO_LARGE | INVALID_ARG | ACCESS_DENIED) => return Verdict::Fatal,
        _ => {}
    }
    match status {
        401 | 407 => Verdict::Challenge,
        413 if packet == PacketType::Fragment => Verdict::Shrink,
        416 if packet == PacketType::Fragment => Verdict::Reposition,
        500..=599 if matches!(packet, PacketType::CloseSession | PacketType::CancelSession) => {
            if status == 501 || status == 505 {
                Verdict::Fatal
            } else {
                Verdict::Transient
            }
        }
        _ if matches!(packet, PacketType::CloseSession | PacketType::CancelSession) => {
            Verdict::Fatal
        }
        300..=305 | 307 => Verdict::Fatal,
        300..=399 => Verdict::Transient,
        408 | 409 | 429 => Verdict::Transient,
        400..=499 => Verdict::Fatal,
        501 | 505 => Verdict::Fatal,
        // Everything else, 2xx other than success included, is worth another try.
        _ => Verdict::Transient,
    }
}

/// Parses `BITS-Received-Content-Range`: one decimal byte offset (§4.3).
pub fn received_offset(raw: Option<&[u8]>) -> Result<u64, String> {
    let Some(raw) = raw else {
        return Err("the Ack has no BITS-Received-Content-Range".into());
    };
    let text = std::str::from_utf8(raw).unwrap_or("").trim();
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "malformed BITS-Received-Content-Range `{}`",
            String::from_utf8_lossy(raw)
                .chars()
                .take(64)
                .collect::<String>()
        ));
    }
    text.parse::<u64>()
        .map_err(|_| format!("BITS-Received-Content-Range `{text}` is out of range"))
}

/// Checks an offset the server claims to hold against what the client ever sent in this
/// session (`sent`: one past the highest byte put on the wire) and the file size.
///
/// An offset behind is believed (the server may have lost bytes); one beyond `sent` cannot be
/// true, since the server cannot hold bytes nobody sent it.
pub fn plausible_offset(offset: u64, sent: u64, total: u64) -> Result<u64, String> {
    if offset > total {
        return Err(format!(
            "BITS-Received-Content-Range {offset} is beyond the file's {total} bytes"
        ));
    }
    if offset > sent {
        return Err(format!(
            "BITS-Received-Content-Range {offset} is ahead of the {sent} bytes sent so far"
        ));
    }
    Ok(offset)
}

/// An Ack may omit `BITS-Session-Id` (the spec's samples do), but must not name another one.
/// Ids are GUIDs: the same with or without braces, in any letter case (a Create-Session Ack
/// that dropped the braces must not make every later, truthful Ack look like a lie).
pub fn same_session(echoed: Option<&str>, ours: &str) -> Result<(), String> {
    let bare = |id: &str| {
        let id = id.trim();
        id.strip_prefix('{')
            .and_then(|i| i.strip_suffix('}'))
            .unwrap_or(id)
            .to_ascii_uppercase()
    };
    match echoed.map(str::trim) {
        None => Ok(()),
        Some(id) if bare(id) == bare(ours) => Ok(()),
        Some(id) => Err(format!(
            "the Ack names session {} instead of {ours}",
            id.chars().take(100).collect::<String>()
        )),
    }
}

/// Whether `BITS-Packet-Type` says `Ack` (any letter case).
pub fn is_ack(packet_type: Option<&str>) -> bool {
    packet_type.is_some_and(|t| t.trim().eq_ignore_ascii_case("Ack"))
}

/// The wait before the `failures`-th consecutive retry: `base · 2^(failures-1)`, capped,
/// scaled by `jitter` (0–1) into its upper half so that many clients do not retry in step.
pub fn backoff(base: Duration, cap: Duration, failures: u32, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exp).min(cap);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// `Retry-After` in delta-seconds (the HTTP-date form is ignored).
pub fn retry_after(raw: Option<&str>) -> Option<Duration> {
    let text = raw?.trim();
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use PacketType::*;

    #[test]
    fn success_is_200_and_create_may_also_say_201() {
        assert_eq!(judge(Fragment, 200, None), Verdict::Success);
        assert_eq!(judge(CreateSession, 201, None), Verdict::Success);
        assert_eq!(judge(Fragment, 201, None), Verdict::Transient);
        assert_eq!(judge(Fragment, 204, None), Verdict::Transient);
    }

    #[test]
    fn session_not_found_restarts_fragment_and_close_but_not_cancel() {
        assert_eq!(
            judge(Fragment, 500, Some(SESSION_NOT_FOUND)),
            Verdict::SessionLost
        );
        assert_eq!(
            judge(CloseSession, 500, Some(SESSION_NOT_FOUND)),
            Verdict::SessionLost
        );
        assert_eq!(
            judge(CancelSession, 500, Some(SESSION_NOT_FOUND)),
            Verdict::Success
        );
    }

    #[test]
    fn fatal_codes_win_over_a_transient_status() {
        assert_eq!(judge(Fragment, 500, Some(TOO_LARGE)), Verdict::Fatal);
        assert_eq!(judge(Fragment, 503, Some(INVALID_ARG)), Verdict::Fatal);
        assert_eq!(
            judge(CreateSession, 501, Some(ACCESS_DENIED)),
            Verdict::Fatal
        );
        assert_eq!(judge(Fragment, 500, Some(DISK_FULL)), Verdict::Transient);
        // The server's session limit and descriptor shortage (E_OUTOFMEMORY): retry later.
        assert_eq!(
            judge(CreateSession, 500, Some(0x8007_000E)),
            Verdict::Transient
        );
        assert_eq!(judge(Fragment, 500, Some(0x8007_000E)), Verdict::Transient);
    }

    #[test]
    fn statuses_follow_the_windows_job_layer() {
        for s in [400, 403, 404, 405, 411, 501, 505, 300, 305, 307] {
            assert_eq!(judge(Fragment, s, None), Verdict::Fatal, "{s}");
        }
        for s in [408, 409, 429, 500, 502, 503, 504, 306, 308] {
            assert_eq!(judge(Fragment, s, None), Verdict::Transient, "{s}");
        }
        assert_eq!(judge(Fragment, 413, None), Verdict::Shrink);
        assert_eq!(judge(Fragment, 416, None), Verdict::Reposition);
        assert_eq!(judge(CreateSession, 413, None), Verdict::Fatal);
        assert_eq!(judge(Ping, 401, None), Verdict::Challenge);
    }

    #[test]
    fn close_is_resent_on_5xx_only() {
        assert_eq!(judge(CloseSession, 503, None), Verdict::Transient);
        assert_eq!(
            judge(CloseSession, 500, Some(DISK_FULL)),
            Verdict::Transient
        );
        assert_eq!(judge(CloseSession, 408, None), Verdict::Fatal);
        assert_eq!(judge(CloseSession, 409, None), Verdict::Fatal);
        assert_eq!(judge(CloseSession, 404, None), Verdict::Fatal);
        assert_eq!(judge(CloseSession, 501, None), Verdict::Fatal);
        assert_eq!(judge(CloseSession, 401, None), Verdict::Challenge);
    }

    #[test]
    fn received_offsets_must_be_plain_decimal() {
        assert_eq!(received_offset(Some(b"65536")), Ok(65536));
        assert_eq!(received_offset(Some(b" 7 ")), Ok(7));
        assert!(
            received_offset(None)
                .unwrap_err()
                .contains("no BITS-Received")
        );
        for bad in [
            &b"bytes=oops"[..],
            b"",
            b"-1",
            b"12a",
            b"0x10",
            b"99999999999999999999999",
        ] {
            assert!(received_offset(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn offsets_ahead_of_what_was_sent_or_past_the_end_are_rejected() {
        assert_eq!(plausible_offset(50, 100, 1000), Ok(50));
        assert_eq!(plausible_offset(100, 100, 1000), Ok(100));
        assert!(
            plausible_offset(101, 100, 1000)
                .unwrap_err()
                .contains("ahead")
        );
        assert!(
            plausible_offset(1001, 1001, 1000)
                .unwrap_err()
                .contains("beyond")
        );
    }

    #[test]
    fn another_session_id_is_rejected_a_missing_one_is_not() {
        assert!(same_session(None, "{A}").is_ok());
        assert!(same_session(Some("{a}"), "{A}").is_ok());
        assert!(same_session(Some("{B}"), "{A}").is_err());
        // Found by a fuzz-everything campaign (seed 358): braces dropped on Create-Session.
        assert!(same_session(Some("{5A95-ab}"), "5a95-AB").is_ok());
        assert!(same_session(Some(" 5A95 "), "{5a95}").is_ok());
        assert!(same_session(Some("{5A95"), "{5A95}").is_err());
        assert!(same_session(Some("{5A96}"), "5A95").is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let ms = Duration::from_millis;
        assert_eq!(backoff(ms(10), ms(100), 1, 1.0), ms(10));
        assert_eq!(backoff(ms(10), ms(100), 3, 1.0), ms(40));
        assert_eq!(backoff(ms(10), ms(100), 9, 1.0), ms(100));
        assert_eq!(backoff(ms(10), ms(100), 64, 0.0), ms(50));
    }

    #[test]
    fn retry_after_takes_seconds_only() {
        assert_eq!(retry_after(Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
    }

    #[test]
    fn codes_have_names() {
        assert_eq!(http_error(401), 0x8019_0191);
        assert_eq!(code_name(0x8019_0191), "BG_E_HTTP_ERROR_401");
        assert_eq!(describe_code(TOO_LARGE), "0x80200020 (BG_E_TOO_LARGE)");
        assert_eq!(describe_status(416), "416 Range Not Satisfiable");
    }
}
