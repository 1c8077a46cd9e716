//! `session_machine`: see `bitsmock::fuzzing::session` for the operations and invariants.
//! The input is the derived `Arbitrary` operation list; `tests/fuzz_replay.rs` decodes the
//! same bytes the same way through `bitsmock::fuzzing::session::check`.
#![no_main]

use bitsmock::fuzzing::session::{Input, run};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: Input| run(&input));
