//! A Host-Id web farm: `--farm N` members behind the front URL, each keeping its own sessions
//! unless `--farm-shared`, and `member-down` faults that make a client fall back to the
//! original URL after `BITS-Host-Id-Fallback-Timeout` (docs/protocol.md §7.9, §10.28).

mod support;

use bitsmock::client::{Options, Uploader};
use bitsmock::config::FarmSize;
use std::time::Duration;
use support::serve::Serve;
use support::*;

async fn farm(members: u32, shared: bool, rules: &[&str]) -> Fixture {
    start_rules_with(rules, |c| {
        c.farm = Some(FarmSize { members, shared });
        c.vdir.host_id_fallback_timeout = Some(1);
    })
    .await
}

fn options() -> Options {
    Options {
        fragment_size: 64 * 1024,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(100),
        max_retries: 100,
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        ..Options::default()
    }
}

#[tokio::test]
async fn create_at_the_front_names_the_members_round_robin_and_each_keeps_its_sessions() {
    let f = farm(2, false, &[]).await;
    let members: Vec<String> = f.running.members.iter().map(|a| a.to_string()).collect();
    assert_eq!(members.len(), 2);
    let mut front = f.connect().await;
    let mut named = Vec::new();
    for _ in 0..3 {
        let ack = front
            .ok(&Req::create("/farm/a.bin").set("BITS-Session-Id", "x"))
            .await;
        assert_eq!(ack.header("BITS-Host-Id-Fallback-Timeout"), Some("1"));
        named.push(ack.header("BITS-Host-Id").unwrap().to_owned());
        // Only one session per destination at a time: cancel it where it lives.
        let session = ack.session_id().unwrap().to_owned();
        let home = ack.header("BITS-Host-Id").unwrap().parse().unwrap();
        let mut member = Conn::open(home).await;
        // The front does not know a member's session; its member does.
        let lost = front
            .ok(&Req::fragment("/farm/a.bin", &session, 0, 3, b"abc"))
            .await;
        assert_error(&lost, 500, SESSION_NOT_FOUND, &["BITS-Session-Id"]);
        let ack = member
            .ok(&Req::fragment("/farm/a.bin", &session, 0, 3, b"abc"))
            .await;
        assert_eq!(ack.received(), Some(3));
        assert_eq!(
            member
                .ok(&Req::cancel("/farm/a.bin", &session))
                .await
                .status,
            200
        );
    }
    assert_eq!(
        named,
        [members[0].clone(), members[1].clone(), members[0].clone()]
    );
    // A Create-Session at a member stays there: no Host-Id.
    let mut member = Conn::open(f.running.members[1]).await;
    let ack = member.ok(&Req::create("/farm/b.bin")).await;
    assert_eq!(ack.header("BITS-Host-Id"), None);
    let session = ack.session_id().unwrap().to_owned();
    let mut other = Conn::open(f.running.members[0]).await;
    let lost = other.ok(&Req::close("/farm/b.bin", &session)).await;
    assert_error(&lost, 500, SESSION_NOT_FOUND, &["BITS-Session-Id"]);
    f.stop().await;
}

#[tokio::test]
async fn with_a_shared_store_every_member_and_the_front_know_every_session() {
    let f = farm(2, true, &[]).await;
    let mut front = f.connect().await;
    let ack = front.ok(&Req::create("/shared/a.bin")).await;
    assert!(ack.header("BITS-Host-Id").is_some());
    let session = ack.session_id().unwrap().to_owned();
    let mut m2 = Conn::open(f.running.members[1]).await;
    assert_eq!(
        m2.ok(&Req::fragment("/shared/a.bin", &session, 0, 3, b"abc"))
            .await
            .received(),
        Some(3)
    );
    assert_eq!(
        front
            .ok(&Req::close("/shared/a.bin", &session))
            .await
            .status,
        200
    );
    assert_eq!(f.stored("/shared/a.bin").as_deref(), Some(&b"abc"[..]));
    f.stop().await;
}

/// Member 1 is down: the client is sent there, fails until the fallback timeout, goes back
/// to the original URL, finds its session unknown there (members keep their own), starts
/// over, and is sent to member 2, which takes the upload.
#[tokio::test]
async fn a_member_down_sends_the_client_back_to_the_front_and_a_new_session_to_the_next_member() {
    for how in ["refuse", "blackhole"] {
        let rule = format!("fault=member-down member=1 how={how}");
        let f = farm(2, false, &[&rule]).await;
        let (source, data) = f.source(300_000);
        let client = Uploader::new(Options {
            // A black hole answers nothing: only the request timeout ends each wait.
            request_timeout: Duration::from_millis(300),
            ..options()
        });
        let summary = client
            .upload(&source, &f.url("/down/a.bin"))
            .await
            .unwrap_or_else(|e| panic!("{how}: {e}"));
        assert_same(&f.stored("/down/a.bin").unwrap(), &data, "stored file");
        assert_eq!(
            summary.counts.host_fallbacks, 1,
            "{how}: {:?}",
            summary.counts
        );
        assert_eq!(
            summary.counts.session_restarts, 1,
            "{how}: {:?}",
            summary.counts
        );
        assert_eq!(
            summary.host_id.as_deref(),
            Some(f.running.members[1].to_string().as_str()),
            "{how}"
        );
        assert!(f.fired()[0] >= 1, "{how}");
        f.stop().await;
    }
}

/// The same outage with a shared store: back at the original URL the session is still
/// known, so the upload simply carries on there.
#[tokio::test]
async fn with_a_shared_store_the_fallback_carries_the_same_session_on_at_the_front() {
    let f = farm(2, true, &["fault=member-down member=1"]).await;
    let (source, data) = f.source(300_000);
    let summary = Uploader::new(options())
        .upload(&source, &f.url("/down/b.bin"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_same(&f.stored("/down/b.bin").unwrap(), &data, "stored file");
    assert_eq!(summary.counts.host_fallbacks, 1, "{:?}", summary.counts);
    assert_eq!(summary.counts.session_restarts, 0, "{:?}", summary.counts);
    f.stop().await;
}

#[tokio::test]
async fn serve_farm_lists_its_members_in_the_ready_json_and_the_banner() {
    let serve = Serve::start_json(&["--listen", ":0", "--farm", "3", "--farm-shared"], |_| {});
    let ready: serde_json::Value = serde_json::from_str(&serve.banner).unwrap();
    let members = ready["farm"].as_array().expect("farm in the ready JSON");
    assert_eq!(members.len(), 3);
    for m in members {
        let url = m.as_str().unwrap();
        let addr = url.strip_prefix("http://").unwrap().parse().unwrap();
        let ack = Conn::open(addr).await.ok(&Req::ping("/")).await;
        assert_eq!(ack.status, 200, "{url}");
    }
    let (_, stderr) = serve.stop();
    assert!(stderr.contains("farm members http://"), "{stderr}");
    assert!(stderr.contains("(shared store)"), "{stderr}");
}
