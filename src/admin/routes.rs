//! The pure half of the control API: a request's parts → a validated [`Command`], or an
//! [`AdminError`] that says which 4xx to answer and why. No sockets, no server, no clock:
//! the `admin` fuzz target drives [`route`] and [`authorize`] with arbitrary bytes.
//!
//! ```text
//! GET    /health                 GET /config            GET /metrics
//! GET    /sessions               DELETE /sessions/{id}
//! GET    /journal?since=&session=&packet=&limit=&wait=
//! GET    /uploads
//! GET    /rules   PUT /rules     POST /rules            DELETE /rules/{id}
//! POST   /reset?uploads=true     POST /shutdown
//! ```

use crate::fault::Rule;
use crate::fault::profile::{self, ProfileError};
use crate::journal::{Event, What};
use crate::proto::{PacketType, SessionId};
use crate::units::parse_duration;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::Duration;

/// Largest request body the control API reads (a profile is a few KiB).
pub const MAX_BODY: usize = 1 << 20;

/// Longest `wait` a journal long-poll may ask for; longer asks are cut to this, so a
/// forgotten poller cannot pin a connection for hours.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// Rule lines one `PUT /rules` may carry; more is a mistake, not a test.
pub const MAX_RULES: usize = 10_000;

/// Origin of rules that arrive through the control API, as their errors and `origin` show it.
pub const PUT_ORIGIN: &str = "PUT /rules";
pub const POST_ORIGIN: &str = "POST /rules";

/// A request as the router sees it: everything already split, nothing validated.
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a> {
    pub method: &'a str,
    /// The URL path, still percent-encoded.
    pub path: &'a str,
    /// The query string without `?` (empty when none).
    pub query: &'a str,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// What a request asks the server to do, validated.
#[derive(Debug, Clone)]
pub enum Command {
    Health,
    Config,
    Sessions,
    ForgetSession(SessionId),
    Journal(JournalQuery),
    Uploads,
    /// `GET /verdict`: the checks over the kept events, in this format.
    Verdict(VerdictQuery),
    Rules,
    SetRules(Vec<Rule>),
    /// Boxed: a rule is large, and every other command small.
    Arm(Box<Arm>),
    Disarm(u64),
    Reset {
        uploads: bool,
    },
    Metrics,
    Shutdown,
}

/// `POST /rules`: one rule to add after the others.
#[derive(Debug, Clone)]
pub struct Arm {
    pub rule: Rule,
    /// The rule had no `name`; the executor names it after its place in the list, as
    /// `--fault` rules are named.
    pub unnamed: bool,
    /// Apply from now for this long (`"for": "10s"`).
    pub window: Option<Duration>,
}

/// `GET /journal`'s parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalQuery {
    /// Events numbered above this.
    pub since: u64,
    pub session: Option<SessionFilter>,
    pub packet: Option<PacketType>,
    /// At most this many events.
    pub limit: Option<usize>,
    /// Long-poll: wait up to this long for a matching event (capped at [`MAX_WAIT`]).
    pub wait: Option<Duration>,
}

/// A session named by its ordinal (1 for the first created) or its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionFilter {
    Ordinal(u64),
    Id(SessionId),
}

impl JournalQuery {
    /// Whether an event passes the `session` and `packet` filters. A packet filter passes
    /// request records of that packet type only; a session filter passes request records and
    /// session events (created, committed, gone, reply served) of that session.
    pub fn matches(&self, event: &Event) -> bool {
        if let Some(packet) = self.packet {
            match &event.what {
                What::Request(r) if r.packet == Some(packet) => {}
                _ => return false,
            }
        }
        let Some(filter) = self.session else {
            return true;
        };
        let session = match &event.what {
            What::Request(r) => r.session,
            What::SessionCreated { session, .. }
            | What::Committed { session, .. }
            | What::SessionGone { session, .. }
            | What::ReplyServed { session, .. }
            | What::Notification { session, .. } => Some(*session),
            _ => None,
        };
        session.is_some_and(|s| match filter {
            SessionFilter::Ordinal(n) => s.ordinal == Some(n),
            SessionFilter::Id(id) => s.id == id,
        })
    }
}

