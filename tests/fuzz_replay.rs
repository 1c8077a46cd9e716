//! The fuzz targets on stable: every seed (`fuzz/seeds/<target>/`) and every regression input
//! (`fuzz/regressions/<target>/`) goes through the same `bitsmock::fuzzing` check the fuzzer
//! runs, and the session-machine and fault-plan properties also run on thousands of inputs
//! drawn from a fixed seed. A crash the fuzzer finds becomes a file in `fuzz/regressions/`
//! plus a named test below (see `fuzz/README.md`).

use bitsmock::fuzzing::{self, Check, TARGETS};
use bitsmock::proto::ContentLength;
use bitsmock::proto::packet::Packet;
use bitsmock::proto::{Ack, Head};

fn parse(head: &Head) -> Result<Packet, Ack> {
    bitsmock::proto::packet::parse(head, ContentLength::Required)
}
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The input files of one directory (not its README or `.gitkeep`), sorted.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = listing
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            !name.starts_with('.') && !name.ends_with(".md")
        })
        .collect();
    files.sort();
    files
}

/// Runs every input under `<kind>/<target>/` and names each one that fails.
fn replay(kind: &str) -> usize {
    let mut failures = Vec::new();
    let mut count = 0;
    for (name, check) in TARGETS {
        for file in inputs(&fuzz_dir().join(kind).join(name)) {
            count += 1;
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "inputs that fail their check: {failures:#?}"
    );
    count
}

/// Runs one regression input by target and file name.
fn regression(target: &str, file: &str) {
    let check: Check = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, check)| *check)
        .unwrap_or_else(|| panic!("no target {target}"));
    let path = fuzz_dir().join("regressions").join(target).join(file);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    check(&data);
}

/// `n` inputs of up to `max_len` random bytes each, from a fixed seed.
fn random_inputs(seed: u64, n: usize, max_len: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(move |_| {
        let len = rng.random_range(0..=max_len);
        let mut data = vec![0u8; len];
        rng.fill(&mut data[..]);
        data
    })
}

#[test]
fn every_target_has_seeds_and_a_regressions_directory() {
    for (name, _) in TARGETS {
        assert!(
            !inputs(&fuzz_dir().join("seeds").join(name)).is_empty(),
            "fuzz/seeds/{name}/ has no seeds"
        );
        assert!(
            fuzz_dir().join("regressions").join(name).is_dir(),
            "fuzz/regressions/{name}/ is missing"
        );
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "fuzz/fuzz_targets/{name}.rs is missing"
        );
    }
}

#[test]
fn every_seed_passes_its_targets_checks() {
    assert!(replay("seeds") > 0);
}

#[test]
fn every_regression_input_passes_its_targets_checks() {
    replay("regressions");
}

#[test]
fn the_session_machine_keeps_its_invariants_over_thousands_of_random_sequences() {
    for data in random_inputs(0x5E55_1011, 5_000, 2_048) {
        fuzzing::session::check(&data);
    }
}

#[test]
fn fault_plans_are_deterministic_and_well_formed_for_random_inputs() {
    let lines = b"packet=fragment probability=0.5 fault=lose-ack how=reset\n\
                  fault=delay distribution=lognormal median=10ms p99=1s\n\
                  packet=fragment every=2 fault=lie lie=ahead by=7\n\0";
    for data in random_inputs(0xFA17, 3_000, 1_024) {
        fuzzing::plan::check(&data);
        fuzzing::plan::check(&[&lines[..], &data].concat());
    }
}

#[test]
fn the_packet_and_range_parsers_hold_for_random_inputs() {
    for data in random_inputs(0xB175, 5_000, 512) {
        fuzzing::packet::check(&data);
        fuzzing::range::check(&data);
    }
}

/// Bytes that change what a JSON line means: structure, quotes, escapes, digits, newlines.
const JSON_BYTES: &[u8] = b"{}[]\":,0123456789-.e \n\\tnul\x1b";

