//! weir-tune: what on this host stands between an operator and Weir's best numbers, and the
//! fixes for it (the role `rpk redpanda tune` and `iotune` play for Redpanda).
//!
//! - [`checks`] read `/proc`, `/sys` and a few syscalls and return [`Finding`]s
//!   (OK / WARN / FAIL / SKIP, with why and how to fix). They never write.
//! - [`apply`] is the only writer: it makes the findings' tweaks and records previous values
//!   so [`apply::revert`] can restore them.
//! - [`measure`] times the data dir's disk and [`profile`] saves and [`profile::load`]s the
//!   result, the file Weir reads at start.
//! - [`quick_checks`] is the cheap subset the broker runs at start.
//!
//! All file access goes through [`Host`] (rooted at `/` in production, at a fixture tree in
//! tests) and all syscall facts through [`SystemFacts`]; this crate shares no internals with
//! the broker.

pub mod apply;
pub mod checks;
pub mod cpu_set;
pub mod finding;
pub mod host;
pub mod measure;
pub mod profile;
pub mod report;
pub mod system;

use std::path::Path;

pub use checks::{CheckContext, PARTITIONS_PLANNED_DEFAULT};
pub use finding::{Finding, Tweak, Verdict};
pub use host::Host;
pub use profile::{load, IoProfile};
pub use system::{LiveSystem, SystemFacts};

/// The cheap checks, for the broker to run at start and log one line per problem
/// ([`Finding::log_line`]). Returns only the problems (WARN and FAIL), so an empty vector
/// means nothing to say.
///
/// `root` is where `/proc` and `/sys` are (`/` in production); `data_dir` is Weir's
/// `--data-dir`; `smp` its `--smp` (`None`: one shard per available core). Syscall facts
/// (kernel release, limits, an io_uring probe) are this process's own. Costs a few dozen
/// small file reads, one `io_uring_setup` and no `/proc/interrupts` or process scan.
///
/// ```no_run
/// for problem in weir_tune::quick_checks("/", "./data", None) {
///     eprintln!("host: {}", problem.log_line());
/// }
/// ```
pub fn quick_checks(
    root: impl AsRef<Path>,
    data_dir: impl AsRef<Path>,
    smp: Option<usize>,
) -> Vec<Finding> {
    let host = Host::new(root.as_ref());
    let ctx = CheckContext {
        host: &host,
        facts: &LiveSystem,
        data_dir: data_dir.as_ref().to_path_buf(),
        smp,
        partitions: PARTITIONS_PLANNED_DEFAULT,
    };
    checks::quick(&ctx)
        .into_iter()
        .filter(Finding::is_problem)
        .collect()
}
