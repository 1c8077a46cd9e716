//! The control API (docs/admin-api.md) over real loopback sockets: every endpoint, the
//! access rules, and the harness flags of the real binary.

mod support;

use serde_json::json;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::admin::{Admin, assert_api_error, body_text, json_of, start_admin};
use support::serve::{PATIENCE, Serve, wait};
use support::{Conn, Req, SESSION_NOT_FOUND, assert_error, data, eventually};

const LONG: Duration = Duration::from_secs(20);

#[tokio::test]
async fn health_answers_ok_and_unknown_routes_and_methods_are_json_errors() {
    let (fx, admin) = start_admin(|_| {}).await;
    let resp = admin.get("/health").await;
    assert_eq!(resp.status, 200);
    assert_eq!(json_of(&resp), json!({ "ok": true }));
    assert_api_error(&admin.get("/nope").await, 404, "no such endpoint");
    let resp = admin.send(Req::new("DELETE", "/rules")).await;
    assert_api_error(&resp, 405, "DELETE");
    assert_eq!(resp.header("Allow"), Some("GET, PUT, POST"));
    let resp = admin.send(Req::new("GET", "/shutdown")).await;
    assert_eq!(resp.header("Allow"), Some("POST"));
    assert_api_error(&admin.get("/health?verbose=1").await, 400, "no parameters");
    // The upload port still speaks only BITS.
    fx.assert_alive().await;
    fx.stop().await;
}

#[tokio::test]
async fn config_shows_the_settings_and_the_current_rules() {
    let (fx, admin) = start_admin(|c| {
        c.seed = 42;
        c.rules = support::rules(&["name=slow packet=ping fault=delay delay=1ms"]);
    })
    .await;
    let config = admin.value("/config").await;
    assert_eq!(config["seed"], 42);
    assert_eq!(config["root"], fx.root.display().to_string());
    assert_eq!(config["rules"][0]["name"], "slow");
    assert_eq!(config["rules"][0]["fault"], "delay");
    assert!(config["rules"][0]["id"].is_u64());
    fx.stop().await;
}

#[tokio::test]
async fn sessions_lists_live_sessions_and_delete_forgets_one_by_id_in_any_form() {
    let (fx, admin) = start_admin(|_| {}).await;
    let mut conn = fx.connect().await;
    let first = conn.create("/drop/a.bin").await;
    let body = data(1000, 1);
    conn.fragment("/drop/a.bin", &first, &body, 0, 400).await;
    let second = conn.create("/drop/b.bin").await;
    let sessions = admin.value("/sessions").await;
    let listed = sessions.as_array().expect("an array");
    assert_eq!(listed.len(), 2, "{sessions}");
    assert_eq!(listed[0]["id"], first.as_str());
    assert_eq!(listed[0]["ordinal"], 1);
    assert_eq!(listed[0]["destination"], "/drop/a.bin");
    assert_eq!(listed[0]["total"], 1000);
    assert_eq!(listed[0]["received"], 400);
    assert!(listed[0]["idle_ms"].is_u64());
    assert_eq!(listed[1]["ordinal"], 2);
    assert_eq!(listed[1]["total"], serde_json::Value::Null);

    // Lower case, no braces.
    let bare = first
        .trim_matches(|c| c == '{' || c == '}')
        .to_ascii_lowercase();
    let resp = admin
        .send(Req::new("DELETE", &format!("/sessions/{bare}")))
        .await;
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    let ack = conn.fragment("/drop/a.bin", &first, &body, 400, 600).await;
    assert_error(&ack, 500, SESSION_NOT_FOUND, &["BITS-Session-Id"]);
    let again = admin
        .send(Req::new("DELETE", &format!("/sessions/{bare}")))
        .await;
    assert_api_error(&again, 404, "no live session");
    assert_api_error(
        &admin.send(Req::new("DELETE", "/sessions/not-an-id")).await,
        400,
        "not a session id",
    );
    // Percent-encoded braces, as URL libraries send them.
    let encoded = second.replace('{', "%7B").replace('}', "%7D");
    let resp = admin
        .send(Req::new("DELETE", &format!("/sessions/{encoded}")))
        .await;
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    assert_eq!(admin.value("/sessions").await, json!([]));
    fx.stop().await;
}

