//! Profiles: TOML text (or `--fault` one-liners, or the control API's JSON rules) → a
//! validated [`Profile`] or [`Rule`]. A rule's `Display` is the one-line syntax again, so a
//! rule shown anywhere (a journal's first line, `GET /rules`) can be pasted back.
//!
//! ```toml
//! name = "lost-acks"
//! description = "Fragments are written but their Acks never arrive."
//! seed = 7
//!
//! [server]
//! session-timeout = "10m"
//!
//! [[rule]]
//! name = "ack lost after write"
//! packet = "fragment"
//! probability = 0.2
//! fault = "lose-ack"
//! how = "reset"
//! ```
//!
//! Every error names where it is: `FILE:LINE: what is wrong`. Unknown keys are errors, and so
//! are keys that do not apply to the rule's fault.

use super::mutate::{Family, MAX_COUNT};
use super::rule::{
    Auth, BadCert, Broken, Dist, Down, Fault, Lie, Loss, Mutate, NotifyFault, Portion, Position,
    Rule, Scheme, SessionLoss, TlsFault, Trigger,
};
use crate::config::{self, Names, Settings, check};
use crate::proto::PacketType;
use crate::units::{parse_duration, parse_size};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;
use toml::Spanned;

/// A validated profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub seed: Option<u64>,
    /// What a correct client achieves through this profile (`expect`, default `survive`).
    pub expect: Expect,
    /// The `[server]` table: the knobs of `bitsmock serve` it sets, already checked.
    pub server: Settings,
    pub rules: Vec<Rule>,
}

/// What a correct client achieves through a profile: `bitsmock exercise` judges by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// The upload completes, byte for byte, within bounded retries.
    #[default]
    Survive,
    /// The upload fails with an error, as documented in the profile's header.
    Fail,
}

impl Expect {
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Survive => "survive",
            Expect::Fail => "fail",
        }
    }
}

/// A problem in a profile, with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    pub origin: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.origin, self.line, self.message)
    }
}

impl std::error::Error for ProfileError {}

type Table = BTreeMap<String, Spanned<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Option<Spanned<String>>,
    description: Option<Spanned<String>>,
    seed: Option<Spanned<toml::Value>>,
    expect: Option<Spanned<String>>,
    server: Option<Spanned<Table>>,
    rule: Option<Vec<Spanned<Table>>>,
}

/// Parses a profile file's text. `origin` names it in errors (usually its path).
pub fn parse(text: &str, origin: &str) -> Result<Profile, ProfileError> {
    let lines = LineIndex::new(text);
    let raw: RawProfile = toml::from_str(text).map_err(|e| ProfileError {
        origin: origin.to_owned(),
        line: e.span().map_or(1, |s| lines.line(s.start)),
        message: e.message().trim().to_owned(),
    })?;
    let err = |line: usize, message: String| ProfileError {
        origin: origin.to_owned(),
        line,
        message,
    };
    let name = raw
        .name
        .ok_or_else(|| err(1, "missing `name`".into()))?
        .into_inner();
    if name.trim().is_empty() {
        return Err(err(1, "`name` must not be empty".into()));
    }
    let description = raw
        .description
        .ok_or_else(|| err(1, "missing `description`".into()))?
        .into_inner();
    let seed = match raw.seed {
        None => None,
        Some(s) => {
            let line = lines.line(s.span().start);
            Some(value_u64(s.get_ref()).map_err(|m| err(line, format!("`seed` {m}")))?)
        }
    };
    let expect = match raw.expect {
        None => Expect::default(),
        Some(e) => match e.get_ref().as_str() {
            "survive" => Expect::Survive,
            "fail" => Expect::Fail,
            other => {
                return Err(err(
                    lines.line(e.span().start),
                    format!("`expect` must be \"survive\" or \"fail\", not \"{other}\""),
                ));
            }
        },
    };
    let server = match raw.server {
        None => Settings::default(),
        Some(table) => {
            let line = lines.line(table.span().start);
            let mut fields = Fields::new(table.into_inner(), &lines, origin, line, "[server]");
            let settings = server_settings(&mut fields)?;
            fields.finish(None)?;
            settings
        }
    };
    let mut rules = Vec::new();
    for (i, table) in raw.rule.unwrap_or_default().into_iter().enumerate() {
        let line = lines.line(table.span().start);
        let fields = Fields::new(table.into_inner(), &lines, origin, line, "rule");
        rules.push(rule(fields, i + 1)?);
    }
    Ok(Profile {
        name,
        description,
        seed,
        expect,
        server,
        rules,
    })
}

/// Parses the one-line rule syntax of `--fault`: space-separated `key=value` pairs with the
/// same keys as a `[[rule]]` table, e.g. `packet=fragment nth=3 fault=lose-ack how=reset`.
/// Values are TOML scalars; bare words are strings; quote values that contain spaces (inside
/// `"…"`, a backslash escapes as in TOML, so `name="say \"hi\""` works).
pub fn parse_rule_line(line: &str, origin: &str, number: usize) -> Result<Rule, ProfileError> {
    parse_rule_line_at(line, origin, number, number)
}

/// [`parse_rule_line`] for a rule that joins a list after others (`--fault` after a profile's
/// rules): `number` locates errors (`--fault:2: …`), while `position`, the rule's place in
/// the whole list as the shutdown report counts it, names a rule without `name` — so two
/// unnamed rules never share a name.
pub fn parse_rule_line_at(
    line: &str,
    origin: &str,
    number: usize,
    position: usize,
) -> Result<Rule, ProfileError> {
    let err = |message: String| ProfileError {
        origin: origin.to_owned(),
        line: number,
        message,
    };
    let mut text = String::new();
    for token in split_words(line).map_err(err)? {
        let (key, value) = token
            .split_once('=')
            .ok_or_else(|| err(format!("`{token}` is not a key=value pair")))?;
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(err(format!("`{key}` is not a rule key")));
        }
        let value = value.trim();
        let literal = if toml::from_str::<toml::Table>(&format!("v = {value}")).is_ok() {
            value.to_owned()
        } else {
            toml::Value::String(value.to_owned()).to_string()
        };
        text.push_str(&format!("{key} = {literal}\n"));
    }
    let table: Table = toml::from_str(&text).map_err(|e| err(e.message().trim().to_owned()))?;
    // Every key of a one-liner reports the flag's position as its line.
    let lines = LineIndex::single(number);
    rule(Fields::new(table, &lines, origin, number, "rule"), position)
}

/// A rule from the control API (`POST /rules`, `PUT /rules`): either a JSON string in the
/// one-line syntax of [`parse_rule_line`], or an object with the keys of a `[[rule]]` table,
/// e.g. `{"packet": "fragment", "nth": 3, "fault": "lose-ack", "how": "reset"}`. The object
/// goes through the same validation as a profile's table; errors read `origin:number: …`.
pub fn parse_rule_json(
    value: &serde_json::Value,
    origin: &str,
    number: usize,
) -> Result<Rule, ProfileError> {
    let err = |message: String| ProfileError {
        origin: origin.to_owned(),
        line: number,
        message,
    };
    let object = match value {
        serde_json::Value::String(line) => return parse_rule_line(line, origin, number),
        serde_json::Value::Object(object) => object,
        _ => {
            return Err(err(
                "a rule is a string in the `--fault` syntax or an object of rule keys".into(),
            ));
        }
    };
    let mut table = Table::new();
    for (key, value) in object {
        let value = toml_value(value).map_err(|what| err(format!("`{key}` {what}")))?;
        table.insert(key.clone(), Spanned::new(0..0, value));
    }
    let lines = LineIndex::single(number);
    rule(Fields::new(table, &lines, origin, number, "rule"), number)
}

/// A JSON value as the TOML value a profile would hold; what is wrong, as a phrase, if none.
fn toml_value(value: &serde_json::Value) -> Result<toml::Value, String> {
    use serde_json::Value as Json;
    Ok(match value {
        Json::Null => return Err("must not be null".into()),
        Json::Bool(b) => toml::Value::Boolean(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => toml::Value::Integer(i),
            // Beyond TOML's integers; the whole-number readers take digits in a string.
            (None, Some(u), _) => toml::Value::String(u.to_string()),
            (None, None, Some(x)) => toml::Value::Float(x),
            (None, None, None) => return Err(format!("{n} is not a number that fits")),
        },
        Json::String(s) => toml::Value::String(s.clone()),
        Json::Array(items) => {
            toml::Value::Array(items.iter().map(toml_value).collect::<Result<_, _>>()?)
        }
        Json::Object(_) => return Err("must not be an object".into()),
    })
}

fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    // Inside "…" a backslash escapes the next character, as in a TOML basic string, so a
    // quoted name may itself contain `\"`.
    let mut escaped = false;
    for c in line.chars() {
        match (quote, c) {
            (Some('"'), c) if escaped => {
                escaped = false;
                current.push(c);
            }
            (Some('"'), '\\') => {
                escaped = true;
                current.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                current.push(c);
            }
            (None, c) if c.is_whitespace() => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            (None, c) => current.push(c),
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if !current.is_empty() {
        words.push(current);
    }
    if words.is_empty() {
        return Err("empty rule".into());
    }
    Ok(words)
}

/// The `[server]` keys: each goes through the check its flag uses, and errors name its line.
fn server_settings(f: &mut Fields<'_>) -> Result<Settings, ProfileError> {
    Ok(Settings {
        max_upload_size: f.size("max-upload-size")?,
        max_fragment_size: f.checked(
            "max-fragment-size",
            Fields::size,
            check::max_fragment_size,
        )?,
        max_sessions: f.checked("max-sessions", Fields::count, check::max_sessions)?,
        session_timeout: f.checked("session-timeout", Fields::duration, check::session_timeout)?,
        allow_overwrites: f.bool("allow-overwrites")?,
        sha256: f.bool("sha256")?,
        reply_path: f.string("reply-path")?,
        host_id: f.checked("host-id", Fields::string, check::host_id)?,
        host_id_fallback_timeout: f.u64("host-id-fallback-timeout")?,
        overlap: f.named("overlap", &config::OVERLAP)?,
        error_header: f.named("error-header", &config::ERROR_HEADER)?,
        header_read_timeout: f.checked("header-timeout", Fields::duration, check::timeout)?,
        body_read_timeout: f.checked("body-timeout", Fields::duration, check::timeout)?,
        content_length: f.named("content-length", &config::CONTENT_LENGTH)?,
        remember_closed: f.checked("remember-closed", Fields::duration, check::timeout)?,
        server_header: f.named("server-header", &config::SERVER_HEADER)?,
        notify: notify_routes(f)?,
        notify_type: f.named("notify-type", &config::NOTIFY_TYPE)?,
        notify_timeout: f.checked("notify-timeout", Fields::duration, check::timeout)?,
        notify_max_reply: f.size("notify-max-reply")?,
        notify_reply_url: f.named("notify-reply-url", &config::NOTIFY_REPLY_URL)?,
        ..Settings::default()
    })
}

/// `notify = "http://app/handle"` (the whole reply path), or one application per URL prefix:
/// `notify = { "/reply/orders/" = "http://a/", "/reply/big/" = { url = "http://b/", type = "value" } }`.
fn notify_routes(f: &mut Fields<'_>) -> Result<Option<Vec<config::NotifyRoute>>, ProfileError> {
    let Some((line, value)) = f.take("notify") else {
        return Ok(None);
    };
    let url = |text: &str| {
        crate::notify::AppUrl::parse(text).map_err(|m| f.at(line, format!("`notify` URL {m}")))
    };
    let shape =
        "`notify` must be an http:// URL or a table of URL prefix = URL (or { url = …, type = … })";
    match value {
        toml::Value::String(text) => Ok(Some(vec![config::NotifyRoute {
            path: None,
            url: url(&text)?,
            mode: None,
        }])),
        toml::Value::Table(table) => {
            let mut routes = Vec::new();
            for (path, entry) in table {
                if !path.starts_with('/') {
                    return Err(f.at(
                        line,
                        format!("`notify` prefix {path:?} must start with `/`"),
                    ));
                }
                let (text, mode) = match entry {
                    toml::Value::String(text) => (text, None),
                    toml::Value::Table(mut t) => {
                        let text = match t.remove("url") {
                            Some(toml::Value::String(text)) => text,
                            _ => {
                                return Err(
                                    f.at(line, format!("`notify` entry {path:?} needs `url`"))
                                );
                            }
                        };
                        let mode = match t.remove("type") {
                            None => None,
                            Some(toml::Value::String(name)) => {
                                Some(config::NOTIFY_TYPE.parse(&name).map_err(|m| {
                                    f.at(line, format!("`notify` {path:?} `type` {m}"))
                                })?)
                            }
                            Some(_) => {
                                return Err(f.at(
                                    line,
                                    format!("`notify` {path:?} `type` must be a string"),
                                ));
                            }
                        };
                        if let Some(key) = t.keys().next() {
                            return Err(f.at(
                                line,
                                format!("unknown key `{key}` in `notify` {path:?} (url, type)"),
                            ));
                        }
                        (text, mode)
                    }
                    _ => return Err(f.at(line, shape.into())),
                };
                routes.push(config::NotifyRoute {
                    path: Some(path),
                    url: url(&text)?,
                    mode,
                });
            }
            Ok(Some(routes))
        }
        _ => Err(f.at(line, shape.into())),
    }
}

fn rule(mut f: Fields<'_>, number: usize) -> Result<Rule, ProfileError> {
    let origin = format!("{}:{}", f.origin, f.line);
    let name = f
        .string("name")?
        .unwrap_or_else(|| format!("rule {number}"));
    let trigger = trigger(&mut f)?;
    let times = f.u64("times")?;
    let skip = f.u64("skip")?.unwrap_or(0);
    let kind = f
        .string("fault")?
        .ok_or_else(|| f.missing("fault", "missing `fault` (what the rule does)"))?;
    let fault = fault(&mut f, &kind)?;
    if let (Some(only), Some(packets)) = (fault.only_packets(), &trigger.packets)
        && packets.iter().any(|p| !only.contains(p))
    {
        return Err(f.error(
            "packet",
            format!("fault `{kind}` acts on fragments only; set `packet = \"fragment\"`"),
        ));
    }
    if fault.is_connection_fault()
        && (trigger.packets.is_some()
            || trigger.session.is_some()
            || trigger.nth.is_some()
            || trigger.position.is_some()
            || trigger.path.is_some())
    {
        return Err(f.here(format!(
            "fault `{kind}` acts on new connections: only `connection`, `from`, `until`, `every`, `probability`, `times` and `skip` apply"
        )));
    }
    if matches!(fault, Fault::Notify(_))
        && (trigger.packets.is_some() || trigger.position.is_some())
    {
        return Err(f.here(format!(
            "fault `{kind}` acts on notifications of the server application: `packet`, `offset` and `fragment` do not apply (`nth` counts the session's notifications)"
        )));
    }
    if trigger.connection.is_some() && !fault.is_connection_fault() {
        return Err(f.error(
            "connection",
            "`connection` picks connections for `refuse`, `tls` and `member-down` rules only"
                .into(),
        ));
    }
    f.finish(Some(&kind))?;
    Ok(Rule {
        name,
        origin,
        trigger,
        fault,
        times,
        skip,
    })
}

fn trigger(f: &mut Fields<'_>) -> Result<Trigger, ProfileError> {
    let packets = match f.take("packet") {
        None => None,
        Some((line, value)) => {
            let names: Vec<String> = match value {
                toml::Value::String(s) => vec![s],
                toml::Value::Array(items) => items
                    .into_iter()
                    .map(|v| match v {
                        toml::Value::String(s) => Ok(s),
                        _ => Err(f.at(line, "`packet` entries must be strings".into())),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(f.at(line, "`packet` must be a string or a list".into())),
            };
            if names.iter().any(|n| n.eq_ignore_ascii_case("any")) {
                None
            } else {
                let mut types = Vec::new();
                for n in &names {
                    types.push(PacketType::parse(n).ok_or_else(|| {
                        f.at(line, format!("unknown packet `{n}` (ping, create-session, fragment, close-session, cancel-session, any)"))
                    })?);
                }
                Some(types)
            }
        }
    };
    let position = match (f.string_at("offset")?, f.string_at("fragment")?) {
        (Some(_), Some((line, _))) => {
            return Err(f.at(line, "use either `offset` or `fragment`, not both".into()));
        }
        (Some((line, text)), None) => Some(match text.strip_suffix('%') {
            Some(pct) => {
                let p: f64 = pct
                    .trim()
                    .parse()
                    .ok()
                    .filter(|p: &f64| (0.0..=100.0).contains(p))
                    .ok_or_else(|| {
                        f.at(
                            line,
                            format!("`offset` {text:?} is not a percentage between 0% and 100%"),
                        )
                    })?;
                // Moving the decimal point in the text rounds once, where `p / 100.0` would
                // round twice; so every fraction has a percentage that reads back exactly.
                let exact = format!("{}e-2", pct.trim()).parse::<f64>();
                Position::Fraction(exact.unwrap_or(p / 100.0))
            }
            None => Position::Offset(
                exact_size(&text).map_err(|m| f.at(line, format!("`offset`: {m}")))?,
            ),
        }),
        (None, Some((line, which))) => Some(match which.as_str() {
            "first" => Position::First,
            "final" | "last" => Position::Final,
            _ => return Err(f.at(line, "`fragment` must be \"first\" or \"final\"".into())),
        }),
        (None, None) => None,
    };
    let probability = f.f64("probability")?;
    if let Some(p) = probability
        && !(0.0..=1.0).contains(&p)
    {
        return Err(f.error(
            "probability",
            "`probability` must be between 0 and 1".into(),
        ));
    }
    let trigger = Trigger {
        packets,
        session: f.positive("session")?,
        nth: f.positive("nth")?,
        every: f.positive("every")?,
        probability,
        position,
        path: f.string("path")?,
        from: f.duration("from")?,
        until: f.duration("until")?,
        connection: f.positive("connection")?,
    };
    if let (Some(from), Some(until)) = (trigger.from, trigger.until)
        && from >= until
    {
        return Err(f.error("until", "`until` must be later than `from`".into()));
    }
    Ok(trigger)
}

fn fault(f: &mut Fields<'_>, kind: &str) -> Result<Fault, ProfileError> {
    Ok(match kind {
        "delay" => Fault::Delay(dist(f)?),
        "stall" => Fault::Stall(dist(f)?),
        "lose-ack" => Fault::LoseAck(loss(f, true)?),
        "lose-request" => Fault::LoseRequest(loss(f, false)?),
        "reset-mid-body" => {
            let after = match (f.u64_or_size("after-bytes")?, f.f64("after-fraction")?) {
                (Some(n), None) => Portion::Bytes(n),
                (None, Some(x)) if (0.0..=1.0).contains(&x) => Portion::Fraction(x),
                (None, Some(_)) => {
                    return Err(f.here("`after-fraction` must be between 0 and 1".into()));
                }
                (None, None) => Portion::Fraction(0.5),
                (Some(_), Some(_)) => {
                    return Err(f.here("use either `after-bytes` or `after-fraction`".into()));
                }
            };
            Fault::ResetMidBody {
                after,
                keep: f.bool("keep")?.unwrap_or(true),
            }
        }
        "lose-session" => {
            let scope = f.string("scope")?.unwrap_or_else(|| "this".into());
            match scope.as_str() {
                "this" => Fault::LoseSession(SessionLoss::This {
                    keep_file: f.bool("keep-file")?.unwrap_or(false),
                }),
                "all" => Fault::LoseSession(SessionLoss::All {
                    keep_file: f.bool("keep-file")?.unwrap_or(false),
                }),
                "expire" => Fault::LoseSession(SessionLoss::Expire(
                    f.duration("idle")?.unwrap_or(Duration::from_secs(1)),
                )),
                _ => {
                    return Err(f.here("`scope` must be \"this\", \"all\" or \"expire\"".into()));
                }
            }
        }
        "status" => {
            let status = f
                .u64("status")?
                .ok_or_else(|| f.here("fault `status` needs `status` (an HTTP status)".into()))?;
            Fault::Status {
                status: http_status(f, status)?,
                code: f.hresult("code")?,
                context: f.hresult("context")?,
                retry_after: f.u64("retry-after")?,
            }
        }
        "lie" => {
            let how = f
                .string("lie")?
                .ok_or_else(|| f.here("fault `lie` needs `lie` (how the Ack lies)".into()))?;
            let by = f.u64_or_size("by")?;
            let lie = match how.as_str() {
                "behind" => Lie::Behind(by.unwrap_or(1)),
                "ahead" => Lie::Ahead(by.unwrap_or(1)),
                "beyond-total" => Lie::BeyondTotal,
                "malformed" => Lie::Malformed,
                "missing" => Lie::Missing,
                "other-session" => Lie::OtherSession,
                "416" => Lie::RangeNotSatisfiable(f.u64_or_size("at")?.unwrap_or(0)),
                "no-reply-url" => Lie::NoReplyUrl,
                _ => {
                    return Err(f.here(format!(
                        "unknown lie `{how}` (behind, ahead, beyond-total, malformed, missing, other-session, 416, no-reply-url)"
                    )));
                }
            };
            if by.is_some() && !matches!(lie, Lie::Behind(_) | Lie::Ahead(_)) {
                return Err(f.error(
                    "by",
                    "`by` applies to lie = \"behind\" or \"ahead\" only".into(),
                ));
            }
            Fault::Lie(lie)
        }
        "broken" => {
            let how = f
                .string("broken")?
                .unwrap_or_else(|| "truncated-headers".into());
            match Broken::ALL.into_iter().find(|b| b.to_string() == how) {
                Some(broken) => Fault::Broken(broken),
                None => {
                    let names = Broken::ALL.map(|b| format!("{:?}", b.to_string()));
                    return Err(f.here(format!("`broken` must be {}", one_of(&names))));
                }
            }
        }
        "throttle" => {
            let read = f.u64_or_size("read-rate")?;
            let write = f.u64_or_size("write-rate")?;
            if read.is_none() && write.is_none() {
                return Err(f.here(
                    "fault `throttle` needs `read-rate` and/or `write-rate` (bytes per second)"
                        .into(),
                ));
            }
            if read == Some(0) || write == Some(0) {
                return Err(f.here("throttle rates must be above zero".into()));
            }
            Fault::Throttle { read, write }
        }
        "refuse" => Fault::Refuse,
        "mutate" => {
            let mut families = Vec::new();
            if let Some(list) = f.string("families")? {
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let family = Family::parse(name).ok_or_else(|| {
                        f.error(
                            "families",
                            format!(
                                "unknown mutation family `{name}` (header, value, status, framing)"
                            ),
                        )
                    })?;
                    if !families.contains(&family) {
                        families.push(family);
                    }
                }
            }
            let count = f.positive("count")?.unwrap_or(1);
            if count > u64::from(MAX_COUNT) {
                return Err(f.error(
                    "count",
                    format!("`count` must be 1 to {MAX_COUNT} mutations per answer"),
                ));
            }
            Fault::Mutate(Mutate {
                families,
                count: count as u32,
            })
        }
        "tls" => Fault::Tls(tls(f)?),
        "member-down" => {
            let member = f.positive("member")?.ok_or_else(|| {
                f.here("fault `member-down` needs `member` (1 for the first farm member)".into())
            })?;
            let how = match f.string("how")?.as_deref() {
                None | Some("refuse") => Down::Refuse,
                Some("blackhole") => Down::Blackhole,
                Some(_) => {
                    return Err(f.error("how", "`how` must be \"refuse\" or \"blackhole\"".into()));
                }
            };
            Fault::MemberDown {
                member: u32::try_from(member).unwrap_or(u32::MAX),
                how,
            }
        }
        "notify" => {
            let how = f.string("how")?;
            let delay = f.duration("delay")?;
            let status = f.u64("status")?;
            if delay.is_some() && how.as_deref() != Some("delay") {
                return Err(f.error("delay", "`delay` applies to how = \"delay\" only".into()));
            }
            if status.is_some() && how.as_deref() != Some("status") {
                return Err(f.error("status", "`status` applies to how = \"status\" only".into()));
            }
            Fault::Notify(match how.as_deref() {
                Some("delay") => NotifyFault::Delay(delay.ok_or_else(|| {
                    f.here("fault `notify` how = \"delay\" needs `delay`, e.g. \"2s\"".into())
                })?),
                Some("refuse") => NotifyFault::Refuse,
                Some("status") => {
                    let status = status.ok_or_else(|| {
                        f.here("fault `notify` how = \"status\" needs `status`, e.g. 503".into())
                    })?;
                    match u16::try_from(status) {
                        Ok(s) if (100..=599).contains(&s) && s != 200 => NotifyFault::Status(s),
                        _ => {
                            return Err(f.error(
                                "status",
                                "`status` must be an HTTP status from 100 to 599 other than 200"
                                    .into(),
                            ));
                        }
                    }
                }
                Some("garbage") => NotifyFault::Garbage,
                Some("twice") => NotifyFault::Twice,
                _ => {
                    return Err(f.error(
                        "how",
                        "fault `notify` needs `how`: \"delay\", \"refuse\", \"status\", \"garbage\" or \"twice\"".into(),
                    ));
                }
            })
        }
        "auth" => {
            let name = f.string("scheme")?.unwrap_or_else(|| "basic".into());
            let Some(scheme) = Scheme::ALL.into_iter().find(|s| s.name() == name) else {
                let names: Vec<&str> = Scheme::ALL.iter().map(|s| s.name()).collect();
                return Err(f.here(format!("unknown scheme `{name}` ({})", names.join(", "))));
            };
            let user = f.string("user")?;
            let password = f.string("password")?;
            let credentials = match (user, password) {
                (Some(u), Some(p)) => Some((u, p)),
                (None, None) => None,
                _ => return Err(f.here("give both `user` and `password`, or neither".into())),
            };
            if credentials.is_some() && scheme != Scheme::Basic {
                return Err(
                    f.here("`user`/`password` are checked for scheme = \"basic\" only".into())
                );
            }
            let legs = f
                .positive("legs")?
                .unwrap_or(if scheme == Scheme::Basic { 1 } else { 2 });
            Fault::Auth(Auth {
                scheme,
                credentials,
                legs: u32::try_from(legs).unwrap_or(u32::MAX).min(16),
                again_after: f.positive("again-after")?,
            })
        }
        other => {
            return Err(f.error(
                "fault",
                format!("unknown fault `{other}` (delay, stall, lose-ack, lose-request, reset-mid-body, lose-session, status, lie, broken, throttle, refuse, auth, tls, member-down, notify)"),
            ));
        }
    })
}

/// `cert = …`, `handshake = …` or `close = "no-notify"`: exactly one.
fn tls(f: &mut Fields<'_>) -> Result<TlsFault, ProfileError> {
    let cert = f.string("cert")?;
    let handshake = f.string("handshake")?;
    let close = f.string("close")?;
    let hang = f.duration("hang")?;
    if hang.is_some() && handshake.as_deref() != Some("stall") {
        return Err(f.error(
            "hang",
            "`hang` applies to handshake = \"stall\" only".into(),
        ));
    }
    Ok(match (cert, handshake, close) {
        (Some(name), None, None) => match BadCert::ALL.into_iter().find(|c| c.name() == name) {
            Some(cert) => TlsFault::Cert(cert),
            None => {
                let names = BadCert::ALL.map(|c| format!("{:?}", c.name()));
                return Err(f.error("cert", format!("`cert` must be {}", one_of(&names))));
            }
        },
        (None, Some(how), None) => match how.as_str() {
            "stall" => TlsFault::HandshakeStall(hang.unwrap_or(Duration::from_secs(30))),
            "reset" => TlsFault::HandshakeReset,
            _ => {
                return Err(f.error(
                    "handshake",
                    "`handshake` must be \"stall\" or \"reset\"".into(),
                ));
            }
        },
        (None, None, Some(how)) if how == "no-notify" => TlsFault::CloseNoNotify,
        (None, None, Some(_)) => {
            return Err(f.error("close", "`close` must be \"no-notify\"".into()));
        }
        _ => {
            return Err(
                f.here("fault `tls` needs exactly one of `cert`, `handshake` or `close`".into())
            );
        }
    })
}

fn dist(f: &mut Fields<'_>) -> Result<Dist, ProfileError> {
    let kind = f.string("distribution")?.unwrap_or_else(|| "fixed".into());
    let mut need = |key: &str| {
        f.duration(key)?
            .ok_or_else(|| f.here(format!("distribution `{kind}` needs `{key}`")))
    };
    let d = match kind.as_str() {
        "fixed" => Dist::Fixed(need("delay")?),
        "uniform" => {
            let (min, max) = (need("min")?, need("max")?);
            if min > max {
                return Err(f.error("max", "`max` must not be below `min`".into()));
            }
            Dist::Uniform { min, max }
        }
        "normal" => Dist::Normal {
            mean: need("mean")?,
            stddev: need("stddev")?,
        },
        "lognormal" => {
            let (median, p99) = (need("median")?, need("p99")?);
            if p99 < median || median.is_zero() {
                return Err(f.error(
                    "p99",
                    "`p99` must be at least `median`, and `median` above zero".into(),
                ));
            }
            Dist::LogNormal { median, p99 }
        }
        "exponential" => Dist::Exponential {
            mean: need("mean")?,
        },
        other => {
            return Err(f.error(
                "distribution",
                format!("unknown distribution `{other}` (fixed, uniform, normal, lognormal, exponential)"),
            ));
        }
    };
    Ok(d)
}

fn loss(f: &mut Fields<'_>, status_allowed: bool) -> Result<Loss, ProfileError> {
    let how = f.string("how")?.unwrap_or_else(|| "close".into());
    Ok(match how.as_str() {
        "close" => Loss::Close,
        "reset" => Loss::Reset,
        "hang" => Loss::Hang(f.duration("hang")?.unwrap_or(Duration::from_secs(30))),
        "status" if status_allowed => {
            let status = f.u64("status")?.unwrap_or(503);
            if !(500..=599).contains(&status) {
                return Err(f.error("status", "a lost Ack answers with a 5xx `status`".into()));
            }
            Loss::Status(status as u16)
        }
        _ => {
            let choices = if status_allowed {
                "close, reset, hang, status"
            } else {
                "close, reset, hang"
            };
            return Err(f.error("how", format!("unknown `how` = {how:?} ({choices})")));
        }
    })
}

/// `"a", "b" or "c"`.
fn one_of(names: &[String]) -> String {
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn http_status(f: &Fields<'_>, status: u64) -> Result<u16, ProfileError> {
    if (100..=599).contains(&status) {
        Ok(status as u16)
    } else {
        Err(f.error(
            "status",
            format!("{status} is not an HTTP status (100-599)"),
        ))
    }
}

/// The keys of one table, consumed as they are validated; leftovers are reported.
struct Fields<'a> {
    values: BTreeMap<String, (usize, toml::Value)>,
    origin: &'a str,
    /// Line of the table itself.
    line: usize,
    what: &'static str,
    /// Lines of keys already consumed, for errors about them.
    seen: BTreeMap<String, usize>,
    /// Every key the validation looked for, given or not: the keys valid here, for a
    /// "did you mean" on a misspelt one.
    asked: BTreeSet<String>,
}

impl<'a> Fields<'a> {
    fn new(
        table: Table,
        lines: &LineIndex,
        origin: &'a str,
        line: usize,
        what: &'static str,
    ) -> Self {
        let values = table
            .into_iter()
            .map(|(k, v)| {
                let l = lines.line(v.span().start);
                (k, (l, v.into_inner()))
            })
            .collect();
        Fields {
            values,
            origin,
            line,
            what,
            seen: BTreeMap::new(),
            asked: BTreeSet::new(),
        }
    }

    fn at(&self, line: usize, message: String) -> ProfileError {
        ProfileError {
            origin: self.origin.to_owned(),
            line,
            message,
        }
    }

    /// An error at the table's own line.
    fn here(&self, message: String) -> ProfileError {
        self.at(self.line, message)
    }

    /// An error at a key's line (or the table's, if the key was not given).
    fn error(&self, key: &str, message: String) -> ProfileError {
        let line = self
            .seen
            .get(key)
            .or_else(|| self.values.get(key).map(|(l, _)| l))
            .copied()
            .unwrap_or(self.line);
        self.at(line, message)
    }

    fn take(&mut self, key: &str) -> Option<(usize, toml::Value)> {
        self.asked.insert(key.to_owned());
        let taken = self.values.remove(key);
        if let Some((line, _)) = &taken {
            self.seen.insert(key.to_owned(), *line);
        }
        taken
    }

    fn string_at(&mut self, key: &str) -> Result<Option<(usize, String)>, ProfileError> {
        match self.take(key) {
            None => Ok(None),
            Some((line, toml::Value::String(s))) => Ok(Some((line, s))),
            Some((line, toml::Value::Integer(i))) => Ok(Some((line, i.to_string()))),
            Some((line, _)) => Err(self.at(line, format!("`{key}` must be a string"))),
        }
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, ProfileError> {
        Ok(self.string_at(key)?.map(|(_, s)| s))
    }

    fn bool(&mut self, key: &str) -> Result<Option<bool>, ProfileError> {
        match self.take(key) {
            None => Ok(None),
            Some((_, toml::Value::Boolean(b))) => Ok(Some(b)),
            Some((line, _)) => Err(self.at(line, format!("`{key}` must be true or false"))),
        }
    }

    fn u64(&mut self, key: &str) -> Result<Option<u64>, ProfileError> {
        match self.take(key) {
            None => Ok(None),
            Some((line, v)) => value_u64(&v)
                .map(Some)
                .map_err(|m| self.at(line, format!("`{key}` {m}"))),
        }
    }

    fn count(&mut self, key: &str) -> Result<Option<usize>, ProfileError> {
        match self.u64(key)? {
            None => Ok(None),
            Some(n) => usize::try_from(n)
                .map(Some)
                .map_err(|_| self.error(key, format!("`{key}` is too large"))),
        }
    }

    fn positive(&mut self, key: &str) -> Result<Option<u64>, ProfileError> {
        match self.u64(key)? {
            Some(0) => Err(self.error(key, format!("`{key}` counts from 1"))),
            other => Ok(other),
        }
    }

    fn f64(&mut self, key: &str) -> Result<Option<f64>, ProfileError> {
        match self.take(key) {
            None => Ok(None),
            Some((_, toml::Value::Float(x))) if x.is_finite() => Ok(Some(x)),
            Some((_, toml::Value::Integer(i))) => Ok(Some(i as f64)),
            Some((line, _)) => Err(self.at(line, format!("`{key}` must be a number"))),
        }
    }

    fn size(&mut self, key: &str) -> Result<Option<u64>, ProfileError> {
        self.u64_or_size(key)
    }

    fn u64_or_size(&mut self, key: &str) -> Result<Option<u64>, ProfileError> {
        match self.take(key) {
            None => Ok(None),
            Some((line, toml::Value::String(s))) => exact_size(&s)
                .map(Some)
                .map_err(|m| self.at(line, format!("`{key}`: {m}"))),
            Some((line, v)) => value_u64(&v)
                .map(Some)
                .map_err(|m| self.at(line, format!("`{key}` {m}"))),
        }
    }

    fn duration(&mut self, key: &str) -> Result<Option<Duration>, ProfileError> {
        match self.take(key) {
            None => Ok(None),
            Some((line, toml::Value::String(s))) => parse_duration(&s)
                .map(Some)
                .map_err(|m| self.at(line, format!("`{key}`: {m}"))),
            Some((line, toml::Value::Integer(i))) if i >= 0 => {
                let _ = line;
                Ok(Some(Duration::from_secs(i as u64)))
            }
            Some((line, _)) => Err(self.at(
                line,
                format!("`{key}` must be a duration such as \"250ms\" or \"10s\""),
            )),
        }
    }

    fn hresult(&mut self, key: &str) -> Result<Option<u32>, ProfileError> {
        match self.take(key) {
            None => Ok(None),
            Some((line, toml::Value::String(s))) => crate::proto::error::parse_code(&s)
                .map(Some)
                .ok_or_else(|| {
                    self.at(line, format!("`{key}` must be hex such as \"0x80070057\""))
                }),
            Some((line, toml::Value::Integer(i))) => u32::try_from(i)
                .map(Some)
                .map_err(|_| self.at(line, format!("`{key}` does not fit in 32 bits"))),
            Some((line, _)) => {
                Err(self.at(line, format!("`{key}` must be hex such as \"0x80070057\"")))
            }
        }
    }

    /// A value read by `read`, then held to `check` (one of [`crate::config::check`]).
    fn checked<T>(
        &mut self,
        key: &str,
        read: fn(&mut Self, &str) -> Result<Option<T>, ProfileError>,
        check: fn(T) -> Result<T, String>,
    ) -> Result<Option<T>, ProfileError> {
        match read(self, key)? {
            None => Ok(None),
            Some(value) => check(value)
                .map(Some)
                .map_err(|m| self.error(key, format!("`{key}` {m}"))),
        }
    }

    /// A string naming one value of an enum, looked up in its one name table.
    fn named<T: Copy + PartialEq>(
        &mut self,
        key: &str,
        names: &Names<T>,
    ) -> Result<Option<T>, ProfileError> {
        match self.string(key)? {
            None => Ok(None),
            Some(text) => names
                .parse(&text)
                .map(Some)
                .map_err(|m| self.error(key, format!("`{key}` {m}"))),
        }
    }

    /// An error for a required key that is missing; when a given key looks like a
    /// misspelling of it, the error names that key, at its line.
    fn missing(&self, key: &str, message: &str) -> ProfileError {
        let typo = self
            .values
            .iter()
            .filter_map(|(given, (line, _))| near(given, key).map(|d| (d, given, *line)))
            .min();
        match typo {
            Some((_, given, line)) => self.at(
                line,
                format!("{message}; is `{given}` a misspelling of it?"),
            ),
            None => self.here(message.to_owned()),
        }
    }

    /// Fails on any key nobody consumed, suggesting the nearest key that is valid here.
    fn finish(self, fault: Option<&str>) -> Result<(), ProfileError> {
        let Some((key, (line, _))) = self.values.into_iter().next() else {
            return Ok(());
        };
        let mut message = match fault {
            Some(kind) => format!(
                "unknown key `{key}` in {} (or it does not apply to fault `{kind}`)",
                self.what
            ),
            None => format!("unknown key `{key}` in {}", self.what),
        };
        if let Some((_, valid)) = self
            .asked
            .iter()
            .filter_map(|valid| near(&key, valid).map(|d| (d, valid)))
            .min()
        {
            message.push_str(&format!("; did you mean `{valid}`?"));
        }
        Err(ProfileError {
            origin: self.origin.to_owned(),
            line,
            message,
        })
    }
}

/// A size; plain digits are read as an integer, since [`parse_size`] goes through a float and
/// would round byte counts above 2^53.
fn exact_size(text: &str) -> Result<u64, String> {
    text.trim().parse().or_else(|_| parse_size(text))
}

/// The edit distance from `typed` to `valid` when it is small enough (at most 2, and less
/// than `typed` is long) for `typed` to be a misspelling of `valid`.
fn near(typed: &str, valid: &str) -> Option<usize> {
    let d = levenshtein(typed, valid);
    (d <= 2 && d < typed.chars().count()).then_some(d)
}

/// Insertions, deletions and substitutions (of characters) turning `a` into `b`.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // `row[j]`: distance from the prefix of `a` seen so far to `b[..j]`.
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

fn value_u64(v: &toml::Value) -> Result<u64, String> {
    match v {
        toml::Value::Integer(i) if *i >= 0 => Ok(*i as u64),
        toml::Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| "must be a whole number of at least 0".to_owned()),
        _ => Err("must be a whole number of at least 0".to_owned()),
    }
}

/// Byte offset → 1-based line number.
struct LineIndex {
    starts: Vec<usize>,
    fixed: Option<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            starts,
            fixed: None,
        }
    }

    fn single(line: usize) -> Self {
        LineIndex {
            starts: vec![0],
            fixed: Some(line),
        }
    }

    fn line(&self, offset: usize) -> usize {
        self.fixed
            .unwrap_or_else(|| self.starts.partition_point(|&s| s <= offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, "p.toml")
            .expect_err("profile was accepted")
            .to_string()
    }

    const HEAD: &str = "name = \"t\"\ndescription = \"d\"\n";

    #[test]
    fn notify_settings_and_rules_are_checked_at_their_line() {
        for (text, wanted) in [
            (
                "[server]\nnotify = \"https://a/\"",
                "p.toml:4: `notify` URL must be a plain http:// URL",
            ),
            (
                "[server]\nnotify = 5",
                "p.toml:4: `notify` must be an http:// URL or a table",
            ),
            (
                "[server]\nnotify = { \"r/\" = \"http://a/\" }",
                "p.toml:4: `notify` prefix \"r/\" must start with `/`",
            ),
            (
                "[server]\nnotify = { \"/r/\" = { url = \"http://a/\", kind = \"x\" } }",
                "p.toml:4: unknown key `kind` in `notify` \"/r/\"",
            ),
            (
                "[server]\nnotify = { \"/r/\" = { url = \"http://a/\", type = \"both\" } }",
                "p.toml:4: `notify` \"/r/\" `type` must be \"reference\" or \"value\"",
            ),
            (
                "[server]\nnotify-type = \"both\"",
                "p.toml:4: `notify-type` must be \"reference\" or \"value\"",
            ),
            (
                "[server]\nnotify-timeout = \"0s\"",
                "p.toml:4: `notify-timeout` must be longer than zero",
            ),
            (
                "[[rule]]\nfault = \"notify\"",
                "p.toml:3: fault `notify` needs `how`",
            ),
            (
                "[[rule]]\nfault = \"notify\"\nhow = \"delay\"",
                "p.toml:3: fault `notify` how = \"delay\" needs `delay`",
            ),
            (
                "[[rule]]\nfault = \"notify\"\nhow = \"status\"\nstatus = 200",
                "p.toml:6: `status` must be an HTTP status from 100 to 599 other than 200",
            ),
            (
                "[[rule]]\nfault = \"notify\"\nhow = \"refuse\"\ndelay = \"1s\"",
                "p.toml:6: `delay` applies to how = \"delay\" only",
            ),
            (
                "[[rule]]\nfault = \"notify\"\nhow = \"twice\"\npacket = \"fragment\"",
                "p.toml:3: fault `notify` acts on notifications of the server application",
            ),
            (
                "[[rule]]\nfault = \"notify\"\nhow = \"twice\"\nconnection = 1",
                "p.toml:6: `connection` picks connections",
            ),
        ] {
            let e = err(&format!("{HEAD}{text}\n"));
            assert!(e.starts_with(wanted), "{text}: {e}");
        }
        let rule =
            parse_rule_line("fault=notify how=status status=503 nth=2", "--fault", 1).unwrap();
        assert_eq!(rule.fault, Fault::Notify(NotifyFault::Status(503)));
        assert_eq!(rule.trigger.nth, Some(2));
    }

    #[test]
    fn a_complete_profile_parses() {
        let p = parse(
            &format!(
                "{HEAD}seed = 9\n[server]\nsession-timeout = \"10m\"\nmax-fragment-size = \"1MiB\"\n\n[[rule]]\nname = \"x\"\npacket = \"fragment\"\nnth = 3\nprobability = 0.5\nfault = \"lose-ack\"\nhow = \"reset\"\ntimes = 2\n"
            ),
            "p.toml",
        )
        .unwrap();
        assert_eq!(p.seed, Some(9));
        assert_eq!(p.server.session_timeout, Some(Duration::from_secs(600)));
        assert_eq!(p.server.max_fragment_size, Some(1 << 20));
        assert_eq!(p.rules.len(), 1);
        let r = &p.rules[0];
        assert_eq!(r.name, "x");
        assert_eq!(r.origin, "p.toml:8");
        assert_eq!(r.trigger.packets, Some(vec![PacketType::Fragment]));
        assert_eq!(r.trigger.nth, Some(3));
        assert_eq!(r.fault, Fault::LoseAck(Loss::Reset));
        assert_eq!(r.times, Some(2));
    }

    #[test]
    fn syntax_errors_name_their_line() {
        assert!(err(&format!("{HEAD}[[rule]]\nfault = \n")).starts_with("p.toml:4:"));
    }

    #[test]
    fn unknown_keys_are_errors_at_their_line() {
        assert!(err(&format!("{HEAD}colour = 1\n")).starts_with("p.toml:3:"));
        let e = err(&format!(
            "{HEAD}[[rule]]\nfault = \"delay\"\ndelay = \"1s\"\nhow = \"reset\"\n"
        ));
        assert!(e.starts_with("p.toml:6:"), "{e}");
        assert!(e.contains("`how`"), "{e}");
        let e = err(&format!("{HEAD}[server]\nlisten = \"x\"\n"));
        assert!(e.starts_with("p.toml:4:") && e.contains("listen"), "{e}");
    }

    #[test]
    fn bad_values_are_errors_at_their_line() {
        for (rule, line) in [
            ("fault = \"delay\"\ndelay = \"soon\"", 5),
            ("fault = \"lose-ack\"\nhow = \"explode\"", 5),
            ("probability = 2.0\nfault = \"refuse\"", 4),
            ("packet = \"upload\"\nfault = \"refuse\"", 4),
            ("fault = \"teleport\"", 4),
            ("fault = \"status\"\nstatus = 999", 5),
            ("nth = 0\nfault = \"lose-ack\"", 4),
            ("from = \"20s\"\nuntil = \"10s\"\nfault = \"refuse\"", 5),
            ("packet = \"ping\"\nfault = \"reset-mid-body\"", 4),
            ("offset = \"150%\"\nfault = \"lose-ack\"", 4),
        ] {
            let e = err(&format!("{HEAD}[[rule]]\n{rule}\n"));
            assert!(e.starts_with(&format!("p.toml:{line}:")), "{rule:?} → {e}");
        }
    }

    #[test]
    fn server_settings_are_typed_and_checked_at_their_line() {
        let p = parse(
            &format!("{HEAD}[server]\noverlap = \"strict\"\nerror-header = \"both\"\n"),
            "p.toml",
        )
        .unwrap();
        assert_eq!(p.server.overlap, Some(crate::proto::Overlap::Strict));
        assert_eq!(p.server.error_header, Some(crate::proto::ErrorHeader::Both));
        let p = parse(
            &format!(
                "{HEAD}[server]\ncontent-length = \"optional\"\nremember-closed = \"10m\"\nserver-header = \"none\"\n"
            ),
            "p.toml",
        )
        .unwrap();
        assert_eq!(
            p.server.content_length,
            Some(crate::proto::ContentLength::Optional)
        );
        assert_eq!(
            p.server.remember_closed,
            Some(std::time::Duration::from_secs(600))
        );
        assert_eq!(
            p.server.server_header,
            Some(crate::config::ServerHeader::Omitted)
        );
        for (setting, wanted) in [
            (
                "max-fragment-size = 0",
                "p.toml:5: `max-fragment-size` must be at least 1 byte",
            ),
            (
                "session-timeout = \"0s\"",
                "p.toml:5: `session-timeout` must be longer than zero",
            ),
            (
                "host-id = \"two words\"",
                "p.toml:5: `host-id` must be a host name",
            ),
            (
                "overlap = \"sideways\"",
                "p.toml:5: `overlap` must be \"tail\" or \"strict\"",
            ),
            (
                "error-header = \"all\"",
                "p.toml:5: `error-header` must be \"code\", \"spec\" or \"both\"",
            ),
            (
                "content-length = \"maybe\"",
                "p.toml:5: `content-length` must be \"required\" or \"optional\"",
            ),
            (
                "server-header = \"apache\"",
                "p.toml:5: `server-header` must be \"iis\", \"bitsmock\" or \"none\"",
            ),
            (
                "remember-closed = \"0s\"",
                "p.toml:5: `remember-closed` must be longer than zero",
            ),
        ] {
            let e = err(&format!(
                "{HEAD}[server]\nallow-overwrites = true\n{setting}\n"
            ));
            assert!(e.starts_with(wanted), "{setting:?} → {e}");
        }
    }

    #[test]
    fn a_rule_line_joining_a_list_is_named_after_its_place_in_it() {
        let r = parse_rule_line_at("fault=refuse", "--fault", 1, 4).unwrap();
        assert_eq!(
            (r.name.as_str(), r.origin.as_str()),
            ("rule 4", "--fault:1")
        );
        let e = parse_rule_line_at("fault=nope", "--fault", 1, 4).unwrap_err();
        assert!(e.to_string().starts_with("--fault:1: "), "{e}");
    }

    #[test]
    fn missing_name_or_fault_is_reported() {
        assert!(err("description = \"d\"\n").contains("missing `name`"));
        assert!(err(&format!("{HEAD}[[rule]]\npacket = \"ping\"\n")).contains("missing `fault`"));
    }

    #[test]
    fn every_fault_kind_parses() {
        for rule in [
            "fault = \"delay\"\ndistribution = \"lognormal\"\nmedian = \"100ms\"\np99 = \"2s\"",
            "fault = \"delay\"\ndistribution = \"uniform\"\nmin = \"1ms\"\nmax = \"5ms\"",
            "fault = \"delay\"\ndistribution = \"normal\"\nmean = \"1s\"\nstddev = \"100ms\"",
            "fault = \"delay\"\ndistribution = \"exponential\"\nmean = \"1s\"",
            "fault = \"stall\"\ndelay = \"1s\"",
            "fault = \"lose-ack\"\nhow = \"status\"\nstatus = 503",
            "fault = \"lose-request\"\nhow = \"hang\"\nhang = \"2s\"",
            "fault = \"reset-mid-body\"\nafter-bytes = \"64KiB\"\nkeep = false",
            "fault = \"lose-session\"\nscope = \"all\"\nkeep-file = true",
            "fault = \"lose-session\"\nscope = \"expire\"\nidle = \"200ms\"",
            "fault = \"status\"\nstatus = 503\ncode = \"0x80070057\"\ncontext = \"0x5\"\nretry-after = 3",
            "fault = \"lie\"\nlie = \"behind\"\nby = 100",
            "fault = \"lie\"\nlie = \"416\"\nat = 0",
            "fault = \"broken\"\nbroken = \"garbage\"",
            "fault = \"throttle\"\nread-rate = \"64KiB\"",
            "fault = \"refuse\"\nfrom = \"1s\"\nuntil = \"2s\"",
            "fault = \"auth\"\nscheme = \"basic\"\nuser = \"u\"\npassword = \"p\"",
            "fault = \"auth\"\nscheme = \"ntlm\"\nlegs = 3\nagain-after = 4",
            "fault = \"tls\"\ncert = \"wrong-host\"\nconnection = 2",
            "fault = \"tls\"\nhandshake = \"stall\"\nhang = \"5s\"",
            "fault = \"tls\"\nclose = \"no-notify\"\nprobability = 0.5",
            "fault = \"member-down\"\nmember = 2\nhow = \"blackhole\"\nuntil = \"5s\"",
        ] {
            parse(&format!("{HEAD}[[rule]]\n{rule}\n"), "p.toml")
                .unwrap_or_else(|e| panic!("{rule:?}: {e}"));
        }
    }

    #[test]
    fn tls_rules_take_exactly_one_misbehaviour_and_connection_triggers_only() {
        for (line, wanted) in [
            (
                "fault=tls",
                "needs exactly one of `cert`, `handshake` or `close`",
            ),
            (
                "fault=tls cert=expired handshake=reset",
                "needs exactly one of `cert`, `handshake` or `close`",
            ),
            (
                "fault=tls cert=stale",
                "`cert` must be \"expired\", \"not-yet-valid\", \"wrong-host\", \"self-signed\" or \"bad-usage\"",
            ),
            (
                "fault=tls handshake=slow",
                "`handshake` must be \"stall\" or \"reset\"",
            ),
            ("fault=tls close=rst", "`close` must be \"no-notify\""),
            (
                "fault=tls cert=expired hang=1s",
                "`hang` applies to handshake",
            ),
            (
                "fault=tls cert=expired packet=fragment",
                "acts on new connections",
            ),
            (
                "fault=delay delay=1s connection=2",
                "`connection` picks connections",
            ),
        ] {
            let e = parse_rule_line(line, "--fault", 1).unwrap_err().to_string();
            assert!(e.contains(wanted), "{line}: {e}");
        }
        let r = parse_rule_line("connection=2 fault=tls handshake=stall", "--fault", 1).unwrap();
        assert_eq!(
            r.fault,
            Fault::Tls(TlsFault::HandshakeStall(Duration::from_secs(30)))
        );
        assert_eq!(r.trigger.connection, Some(2));
        assert_eq!(
            r.to_string(),
            "name=\"rule 1\" connection=2 fault=tls handshake=stall hang=30s"
        );
    }

    #[test]
    fn one_line_rules_use_the_same_keys() {
        let r = parse_rule_line(
            "packet=fragment nth=3 fault=lose-ack how=hang hang=5s name=\"two words\"",
            "--fault",
            2,
        )
        .unwrap();
        assert_eq!(r.fault, Fault::LoseAck(Loss::Hang(Duration::from_secs(5))));
        assert_eq!(r.name, "two words");
        assert_eq!(r.trigger.nth, Some(3));
        let e = parse_rule_line("fault=delay delay=1s bogus=1", "--fault", 2).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("--fault:2: "), "{e}");
        assert!(parse_rule_line("fault", "--fault", 1).is_err());
        assert!(parse_rule_line("fault=\"delay", "--fault", 1).is_err());
        assert!(parse_rule_line("", "--fault", 1).is_err());
    }

    /// Parses `rule`'s text back and checks it is `rule` again, all but `origin`.
    fn round_trip(rule: &Rule) {
        let line = rule.to_string();
        let back = parse_rule_line(&line, "--fault", 7).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(back.origin, "--fault:7");
        let normalised = Rule {
            origin: rule.origin.clone(),
            ..back
        };
        assert_eq!(&normalised, rule, "{line}");
    }

    fn hand_written() -> Vec<Rule> {
        let ms = Duration::from_millis;
        let any = Trigger::default;
        let fragments = || Trigger {
            packets: Some(vec![PacketType::Fragment]),
            ..any()
        };
        let triggers = [
            any(),
            fragments(),
            Trigger {
                packets: Some(PacketType::ALL.to_vec()),
                session: Some(2),
                nth: Some(3),
                every: Some(4),
                ..any()
            },
            Trigger {
                packets: Some(vec![]),
                ..any()
            },
            Trigger {
                probability: Some(0.1 + 0.2),
                ..any()
            },
            Trigger {
                probability: Some(1e-300),
                ..any()
            },
            Trigger {
                probability: Some(1.0),
                position: Some(Position::Offset(u64::MAX)),
                ..any()
            },
            Trigger {
                position: Some(Position::Offset(9_007_199_254_740_993)),
                ..any()
            },
            Trigger {
                position: Some(Position::Fraction(0.07)),
                ..any()
            },
            Trigger {
                position: Some(Position::Fraction(1.0 / 3.0)),
                ..any()
            },
            Trigger {
                position: Some(Position::Fraction(1.0)),
                ..any()
            },
            Trigger {
                position: Some(Position::First),
                ..any()
            },
            Trigger {
                position: Some(Position::Final),
                ..any()
            },
            Trigger {
                path: Some("/drop/*/file-?.bin".into()),
                ..any()
            },
            Trigger {
                path: Some("/with space/and \"quotes\" and \\ and 'single'".into()),
                ..any()
            },
            Trigger {
                from: Some(ms(250)),
                until: Some(Duration::new(3, 123_456_789)),
                ..any()
            },
            Trigger {
                until: Some(Duration::from_secs(86_400 * 3)),
                ..any()
            },
        ];
        let d = Duration::new(1, 500_000_000);
        let faults = [
            Fault::Delay(Dist::Fixed(ms(250))),
            Fault::Stall(Dist::Fixed(Duration::from_nanos(1))),
            Fault::Delay(Dist::Uniform {
                min: ms(1),
                max: ms(5),
            }),
            Fault::Delay(Dist::Normal {
                mean: ms(40),
                stddev: ms(20),
            }),
            Fault::Stall(Dist::LogNormal {
                median: ms(100),
                p99: d,
            }),
            Fault::Delay(Dist::Exponential {
                mean: Duration::from_secs(60),
            }),
            Fault::LoseAck(Loss::Close),
            Fault::LoseAck(Loss::Reset),
            Fault::LoseAck(Loss::Hang(d)),
            Fault::LoseAck(Loss::Status(599)),
            Fault::LoseRequest(Loss::Close),
            Fault::LoseRequest(Loss::Reset),
            Fault::LoseRequest(Loss::Hang(Duration::from_secs(30))),
            Fault::ResetMidBody {
                after: Portion::Bytes(65_536),
                keep: false,
            },
            Fault::ResetMidBody {
                after: Portion::Fraction(0.3),
                keep: true,
            },
            Fault::ResetMidBody {
                after: Portion::Fraction(1.0),
                keep: true,
            },
            Fault::LoseSession(SessionLoss::This { keep_file: false }),
            Fault::LoseSession(SessionLoss::This { keep_file: true }),
            Fault::LoseSession(SessionLoss::All { keep_file: true }),
            Fault::LoseSession(SessionLoss::Expire(ms(200))),
            Fault::Status {
                status: 503,
                code: None,
                context: None,
                retry_after: None,
            },
            Fault::Status {
                status: 100,
                code: Some(0x8007_0057),
                context: Some(5),
                retry_after: Some(u64::MAX),
            },
            Fault::Lie(Lie::Behind(100)),
            Fault::Lie(Lie::Ahead(u64::MAX)),
            Fault::Lie(Lie::BeyondTotal),
            Fault::Lie(Lie::Malformed),
            Fault::Lie(Lie::Missing),
            Fault::Lie(Lie::OtherSession),
            Fault::Lie(Lie::RangeNotSatisfiable(0)),
            Fault::Lie(Lie::NoReplyUrl),
            Fault::Broken(Broken::TruncatedHeaders),
            Fault::Broken(Broken::WrongLength),
            Fault::Broken(Broken::Garbage),
            Fault::Throttle {
                read: Some(65_536),
                write: None,
            },
            Fault::Throttle {
                read: None,
                write: Some(1),
            },
            Fault::Throttle {
                read: Some(1000),
                write: Some(2000),
            },
            Fault::Refuse,
            Fault::Mutate(Mutate {
                families: Vec::new(),
                count: 1,
            }),
            Fault::Mutate(Mutate {
                families: vec![Family::Value, Family::Framing],
                count: 8,
            }),
            Fault::Tls(TlsFault::Cert(BadCert::Expired)),
            Fault::Tls(TlsFault::Cert(BadCert::NotYetValid)),
            Fault::Tls(TlsFault::Cert(BadCert::WrongHost)),
            Fault::Tls(TlsFault::Cert(BadCert::SelfSigned)),
            Fault::Tls(TlsFault::Cert(BadCert::BadUsage)),
            Fault::Tls(TlsFault::HandshakeStall(ms(1500))),
            Fault::Tls(TlsFault::HandshakeReset),
            Fault::Tls(TlsFault::CloseNoNotify),
            Fault::MemberDown {
                member: 1,
                how: Down::Refuse,
            },
            Fault::MemberDown {
                member: 16,
                how: Down::Blackhole,
            },
            Fault::Notify(NotifyFault::Delay(ms(2500))),
            Fault::Notify(NotifyFault::Refuse),
            Fault::Notify(NotifyFault::Status(503)),
            Fault::Notify(NotifyFault::Garbage),
            Fault::Notify(NotifyFault::Twice),
            Fault::Auth(Auth {
                scheme: Scheme::Basic,
                credentials: None,
                legs: 1,
                again_after: None,
            }),
            Fault::Auth(Auth {
                scheme: Scheme::Basic,
                credentials: Some(("bits".into(), "p a=ss\"word".into())),
                legs: 2,
                again_after: Some(8),
            }),
            Fault::Auth(Auth {
                scheme: Scheme::Negotiate,
                credentials: None,
                legs: 16,
                again_after: Some(1),
            }),
            Fault::Auth(Auth {
                scheme: Scheme::Ntlm,
                credentials: None,
                legs: 3,
                again_after: None,
            }),
        ];
        let mut rules = Vec::new();
        for (i, fault) in faults.into_iter().enumerate() {
            let rule = |trigger: Trigger| Rule {
                name: format!("rule {i}"),
                origin: "hand".into(),
                trigger,
                fault: fault.clone(),
                times: None,
                skip: 0,
            };
            if fault.is_connection_fault() {
                rules.push(rule(Trigger {
                    from: Some(ms(1)),
                    until: Some(ms(2)),
                    every: Some(2),
                    probability: Some(0.5),
                    ..any()
                }));
                rules.push(rule(Trigger {
                    connection: Some(3),
                    ..any()
                }));
            } else if matches!(fault, Fault::Notify(_)) {
                rules.push(rule(Trigger {
                    session: Some(2),
                    nth: Some(1),
                    path: Some("/reply/*".into()),
                    probability: Some(0.5),
                    ..any()
                }));
            } else if fault.only_packets().is_some() {
                rules.push(rule(fragments()));
            } else {
                for trigger in triggers.iter().cloned() {
                    rules.push(rule(trigger));
                }
            }
        }
        for (name, times, skip) in [
            ("", Some(0), 1),
            ("503", Some(u64::MAX), u64::MAX),
            ("true", None, 3),
            ("tab\tnew\nline \u{7f} é ✓", Some(1), 0),
        ] {
            rules.push(Rule {
                name: name.into(),
                origin: "hand".into(),
                trigger: any(),
                fault: Fault::Refuse,
                times,
                skip,
            });
        }
        rules
    }

    #[test]
    fn every_shipped_rule_round_trips_through_its_one_line_text() {
        for (name, _) in crate::fault::shipped::SHIPPED {
            let profile = crate::fault::shipped::shipped(name).unwrap().unwrap();
            profile.rules.iter().for_each(round_trip);
        }
    }

    #[test]
    fn every_fault_parameter_and_trigger_round_trips_through_its_one_line_text() {
        let rules = hand_written();
        assert!(rules.len() > 300, "{}", rules.len());
        rules.iter().for_each(round_trip);
    }

    #[test]
    fn durations_and_fractions_round_trip_to_the_nanosecond_and_the_last_bit() {
        // A small deterministic generator: the point is many unremarkable values.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let bits = next();
            let fraction = (bits >> 11) as f64 / (1u64 << 53) as f64;
            // Nanoseconds up to a day, or whole ms / s, so every shape of text is exercised.
            let nanos = match bits % 3 {
                0 => next() % 86_400_000_000_000,
                1 => next() % 1_000 * 1_000_000,
                _ => next() % 100_000 * 1_000_000_000,
            };
            let rule = Rule {
                name: "r".into(),
                origin: "gen".into(),
                trigger: Trigger {
                    probability: Some(fraction),
                    position: Some(Position::Fraction(fraction)),
                    until: Some(Duration::from_nanos(nanos + 1)),
                    ..Trigger::default()
                },
                fault: Fault::Delay(Dist::Fixed(Duration::from_nanos(nanos))),
                times: None,
                skip: 0,
            };
            round_trip(&rule);
        }
    }

    #[test]
    fn a_rule_line_parses_from_a_json_string() {
        for rule in hand_written().iter().take(40) {
            let json = serde_json::to_value(rule).unwrap();
            let back = parse_rule_json(&json["line"], "POST /rules", 3).unwrap();
            assert_eq!(back.origin, "POST /rules:3");
            assert_eq!(
                Rule {
                    origin: rule.origin.clone(),
                    ..back
                },
                *rule
            );
        }
    }

    #[test]
    fn a_json_object_uses_the_profile_keys_and_validation() {
        let r = parse_rule_json(
            &serde_json::json!({"packet": "fragment", "nth": 3, "fault": "lose-ack", "how": "reset"}),
            "POST /rules",
            2,
        )
        .unwrap();
        assert_eq!(r.name, "rule 2");
        assert_eq!(r.origin, "POST /rules:2");
        assert_eq!(r.trigger.packets, Some(vec![PacketType::Fragment]));
        assert_eq!(r.trigger.nth, Some(3));
        assert_eq!(r.fault, Fault::LoseAck(Loss::Reset));
        let r = parse_rule_json(
            &serde_json::json!({
                "name": "lists, sizes and durations",
                "packet": ["fragment", "ping"],
                "probability": 0.25,
                "until": 5,
                "fault": "lose-request",
                "how": "hang",
                "hang": "250ms",
            }),
            "POST /rules",
            1,
        )
        .unwrap();
        assert_eq!(
            r.trigger.packets,
            Some(vec![PacketType::Fragment, PacketType::Ping])
        );
        assert_eq!(r.trigger.probability, Some(0.25));
        assert_eq!(r.trigger.until, Some(Duration::from_secs(5)));
        assert_eq!(
            r.fault,
            Fault::LoseRequest(Loss::Hang(Duration::from_millis(250)))
        );
        let r = parse_rule_json(
            &serde_json::json!({"packet": "fragment", "fault": "lie", "lie": "ahead", "by": u64::MAX}),
            "j",
            1,
        )
        .unwrap();
        assert_eq!(r.fault, Fault::Lie(Lie::Ahead(u64::MAX)));
        let r = parse_rule_json(
            &serde_json::json!({"packet": "fragment", "fault": "lie", "lie": "behind", "by": "4KiB"}),
            "j",
            1,
        )
        .unwrap();
        assert_eq!(r.fault, Fault::Lie(Lie::Behind(4096)));
    }

    #[test]
    fn json_rule_errors_name_the_origin_the_number_and_the_key() {
        for (json, wanted) in [
            (
                serde_json::json!({"fault": "refuse", "colour": "red"}),
                "j:4: unknown key `colour` in rule",
            ),
            (
                serde_json::json!({"pakcet": "fragment", "fault": "lose-ack"}),
                "j:4: unknown key `pakcet` in rule (or it does not apply to fault `lose-ack`); did you mean `packet`?",
            ),
            (
                serde_json::json!({"nth": 0, "fault": "lose-ack"}),
                "j:4: `nth` counts from 1",
            ),
            (
                serde_json::json!({"nth": -1, "fault": "lose-ack"}),
                "j:4: `nth` must be a whole number",
            ),
            (
                serde_json::json!({"fault": "delay", "delay": null}),
                "j:4: `delay` must not be null",
            ),
            (
                serde_json::json!({"fault": "delay", "delay": {"ms": 5}}),
                "j:4: `delay` must not be an object",
            ),
            (
                serde_json::json!({"packet": "ping"}),
                "j:4: missing `fault`",
            ),
            (serde_json::json!(42), "j:4: a rule is a string"),
            (serde_json::json!("fault=nope"), "j:4: unknown fault `nope`"),
        ] {
            let e = parse_rule_json(&json, "j", 4).unwrap_err().to_string();
            assert!(e.starts_with(wanted), "{json} → {e}");
        }
    }

    #[test]
    fn misspelt_keys_get_the_nearest_valid_key_suggested() {
        let e = parse_rule_line("pakcet=fragment fault=lose-ack", "--fault", 1).unwrap_err();
        assert!(e.message.ends_with("; did you mean `packet`?"), "{e}");
        let e = parse_rule_line("fault=lose-session scope=all keepfile=true", "--fault", 1)
            .unwrap_err();
        assert!(e.message.ends_with("; did you mean `keep-file`?"), "{e}");
        let e = err(&format!(
            "{HEAD}[[rule]]\nfault = \"delay\"\ndelay = \"1s\"\ndistrbution = \"fixed\"\n"
        ));
        assert!(
            e.starts_with("p.toml:6:") && e.ends_with("did you mean `distribution`?"),
            "{e}"
        );
        let e = err(&format!("{HEAD}[server]\nsession-timout = \"1s\"\n"));
        assert!(e.ends_with("did you mean `session-timeout`?"), "{e}");
        // Nothing near enough: no guess.
        let e = parse_rule_line("fault=refuse colour=red", "--fault", 1).unwrap_err();
        assert!(!e.message.contains("did you mean"), "{e}");
        let e = parse_rule_line("fault=refuse x=1", "--fault", 1).unwrap_err();
        assert!(!e.message.contains("did you mean"), "{e}");
    }

    #[test]
    fn a_misspelt_fault_key_is_named_in_the_missing_fault_error() {
        let e = parse_rule_line("packet=ping fualt=refuse", "--fault", 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--fault:1: missing `fault` (what the rule does); is `fualt` a misspelling of it?"
        );
        let e = err(&format!(
            "{HEAD}[[rule]]\npacket = \"ping\"\nfalt = \"refuse\"\n"
        ));
        assert!(e.starts_with("p.toml:5: missing `fault`"), "{e}");
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("packet", "packet"), 0);
        assert_eq!(levenshtein("pakcet", "packet"), 2);
        assert_eq!(levenshtein("packets", "packet"), 1);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("é", "e"), 1);
    }

    #[test]
    fn quoted_values_may_contain_escaped_quotes() {
        let r = parse_rule_line(r#"name="say \"hi\" now" fault=refuse"#, "--fault", 1).unwrap();
        assert_eq!(r.name, "say \"hi\" now");
    }

    #[test]
    fn percentages_read_as_the_nearest_fraction() {
        let r = parse_rule_line("offset=\"12.3%\" fault=lose-ack", "--fault", 1).unwrap();
        assert_eq!(r.trigger.position, Some(Position::Fraction(0.123)));
    }
}
