//! What a run cost the broker, when it runs on this host and its pid is known
//! (`--broker-pid`): CPU seconds (user + system, every thread) spent during the run, per GB
//! produced, and its resident memory at the end. Read from `/proc/<pid>/stat` and
//! `/proc/<pid>/status`, so it works for any broker process, stock Kafka's JVM included.

use serde::{Deserialize, Serialize};

use crate::error::BenchError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BrokerUsage {
    pub pid: u32,
    /// CPU seconds the broker used between the start and the end of the run (warm-up and
    /// drain included, as the bytes it is divided by are).
    pub cpu_s: f64,
    /// `cpu_s` per GB (1e9 bytes) of values produced over the whole run.
    pub cpu_s_per_gb: f64,
    /// VmRSS at the end of the run.
    pub rss_bytes: u64,
}

/// A reading of one process's CPU time.
#[derive(Clone, Copy, Debug)]
pub struct CpuReading {
    pid: u32,
    cpu_s: f64,
}

/// The process's user + system time so far.
pub fn cpu_now(pid: u32) -> Result<CpuReading, BenchError> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .map_err(|e| BenchError::Config(format!("reading {path}: {e}")))?;
    let cpu_s = cpu_seconds_from_stat(&stat, clock_ticks_per_s())
        .ok_or_else(|| BenchError::Config(format!("{path}: unexpected format")))?;
    Ok(CpuReading { pid, cpu_s })
}

/// Usage since `before`, for a run that produced `produced_bytes`.
pub fn since(before: CpuReading, produced_bytes: u64) -> Result<BrokerUsage, BenchError> {
    let after = cpu_now(before.pid)?;
    let path = format!("/proc/{}/status", before.pid);
    let status = std::fs::read_to_string(&path)
        .map_err(|e| BenchError::Config(format!("reading {path}: {e}")))?;
    let rss_bytes = rss_bytes_from_status(&status)
        .ok_or_else(|| BenchError::Config(format!("{path}: no VmRSS")))?;
    let cpu_s = after.cpu_s - before.cpu_s;
    Ok(BrokerUsage {
        pid: before.pid,
        cpu_s,
        cpu_s_per_gb: if produced_bytes == 0 {
            f64::NAN
        } else {
            cpu_s / (produced_bytes as f64 / 1e9)
        },
        rss_bytes,
    })
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf reads a constant of the C library and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // It cannot fail on Linux; 100 is its value on every mainstream kernel if it did.
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// utime + stime (fields 14 and 15) from `/proc/<pid>/stat`. The command name (field 2) is
/// in parentheses and may itself hold spaces or parentheses, so fields are counted from the
/// last `)`.
fn cpu_seconds_from_stat(stat: &str, ticks_per_s: f64) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th field of the rest.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / ticks_per_s)
}

fn rss_bytes_from_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let stat = "4242 (java (kafka) x) S 1 4242 4242 0 -1 4194560 \
                    51000 0 12 0 250 150 0 0 20 0 90 0 1234 5000000 3000 18446744073709551615";
        assert_eq!(
            cpu_seconds_from_stat(stat, 100.0),
            Some(4.0),
            "(250 + 150) / 100"
        );
        assert_eq!(cpu_seconds_from_stat("garbage", 100.0), None);
    }

    #[test]
    fn rss_comes_from_vmrss() {
        let status = "Name:\tweir\nVmHWM:\t  9000 kB\nVmRSS:\t  8192 kB\nThreads:\t5\n";
        assert_eq!(rss_bytes_from_status(status), Some(8192 * 1024));
        assert_eq!(rss_bytes_from_status("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_can_be_measured() {
        let pid = std::process::id();
        let before = cpu_now(pid).expect("reads /proc/self's stat");
        // Burn a little CPU so the reading moves on a coarse clock.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let usage = since(before, 2_000_000_000).expect("reads status");
        assert!(usage.cpu_s >= 0.0 && usage.rss_bytes > 0, "{usage:?}");
        assert!((usage.cpu_s_per_gb - usage.cpu_s / 2.0).abs() < 1e-9);
    }
}