/// The request records in a journal answer, as (packet, session ordinal).
fn requests(answer: &serde_json::Value) -> Vec<(String, Option<u64>)> {
    answer["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == "request")
        .map(|e| {
            (
                e["packet"].as_str().unwrap_or("-").to_owned(),
                e["session"]["ordinal"].as_u64(),
            )
        })
        .collect()
}

#[tokio::test]
async fn journal_filters_by_session_and_packet_and_pages_with_since_and_limit() {
    let (fx, admin) = start_admin(|_| {}).await;
    let mut conn = fx.connect().await;
    let one = data(300, 2);
    conn.upload("/j/one.bin", &one, 100).await;
    let two = conn.create("/j/two.bin").await;
    conn.fragment("/j/two.bin", &two, &one, 0, 100).await;

    let all = admin.value("/journal").await;
    let last = all["last_seq"].as_u64().expect("last_seq");
    assert_eq!(
        all["events"]
            .as_array()
            .and_then(|e| e.last())
            .map(|e| e["seq"].clone()),
        Some(json!(last))
    );
    assert_eq!(all["events"][0]["event"], "started");

    let fragments = admin.value("/journal?packet=fragment").await;
    assert_eq!(
        requests(&fragments),
        vec![
            ("Fragment".to_owned(), Some(1)),
            ("Fragment".to_owned(), Some(1)),
            ("Fragment".to_owned(), Some(1)),
            ("Fragment".to_owned(), Some(2)),
        ]
    );
    let second = admin.value("/journal?session=2").await;
    let kinds: Vec<&str> = second["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(kinds, ["session-created", "request", "request"]);
    let by_id = admin
        .value(&format!(
            "/journal?session={}",
            two.to_ascii_lowercase().replace(['{', '}'], "")
        ))
        .await;
    assert_eq!(by_id["events"], second["events"]);
    let closes = admin.value("/journal?session=1&packet=close-session").await;
    assert_eq!(
        requests(&closes),
        vec![("Close-Session".to_owned(), Some(1))]
    );

    // Paging: two at a time from the start gives the same events as all at once.
    let mut since = 0;
    let mut paged = Vec::new();
    loop {
        let page = admin
            .value(&format!("/journal?since={since}&limit=2"))
            .await;
        let events = page["events"].as_array().unwrap().clone();
        assert!(events.len() <= 2);
        since = page["last_seq"].as_u64().unwrap();
        if events.is_empty() {
            break;
        }
        paged.extend(events);
    }
    assert_eq!(json!(paged), all["events"]);
    assert_eq!(since, last);
    assert_api_error(&admin.get("/journal?packet=pong").await, 400, "`packet`");
    fx.stop().await;
}

#[tokio::test]
async fn a_journal_wait_returns_as_soon_as_a_matching_event_arrives() {
    let (fx, admin) = start_admin(|_| {}).await;
    let since = admin.value("/journal").await["last_seq"].as_u64().unwrap();
    let poller = admin.clone();
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        poller
            .value(&format!(
                "/journal?since={since}&packet=create-session&wait=20s"
            ))
            .await
    });
    // Events that do not match keep it waiting.
    let mut conn = fx.connect().await;
    for _ in 0..3 {
        assert_eq!(conn.ok(&Req::ping("/w")).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !poll.is_finished(),
        "the poll answered without a matching event"
    );
    let id = conn.create("/w/a.bin").await;
    let answer = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the poll answers once a matching event arrives")
        .expect("poll task");
    assert!(started.elapsed() < Duration::from_secs(15));
    let events = answer["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{answer}");
    assert_eq!(events[0]["packet"], "Create-Session");
    assert_eq!(events[0]["session"]["id"], id.as_str());
    assert_eq!(answer["last_seq"], events[0]["seq"]);
    fx.stop().await;
}

#[tokio::test]
async fn a_journal_wait_returns_empty_at_its_deadline() {
    let (fx, admin) = start_admin(|_| {}).await;
    let since = admin.value("/journal").await["last_seq"].as_u64().unwrap();
    let mut conn = fx.connect().await;
    assert_eq!(conn.ok(&Req::ping("/w")).await.status, 200);
    let started = Instant::now();
    let answer = admin
        .value(&format!(
            "/journal?since={since}&packet=fragment&wait=400ms"
        ))
        .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "answered after {took:?}"
    );
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    assert_eq!(answer["events"], json!([]));
    // The Ping was looked at, so the next poll starts after it.
    assert!(answer["last_seq"].as_u64().unwrap() > since, "{answer}");
    fx.stop().await;
}

