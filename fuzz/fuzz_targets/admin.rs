//! `admin`: see `bitsmock::fuzzing::admin` for the input format and the properties checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bitsmock::fuzzing::admin::check(data));
