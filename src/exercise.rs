//! `bitsmock exercise`: a client run through profiles × seeds, each run judged.
//!
//! ```text
//!  for each profile × seed:  MockServer(profile, seed) ─▶ source file ─▶ client (command or
//!  the reference client) ─▶ bounded wait ─▶ committed file read back ─▶ verdict ─▶ cell
//! ```
//!
//! Each run is classified ([`Class`]): *clean* when it met the profile's `expect` (through a
//! `survive` profile the client must exit 0 with the file committed intact; through a `fail`
//! profile it may give up with an error) and broke no rule; otherwise a *finding*: a crash
//! (a signal, or an exit code declared a crash), a hang (no request and no exit within the
//! timeout), a false success (exit 0, file missing or different), a broken rule, or giving up
//! where a correct client survives. Campaigns run many seeds, several at once (`jobs`), stop
//! after `max_findings`, and [`minimise`] re-runs a finding without its mutations one at a
//! time to find the few that matter.

use crate::client::{Options as ClientOptions, Uploader};
use crate::config;
use crate::fault::{Expect, FiringKey};
use crate::mock::MockServer;
use crate::verdict::{self, Source, report};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub profiles: Vec<String>,
    pub seeds: Vec<u64>,
    /// Source file size.
    pub size: u64,
    /// The reference client's options, when no command is given (an external client picks
    /// its own fragment size, timeouts and backoff).
    pub client: ClientOptions,
    /// Longest a client may run.
    pub timeout: Duration,
    /// Where journals, client output and reports go (a temp dir when `None`).
    pub report_dir: Option<PathBuf>,
    /// The client command with `{url}` and `{file}`; empty: the reference client.
    pub command: Vec<String>,
    pub options: verdict::Options,
    /// Runs at once.
    pub jobs: usize,
    /// Stop starting runs after this many findings.
    pub max_findings: Option<usize>,
    /// Exit codes that mean the client crashed (a panic: 101; an abort: 134; …).
    pub crash_exit_codes: Vec<i32>,
    /// Firings every run leaves out (see [`minimise`]).
    pub suppress: Vec<FiringKey>,
}

impl Plan {
    /// The one-line command that replays one cell.
    pub fn replay_command(&self, profile: &str, seed: u64) -> String {
        let mut parts = vec![
            "bitsmock".to_owned(),
            "exercise".into(),
            "--profiles".into(),
            profile.into(),
            "--seeds".into(),
            seed.to_string(),
            "--size".into(),
            self.size.to_string(),
            "--timeout".into(),
            format!("{}ms", self.timeout.as_millis()),
        ];
        if !self.crash_exit_codes.is_empty() {
            parts.push("--crash-exit-codes".into());
            parts.push(
                self.crash_exit_codes
                    .iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        if self.command.is_empty() {
            parts.push("--fragment-size".into());
            parts.push(self.client.fragment_size.to_string());
        } else {
            parts.push("--".into());
            parts.extend(self.command.iter().cloned());
        }
        parts
            .iter()
            .map(|p| shell_quote(p))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Quotes an argument for a POSIX shell when it needs it.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,{}@%+".contains(&b));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// How the client's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Exit status 0 (the reference client: uploaded).
    Success,
    /// A non-zero exit status.
    Code(i32),
    /// The reference client's error.
    Error(String),
    /// Killed by this signal.
    Signalled(i32),
    /// No request and no exit within the timeout (then killed).
    TimedOut,
    /// The command could not be started.
    NotStarted(String),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Success => f.write_str("exit 0"),
            Exit::Code(code) => write!(f, "exit {code}"),
            Exit::Error(why) => write!(f, "failed ({why})"),
            Exit::Signalled(signal) => write!(f, "killed by signal {signal}"),
            Exit::TimedOut => f.write_str("timed out"),
            Exit::NotStarted(why) => write!(f, "could not start ({why})"),
        }
    }
}

/// What a run amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Uploaded intact, or gave up with an error where the profile allows it; no rule broken.
    Clean,
    /// Killed by a signal, or an exit code declared a crash.
    Crash,
    /// No request and no exit within the timeout.
    Hang,
    /// Exit 0, but the committed file is missing or differs.
    FalseSuccess,
    /// A check of severity error failed.
    RuleBroken,
    /// Failed through a profile a correct client survives.
    GaveUp,
    /// The command could not be started.
    NotStarted,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Clean => "clean",
            Class::Crash => "crash",
            Class::Hang => "hang",
            Class::FalseSuccess => "false success",
            Class::RuleBroken => "rule broken",
            Class::GaveUp => "gave up",
            Class::NotStarted => "not started",
        }
    }
}