#[tokio::test]
async fn uploads_lists_committed_files_with_their_sha256() {
    let (fx, admin) = start_admin(|_| {}).await;
    let mut conn = fx.connect().await;
    let body = data(5000, 3);
    conn.upload("/up/file.bin", &body, 2000).await;
    let uploads = admin.value("/uploads").await;
    assert_eq!(uploads.as_array().map(Vec::len), Some(1), "{uploads}");
    assert_eq!(uploads[0]["path"], "up/file.bin");
    assert_eq!(uploads[0]["size"], 5000);
    assert_eq!(uploads[0]["ordinal"], 1);
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(uploads[0]["sha256"], digest.as_str());
    fx.stop().await;
}

#[tokio::test]
async fn rules_swapped_and_armed_during_a_running_upload_leave_its_bytes_intact() {
    let (fx, admin) = start_admin(|c| {
        c.rules = support::rules(&["packet=ping fault=status status=503"]);
    })
    .await;
    let target = "/hot/swap.bin";
    let body = data(40_000, 4);
    let mut conn = fx.connect().await;
    let session = conn.create(target).await;
    conn.fragment(target, &session, &body, 0, 10_000).await;

    let swapped = admin
        .json(
            "PUT",
            "/rules",
            &json!({ "rules": ["name=slow packet=fragment fault=delay delay=5ms"] }),
        )
        .await;
    assert_eq!(swapped.status, 200, "{}", body_text(&swapped));
    assert_eq!(json_of(&swapped)[0]["name"], "slow");
    // The old rule is gone: Pings are answered again.
    assert_eq!(conn.ok(&Req::ping("/hot")).await.status, 200);
    conn.fragment(target, &session, &body, 10_000, 10_000).await;

    let armed = admin
        .json(
            "POST",
            "/rules",
            &json!({ "rule": "packet=fragment fault=delay delay=1ms", "times": 1 }),
        )
        .await;
    assert_eq!(armed.status, 201, "{}", body_text(&armed));
    let id = json_of(&armed)["id"].as_u64().expect("an id");
    conn.send_from(target, &session, &body, 20_000, 10_000)
        .await;
    conn.close(target, &session).await;
    support::assert_same(&fx.stored(target).expect("committed"), &body, target);

    let rules = admin.value("/rules").await;
    let fired: Vec<(String, u64)> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["fired"].as_u64().unwrap(),
            )
        })
        .collect();
    // "slow" fired for the three fragments after the swap; the armed rule, named after its
    // place, once (`times`).
    assert_eq!(
        fired,
        vec![("slow".to_owned(), 3), ("rule 2".to_owned(), 1)]
    );
    assert_eq!(rules[1]["id"], id);
    assert_eq!(rules[1]["origin"], "POST /rules:1");
    fx.stop().await;
}