#[test]
fn the_journal_reader_holds_for_random_inputs_and_mutated_real_lines() {
    for data in random_inputs(0x70A1, 2_000, 512) {
        fuzzing::journal::check(&data);
    }
    // Random bytes are rarely JSON; real lines with a few bytes changed reach the formatter.
    let mut rng = StdRng::seed_from_u64(0x70A2);
    let seeds = inputs(&fuzz_dir().join("seeds").join("journal"));
    assert!(!seeds.is_empty());
    for file in seeds {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for _ in 0..200 {
            let mut mutated = data.clone();
            for _ in 0..rng.random_range(1..=4) {
                let at = rng.random_range(0..mutated.len());
                mutated[at] = JSON_BYTES[rng.random_range(0..JSON_BYTES.len())];
            }
            fuzzing::journal::check(&mutated);
        }
    }
}

/// Flips the letter case of header names at random, leaving the request line, the values
/// and the body alone.
fn recase_names(head: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len());
    let mut lines = head.split_inclusive(|&b| b == b'\n');
    out.extend_from_slice(lines.next().unwrap_or_default());
    let mut in_headers = true;
    for line in lines {
        if line.trim_ascii_end().is_empty() {
            in_headers = false;
        }
        let name_end = line.iter().position(|&b| b == b':').unwrap_or(line.len());
        for (i, &b) in line.iter().enumerate() {
            let flip =
                in_headers && i < name_end && b.is_ascii_alphabetic() && rng.random::<bool>();
            out.push(if flip { b ^ 0x20 } else { b });
        }
    }
    out
}

#[test]
fn header_names_match_in_any_case() {
    let mut rng = StdRng::seed_from_u64(0xCA5E);
    let mut heads = 0;
    for kind in ["seeds", "regressions"] {
        for file in inputs(&fuzz_dir().join(kind).join("packet")) {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            fuzzing::packet::check_any_case(&data);
            let parsed = parse(&fuzzing::packet::head(&data));
            for _ in 0..50 {
                let recased = recase_names(&data, &mut rng);
                assert_eq!(
                    parse(&fuzzing::packet::head(&recased)),
                    parsed,
                    "{}: recased to {}",
                    file.display(),
                    recased.escape_ascii()
                );
                fuzzing::packet::check_any_case(&recased);
                heads += 1;
            }
        }
    }
    assert!(heads >= 500, "only {heads} heads");
}

#[test]
fn the_admin_router_holds_for_random_requests() {
    // Random bytes alone rarely form a route; half the inputs get a real request line, so
    // the query and body parsers see random input too.
    let lines: [&[u8]; 6] = [
        b"PUT /rules\napplication/json\n\n",
        b"PUT /rules\n\n\n",
        b"POST /rules\napplication/json\nBearer t0ken\n",
        b"POST /rules\ntext/plain\n\n",
        b"GET /journal?",
        b"DELETE /sessions/",
    ];
    for (i, data) in random_inputs(0xAD41, 4_000, 512).enumerate() {
        fuzzing::admin::check(&data);
        fuzzing::admin::check(&[lines[i % lines.len()], &data].concat());
    }
}

#[test]
fn every_shipped_profile_passes_the_profile_check() {
    for (name, text) in bitsmock::fault::shipped::SHIPPED {
        let result = catch_unwind(|| fuzzing::profile::check_text(text));
        assert!(result.is_ok(), "shipped profile {name}");
    }
}

// ---- Crashes the fuzzers found, one named test each ----

/// `fault_plan`: a normal delay (or any duration) under `--time-scale 1e300` made
/// `Duration::mul_f64` panic in `Faults::scale`; it now saturates at the one-hour cap.
#[test]
fn regression_fault_plan_time_scale_overflows_a_normal_delay() {
    regression("fault_plan", "time-scale-overflows-a-normal-delay");
}

/// `packet`: a target of 581 bytes with raw `{` and invalid UTF-8 (U+FFFD) rendered as
/// `%7B`/`%EF%BF%BD`, past the 2,048-byte limit, so the rendered packet did not parse back.
/// `Destination::parse` now applies the limit to the canonical form too.
#[test]
fn regression_packet_rendered_target_longer_than_the_limit() {
    regression("packet", "rendered-target-longer-than-the-limit");
}