/// Why a request is refused, and so which status it gets.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdminError {
    #[error("no such endpoint: {0}")]
    NotFound(String),
    #[error("{0}")]
    Unknown(String),
    #[error("method {method} is not allowed here (allowed: {allow})")]
    MethodNotAllowed { method: String, allow: &'static str },
    #[error("{message}")]
    BadRequest {
        message: String,
        /// The line of a rule or profile error.
        line: Option<usize>,
    },
    #[error("the body is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("the body did not arrive in time")]
    Timeout,
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
}

impl AdminError {
    pub fn status(&self) -> u16 {
        match self {
            AdminError::NotFound(_) | AdminError::Unknown(_) => 404,
            AdminError::MethodNotAllowed { .. } => 405,
            AdminError::BadRequest { .. } => 400,
            AdminError::TooLarge => 413,
            AdminError::Timeout => 408,
            AdminError::Unauthorized => 401,
            AdminError::Forbidden(_) => 403,
        }
    }

    fn bad(message: impl Into<String>) -> AdminError {
        AdminError::BadRequest {
            message: message.into(),
            line: None,
        }
    }
}

impl From<ProfileError> for AdminError {
    fn from(e: ProfileError) -> AdminError {
        AdminError::BadRequest {
            message: e.to_string(),
            line: Some(e.line),
        }
    }
}

/// An answer, before it meets hyper: status, extra headers, content type and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: value.to_string().into_bytes(),
        }
    }

    /// `{"error": "..."}` (plus `line` for rule errors), with `Allow` on a 405 and
    /// `WWW-Authenticate` on a 401.
    pub fn error(e: &AdminError) -> Reply {
        let mut body = serde_json::json!({ "error": e.to_string() });
        if let AdminError::BadRequest {
            line: Some(line), ..
        } = e
        {
            body["line"] = (*line).into();
        }
        let mut reply = Reply::json(e.status(), &body);
        match e {
            AdminError::MethodNotAllowed { allow, .. } => {
                reply.headers.push(("Allow", (*allow).to_owned()));
            }
            AdminError::Unauthorized => {
                reply
                    .headers
                    .push(("WWW-Authenticate", "Bearer realm=\"bitsmock\"".to_owned()));
            }
            _ => {}
        }
        reply
    }
}