#[tokio::test]
async fn put_rules_takes_a_toml_profile_and_post_rules_takes_plain_text() {
    let (fx, admin) = start_admin(|_| {}).await;
    let profile = "name = \"outage\"\ndescription = \"pings fail\"\n\n[[rule]]\nname = \"down\"\npacket = \"ping\"\nfault = \"status\"\nstatus = 503\n";
    let resp = admin
        .send(
            Req::new("PUT", "/rules")
                .header("Content-Type", "application/toml")
                .body(profile.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    let mut conn = fx.connect().await;
    assert_eq!(conn.ok(&Req::ping("/p")).await.status, 503);
    let rules = admin.value("/rules").await;
    assert_eq!(rules[0]["name"], "down");
    assert_eq!(rules[0]["origin"], "PUT /rules:4");
    let id = rules[0]["id"].as_u64().unwrap();

    let resp = admin
        .send(Req::new("DELETE", &format!("/rules/{id}")))
        .await;
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    assert_eq!(conn.ok(&Req::ping("/p")).await.status, 200);
    assert_api_error(
        &admin
            .send(Req::new("DELETE", &format!("/rules/{id}")))
            .await,
        404,
        "no rule",
    );

    let resp = admin
        .text("POST", "/rules", "packet=ping fault=status status=502")
        .await;
    assert_eq!(resp.status, 201, "{}", body_text(&resp));
    assert_eq!(conn.ok(&Req::ping("/p")).await.status, 502);

    // Rules as objects of profile keys, in both PUT and POST.
    let resp = admin
        .json(
            "PUT",
            "/rules",
            &json!({ "rules": [{ "name": "obj", "packet": "ping", "fault": "status", "status": 504 }] }),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    assert_eq!(conn.ok(&Req::ping("/p")).await.status, 504);
    let resp = admin
        .json(
            "POST",
            "/rules",
            &json!({ "rule": { "packet": "create-session", "fault": "status", "status": 503 }, "times": 1 }),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", body_text(&resp));
    let rules = admin.value("/rules").await;
    assert_eq!(rules[1]["name"], "rule 2", "{rules}");
    // The `line` of a listed rule arms the same rule again.
    let line = rules[0]["line"].as_str().expect("line").to_owned();
    let resp = admin.text("POST", "/rules", &line).await;
    assert_eq!(resp.status, 201, "{line}: {}", body_text(&resp));
    assert_eq!(admin.value("/rules").await[2]["name"], "obj");
    fx.stop().await;
}

#[tokio::test]
async fn an_armed_window_ends_on_its_own() {
    let (fx, admin) = start_admin(|_| {}).await;
    let resp = admin
        .json(
            "POST",
            "/rules",
            &json!({ "rule": "packet=ping fault=status status=503", "for": "600ms" }),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", body_text(&resp));
    let mut conn = fx.connect().await;
    assert_eq!(conn.ok(&Req::ping("/o")).await.status, 503);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(conn.ok(&Req::ping("/o")).await.status, 200);
    fx.stop().await;
}

#[tokio::test]
async fn bad_rule_bodies_are_400_with_the_line_at_fault() {
    let (fx, admin) = start_admin(|c| {
        c.rules = support::rules(&["packet=ping fault=status status=503"]);
    })
    .await;
    let profile = "name = \"p\"\ndescription = \"d\"\n[[rule]]\nfault = \"delay\"\ndelay = \"1ms\"\n[[rule]]\nfault = \"explode\"\n";
    let resp = admin.text("PUT", "/rules", profile).await;
    assert_api_error(&resp, 400, "PUT /rules:7: unknown fault `explode`");
    assert_eq!(json_of(&resp)["line"], 7);

    let resp = admin
        .json(
            "PUT",
            "/rules",
            &json!({ "rules": ["fault=delay delay=1ms", "fault=delay delay=1ms", "fault=delay dleay=1ms"] }),
        )
        .await;
    assert_api_error(&resp, 400, "PUT /rules:3: ");
    assert_eq!(json_of(&resp)["line"], 3);

    assert_api_error(
        &admin
            .text("POST", "/rules", "fault=nothing-like-this")
            .await,
        400,
        "POST /rules:1: ",
    );
    let broken = admin
        .send(
            Req::new("PUT", "/rules")
                .header("Content-Type", "application/json")
                .body(b"{\n\"rules\": [\n".to_vec()),
        )
        .await;
    assert_api_error(&broken, 400, "not JSON");
    assert_api_error(
        &admin
            .json(
                "POST",
                "/rules",
                &json!({ "rule": "fault=delay delay=1ms", "times": 0 }),
            )
            .await,
        400,
        "`times`",
    );
    // Nothing was replaced by the failed attempts.
    let rules = admin.value("/rules").await;
    assert_eq!(rules.as_array().map(Vec::len), Some(1), "{rules}");
    assert_eq!(fx.connect().await.ok(&Req::ping("/x")).await.status, 503);
    fx.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let (fx, admin) = start_admin(|_| {}).await;
    let resp = admin
        .send(Req::new("PUT", "/rules").body(vec![b'#'; (1 << 20) + 1]))
        .await;
    assert_api_error(&resp, 413, "larger than");
    fx.stop().await;
}

#[tokio::test]
async fn reset_drops_sessions_and_rules_and_optionally_the_uploads() {
    let (fx, admin) = start_admin(|_| {}).await;
    let mut conn = fx.connect().await;
    conn.upload("/r/kept.bin", &data(100, 5), 100).await;
    conn.create("/r/open.bin").await;
    let armed = admin
        .text("POST", "/rules", "packet=ping fault=status status=503")
        .await;
    assert_eq!(armed.status, 201);

    let resp = admin.send(Req::new("POST", "/reset")).await;
    assert_eq!(json_of(&resp), json!({ "ok": true }));
    assert_eq!(admin.value("/sessions").await, json!([]));
    assert_eq!(admin.value("/rules").await, json!([]));
    assert!(
        fx.stored("/r/kept.bin").is_some(),
        "a plain reset keeps the files"
    );
    let created = conn.create("/r/again.bin").await;
    let sessions = admin.value("/sessions").await;
    assert_eq!(sessions[0]["id"], created.as_str());
    assert_eq!(sessions[0]["ordinal"], 1, "ordinals start from 1 again");

    let resp = admin.send(Req::new("POST", "/reset?uploads=true")).await;
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    assert!(
        fx.stored("/r/kept.bin").is_none(),
        "?uploads=true empties the root"
    );
    fx.stop().await;
}

/// One sample: metric name, labels (unescaped), value.
type Sample = (String, Vec<(String, String)>, f64);

/// `name{labels} value` or `name value`, as the text format 0.0.4 puts a sample.
fn parse_sample(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => {
            let mut body = rest.strip_suffix('}')?;
            let mut labels = Vec::new();
            while !body.is_empty() {
                let (key, after) = body.split_once("=\"")?;
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next()? {
                        (_, '\\') => match chars.next()?.1 {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            _ => return None,
                        },
                        (i, '"') => break i,
                        (_, c) => value.push(c),
                    }
                };
                labels.push((key.to_owned(), value));
                body = after[end + 1..]
                    .strip_prefix(',')
                    .unwrap_or(&after[end + 1..]);
            }
            (name, labels)
        }
    };
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    valid.then(|| (name.to_owned(), labels, value))
}

#[tokio::test]
async fn metrics_are_prometheus_text_that_parses_and_adds_up() {
    let (fx, admin) = start_admin(|c| {
        c.rules = support::rules(&["name='odd \"name\\ here' packet=ping fault=delay delay=1ms"]);
    })
    .await;
    let mut conn = fx.connect().await;
    assert_eq!(conn.ok(&Req::ping("/m")).await.status, 200);
    conn.upload("/m/a.bin", &data(3000, 6), 1000).await;
    let resp = admin.get("/metrics").await;
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("Content-Type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{resp:?}"
    );
    let text = body_text(&resp);
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            assert!(
                comment.starts_with(" HELP bitsmock_") || comment.starts_with(" TYPE bitsmock_"),
                "{line}"
            );
            continue;
        }
        samples.push(parse_sample(line).unwrap_or_else(|| panic!("not a sample: {line:?}")));
    }
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v))
            })
            .map(|(_, _, v)| *v)
    };
    assert_eq!(
        value(
            "bitsmock_requests_total",
            &[("packet", "Fragment"), ("sent", "200")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            "bitsmock_requests_total",
            &[("packet", "Ping"), ("sent", "200")]
        ),
        Some(1.0)
    );
    assert_eq!(value("bitsmock_bytes_received_total", &[]), Some(3000.0));
    assert_eq!(value("bitsmock_bytes_stored_total", &[]), Some(3000.0));
    assert_eq!(value("bitsmock_sessions_created_total", &[]), Some(1.0));
    assert_eq!(value("bitsmock_uploads_committed_total", &[]), Some(1.0));
    assert_eq!(value("bitsmock_sessions_live", &[]), Some(0.0));
    assert_eq!(value("bitsmock_connections_open", &[]), Some(1.0));
    assert_eq!(value("bitsmock_connections_total", &[]), Some(1.0));
    let rule = samples
        .iter()
        .find(|(n, _, _)| n == "bitsmock_faults_fired_total")
        .expect("a fired-faults sample");
    assert!(
        rule.1
            .contains(&("name".to_owned(), "odd \"name\\ here".to_owned())),
        "{rule:?}"
    );
    assert_eq!(rule.2, 1.0);
    fx.stop().await;
}

