#![no_main]
//! Fuzzes `weir::fuzzing::record_batches`: any input must be rejected or accepted, never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir::fuzzing::record_batches(data));
