#![no_main]
//! Fuzzes `weir::fuzzing::record_batches_signed`: produce batches whose CRCs are made right,
//! so the input reaches the header checks and the strict (compressed) record reader.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir::fuzzing::record_batches_signed(data));
