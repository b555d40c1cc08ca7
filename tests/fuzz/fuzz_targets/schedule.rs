//! Fuzz target: see `racelab::fuzzing::schedule`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| racelab::fuzzing::schedule(data));