#[tokio::test]
async fn with_a_token_every_request_needs_it_and_gets_a_bearer_challenge_otherwise() {
    let (fx, admin) = start_admin(|c| c.admin_token = Some("t0ken".into())).await;
    assert_eq!(admin.get("/health").await.status, 200);
    let anonymous = Admin::new(admin.addr);
    for req in [
        Req::new("GET", "/health"),
        Req::new("POST", "/shutdown"),
        Req::new("GET", "/nope"),
    ] {
        let resp = anonymous.send(req).await;
        assert_api_error(&resp, 401, "token");
        assert!(
            resp.header("WWW-Authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{resp:?}"
        );
    }
    let wrong = Admin::with_token(admin.addr, "t0ke");
    assert_eq!(wrong.get("/health").await.status, 401);
    let resp = anonymous
        .send(Req::new("GET", "/health").header("Authorization", "Basic dDBrZW4="))
        .await;
    assert_eq!(resp.status, 401);
    // With a token, a web page's request (Origin) is as good as any other.
    let resp = admin
        .send(Req::new("GET", "/health").header("Origin", "http://localhost"))
        .await;
    assert_eq!(resp.status, 200);
    // Nothing was shut down by the refused request.
    fx.assert_alive().await;
    fx.stop().await;
}

#[tokio::test]
async fn without_a_token_requests_from_web_pages_are_refused() {
    let (fx, admin) = start_admin(|_| {}).await;
    let resp = admin
        .send(Req::new("POST", "/shutdown").header("Origin", "http://evil.example"))
        .await;
    assert_api_error(&resp, 403, "Origin");
    fx.assert_alive().await;
    fx.stop().await;
}

#[tokio::test]
async fn shutdown_answers_202_then_stops_the_server_and_the_control_api() {
    let (fx, admin) = start_admin(|_| {}).await;
    let upload_port = fx.addr();
    let resp = admin.send(Req::new("POST", "/shutdown")).await;
    assert_eq!(resp.status, 202);
    assert_eq!(json_of(&resp), json!({ "ok": true }));
    tokio::time::timeout(LONG, fx.running.stopped())
        .await
        .expect("the server stops after POST /shutdown")
        .expect("cleanly");
    assert!(tokio::net::TcpStream::connect(upload_port).await.is_err());
    assert!(tokio::net::TcpStream::connect(admin.addr).await.is_err());
}

// ---- the real binary ----

/// `GET /health` through a control API URL from the binary's JSON.
async fn healthy(admin_url: &str) -> bool {
    let Some(addr) = admin_url
        .strip_prefix("http://")
        .and_then(|a| a.parse::<SocketAddr>().ok())
    else {
        return false;
    };
    Admin::new(addr).get("/health").await.status == 200
}

#[tokio::test]
async fn json_prints_the_ready_object_first_and_the_banner_on_stderr() {
    let mut serve = Serve::start_json(&["--listen", ":0", "--admin", ":0", "--seed", "9"], |_| {});
    let ready: serde_json::Value = serde_json::from_str(&serve.banner).expect("JSON first line");
    assert_eq!(ready["url"], format!("http://{}", serve.addr));
    assert_eq!(ready["seed"], 9);
    assert_eq!(ready["pid"], serve.pid());
    let admin_url = ready["admin_url"].as_str().expect("admin_url").to_owned();
    assert!(healthy(&admin_url).await);
    // POST /shutdown ends the process cleanly.
    let addr: SocketAddr = admin_url.trim_start_matches("http://").parse().unwrap();
    assert_eq!(
        Admin::new(addr)
            .send(Req::new("POST", "/shutdown"))
            .await
            .status,
        202
    );
    eventually("bitsmock exits after POST /shutdown", LONG, || {
        serve.exited()
    })
    .await;
    let (status, rest, stderr) = serve.finish(PATIENCE);
    assert!(status.is_some_and(|s| s.success()), "{status:?} {stderr}");
    assert!(rest.is_empty(), "stdout holds only the JSON line: {rest:?}");
    assert!(stderr.contains("bitsmock listening on http://"), "{stderr}");
}

#[tokio::test]
async fn ready_file_appears_whole_with_the_urls_and_no_admin_url_without_admin() {
    let dir = tempfile::tempdir().unwrap();
    let ready_path = dir.path().join("ready.json");
    let shown = ready_path.display().to_string();
    let serve = Serve::start(&["--listen", ":0", "--ready-file", &shown]);
    eventually("the ready file exists", LONG, || ready_path.exists()).await;
    let ready: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ready_path).unwrap()).expect("whole JSON");
    assert_eq!(ready["url"], format!("http://{}", serve.addr));
    assert_eq!(ready["admin_url"], serde_json::Value::Null);
    assert_eq!(ready["pid"], serve.pid());
    assert!(ready["seed"].is_u64());
    assert!(!dir.path().join("ready.json.tmp").exists());
    assert!(serve.banner.starts_with("bitsmock listening on http://"));
    serve.stop();
}

