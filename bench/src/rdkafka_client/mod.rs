//! `--client rdkafka`: the same workload through librdkafka, the client most users run, to
//! cross-check the native client's numbers. Behind the `rdkafka` cargo feature (off by
//! default) so that building and CI never need librdkafka.
//!
//! librdkafka's own threads do the I/O. Each producer and consumer here is one librdkafka
//! client polled from one plain thread: producers send on the same open-loop schedule as the
//! native client and book delivery reports as acknowledgements; consumers assign their
//! partitions (no group) and book records through the native consumer's `Tracker`. Setup,
//! the progress line, the drain decision and the result come from `runner`, so both clients
//! measure the same window and report the same way.
//!
//! Must never: share a librdkafka client between threads, or start an async runtime.

#[cfg(feature = "rdkafka")]
mod config;
#[cfg(feature = "rdkafka")]
mod consumer;
#[cfg(feature = "rdkafka")]
mod producer;
#[cfg(feature = "rdkafka")]
mod threads;

#[cfg(not(feature = "rdkafka"))]
pub fn run(
    _options: &crate::runner::RunOptions,
) -> Result<crate::report::RunResult, crate::error::BenchError> {
    use crate::error::BenchError;
    Err(BenchError::Unsupported(
        "this weir-bench was built without librdkafka support; rebuild with \
         `cargo build --release -p weir-bench --features rdkafka` (builds librdkafka from \
         source: needs a C compiler and make) and run with `--client rdkafka`"
            .to_string(),
    ))
}

#[cfg(feature = "rdkafka")]
pub use threads::run;

/// librdkafka's version, as the result's `client` names it.
#[cfg(feature = "rdkafka")]
pub fn client_name() -> String {
    format!("rdkafka {}", rdkafka::util::get_rdkafka_version().1)
}
