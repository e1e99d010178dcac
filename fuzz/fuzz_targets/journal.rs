//! See checks.rs: the property this target checks.
#![no_main]

mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::journal(data));
