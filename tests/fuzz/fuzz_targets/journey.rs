//! Fuzz target: see `racelab::fuzzing::journey`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| racelab::fuzzing::journey(data));
