//! Fuzz target: see `racelab::fuzzing::exec_reply`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| racelab::fuzzing::exec_reply(data));