/// A mutation a run's server made, with the firing that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutated {
    pub key: FiringKey,
    /// Event sequence number of the request it answered.
    pub seq: u64,
    /// `rule 1 on session 1's Fragment #3: value huge BITS-Received-Content-Range: …`.
    pub description: String,
}

/// One profile × seed.
#[derive(Debug, Clone)]
pub struct Cell {
    pub profile: String,
    pub seed: u64,
    pub expect: Expect,
    pub exit: Exit,
    pub class: Class,
    pub elapsed: Duration,
    pub run: report::Run,
    /// Every mutation the server made in this run, in order.
    pub mutations: Vec<Mutated>,
}

impl Cell {
    pub fn is_finding(&self) -> bool {
        self.class != Class::Clean
    }
}

/// The whole exercise.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub cells: Vec<Cell>,
    pub report_dir: PathBuf,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.cells.iter().all(|c| !c.is_finding())
    }

    pub fn findings(&self) -> impl Iterator<Item = &Cell> {
        self.cells.iter().filter(|c| c.is_finding())
    }

    /// profile × seed → cell, as text; with many seeds, counts per class instead.
    pub fn matrix(&self) -> String {
        let seeds: std::collections::BTreeSet<u64> = self.cells.iter().map(|c| c.seed).collect();
        if seeds.len() > 12 {
            return self.summary();
        }
        let mut rows: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for c in &self.cells {
            let cell = (c.seed.to_string(), c.run.cell());
            match rows.iter_mut().find(|(p, _)| *p == c.profile) {
                Some((_, cells)) => cells.push(cell),
                None => rows.push((c.profile.clone(), vec![cell])),
            }
        }
        report::matrix(&rows)
    }

    /// `fuzz-acks: 500 runs: 497 clean, 2 crash, 1 hang`, one line per profile.
    pub fn summary(&self) -> String {
        let mut profiles: Vec<&str> = Vec::new();
        for c in &self.cells {
            if !profiles.contains(&c.profile.as_str()) {
                profiles.push(&c.profile);
            }
        }
        let mut out = String::new();
        for p in profiles {
            let cells: Vec<&Cell> = self.cells.iter().filter(|c| c.profile == p).collect();
            let mut counts: BTreeMap<Class, usize> = BTreeMap::new();
            for c in &cells {
                *counts.entry(c.class).or_default() += 1;
            }
            let parts: Vec<String> = counts
                .iter()
                .map(|(class, n)| format!("{n} {}", class.name()))
                .collect();
            out.push_str(&format!(
                "{p}: {} runs: {}\n",
                cells.len(),
                parts.join(", ")
            ));
        }
        out
    }
}

/// Parses `1..5` (inclusive), `3`, or `1,4,9`.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("seeds must look like 1..5, 3 or 1,4,9, not `{text}`");
    let text = text.trim();
    if let Some((a, b)) = text.split_once("..") {
        let a: u64 = a.trim().parse().map_err(|_| bad())?;
        let b: u64 = b
            .trim()
            .trim_start_matches('=')
            .parse()
            .map_err(|_| bad())?;
        if b < a || b - a >= 100_000 {
            return Err(format!(
                "seed range {a}..{b} is empty or longer than 100000"
            ));
        }
        return Ok((a..=b).collect());
    }
    text.split(',')
        .map(|s| s.trim().parse::<u64>().map_err(|_| bad()))
        .collect()
}

