//! `bitsmock exercise`: a client run through profiles × seeds, each run judged.
//!
//! ```text
//!  for each profile × seed:  MockServer(profile, seed) ─▶ source file ─▶ client (command or
//!  the reference client) ─▶ bounded wait ─▶ committed file read back ─▶ verdict ─▶ cell
//! ```
//!
//! A cell passes when no error-severity check failed and the run met the profile's `expect`:
//! through a `survive` profile the client must exit 0 with the file committed intact; through
//! a `fail` profile it may give up, but never claim a success it did not have (exit 0 with
//! the file missing or different is a *false success* everywhere).

use crate::client::{Options as ClientOptions, Uploader};
use crate::config;
use crate::fault::Expect;
use crate::mock::MockServer;
use crate::verdict::{self, Source, report};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
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
}

/// How the client's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Exit status 0 (the reference client: uploaded).
    Success,
    /// A non-zero exit, or the reference client's error.
    Failed(String),
    /// Killed by a signal.
    Signalled(String),
    /// Still running at the timeout (then killed).
    TimedOut,
    /// The command could not be started.
    NotStarted(String),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Success => f.write_str("exit 0"),
            Exit::Failed(why) => write!(f, "failed ({why})"),
            Exit::Signalled(why) => write!(f, "killed by {why}"),
            Exit::TimedOut => f.write_str("timed out"),
            Exit::NotStarted(why) => write!(f, "could not start ({why})"),
        }
    }
}

/// One profile × seed.
#[derive(Debug, Clone)]
pub struct Cell {
    pub profile: String,
    pub seed: u64,
    pub expect: Expect,
    pub exit: Exit,
    pub elapsed: Duration,
    pub run: report::Run,
}

/// The whole exercise.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub cells: Vec<Cell>,
    pub report_dir: PathBuf,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.cells.iter().all(|c| c.run.passed())
    }

    /// profile × seed → cell, as text.
    pub fn matrix(&self) -> String {
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

/// Runs every cell in order, calling `progress` before and after each.
pub async fn run(plan: &Plan, mut progress: impl FnMut(&str)) -> Result<Outcome, String> {
    let report_dir = match &plan.report_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("bitsmock-exercise-{}", std::process::id())),
    };
    let runs_dir = report_dir.join("runs");
    std::fs::create_dir_all(&runs_dir)
        .map_err(|e| format!("cannot create {}: {e}", runs_dir.display()))?;
    let mut profiles = Vec::new();
    for name in &plan.profiles {
        let profile = config::load_profile(name)?;
        profiles.push((name.clone(), profile.expect));
    }
    let total = profiles.len() * plan.seeds.len();
    let mut cells = Vec::new();
    for (profile, expect) in &profiles {
        for &seed in &plan.seeds {
            progress(&format!(
                "[{}/{total}] {profile} seed {seed} …",
                cells.len() + 1
            ));
            let cell = run_cell(plan, profile, *expect, seed, &runs_dir).await?;
            progress(&format!(
                "[{}/{total}] {profile} seed {seed}: {} ({}, {:.1} s)",
                cells.len() + 1,
                cell.run.cell(),
                cell.exit,
                cell.elapsed.as_secs_f64()
            ));
            cells.push(cell);
        }
    }
    let outcome = Outcome {
        cells,
        report_dir: report_dir.clone(),
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
        run["client"] = cell.exit.to_string().into();
        run["seconds"] = cell.elapsed.as_secs_f64().into();
    }
    write("verdict.json", format!("{json:#}\n"))?;
    write("junit.xml", report::junit(&runs))?;
    write("report.html", report::html("bitsmock exercise", &runs))?;
    Ok(())
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
    let server = MockServer::builder()
        .profile(profile)
        .seed(seed)
        .start()
        .await
        .map_err(|e| format!("{profile}: cannot start a server: {e}"))?;
    let destination = format!("upload/{name}.bin");
    let url = format!("{}/{destination}", server.url());
    let started = Instant::now();
    let exit = if plan.command.is_empty() {
        reference_client(plan, &source_path, &url).await
    } else {
        command_client(plan, &source_path, &url, &runs_dir.join(&name)).await
    };
    let elapsed = started.elapsed();
    // Stop first: the journal then ends with the server's `stopped` event, and nothing the
    // client left running can add to it while it is judged.
    let committed = server.root().join(&destination);
    let stored = std::fs::read(&committed).ok().map(|b| sha256_hex(&b));
    let inner = std::sync::Arc::clone(server.inner());
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
        (Exit::Success, _) => {}
        (Exit::Failed(why), Expect::Survive) => problems.push(format!(
            "the client failed ({why}) through a profile a correct client survives"
        )),
        (Exit::TimedOut, _) => problems.push(format!(
            "the client did not finish within {:.0} s",
            plan.timeout.as_secs_f64()
        )),
        (Exit::Signalled(why), _) => problems.push(format!("the client crashed: killed by {why}")),
        (Exit::NotStarted(why), _) => problems.push(format!("the client could not start: {why}")),
        (Exit::Failed(_), Expect::Fail) => {}
    }
    Ok(Cell {
        profile: profile.to_owned(),
        seed,
        expect,
        exit,
        elapsed,
        run: report::Run {
            name: format!("{profile} seed {seed}"),
            verdict: judged,
            problems,
            events: seen,
        },
    })
}

async fn reference_client(plan: &Plan, file: &Path, url: &str) -> Exit {
    let uploader = Uploader::new(plan.client.clone());
    match tokio::time::timeout(plan.timeout, uploader.upload(file, url)).await {
        Err(_) => Exit::TimedOut,
        Ok(Ok(_)) => Exit::Success,
        Ok(Err(e)) => Exit::Failed(e.to_string()),
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
    match tokio::time::timeout(plan.timeout, child.wait()).await {
        Err(_) => {
            let _ = child.kill().await;
            Exit::TimedOut
        }
        Ok(Err(e)) => Exit::Failed(format!("cannot wait for the client: {e}")),
        Ok(Ok(status)) => exit_of(status),
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    if status.success() {
        return Exit::Success;
    }
    if let Some(code) = status.code() {
        return Exit::Failed(format!("exit {code}"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return Exit::Signalled(format!("signal {signal}"));
        }
    }
    Exit::Failed(status.to_string())
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
