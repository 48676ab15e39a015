#![no_main]
//! Fuzzes `weir::fuzzing::stored_files`: producer-state snapshots, recovery checkpoints,
//! index files and `partition.metadata` as a crash may leave them; never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir::fuzzing::stored_files(data));
