//! `fault_plan`: see `bitsmock::fuzzing::plan` for the input format and the properties checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bitsmock::fuzzing::plan::check(data));