/// Who may ask. With a token, every request must carry `Authorization: Bearer TOKEN`, from
/// anywhere. Without one, only loopback peers are served, and requests a web page could send
/// (they carry `Origin`) are refused, so a page in the tester's browser cannot steer or stop
/// the server behind their back.
pub fn authorize(
    peer: IpAddr,
    token: Option<&str>,
    authorization: Option<&[u8]>,
    origin: bool,
) -> Result<(), AdminError> {
    match token {
        Some(token) => {
            let given = authorization
                .and_then(|v| strip_prefix_ignore_case(v, b"bearer "))
                .map(<[u8]>::trim_ascii);
            match given {
                Some(given) if same_secret(given, token.as_bytes()) => Ok(()),
                _ => Err(AdminError::Unauthorized),
            }
        }
        None if !peer.to_canonical().is_loopback() => Err(AdminError::Forbidden(
            "the control API serves only loopback peers unless it has a token (--admin-token)",
        )),
        None if origin => Err(AdminError::Forbidden(
            "requests from web pages (with Origin) need a token (--admin-token)",
        )),
        None => Ok(()),
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// Compares two secrets in time that depends on neither: both are hashed first, so the
/// comparison runs over 32 bytes whatever their lengths, and every byte is looked at.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(given);
    let b = Sha256::digest(expected);
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The one router: method and path pick the endpoint, then its query and body are parsed.
pub fn route(raw: &Raw<'_>) -> Result<Command, AdminError> {
    let segments: Vec<String> = match raw.path.strip_prefix('/') {
        Some(rest) => rest
            .split('/')
            .map(percent_decode)
            .collect::<Result<_, _>>()?,
        None => return Err(AdminError::NotFound(shown(raw.path))),
    };
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = raw.method;
    let not_allowed = |allow: &'static str| AdminError::MethodNotAllowed {
        method: shown(method),
        allow,
    };
    let query = Query::parse(raw.query)?;
    let command = match (parts.as_slice(), method) {
        (["health"], "GET") => Command::Health,
        (["health"], _) => return Err(not_allowed("GET")),
        (["config"], "GET") => Command::Config,
        (["config"], _) => return Err(not_allowed("GET")),
        (["metrics"], "GET") => Command::Metrics,
        (["metrics"], _) => return Err(not_allowed("GET")),
        (["sessions"], "GET") => Command::Sessions,
        (["sessions"], _) => return Err(not_allowed("GET")),
        (["sessions", id], "DELETE") => Command::ForgetSession(
            SessionId::parse(id)
                .ok_or_else(|| AdminError::bad(format!("{} is not a session id", shown(id))))?,
        ),
        (["sessions", _], _) => return Err(not_allowed("DELETE")),
        (["journal"], "GET") => Command::Journal(journal_query(&query)?),
        (["journal"], _) => return Err(not_allowed("GET")),
        (["uploads"], "GET") => Command::Uploads,
        (["uploads"], _) => return Err(not_allowed("GET")),
        (["verdict"], "GET") => Command::Verdict(verdict_query(&query)?),
        (["verdict"], _) => return Err(not_allowed("GET")),
        (["rules"], "GET") => Command::Rules,
        (["rules"], "PUT") => Command::SetRules(put_rules(raw)?),
        (["rules"], "POST") => Command::Arm(Box::new(post_rule(raw)?)),
        (["rules"], _) => return Err(not_allowed("GET, PUT, POST")),
        (["rules", id], "DELETE") => Command::Disarm(
            id.parse()
                .map_err(|_| AdminError::bad(format!("{} is not a rule id", shown(id))))?,
        ),
        (["rules", _], _) => return Err(not_allowed("DELETE")),
        (["reset"], "POST") => Command::Reset {
            uploads: query.flag("uploads")?.unwrap_or(false),
        },
        (["reset"], _) => return Err(not_allowed("POST")),
        (["shutdown"], "POST") => Command::Shutdown,
        (["shutdown"], _) => return Err(not_allowed("POST")),
        _ => return Err(AdminError::NotFound(shown(raw.path))),
    };
    // Only /journal, /verdict and /reset take parameters; elsewhere one is a typo worth
    // hearing about.
    query.only(match command {
        Command::Journal(_) => &["since", "session", "packet", "limit", "wait"],
        Command::Verdict(_) => &["format", "backoff-floor"],
        Command::Reset { .. } => &["uploads"],
        _ => &[],
    })?;
    Ok(command)
}

/// Text from a request, cut short and debug-quoted for an error message.
fn shown(text: &str) -> String {
    let cut: String = text.chars().take(100).collect();
    format!("{cut:?}")
}

/// `%XX` → the byte; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, AdminError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    AdminError::bad(format!("bad percent-encoding in {}", shown(text)))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| AdminError::bad(format!("{} is not UTF-8 once decoded", shown(text))))
}

/// A query string's `key=value` pairs, decoded; a key may appear once.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(text: &str) -> Result<Query, AdminError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(key)?;
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(AdminError::bad(format!("`{}` is given twice", shown(&key))));
            }
            pairs.push((key, percent_decode(value)?));
        }
        Ok(Query(pairs))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn only(&self, known: &[&str]) -> Result<(), AdminError> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some((key, _)) if known.is_empty() => Err(AdminError::bad(format!(
                "this endpoint takes no parameters, not {}",
                shown(key)
            ))),
            Some((key, _)) => Err(AdminError::bad(format!(
                "unknown parameter {}; known: {}",
                shown(key),
                known.join(", ")
            ))),
        }
    }

    fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, AdminError> {
        self.get(key)
            .map(|v| {
                v.trim().parse().map_err(|_| {
                    AdminError::bad(format!("`{key}` must be a whole number, not {}", shown(v)))
                })
            })
            .transpose()
    }

    fn flag(&self, key: &str) -> Result<Option<bool>, AdminError> {
        self.get(key)
            .map(|v| match v {
                "true" | "1" | "" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(AdminError::bad(format!(
                    "`{key}` must be true or false, not {}",
                    shown(v)
                ))),
            })
            .transpose()
    }
}

/// `GET /verdict?format=json|text|junit&backoff-floor=DUR`.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictQuery {
    pub format: VerdictFormat,
    pub backoff_floor: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictFormat {
    Json,
    Text,
    Junit,
}