#[tokio::test]
async fn exit_on_stdin_close_shuts_down_gracefully_when_stdin_ends() {
    let mut serve = Serve::start_with(&["--listen", ":0", "--exit-on-stdin-close"], |c| {
        c.stdin(Stdio::piped());
    });
    let mut conn = Conn::open(serve.addr).await;
    assert_eq!(conn.ok(&Req::ping("/s")).await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!serve.exited(), "exited while stdin was still open");
    serve.close_stdin();
    let (status, _, stderr) = serve.finish(PATIENCE);
    assert!(status.is_some_and(|s| s.success()), "{status:?} {stderr}");
    assert!(stderr.contains("stdin closed"), "{stderr}");
}

#[tokio::test]
async fn admin_token_mark_faults_and_journal_flags_reach_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("events.ndjson");
    let ready_path = dir.path().join("ready.json");
    let serve = Serve::start(&[
        "--listen",
        ":0",
        "--admin",
        "127.0.0.1:0",
        "--admin-token",
        "sesame",
        "--mark-faults",
        "--journal",
        &journal.display().to_string(),
        "--ready-file",
        &ready_path.display().to_string(),
        "--fault",
        "packet=ping fault=status status=503",
    ]);
    eventually("the ready file exists", LONG, || ready_path.exists()).await;
    let ready: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ready_path).unwrap()).unwrap();
    let addr: SocketAddr = ready["admin_url"]
        .as_str()
        .and_then(|u| u.strip_prefix("http://"))
        .and_then(|a| a.parse().ok())
        .expect("admin_url");
    assert!(
        serve
            .banner
            .contains(&format!("control API on http://{addr}/")),
        "{}",
        serve.banner
    );
    assert_eq!(Admin::new(addr).get("/health").await.status, 401);
    assert_eq!(
        Admin::with_token(addr, "sesame")
            .get("/health")
            .await
            .status,
        200
    );
    let ack = Conn::open(serve.addr).await.ok(&Req::ping("/f")).await;
    assert_eq!(ack.status, 503);
    assert!(ack.header("X-Bitsmock-Fault").is_some(), "{ack:?}");
    let (rest, _) = serve.stop();
    assert!(rest.iter().any(|l| l.contains("fired 1 time")), "{rest:?}");
    let lines = std::fs::read_to_string(&journal).expect("the journal file");
    let events: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON"))
        .collect();
    assert_eq!(
        events.first().map(|e| e["event"].clone()),
        Some(json!("started"))
    );
    assert_eq!(
        events.last().map(|e| e["event"].clone()),
        Some(json!("stopped"))
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "request" && e["packet"] == "Ping")
    );
}

#[test]
fn admin_token_without_admin_is_a_usage_error() {
    let out = support::serve::run(support::serve::bitsmock(&[
        "serve",
        "--listen",
        ":0",
        "--admin-token",
        "x",
    ]));
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        support::serve::text(&out.stderr)
    );
    let mut child = support::serve::bitsmock(&["serve", "--listen", ":0", "--admin", "nowhere"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait(&mut child, PATIENCE).expect("exits");
    assert_eq!(status.code(), Some(2));
}
