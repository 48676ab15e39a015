//! The broker runs on the CPUs it is given (issue 16, co-location): `--cpuset` restricts every
//! thread of the process, and without it the shards pin within the process's affinity mask
//! (`taskset`, a cgroup cpuset), never to CPU `i` regardless of it, which put a broker
//! started beside a load generator on the load generator's core.

mod common;

use common::Broker;
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// `Cpus_allowed_list` of every thread of `pid`, by thread name.
fn thread_cpus(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path();
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        out.push((field("Name:"), field("Cpus_allowed_list:")));
    }
    out
}

/// The last CPU this test may use: CPU 0 only on a one-CPU machine.
fn last_allowed_cpu() -> usize {
    let set = sched_getaffinity(Pid::from_raw(0)).unwrap();
    (0..CpuSet::count())
        .rev()
        .find(|&c| set.is_set(c).unwrap())
        .unwrap()
}

#[test]
fn cpuset_puts_every_thread_of_the_broker_on_the_cpus_given() {
    let cpu = last_allowed_cpu().to_string();
    let mut broker = Broker::start(&["--smp", "1", "--cpuset", &cpu]);
    let threads = thread_cpus(broker.pid().unwrap());
    assert!(threads
        .iter()
        .any(|(name, _)| name.starts_with("weir-shard")));
    for (name, cpus) in &threads {
        assert_eq!(cpus, &cpu, "thread {name}");
    }
    assert!(broker.log_text().contains(&format!("CPUs: {cpu} ")));
    assert!(broker.stop().success());
}

#[test]
fn shards_pin_within_the_affinity_mask_the_broker_was_started_with() {
    // As `taskset -c <cpu> weir` does: the child inherits the spawning thread's mask.
    let cpu = last_allowed_cpu();
    let before = sched_getaffinity(Pid::from_raw(0)).unwrap();
    let mut only = CpuSet::new();
    only.set(cpu).unwrap();
    sched_setaffinity(Pid::from_raw(0), &only).unwrap();
    let mut broker = Broker::start(&["--smp", "1"]);
    sched_setaffinity(Pid::from_raw(0), &before).unwrap();
    let threads = thread_cpus(broker.pid().unwrap());
    let shard = threads
        .iter()
        .find(|(name, _)| name.starts_with("weir-shard-0"))
        .expect("the shard's thread");
    assert_eq!(shard.1, cpu.to_string(), "{threads:?}");
    assert!(broker.stop().success());
}

#[test]
fn a_cpu_outside_the_mask_is_refused_at_start() {
    let outside = (last_allowed_cpu() + 1).to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--cpuset",
            &outside,
            "--data-dir",
        ])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not one this process may use"),
        "{stderr}"
    );
}