fn verdict_query(query: &Query) -> Result<VerdictQuery, AdminError> {
    let format = match query.get("format").map(str::trim) {
        None | Some("json") => VerdictFormat::Json,
        Some("text") => VerdictFormat::Text,
        Some("junit") => VerdictFormat::Junit,
        Some(other) => {
            return Err(AdminError::bad(format!(
                "`format` must be json, text or junit, not {}",
                shown(other)
            )));
        }
    };
    let backoff_floor = query
        .get("backoff-floor")
        .map(|v| {
            crate::units::parse_duration(v.trim())
                .map_err(|e| AdminError::bad(format!("`backoff-floor`: {e}")))
        })
        .transpose()?;
    Ok(VerdictQuery {
        format,
        backoff_floor,
    })
}

fn journal_query(query: &Query) -> Result<JournalQuery, AdminError> {
    let session = query
        .get("session")
        .map(|v| {
            let v = v.trim();
            v.parse()
                .map(SessionFilter::Ordinal)
                .ok()
                .or_else(|| SessionId::parse(v).map(SessionFilter::Id))
                .ok_or_else(|| {
                    AdminError::bad(format!(
                        "`session` must be an ordinal or a session id, not {}",
                        shown(v)
                    ))
                })
        })
        .transpose()?;
    let packet = query
        .get("packet")
        .map(|v| {
            PacketType::parse(v.trim()).ok_or_else(|| {
                let names: Vec<String> = PacketType::ALL
                    .iter()
                    .map(|p| p.as_str().to_ascii_lowercase())
                    .collect();
                AdminError::bad(format!(
                    "`packet` must be one of {}, not {}",
                    names.join(", "),
                    shown(v)
                ))
            })
        })
        .transpose()?;
    let wait = query
        .get("wait")
        .map(|v| {
            parse_duration(v)
                .map(|d| d.min(MAX_WAIT))
                .map_err(|e| AdminError::bad(format!("`wait`: {e}")))
        })
        .transpose()?;
    Ok(JournalQuery {
        since: query.number("since")?.unwrap_or(0),
        session,
        packet,
        limit: match query.number("limit")? {
            Some(0) => return Err(AdminError::bad("`limit` must be at least 1")),
            limit => limit,
        },
        wait,
    })
}

/// A JSON body (`application/json` or `…+json`), as opposed to a rule or profile as text.
fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|t| {
        let essence = t.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case("application/json")
            || essence
                .get(essence.len().saturating_sub(5)..)
                .is_some_and(|tail| tail.eq_ignore_ascii_case("+json"))
    })
}

fn text_body<'a>(raw: &Raw<'a>) -> Result<&'a str, AdminError> {
    std::str::from_utf8(raw.body)
        .map_err(|e| AdminError::bad(format!("the body is not UTF-8: {e}")))
}

fn json_body(raw: &Raw<'_>) -> Result<serde_json::Map<String, serde_json::Value>, AdminError> {
    match serde_json::from_slice(raw.body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(AdminError::bad("the body must be a JSON object")),
        Err(e) => Err(AdminError::BadRequest {
            message: format!("the body is not JSON: {e}"),
            line: Some(e.line()),
        }),
    }
}

/// Keys of a JSON body besides these are errors, as unknown profile keys are.
fn only_keys(
    map: &serde_json::Map<String, serde_json::Value>,
    known: &[&str],
) -> Result<(), AdminError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(AdminError::bad(format!(
            "unknown key {}; known: {}",
            shown(key),
            known.join(", ")
        ))),
    }
}

/// `PUT /rules`: a TOML profile (only its rules are taken), or `{"rules": [rule, …]}` where
/// each rule is a one-line string or an object of `[[rule]]` keys.
fn put_rules(raw: &Raw<'_>) -> Result<Vec<Rule>, AdminError> {
    if !is_json(raw.content_type) {
        return Ok(profile::parse(text_body(raw)?, PUT_ORIGIN)?.rules);
    }
    let map = json_body(raw)?;
    only_keys(&map, &["rules"])?;
    let Some(serde_json::Value::Array(rules)) = map.get("rules") else {
        return Err(AdminError::bad(
            "`rules` must be an array of rules (one-line strings or objects)",
        ));
    };
    if rules.len() > MAX_RULES {
        return Err(AdminError::bad(format!("more than {MAX_RULES} rules")));
    }
    rules
        .iter()
        .enumerate()
        .map(|(i, rule)| Ok(profile::parse_rule_json(rule, PUT_ORIGIN, i + 1)?))
        .collect()
}

