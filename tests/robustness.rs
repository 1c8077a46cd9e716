//! End-to-end robustness: the reference client (`bitsmock::client`) against every shipped
//! profile, over loopback.
//!
//! For each profile a correct client can survive, files from 1 byte to 16 MiB are uploaded
//! with odd fragment sizes at the profile's fixed seed, and every stored file must be
//! byte-identical to its source. Every rule of every profile must fire at least once
//! (`Server::fire_counts`), so no profile is dead weight. Deliberately fatal scenarios must
//! fail with the documented error and leave nothing at the destination.
//!
//! Delay-heavy profiles run with a small `time_scale`. Run with `--nocapture` to see the
//! per-profile retry figures quoted in docs/client.md.

mod support;

use bitsmock::Config;
use bitsmock::client::{Counts, Credentials, Options, Summary, UploadError, Uploader};
use bitsmock::config::Settings;
use bitsmock::fault::Profile;
use bitsmock::fault::shipped;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{Fixture, rules, start_from};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
/// The "tens of MiB" case every survivable profile gets.
const BIG: u64 = 16 * MIB + 3;

/// A server running a shipped profile, with its own upload root and source files.
struct Bed {
    fx: Fixture,
    profile: Profile,
}

/// Starts a server as `bitsmock serve --profile NAME --time-scale SCALE` would, then lets the
/// test adjust the config.
async fn bed(name: &str, time_scale: f64, adjust: impl FnOnce(&mut Config)) -> Bed {
    let profile = shipped::load(name).unwrap_or_else(|e| panic!("{e}"));
    let fx = start_from(|root| {
        // The one merge `serve` uses; the seed is pinned so an unseeded profile stays
        // reproducible.
        let flags = Settings {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            root: Some(root.to_path_buf()),
            seed: Some(profile.seed.unwrap_or(0)),
            time_scale: Some(time_scale),
            header_read_timeout: Some(Duration::from_secs(10)),
            body_read_timeout: Some(Duration::from_secs(10)),
            ..Settings::default()
        };
        let mut config =
            Config::from_parts(Some(&profile), flags).unwrap_or_else(|e| panic!("{e}"));
        adjust(&mut config);
        config
    })
    .await;
    Bed { fx, profile }
}

impl Bed {
    fn url(&self, path: &str) -> String {
        self.fx.url(path)
    }

    fn stored_path(&self, path: &str) -> PathBuf {
        self.fx.stored_path(path)
    }

    /// A source file of `size` pseudo-random bytes (seeded by size and `seed`).
    fn source(&self, size: u64, seed: u64) -> PathBuf {
        let path = self.fx.dir.path().join(format!("src-{size}-{seed}.bin"));
        if !path.exists() {
            write_source(&path, size, seed);
        }
        path
    }

    /// Uploads each (size, fragment size) case to its own destination and checks that the
    /// stored file is byte-identical to the source.
    async fn upload_all(&self, client: &Uploader, cases: &[(u64, u64)]) -> Vec<Summary> {
        let mut summaries = Vec::new();
        for (i, &(size, fragment)) in cases.iter().enumerate() {
            summaries.push(self.upload_one(client, i, size, fragment).await);
        }
        summaries
    }

    async fn upload_one(&self, client: &Uploader, i: usize, size: u64, fragment: u64) -> Summary {
        let source = self.source(size, i as u64);
        let path = format!("/{}/{i}-{size}.bin", self.profile.name);
        let client = Uploader::new(Options {
            fragment_size: fragment,
            ..client.options().clone()
        });
        let summary = client
            .upload(&source, &self.url(&path))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{}: uploading {size} bytes in {fragment}-byte fragments failed: {e}",
                    self.profile.name
                )
            });
        assert_eq!(summary.bytes, size);
        assert_identical(&self.stored_path(&path), &source, &self.profile.name);
        summary
    }

    /// Every rule of the profile fired at least once (rules a test added come after them).
    fn assert_every_rule_fired(&self) {
        let mut counts = self.fx.running.server.fire_counts();
        assert!(counts.len() >= self.profile.rules.len());
        counts.truncate(self.profile.rules.len());
        for (name, fired) in &counts {
            assert!(
                *fired > 0,
                "{}: rule `{name}` never fired (fire counts: {counts:?})",
                self.profile.name
            );
        }
    }

    /// Prints the totals that docs/client.md quotes.
    fn report(&self, summaries: &[Summary]) {
        let mut total = Counts::default();
        for s in summaries {
            total += &s.counts;
        }
        let bytes: u64 = summaries.iter().map(|s| s.bytes).sum();
        println!(
            "{:<16} uploads {:>2}  bytes {:>9}  requests {:>4}  retries {:>3}  resumes {:>3}  \
             restarts {:>2}  corrections {:>3}  protocol errors {:>2}  auth {:>2}  fires {:?}",
            self.profile.name,
            summaries.len(),
            bytes,
            total.requests,
            total.retries,
            total.resumes,
            total.session_restarts,
            total.offset_corrections,
            total.protocol_errors,
            total.auth_challenges,
            self.fx
                .running
                .server
                .fire_counts()
                .iter()
                .map(|(_, n)| *n)
                .collect::<Vec<_>>()
        );
    }

    async fn stop(self) {
        self.fx.stop().await;
    }
}

