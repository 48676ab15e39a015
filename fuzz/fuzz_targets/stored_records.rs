#![no_main]
//! Fuzzes `weir::fuzzing::stored_records`: the strict reader of a stored batch's records
//! must refuse or read any input, never panic or allocate by a forged count.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir::fuzzing::stored_records(data));
