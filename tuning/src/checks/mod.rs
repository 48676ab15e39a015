//! The host checks, one module per area. Every check only reads (through [`Host`] and
//! [`SystemFacts`]) and returns [`Finding`]s; deciding what to write is data in the findings
//! (`tweaks`), and writing is `apply`'s job alone.

pub mod cpu;
pub mod disk;
pub mod io_uring;
pub mod memory;
pub mod network;

use std::path::PathBuf;

use crate::cpu_set::{self, CpuSet};
use crate::finding::Finding;
use crate::host::{Host, ReadError};
use crate::system::SystemFacts;

/// Partitions assumed when the operator does not say (`--partitions`): enough for a busy
/// single broker, and what the broker's start-up checks use.
pub const PARTITIONS_PLANNED_DEFAULT: u64 = 1000;

/// What the checks need to know about the host and the broker the operator plans to run.
pub struct CheckContext<'a> {
    pub host: &'a Host,
    pub facts: &'a dyn SystemFacts,
    /// Weir's `--data-dir`, as given (resolved against the host by the disk checks).
    pub data_dir: PathBuf,
    /// Weir's `--smp`; `None` means Weir's default, one shard per available core.
    pub smp: Option<usize>,
    /// Partitions the operator expects this broker to own (for the open-files limit).
    pub partitions: u64,
}

impl CheckContext<'_> {
    /// CPUs this process may run on: the cgroup cpuset or taskset, else the online CPUs.
    pub fn available_cpus(&self) -> Option<CpuSet> {
        let status = self.host.read("/proc/self/status").ok();
        let allowed = status
            .as_deref()
            .and_then(|text| status_field(text, "Cpus_allowed_list").and_then(cpu_set::parse_list));
        allowed.or_else(|| {
            let online = self
                .host
                .read_value("/sys/devices/system/cpu/online")
                .ok()?;
            cpu_set::parse_list(&online)
        })
    }

    /// Number of shards Weir will start.
    pub fn shard_count(&self) -> usize {
        self.smp
            .unwrap_or_else(|| self.available_cpus().map_or(1, |cpus| cpus.len()).max(1))
    }

    /// The CPUs shards are pinned to: weir-shard pins shard `i` to CPU `i`, and pins nothing
    /// when there are more shards than available CPUs.
    pub fn shard_cpus(&self) -> CpuSet {
        (0..self.shard_count()).collect()
    }
}

/// Every check, in the order the report shows them.
pub fn all(ctx: &CheckContext) -> Vec<Finding> {
    let mut findings = Vec::new();
    findings.extend(io_uring::check(ctx));
    findings.extend(cpu::check(ctx));
    findings.extend(network::check(ctx));
    findings.extend(disk::check(ctx));
    findings.extend(memory::check(ctx));
    findings
}

/// The cheap subset the broker runs at start: a handful of small file reads and syscalls, no
/// scan of `/proc/interrupts` or of every process.
pub fn quick(ctx: &CheckContext) -> Vec<Finding> {
    let mut findings = Vec::new();
    findings.extend(io_uring::check(ctx));
    findings.extend(cpu::check_quick(ctx));
    findings.extend(network::check_quick(ctx));
    findings.extend(disk::check(ctx));
    findings.extend(memory::check(ctx));
    findings
}

/// A `Key:\tvalue` line of `/proc/self/status`.
pub(crate) fn status_field<'t>(status: &'t str, key: &str) -> Option<&'t str> {
    status.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == key).then(|| value.trim())
    })
}

/// The reason a check is skipped when a file it needs is not readable.
pub(crate) fn skip_reason(error: &ReadError) -> String {
    match error {
        ReadError::Missing { .. } => format!("{error} (container, VM or older kernel)"),
        ReadError::Denied { .. } => format!("{error} (run as root, or outside the container)"),
        ReadError::Other { .. } => error.to_string(),
    }
}

/// The selected value of a sysfs choice file: `none [mq-deadline] kyber` → `mq-deadline`.
/// A file without brackets holds just the value.
pub(crate) fn selected_choice(text: &str) -> &str {
    let text = text.trim();
    match (text.find('['), text.find(']')) {
        (Some(open), Some(close)) if open < close => &text[open + 1..close],
        _ => text,
    }
}

/// The values a sysfs choice file offers: `none [mq-deadline] kyber` → all three.
pub(crate) fn offered_choices(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|word| word.trim_matches(|c| c == '[' || c == ']').to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_files_parse() {
        assert_eq!(
            selected_choice("none [mq-deadline] kyber bfq\n"),
            "mq-deadline"
        );
        assert_eq!(selected_choice("always [madvise] never"), "madvise");
        assert_eq!(selected_choice("performance\n"), "performance");
        assert_eq!(
            offered_choices("[none] mq-deadline"),
            vec!["none".to_string(), "mq-deadline".to_string()]
        );
    }

    #[test]
    fn status_fields_parse() {
        let status = "Name:\tweir\nSeccomp:\t2\nCpus_allowed_list:\t0-3\n";
        assert_eq!(status_field(status, "Seccomp"), Some("2"));
        assert_eq!(status_field(status, "Cpus_allowed_list"), Some("0-3"));
        assert_eq!(status_field(status, "Missing"), None);
    }
}