/// Short backoff and a generous retry budget: a correct client on a very bad day.
fn patient() -> Uploader {
    Uploader::new(Options {
        backoff_base: Duration::from_millis(2),
        backoff_cap: Duration::from_millis(50),
        max_retries: 30,
        max_restarts: 30,
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        ..Options::default()
    })
}

fn write_source(path: &Path, size: u64, seed: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create source"));
    let mut x = seed ^ size.rotate_left(29) ^ 0x9E37_79B9_7F4A_7C15;
    let mut left = size;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        out.write_all(&buf[..n]).expect("write source");
        left -= n as u64;
    }
    out.flush().expect("flush source");
}

/// Compares two files chunk by chunk and names the first difference.
fn assert_identical(stored: &Path, source: &Path, what: &str) {
    let mut a = std::fs::File::open(stored)
        .unwrap_or_else(|e| panic!("{what}: {} is missing: {e}", stored.display()));
    let mut b = std::fs::File::open(source).expect("source");
    let (la, lb) = (
        a.metadata().expect("meta").len(),
        b.metadata().expect("meta").len(),
    );
    assert_eq!(la, lb, "{what}: {} has the wrong length", stored.display());
    let mut offset = 0u64;
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x).expect("read stored");
        if n == 0 {
            break;
        }
        b.read_exact(&mut y[..n]).expect("read source");
        if let Some(i) = (0..n).find(|&i| x[i] != y[i]) {
            panic!(
                "{what}: {} differs from the source at byte {}",
                stored.display(),
                offset + i as u64
            );
        }
        offset += n as u64;
    }
}