/// The bytes of a run's source file: a fixed function of the seed, so a run replays.
pub fn source_bytes(seed: u64, size: u64) -> Vec<u8> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    while (out.len() as u64) < size {
        // splitmix64: cheap, and good enough that no two fragments look alike.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let left = usize::try_from(size - out.len() as u64).unwrap_or(8).min(8);
        out.extend_from_slice(&z.to_le_bytes()[..left]);
    }
    out
}

/// Lower-case hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Replaces `{url}` and `{file}` in each argument.
pub fn substitute(command: &[String], url: &str, file: &Path) -> Vec<String> {
    let file = file.display().to_string();
    command
        .iter()
        .map(|a| a.replace("{url}", url).replace("{file}", &file))
        .collect()
}

/// Runs every cell (`plan.jobs` at a time), calling `progress` with a line as each starts
/// (one at a time only) and ends; writes the reports.
pub async fn run(plan: &Plan, mut progress: impl FnMut(&str)) -> Result<Outcome, String> {
    let report_dir = match &plan.report_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("bitsmock-exercise-{}", std::process::id())),
    };
    let runs_dir = report_dir.join("runs");
    std::fs::create_dir_all(&runs_dir)
        .map_err(|e| format!("cannot create {}: {e}", runs_dir.display()))?;
    let mut todo = Vec::new();
    for name in &plan.profiles {
        let profile = config::load_profile(name)?;
        for &seed in &plan.seeds {
            todo.push((name.clone(), profile.expect, seed));
        }
    }
    let total = todo.len();
    let plan = Arc::new(plan.clone());
    let runs_dir = Arc::new(runs_dir);
    let mut running = tokio::task::JoinSet::new();
    let mut queue = todo.into_iter().enumerate();
    let mut cells: Vec<(usize, Cell)> = Vec::new();
    let mut findings = 0;
    let jobs = plan.jobs.max(1);
    loop {
        let stop = plan.max_findings.is_some_and(|max| findings >= max);
        while !stop && running.len() < jobs {
            let Some((n, (profile, expect, seed))) = queue.next() else {
                break;
            };
            if jobs == 1 {
                progress(&format!("[{}/{total}] {profile} seed {seed} …", n + 1));
            }
            let (plan, runs_dir) = (Arc::clone(&plan), Arc::clone(&runs_dir));
            running.spawn(async move {
                let cell = run_cell(&plan, &profile, expect, seed, &runs_dir).await;
                (n, cell)
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let (n, cell) = done.map_err(|e| format!("a run failed: {e}"))?;
        let cell = cell?;
        if cell.is_finding() {
            findings += 1;
        }
        progress(&format!(
            "[{}/{total}] {} seed {}: {} ({}, {:.1} s)",
            cells.len() + 1,
            cell.profile,
            cell.seed,
            cell.run.cell(),
            cell.exit,
            cell.elapsed.as_secs_f64()
        ));
        cells.push((n, cell));
    }
    cells.sort_by_key(|(n, _)| *n);
    let outcome = Outcome {
        cells: cells.into_iter().map(|(_, c)| c).collect(),
        report_dir,
    };
    write_reports(&outcome)?;
    Ok(outcome)
}

/// `verdict.json`, `junit.xml` and `report.html` in the report directory.
pub fn write_reports(outcome: &Outcome) -> Result<(), String> {
    let runs: Vec<report::Run> = outcome.cells.iter().map(|c| c.run.clone()).collect();
    let write = |name: &str, text: String| {
        let path = outcome.report_dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let mut json = report::runs_json(&runs);
    for (run, cell) in json["runs"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .zip(&outcome.cells)
    {
        run["profile"] = cell.profile.clone().into();
        run["seed"] = cell.seed.into();
        run["expect"] = cell.expect.as_str().into();
        run["class"] = cell.class.name().into();
        run["client"] = cell.exit.to_string().into();
        run["seconds"] = cell.elapsed.as_secs_f64().into();
        run["mutations"] = cell.mutations.len().into();
    }
    write("verdict.json", format!("{json:#}\n"))?;
    write("junit.xml", report::junit(&runs))?;
    write("report.html", report::html("bitsmock exercise", &runs))?;
    Ok(())
}

/// The result of [`minimise`].
#[derive(Debug, Clone)]
pub struct Minimised {
    /// The finding being minimised.
    pub class: Class,
    /// Mutations of the original run.
    pub of: usize,
    /// The mutations that are still needed: without any of the others, the same kind of
    /// finding comes back.
    pub kept: Vec<Mutated>,
    /// Runs it took.
    pub runs: usize,
}

/// Re-runs a finding with the same seed, leaving its mutations out one at a time: a
/// mutation whose absence keeps the finding (same class) stays out. What remains is a small
/// set that still reproduces it (not always the smallest: leaving one mutation out can change
/// what the client does next).
pub async fn minimise(
    plan: &Plan,
    cell: &Cell,
    mut progress: impl FnMut(&str),
) -> Result<Minimised, String> {
    let runs_dir = plan
        .report_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join("minimise");
    std::fs::create_dir_all(&runs_dir)
        .map_err(|e| format!("cannot create {}: {e}", runs_dir.display()))?;
    let mut left_out: Vec<FiringKey> = plan.suppress.clone();
    let mut runs = 0;
    for (i, m) in cell.mutations.iter().enumerate() {
        let mut trial = plan.clone();
        trial.suppress = left_out.clone();
        trial.suppress.push(m.key);
        let again = run_cell(&trial, &cell.profile, cell.expect, cell.seed, &runs_dir).await?;
        runs += 1;
        let same = again.class == cell.class;
        progress(&format!(
            "[{}/{}] without {}: {}",
            i + 1,
            cell.mutations.len(),
            m.description,
            if same {
                "still reproduces; left out"
            } else {
                "needed"
            }
        ));
        if same {
            left_out.push(m.key);
        }
    }
    Ok(Minimised {
        class: cell.class,
        of: cell.mutations.len(),
        kept: cell
            .mutations
            .iter()
            .filter(|m| !left_out.contains(&m.key))
            .cloned()
            .collect(),
        runs,
    })
}

/// The mutations a run's server made, from its events.
fn mutations(events: &[crate::journal::Event]) -> Vec<Mutated> {
    let mut out = Vec::new();
    for e in events {
        let Some(r) = e.request() else { continue };
        for f in &r.faults {
            if let (crate::fault::Effect::Mutated { mutations }, Some(key)) = (&f.effect, f.key()) {
                let packet = key.packet.as_str();
                let said: Vec<String> = mutations.iter().map(ToString::to_string).collect();
                out.push(Mutated {
                    key,
                    seq: e.seq,
                    description: format!(
                        "rule {} on session {}'s {packet} #{}: {}",
                        key.rule + 1,
                        key.session,
                        key.index,
                        said.join("; ")
                    ),
                });
            }
        }
    }
    out
}

fn classify(
    plan: &Plan,
    exit: &Exit,
    expect: Expect,
    intact: bool,
    verdict: &verdict::Verdict,
) -> Class {
    match exit {
        Exit::Signalled(_) => Class::Crash,
        Exit::Code(code) if plan.crash_exit_codes.contains(code) => Class::Crash,
        Exit::TimedOut => Class::Hang,
        Exit::NotStarted(_) => Class::NotStarted,
        Exit::Success if !intact => Class::FalseSuccess,
        _ if !verdict.passed() => Class::RuleBroken,
        Exit::Code(_) | Exit::Error(_) if expect == Expect::Survive => Class::GaveUp,
        _ => Class::Clean,
    }
}

async fn run_cell(
    plan: &Plan,
    profile: &str,
    expect: Expect,
    seed: u64,
    runs_dir: &Path,
) -> Result<Cell, String> {
    let name = format!("{profile}-{seed}");
    let source_path = runs_dir.join(format!("{name}.source"));
    let bytes = source_bytes(seed, plan.size);
    let source = Source {
        size: plan.size,
        sha256: sha256_hex(&bytes),
    };
    std::fs::write(&source_path, &bytes)
        .map_err(|e| format!("cannot write {}: {e}", source_path.display()))?;
    drop(bytes);
    let suppress = plan.suppress.clone();
    let server = MockServer::builder()
        .profile(profile)
        .seed(seed)
        .configure(move |c| c.suppress = suppress)
        .start()
        .await
        .map_err(|e| format!("{profile}: cannot start a server: {e}"))?;
    let destination = format!("upload/{name}.bin");
    let url = format!("{}/{destination}", server.url());
    let started = Instant::now();
    let client = async {
        if plan.command.is_empty() {
            reference_client(plan, &source_path, &url).await
        } else {
            command_client(plan, &source_path, &url, &runs_dir.join(&name)).await
        }
    };
    let exit = supervise(client, server.inner(), plan.timeout).await;
    let elapsed = started.elapsed();
    // Stop first: the journal then ends with the server's `stopped` event, and nothing the
    // client left running can add to it while it is judged.
    let committed = server.root().join(&destination);
    let stored = std::fs::read(&committed).ok().map(|b| sha256_hex(&b));
    let inner = Arc::clone(server.inner());
    let _ = server.stop().await;
    let events = inner.events();
    let mut journal = String::new();
    for e in &events {
        if let Ok(line) = serde_json::to_string(e) {
            journal.push_str(&line);
            journal.push('\n');
        }
    }
    let journal_path = runs_dir.join(format!("{name}.ndjson"));
    std::fs::write(&journal_path, journal)
        .map_err(|e| format!("cannot write {}: {e}", journal_path.display()))?;

    let mut options = plan.options.clone();
    options.source = Some(source.clone());
    options.stored = stored
        .iter()
        .map(|d| (destination.clone(), d.clone()))
        .collect::<BTreeMap<_, _>>();
    let values: Vec<serde_json::Value> = events
        .iter()
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    let seen = verdict::input::read(&values);
    let judged = verdict::judge(&seen, &options);

    let intact = stored.as_deref() == Some(source.sha256.as_str());
    let class = classify(plan, &exit, expect, intact, &judged);
    // Everything wrong with the run, whatever its class says first.
    let mut problems = Vec::new();
    match (&exit, expect) {
        (Exit::Success, _) if !intact => problems.push(match &stored {
            None => format!(
                "false success: the client exited 0 but nothing was committed at /{destination}"
            ),
            Some(_) => format!(
                "false success: the client exited 0 but /{destination} differs from the source"
            ),
        }),
        (Exit::Code(code), _) if plan.crash_exit_codes.contains(code) => problems.push(format!(
            "the client crashed: exit {code} (declared a crash by --crash-exit-codes)"
        )),
        (Exit::Code(_) | Exit::Error(_), Expect::Survive) => problems.push(format!(
            "the client failed ({exit}) through a profile a correct client survives"
        )),
        (Exit::TimedOut, _) => problems.push(format!(
            "the client did not finish: no request and no exit within {:.0} s",
            plan.timeout.as_secs_f64()
        )),
        (Exit::Signalled(_), _) => problems.push(format!("the client crashed: {exit}")),
        (Exit::NotStarted(_), _) => problems.push(format!("the client could not start: {exit}")),
        _ => {}
    }
    Ok(Cell {
        profile: profile.to_owned(),
        seed,
        expect,
        exit,
        class,
        elapsed,
        mutations: mutations(&events),
        run: report::Run {
            name: format!("{profile} seed {seed}"),
            verdict: judged,
            problems,
            events: seen,
        },
    })
}

/// Waits for the client, killing it (by dropping its future) when it neither exits nor sends
/// a request for `quiet`, or runs for twenty times that in all.
async fn supervise(
    client: impl std::future::Future<Output = Exit>,
    server: &crate::Server,
    quiet: Duration,
) -> Exit {
    tokio::pin!(client);
    let started = Instant::now();
    let mut seen = server.events_since(0).last().map_or(0, |e| e.seq);
    let mut active = Instant::now();
    let tick = (quiet / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
    loop {
        tokio::select! {
            exit = &mut client => return exit,
            () = tokio::time::sleep(tick) => {
                if let Some(last) = server.events_since(seen).last() {
                    seen = last.seq;
                    active = Instant::now();
                }
                if active.elapsed() >= quiet || started.elapsed() >= quiet.saturating_mul(20) {
                    return Exit::TimedOut;
                }
            }
        }
    }
}

async fn reference_client(plan: &Plan, file: &Path, url: &str) -> Exit {
    let uploader = Uploader::new(plan.client.clone());
    match uploader.upload(file, url).await {
        Ok(_) => Exit::Success,
        Err(e) => Exit::Error(e.to_string()),
    }
}

async fn command_client(plan: &Plan, file: &Path, url: &str, out: &Path) -> Exit {
    let args = substitute(&plan.command, url, file);
    let Some((program, rest)) = args.split_first() else {
        return Exit::NotStarted("empty command".into());
    };
    let log = |suffix: &str| {
        std::fs::File::create(out.with_extension(suffix))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null())
    };
    let child = tokio::process::Command::new(program)
        .args(rest)
        .env("BITSMOCK_URL", url)
        .env("BITSMOCK_FILE", file)
        .stdin(Stdio::null())
        .stdout(log("stdout"))
        .stderr(log("stderr"))
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return Exit::NotStarted(format!("{program}: {e}")),
    };
    match child.wait().await {
        Err(e) => Exit::Error(format!("cannot wait for the client: {e}")),
        Ok(status) => exit_of(status),
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    if status.success() {
        return Exit::Success;
    }
    if let Some(code) = status.code() {
        return Exit::Code(code);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return Exit::Signalled(signal);
        }
    }
    Exit::Error(status.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_read_as_ranges_lists_or_one_number() {
        assert_eq!(parse_seeds("1..3"), Ok(vec![1, 2, 3]));
        assert_eq!(parse_seeds("1..=2"), Ok(vec![1, 2]));
        assert_eq!(parse_seeds(" 7 "), Ok(vec![7]));
        assert_eq!(parse_seeds("1,4,9"), Ok(vec![1, 4, 9]));
        assert!(parse_seeds("3..1").is_err());
        assert!(parse_seeds("a..b").is_err());
        assert!(parse_seeds("").is_err());
        assert!(parse_seeds("0..100000").is_err());
    }

    #[test]
    fn the_source_is_a_function_of_the_seed_and_size() {
        assert_eq!(source_bytes(1, 1000), source_bytes(1, 1000));
        assert_ne!(source_bytes(1, 1000), source_bytes(2, 1000));
        assert_eq!(source_bytes(1, 13).len(), 13);
        assert_eq!(source_bytes(5, 0).len(), 0);
        assert_eq!(&source_bytes(1, 1000)[..13], &source_bytes(1, 13)[..]);
    }

    #[test]
    fn placeholders_are_replaced_in_every_argument() {
        let args: Vec<String> = ["client", "--to={url}", "{file}", "x"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            substitute(&args, "http://h/a", Path::new("/tmp/f")),
            ["client", "--to=http://h/a", "/tmp/f", "x"]
        );
    }
}
