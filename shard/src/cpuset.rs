//! The CPUs a process may run on: its affinity mask (what `taskset`, a cgroup cpuset or
//! systemd's `CPUAffinity=` allow), and Linux's CPU-list syntax (`0-3,6`) for the `--cpuset`
//! flags of the broker and of weir-bench. Shards pin to the allowed CPUs in order, never to
//! CPU `i` regardless of the mask: that put a broker started under `taskset -c 1` on CPU 0,
//! beside the load generator it was meant to be kept away from.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpuSetError {
    #[error("{0:?} is not a CPU list (like 0-3,6)")]
    Syntax(String),
    #[error("CPU {cpu} is not one this process may use (allowed: {allowed})")]
    NotAllowed { cpu: usize, allowed: String },
    #[error("setting the CPU affinity: {0}")]
    Affinity(String),
}

/// The CPUs this process may run on, ascending. Falls back to `0..available_parallelism`
/// where the mask cannot be read.
pub fn allowed_cpus() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// Parses a CPU list: comma-separated CPUs and inclusive ranges, as `taskset -c` and
/// `/sys/fs/cgroup/.../cpuset.cpus` write them. Sorted, without repeats.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, CpuSetError> {
    let syntax = || CpuSetError::Syntax(text.to_owned());
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let first: usize = first.parse().map_err(|_| syntax())?;
        let last: usize = last.parse().map_err(|_| syntax())?;
        if first > last || last >= CpuSet::count() {
            return Err(syntax());
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Restricts the whole process to `cpus` (each must be allowed now). Call it before any
/// thread starts: threads inherit the mask, so io_uring's workers, glommio's blocking pool
/// and a client library's threads stay inside it too.
pub fn restrict_process_to(cpus: &[usize]) -> Result<(), CpuSetError> {
    let allowed = allowed_cpus();
    let mut set = CpuSet::new();
    for &cpu in cpus {
        if !allowed.contains(&cpu) {
            return Err(CpuSetError::NotAllowed {
                cpu,
                allowed: format_cpu_list(&allowed),
            });
        }
        set.set(cpu)
            .map_err(|e| CpuSetError::Affinity(e.to_string()))?;
    }
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| CpuSetError::Affinity(e.to_string()))
}

/// `[0, 1, 2, 5]` as `0-2,5`.
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_as_linux_writes_them() {
        assert_eq!(parse_cpu_list("0"), Ok(vec![0]));
        assert_eq!(parse_cpu_list("0-3,6"), Ok(vec![0, 1, 2, 3, 6]));
        assert_eq!(parse_cpu_list("6, 1-2,2"), Ok(vec![1, 2, 6]));
        for bad in ["", "a", "3-1", "1-", "-1", "1,,2", "99999999"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(format_cpu_list(&parse_cpu_list("3,0-1").unwrap()), "0-1,3");
    }

    #[test]
    fn the_allowed_cpus_are_this_threads_mask() {
        let allowed = allowed_cpus();
        assert!(!allowed.is_empty());
        assert!(allowed.windows(2).all(|w| w[0] < w[1]));
        // A CPU past the mask is refused, not silently taken.
        let outside = allowed.last().unwrap() + 1;
        assert!(matches!(
            restrict_process_to(&[outside]),
            Err(CpuSetError::NotAllowed { .. })
        ));
    }
}