// ---------------------------------------------------------------------------------------
// Every survivable shipped profile
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_uploads_every_size_byte_identically() {
    let bed = bed("clean", 1.0, |_| {}).await;
    let s = bed
        .upload_all(
            &patient(),
            &[
                (0, MIB),
                (1, MIB),
                (5 * KIB - 1, 1000),
                (MIB + 7, 65_537),
                (BIG, MIB),
                (24 * MIB + 5, 4 * MIB - 1),
            ],
        )
        .await;
    bed.report(&s);
    for summary in &s {
        assert_eq!(summary.counts.retries, 0, "{summary}");
        assert_eq!(summary.counts.session_restarts, 0, "{summary}");
    }
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_acks_are_survived() {
    let bed = bed("lost-acks", 0.05, |_| {}).await;
    let s = bed
        .upload_all(
            &patient(),
            &[
                (1, MIB),
                (100_003, 7_001),
                (3 * MIB + 1, 65_539),
                (BIG, MIB),
            ],
        )
        .await;
    bed.report(&s);
    assert!(s.iter().map(|s| s.counts.resumes).sum::<u64>() > 0);
    bed.assert_every_rule_fired();
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_loss_restarts_from_byte_zero() {
    let bed = bed("session-loss", 1.0, |_| {}).await;
    // The first session must see a 3rd fragment: the multi-fragment upload goes first.
    let s = bed
        .upload_all(
            &patient(),
            &[
                (300_007, 20_011),
                (1, MIB),
                (2 * MIB + 5, 100_003),
                (BIG, 2 * MIB - 1),
            ],
        )
        .await;
    bed.report(&s);
    assert!(s.iter().map(|s| s.counts.session_restarts).sum::<u64>() > 0);
    bed.assert_every_rule_fired();
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_server_is_waited_for() {
    let bed = bed("slow-server", 0.01, |_| {}).await;
    let s = bed
        .upload_all(
            &patient(),
            &[
                (1, MIB),
                (MIB + 1, 33_333),
                (4 * MIB + 3, 262_147),
                (BIG, MIB),
            ],
        )
        .await;
    bed.report(&s);
    bed.assert_every_rule_fired();
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_wifi_is_survived() {
    let bed = bed("flaky-wifi", 0.05, |_| {}).await;
    let s = bed
        .upload_all(
            &patient(),
            &[
                (1, MIB),
                (2 * MIB + 9, 16_411),
                (6 * MIB + 1, 100_003),
                (BIG, MIB),
            ],
        )
        .await;
    bed.report(&s);
    assert!(s.iter().map(|s| s.counts.retries).sum::<u64>() > 0);
    bed.assert_every_rule_fired();
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_ridden_out() {
    // time_scale 0.2: healthy for 200 ms, refused for 400 ms, healthy again. An extra rule
    // holds the first upload's 2nd Ack for 300 ms, so its 3rd fragment arrives on an open
    // connection inside the window and the new connections after it are refused.
    let bed = bed("outage", 0.2, |c| {
        c.rules.extend(rules(&[
            "session=1 packet=fragment nth=2 fault=delay delay=1500ms",
        ]));
    })
    .await;
    let client = patient();
    let mut s = vec![bed.upload_one(&client, 0, 2 * MIB + 1, 65_537).await];
    s.push(bed.upload_one(&client, 1, 1, MIB).await);
    s.push(bed.upload_one(&client, 2, BIG, MIB).await);
    bed.report(&s);
    assert!(s.iter().map(|s| s.counts.retries).sum::<u64>() > 0);
    bed.assert_every_rule_fired();
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_server_is_followed_where_plausible_and_retried_where_not() {
    let bed = bed("lying-server", 1.0, |_| {}).await;
    let s = bed
        .upload_all(
            &patient(),
            &[
                (1, MIB),
                (200_003, 5 * KIB),
                (3 * MIB + 7, 30_011),
                (BIG, MIB),
            ],
        )
        .await;
    bed.report(&s);
    assert!(s.iter().map(|s| s.counts.offset_corrections).sum::<u64>() > 0);
    assert!(s.iter().map(|s| s.counts.protocol_errors).sum::<u64>() > 0);
    bed.assert_every_rule_fired();
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_body_resets_are_resumed() {
    let bed = bed("mid-body-resets", 1.0, |_| {}).await;
    let s = bed
        .upload_all(
            &patient(),
            &[
                (1, MIB),
                (500_009, 10_007),
                (4 * MIB + 1, 131_073),
                (BIG, MIB),
            ],
        )
        .await;
    bed.report(&s);
    assert!(s.iter().map(|s| s.counts.resumes).sum::<u64>() > 0);
    bed.assert_every_rule_fired();
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_storm_is_outlasted() {
    let bed = bed("restart-storm", 1.0, |_| {}).await;
    let s = bed
        .upload_all(
            &patient(),
            &[
                (1, MIB),
                (MIB + 3, 50_021),
                (3 * MIB + 1, 262_145),
                (BIG, MIB),
            ],
        )
        .await;
    bed.report(&s);
    assert!(s.iter().map(|s| s.counts.session_restarts).sum::<u64>() > 0);
    bed.assert_every_rule_fired();
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_challenges_are_answered_with_credentials() {
    let bed = bed("auth-challenges", 1.0, |_| {}).await;
    let client = Uploader::new(Options {
        credentials: Some(Credentials {
            user: "bits".into(),
            password: "mock".into(),
        }),
        ..patient().options().clone()
    });
    let s = bed
        .upload_all(&client, &[(1, MIB), (MIB + 3, 10_007), (BIG, MIB)])
        .await;
    bed.report(&s);
    // Challenged once per connection, then again every 8 fragments.
    assert!(s[1].counts.auth_challenges > 1, "{}", s[1]);
    assert_eq!(s.iter().map(|s| s.counts.retries).sum::<u64>(), 0);
    bed.assert_every_rule_fired();
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_is_survived() {
    let bed = bed("hostile", 0.05, |_| {}).await;
    let mut cases = vec![(1, MIB)];
    for i in 0..6u64 {
        cases.push((2 * MIB + 11 * i + 1, 65_537));
    }
    cases.push((BIG, MIB));
    let s = bed.upload_all(&patient(), &cases).await;
    bed.report(&s);
    bed.assert_every_rule_fired();
    bed.stop().await;
}

// ---------------------------------------------------------------------------------------
// Deliberately fatal scenarios: the documented error, and nothing at the destination
// ---------------------------------------------------------------------------------------

fn assert_nothing_stored(bed: &Bed, path: &str) {
    assert!(
        !bed.stored_path(path).exists(),
        "{} appeared after a failed upload",
        bed.stored_path(path).display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_challenges_without_credentials_fail_with_401() {
    let bed = bed("auth-challenges", 1.0, |_| {}).await;
    let source = bed.source(100_000, 1);
    let path = "/auth/none.bin";
    let err = patient()
        .upload(&source, &bed.url(path))
        .await
        .expect_err("no credentials: must fail");
    match &err {
        UploadError::Refused(r) => {
            assert_eq!(r.status, 401);
            assert_eq!(r.code, None);
            assert_eq!(r.hresult(), 0x8019_0191);
        }
        other => panic!("expected a 401 refusal, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("401 Unauthorized"), "{text}");
    assert!(text.contains("0x80190191"), "{text}");
    assert!(text.contains("no credentials"), "{text}");
    assert_eq!(err.hresult(), Some(0x8019_0191));
    assert_nothing_stored(&bed, path);
    bed.assert_every_rule_fired();
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_with_401_after_one_more_try() {
    let bed = bed("auth-challenges", 1.0, |_| {}).await;
    let source = bed.source(10_000, 1);
    let client = Uploader::new(Options {
        credentials: Some(Credentials {
            user: "bits".into(),
            password: "wrong".into(),
        }),
        ..patient().options().clone()
    });
    let err = client
        .upload(&source, &bed.url("/auth/wrong.bin"))
        .await
        .expect_err("wrong password: must fail");
    assert_eq!(err.status(), Some(401));
    assert!(
        err.to_string().contains("rejected the credentials"),
        "{err}"
    );
    assert_nothing_stored(&bed, "/auth/wrong.bin");
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_upload_fails_with_bg_e_too_large_and_leaves_nothing() {
    let bed = bed("clean", 1.0, |c| c.vdir.max_upload_size = Some(MIB)).await;
    let source = bed.source(2 * MIB, 1);
    let path = "/big/too.bin";
    let err = patient()
        .upload(&source, &bed.url(path))
        .await
        .expect_err("over the limit: must fail");
    match &err {
        UploadError::Refused(r) => {
            assert_eq!(r.status, 500);
            assert_eq!(r.code, Some(0x8020_0020));
            assert_eq!(r.context, Some(0x5));
        }
        other => panic!("expected BG_E_TOO_LARGE, got {other:?}"),
    }
    assert!(
        err.to_string().contains("0x80200020 (BG_E_TOO_LARGE)"),
        "{err}"
    );
    assert_nothing_stored(&bed, path);
    // The client cancelled its session: no session and no temp file stays behind.
    assert_eq!(bed.fx.running.server.session_count(), 0);
    let temps = bed.fx.root.join("BITS-Sessions").join("Requests");
    let left = std::fs::read_dir(&temps).map_or(0, |d| d.count());
    assert_eq!(left, 0, "temp files left in {}", temps.display());
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_at_the_minimum_fragment_size_is_fatal() {
    let bed = bed("clean", 1.0, |c| c.vdir.max_fragment_size = 4 * KIB).await;
    let source = bed.source(100_000, 1);
    let err = patient()
        .upload(&source, &bed.url("/small/frag.bin"))
        .await
        .expect_err("413 at 5 KiB: must fail");
    assert!(
        matches!(err, UploadError::FragmentTooLarge { size } if size == 5 * KIB),
        "{err:?}"
    );
    assert_eq!(err.hresult(), Some(0x8019_019D));
    assert_nothing_stored(&bed, "/small/frag.bin");
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_statuses_stop_at_once() {
    let bed = bed("clean", 1.0, |c| {
        c.rules = rules(&[
            "path=/f400/* packet=fragment fault=status status=400 code=0x80070057",
            "path=/f403/* packet=create-session fault=status status=403 code=0x80070005",
            "path=/f404/* packet=create-session fault=status status=404",
            "path=/f501/* fault=status status=501 code=0x80070005",
        ]);
    })
    .await;
    let source = bed.source(50_000, 1);
    for (dir, status, hresult) in [
        ("f400", 400, 0x8007_0057),
        ("f403", 403, 0x8007_0005),
        ("f404", 404, 0x8019_0194),
        ("f501", 501, 0x8007_0005),
    ] {
        let path = format!("/{dir}/x.bin");
        let err = patient()
            .upload(&source, &bed.url(&path))
            .await
            .expect_err("fatal status: must fail");
        assert_eq!(err.status(), Some(status), "{err}");
        assert_eq!(err.hresult(), Some(hresult), "{err}");
        assert!(err.to_string().contains(&status.to_string()), "{err}");
        assert_nothing_stored(&bed, &path);
    }
    // Each fatal answer ended its upload at once: one firing per upload.
    let counts = bed.fx.running.server.fire_counts();
    assert!(counts.iter().all(|(_, n)| *n == 1), "{counts:?}");
    bed.stop().await;
}