/// Unnamed one-line rules get this position, so the router can tell them apart (a rule
/// named exactly `rule 0` by hand is renamed too, which costs nothing).
const UNNAMED: &str = "rule 0";

/// `POST /rules`: one rule line as text, or `{"rule": R, "times": N, "for": "10s"}` where R
/// is a one-line string or an object of `[[rule]]` keys.
fn post_rule(raw: &Raw<'_>) -> Result<Arm, AdminError> {
    let line = |line: &str| profile::parse_rule_line_at(line, POST_ORIGIN, 1, 0);
    if !is_json(raw.content_type) {
        let rule = line(text_body(raw)?.trim())?;
        return Ok(Arm {
            unnamed: rule.name == UNNAMED,
            rule,
            window: None,
        });
    }
    let map = json_body(raw)?;
    only_keys(&map, &["rule", "times", "for"])?;
    let (mut rule, unnamed) = match map.get("rule") {
        Some(serde_json::Value::String(text)) => {
            let rule = line(text)?;
            let unnamed = rule.name == UNNAMED;
            (rule, unnamed)
        }
        Some(object @ serde_json::Value::Object(keys)) => (
            profile::parse_rule_json(object, POST_ORIGIN, 1)?,
            !keys.contains_key("name"),
        ),
        _ => {
            return Err(AdminError::bad(
                "`rule` must be a one-line rule (a string) or an object of rule keys",
            ));
        }
    };
    match map.get("times") {
        None | Some(serde_json::Value::Null) => {}
        Some(times) => match times.as_u64() {
            Some(n) if n > 0 => rule.times = Some(n),
            _ => {
                return Err(AdminError::bad(
                    "`times` must be a whole number of at least 1",
                ));
            }
        },
    }
    let window = match map.get("for") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(text)) => {
            Some(parse_duration(text).map_err(|e| AdminError::bad(format!("`for`: {e}")))?)
        }
        Some(_) => {
            return Err(AdminError::bad("`for` must be a duration such as \"10s\""));
        }
    };
    Ok(Arm {
        rule,
        unnamed,
        window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn raw<'a>(method: &'a str, target: &'a str, body: &'a str) -> Raw<'a> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Raw {
            method,
            path,
            query,
            content_type: None,
            body: body.as_bytes(),
        }
    }

    fn json<'a>(method: &'a str, target: &'a str, body: &'a str) -> Raw<'a> {
        Raw {
            content_type: Some("application/json; charset=utf-8"),
            ..raw(method, target, body)
        }
    }

    fn status(r: Result<Command, AdminError>) -> u16 {
        r.map_or_else(|e| e.status(), |_| 200)
    }

    #[test]
    fn unknown_paths_are_404_and_known_paths_with_the_wrong_method_are_405_with_allow() {
        assert_eq!(status(route(&raw("GET", "/nope", ""))), 404);
        assert_eq!(status(route(&raw("GET", "health", ""))), 404);
        assert_eq!(status(route(&raw("GET", "/health/", ""))), 404);
        let e = route(&raw("POST", "/health", "")).unwrap_err();
        assert_eq!(e.status(), 405);
        let reply = Reply::error(&e);
        assert_eq!(reply.headers, vec![("Allow", "GET".to_owned())]);
        let e = route(&raw("PATCH", "/rules", "")).unwrap_err();
        assert_eq!(
            e,
            AdminError::MethodNotAllowed {
                method: "\"PATCH\"".into(),
                allow: "GET, PUT, POST"
            }
        );
    }

    #[test]
    fn session_ids_are_accepted_in_any_case_with_or_without_braces_and_percent_encoded() {
        let id = "{ABABABAB-ABAB-4BAB-ABAB-ABABABABABAB}";
        let want = SessionId::parse(id).unwrap();
        for target in [
            "/sessions/{ABABABAB-ABAB-4BAB-ABAB-ABABABABABAB}",
            "/sessions/%7Babababab-abab-4bab-abab-abababababab%7D",
            "/sessions/abababab-abab-4bab-abab-abababababab",
        ] {
            match route(&raw("DELETE", target, "")) {
                Ok(Command::ForgetSession(got)) => assert_eq!(got, want, "{target}"),
                other => panic!("{target}: {other:?}"),
            }
        }
        assert_eq!(status(route(&raw("DELETE", "/sessions/abababab", ""))), 400);
        assert_eq!(status(route(&raw("DELETE", "/sessions/%zz", ""))), 400);
        assert_eq!(status(route(&raw("DELETE", "/sessions/%FF", ""))), 400);
    }

    #[test]
    fn journal_parameters_are_parsed_and_bad_ones_are_named() {
        let q = match route(&raw(
            "GET",
            "/journal?since=7&session=2&packet=create-session&limit=5&wait=1500ms",
            "",
        )) {
            Ok(Command::Journal(q)) => q,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            q,
            JournalQuery {
                since: 7,
                session: Some(SessionFilter::Ordinal(2)),
                packet: Some(PacketType::CreateSession),
                limit: Some(5),
                wait: Some(Duration::from_millis(1500)),
            }
        );
        let q = match route(&raw(
            "GET",
            "/journal?wait=99h&session=%7BABABABAB-ABAB-4BAB-ABAB-ABABABABABAB%7D",
            "",
        )) {
            Ok(Command::Journal(q)) => q,
            other => panic!("{other:?}"),
        };
        assert_eq!(q.wait, Some(MAX_WAIT));
        assert!(matches!(q.session, Some(SessionFilter::Id(_))));
        for (method, target, needle) in [
            ("GET", "/journal?since=x", "`since`"),
            ("GET", "/journal?packet=pong", "fragment"),
            ("GET", "/journal?session=nobody", "`session`"),
            ("GET", "/journal?wait=soon", "`wait`"),
            ("GET", "/journal?limit=1&limit=2", "twice"),
            ("GET", "/journal?limit=0", "at least 1"),
            ("GET", "/journal?sinse=1", "unknown parameter"),
            ("GET", "/health?x=1", "no parameters"),
            ("POST", "/reset?uploads=maybe", "true or false"),
        ] {
            let e = route(&raw(method, target, "")).unwrap_err();
            assert_eq!(e.status(), 400, "{target}");
            assert!(e.to_string().contains(needle), "{target}: {e}");
        }
    }

    #[test]
    fn put_rules_takes_a_profile_or_json_rule_lines_and_errors_name_the_line() {
        let profile =
            "name = \"p\"\ndescription = \"d\"\n[[rule]]\nfault = \"delay\"\ndelay = \"1ms\"\n";
        match route(&raw("PUT", "/rules", profile)) {
            Ok(Command::SetRules(rules)) => {
                assert_eq!(rules.len(), 1);
                assert_eq!(rules[0].origin, "PUT /rules:3");
            }
            other => panic!("{other:?}"),
        }
        let bad = "name = \"p\"\ndescription = \"d\"\n[[rule]]\nfault = \"delay\"\ndelay = \"1ms\"\nfualt = 1\n";
        let e = route(&raw("PUT", "/rules", bad)).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().starts_with("PUT /rules:6: "), "{e}");
        let body = serde_json::from_slice::<serde_json::Value>(&Reply::error(&e).body).unwrap();
        assert_eq!(body["line"], 6);

        let lines = r#"{"rules": ["fault=delay delay=1ms", "packet=fragment fault=lose-ack"]}"#;
        match route(&json("PUT", "/rules", lines)) {
            Ok(Command::SetRules(rules)) => assert_eq!(rules.len(), 2),
            other => panic!("{other:?}"),
        }
        let e = route(&json(
            "PUT",
            "/rules",
            r#"{"rules": ["fault=delay delay=1ms", "fault=nope"]}"#,
        ))
        .unwrap_err();
        assert!(e.to_string().starts_with("PUT /rules:2: "), "{e}");
        for body in [
            r#"{"rules": [1]}"#,
            r#"{"rule": []}"#,
            "[]",
            "{",
            r#"{"rules": "x"}"#,
        ] {
            assert_eq!(status(route(&json("PUT", "/rules", body))), 400, "{body}");
        }
    }

    #[test]
    fn post_rules_arms_one_line_with_times_and_a_window() {
        match route(&raw("POST", "/rules", "  fault=delay delay=1ms\n")) {
            Ok(Command::Arm(arm)) => {
                assert!(arm.unnamed);
                assert_eq!(arm.window, None);
                assert_eq!(arm.rule.origin, "POST /rules:1");
            }
            other => panic!("{other:?}"),
        }
        let body = r#"{"rule": "name=slow fault=delay delay=1ms", "times": 2, "for": "10s"}"#;
        match route(&json("POST", "/rules", body)) {
            Ok(Command::Arm(arm)) => {
                assert!(!arm.unnamed);
                assert_eq!(arm.rule.name, "slow");
                assert_eq!(arm.rule.times, Some(2));
                assert_eq!(arm.window, Some(Duration::from_secs(10)));
            }
            other => panic!("{other:?}"),
        }
        let object =
            r#"{"rule": {"packet": "ping", "fault": "status", "status": 503}, "times": 1}"#;
        match route(&json("POST", "/rules", object)) {
            Ok(Command::Arm(arm)) => {
                assert!(arm.unnamed);
                assert_eq!(arm.rule.times, Some(1));
                assert_eq!(arm.rule.fault.kind(), "status");
            }
            other => panic!("{other:?}"),
        }
        let named = r#"{"rule": {"name": "down", "fault": "status", "status": 503}}"#;
        assert!(matches!(
            route(&json("POST", "/rules", named)),
            Ok(Command::Arm(arm)) if !arm.unnamed
        ));
        for body in [
            r#"{"rule": "fault=delay delay=1ms", "times": 0}"#,
            r#"{"rule": "fault=delay delay=1ms", "times": -1}"#,
            r#"{"rule": "fault=delay delay=1ms", "for": 10}"#,
            r#"{"rule": "fault=delay delay=1ms", "for": "ever"}"#,
            r#"{"rule": "fault=delay delay=1ms", "extra": 1}"#,
            r#"{"rule": 5}"#,
            r#"{"rule": {"fault": "delay", "delay": null}}"#,
        ] {
            assert_eq!(status(route(&json("POST", "/rules", body))), 400, "{body}");
        }
        let e = route(&raw("POST", "/rules", "fault=explode")).unwrap_err();
        assert!(e.to_string().starts_with("POST /rules:1: "), "{e}");
    }

    #[test]
    fn rule_ids_must_be_numbers() {
        assert!(matches!(
            route(&raw("DELETE", "/rules/3", "")),
            Ok(Command::Disarm(3))
        ));
        assert_eq!(status(route(&raw("DELETE", "/rules/three", ""))), 400);
        assert_eq!(status(route(&raw("GET", "/rules/3", ""))), 405);
    }

    #[test]
    fn a_token_is_required_from_everyone_once_configured() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let far = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(authorize(lo, None, None, false), Ok(()));
        assert_eq!(authorize(mapped, None, None, false), Ok(()));
        assert_eq!(
            authorize(far, None, None, false).map_err(|e| e.status()),
            Err(403)
        );
        assert_eq!(
            authorize(lo, None, None, true).map_err(|e| e.status()),
            Err(403)
        );
        let t = Some("s3cret");
        assert_eq!(authorize(far, t, Some(b"Bearer s3cret"), false), Ok(()));
        assert_eq!(authorize(lo, t, Some(b"bearer  s3cret "), true), Ok(()));
        for bad in [
            &b"Bearer s3cre"[..],
            b"Bearer s3crett",
            b"Basic s3cret",
            b"s3cret",
            b"Bearer",
        ] {
            assert_eq!(
                authorize(lo, t, Some(bad), false),
                Err(AdminError::Unauthorized)
            );
        }
        assert_eq!(authorize(lo, t, None, false), Err(AdminError::Unauthorized));
        let reply = Reply::error(&AdminError::Unauthorized);
        assert_eq!(reply.status, 401);
        assert!(
            reply
                .headers
                .iter()
                .any(|(n, v)| *n == "WWW-Authenticate" && v.starts_with("Bearer"))
        );
    }

    #[test]
    fn json_content_types_are_recognized_by_their_essence() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON ; charset=utf-8")));
        assert!(is_json(Some("application/vnd.x+json")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(Some("application/toml")));
        assert!(!is_json(None));
    }
}
