//! The checks against fixture trees of a tuned host, an untuned host and a container with
//! io_uring disabled (tests/fixtures/), with syscall facts substituted: the verdicts are
//! asserted check by check, and so are the fixes `apply` would make.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use weir_tune::checks::{self, CheckContext};
use weir_tune::system::{FixedFacts, IoUringProbe, Limit};
use weir_tune::{Finding, Host, Verdict};

fn fixture(name: &str) -> Host {
    Host::new(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
}

fn healthy_facts() -> FixedFacts {
    FixedFacts {
        kernel_release: Some("6.8.0-45-generic".to_string()),
        open_files: Some(Limit {
            soft: Some(1_048_576),
            hard: Some(1_048_576),
        }),
        locked_memory: Some(Limit {
            soft: None,
            hard: None,
        }),
        root: false,
        io_uring: IoUringProbe::Available,
    }
}

fn run(host: &Host, facts: &FixedFacts, smp: Option<usize>) -> Vec<Finding> {
    let ctx = CheckContext {
        host,
        facts,
        data_dir: PathBuf::from("/var/lib/weir"),
        smp,
        partitions: 1000,
    };
    checks::all(&ctx)
}

fn verdicts(findings: &[Finding]) -> BTreeMap<String, Verdict> {
    findings
        .iter()
        .map(|f| (f.check.clone(), f.verdict))
        .collect()
}

fn finding<'f>(findings: &'f [Finding], check: &str) -> &'f Finding {
    findings
        .iter()
        .find(|f| f.check == check)
        .unwrap_or_else(|| panic!("no finding {check} in {:?}", verdicts(findings)))
}

fn assert_verdicts(findings: &[Finding], expected: &[(&str, Verdict)]) {
    let actual = verdicts(findings);
    for (check, verdict) in expected {
        assert_eq!(
            actual.get(*check),
            Some(verdict),
            "{check}: {:?}",
            findings.iter().find(|f| f.check == *check)
        );
    }
}

#[test]
fn a_tuned_host_is_all_ok() {
    let findings = run(&fixture("tuned"), &healthy_facts(), Some(4));
    let problems: Vec<String> = findings
        .iter()
        .filter(|f| f.verdict != Verdict::Ok)
        .map(Finding::log_line)
        .collect();
    assert!(
        problems.is_empty(),
        "tuned host has problems: {problems:#?}"
    );
    assert_verdicts(
        &findings,
        &[
            ("io_uring.kernel", Verdict::Ok),
            ("cpu.shards", Verdict::Ok),
            ("cpu.smt", Verdict::Ok),
            ("cpu.governor", Verdict::Ok),
            ("cpu.idle", Verdict::Ok),
            ("cpu.isolation", Verdict::Ok),
            ("net.irq_affinity.eth0", Verdict::Ok),
            ("net.rps.eth0", Verdict::Ok),
            ("net.xps.eth0", Verdict::Ok),
            ("disk.filesystem", Verdict::Ok),
            ("disk.device", Verdict::Ok),
            ("disk.scheduler", Verdict::Ok),
            ("mem.thp", Verdict::Ok),
        ],
    );
    // The data dir's partition resolves to its whole disk.
    assert!(finding(&findings, "disk.device")
        .found
        .starts_with("nvme0n1 (259:1)"));
    assert!(finding(&findings, "disk.filesystem")
        .found
        .starts_with("xfs"));
    // Only the NIC's queue interrupts count, not its config interrupt or the NVMe's.
    assert_eq!(
        finding(&findings, "net.irq_affinity.eth0").found,
        "120:4 121:5 122:6 123:7"
    );
    assert!(
        findings.iter().all(|f| f.tweaks.is_empty()),
        "nothing to apply on a tuned host"
    );
}

#[test]
fn a_tuned_host_with_every_core_a_shard_wants_irqs_spread() {
    // --smp 8 leaves no spare CPU: the IRQs on 4-7 are each on one distinct shard CPU, fine;
    // but shards 0+4 etc. are SMT siblings now, and CPUs 4-7 are not isolated.
    let findings = run(&fixture("tuned"), &healthy_facts(), Some(8));
    assert_verdicts(
        &findings,
        &[
            ("net.irq_affinity.eth0", Verdict::Ok),
            ("cpu.smt", Verdict::Warn),
            ("cpu.isolation", Verdict::Warn),
        ],
    );
}

#[test]
fn an_untuned_host_gets_warnings_with_fixes() {
    let facts = FixedFacts {
        kernel_release: Some("5.15.0-91-generic".to_string()),
        open_files: Some(Limit {
            soft: Some(1024),
            hard: Some(524_288),
        }),
        locked_memory: Some(Limit {
            soft: Some(64 * 1024),
            hard: Some(64 * 1024),
        }),
        ..healthy_facts()
    };
    let findings = run(&fixture("untuned"), &facts, None);
    assert_verdicts(
        &findings,
        &[
            ("io_uring.kernel", Verdict::Warn),
            ("io_uring.disabled_sysctl", Verdict::Ok),
            ("io_uring.memlock", Verdict::Warn),
            // 1000 partitions need 3000 descriptors; a soft limit of 1024 stops Weir.
            ("io_uring.nofile", Verdict::Fail),
            ("cpu.shards", Verdict::Ok),
            ("cpu.smt", Verdict::Warn),
            ("cpu.governor", Verdict::Warn),
            ("cpu.idle", Verdict::Warn),
            ("cpu.isolation", Verdict::Ok),
            ("cpu.clocksource", Verdict::Warn),
            ("net.somaxconn", Verdict::Warn),
            ("net.tcp_rmem", Verdict::Warn),
            ("net.tcp_wmem", Verdict::Warn),
            ("net.busy_poll", Verdict::Ok),
            ("net.irq_affinity.eth0", Verdict::Warn),
            ("net.rps.eth0", Verdict::Warn),
            ("net.xps.eth0", Verdict::Ok),
            ("disk.filesystem", Verdict::Warn),
            ("disk.mount_options", Verdict::Warn),
            ("disk.device", Verdict::Warn),
            ("disk.scheduler", Verdict::Warn),
            ("disk.nr_requests", Verdict::Warn),
            ("disk.read_ahead_kb", Verdict::Warn),
            ("disk.write_cache", Verdict::Ok),
            ("mem.thp", Verdict::Warn),
            ("mem.thp_defrag", Verdict::Warn),
            ("mem.swappiness", Verdict::Warn),
            ("mem.dirty", Verdict::Warn),
        ],
    );
    // docker0 is virtual (no device link): not checked.
    assert!(findings.iter().all(|f| !f.check.ends_with("docker0")));

    let nofile = finding(&findings, "io_uring.nofile");
    assert!(nofile.fix.contains("ulimit -n 5088"), "{}", nofile.fix);

    let governor = finding(&findings, "cpu.governor");
    assert_eq!(governor.tweaks.len(), 4, "one write per shard CPU");
    assert!(governor.tweaks.iter().all(|t| t.value == "performance"));

    // Only C6 (133 us) is too deep; C1E at 10 us is within the bound.
    let idle = finding(&findings, "cpu.idle");
    assert_eq!(idle.tweaks.len(), 4);
    assert!(idle
        .tweaks
        .iter()
        .all(|t| t.path.ends_with("state3/disable") && t.value == "1"));

    // All four CPUs are shards: the one queue IRQ goes to one shard CPU, and irqbalance is named.
    let irq = finding(&findings, "net.irq_affinity.eth0");
    assert!(irq.fix.contains("irqbalance"), "{}", irq.fix);
    assert_eq!(
        irq.tweaks[0].path,
        PathBuf::from("/proc/irq/40/smp_affinity_list")
    );
    assert_eq!(irq.tweaks[0].value, "0");

    let rps = finding(&findings, "net.rps.eth0");
    assert_eq!(rps.tweaks[0].value, "f");

    // A rotational disk wants mq-deadline, which the device offers.
    let scheduler = finding(&findings, "disk.scheduler");
    assert_eq!(scheduler.found, "bfq");
    assert_eq!(scheduler.tweaks[0].value, "mq-deadline");

    let wmem = finding(&findings, "net.tcp_wmem");
    assert_eq!(wmem.tweaks[0].value, "4096 16384 16777216");

    let mounts = finding(&findings, "disk.mount_options");
    assert!(mounts.why.contains("strictatime"));
    assert!(mounts.tweaks.is_empty(), "remounting is the operator's job");
}

#[test]
fn an_old_kernel_fails() {
    let facts = FixedFacts {
        kernel_release: Some("4.18.0-553.el8_10.x86_64".to_string()),
        ..healthy_facts()
    };
    let findings = run(&fixture("tuned"), &facts, Some(4));
    assert_verdicts(&findings, &[("io_uring.kernel", Verdict::Fail)]);
}

#[test]
fn a_container_without_io_uring_fails_and_skips_what_it_cannot_see() {
    let facts = FixedFacts {
        io_uring: IoUringProbe::Refused {
            errno: libc::EPERM,
            message: "Operation not permitted (os error 1)".to_string(),
        },
        ..healthy_facts()
    };
    let findings = run(&fixture("container"), &facts, None);
    assert_verdicts(
        &findings,
        &[
            ("io_uring.disabled_sysctl", Verdict::Fail),
            ("io_uring.setup", Verdict::Fail),
            ("io_uring.seccomp", Verdict::Fail),
            // Two CPUs allowed (2-3) → two shards, pinned to CPUs 0 and 1, which it may not use.
            ("cpu.shards", Verdict::Fail),
            ("cpu.governor", Verdict::Skip),
            ("cpu.idle", Verdict::Skip),
            ("cpu.clocksource", Verdict::Ok),
            ("net.somaxconn", Verdict::Ok),
            ("net.busy_poll", Verdict::Skip),
            ("net.nic", Verdict::Skip),
            ("disk.filesystem", Verdict::Warn),
            ("disk.device", Verdict::Skip),
            ("mem.thp", Verdict::Skip),
            ("mem.swappiness", Verdict::Ok),
            ("mem.dirty", Verdict::Skip),
        ],
    );
    assert!(finding(&findings, "disk.filesystem")
        .found
        .starts_with("overlay"));
    assert!(finding(&findings, "mem.swappiness")
        .found
        .contains("no swap"));
    // A skip says why.
    assert!(finding(&findings, "mem.thp").found.contains("not present"));
    assert!(finding(&findings, "disk.device")
        .found
        .contains("no block device"));
}

#[test]
fn an_empty_root_skips_everything_it_reads_and_never_panics() {
    let empty = tempfile::tempdir().expect("a temp dir");
    let findings = run(&Host::new(empty.path()), &healthy_facts(), None);
    for f in &findings {
        if !f.check.starts_with("io_uring.") {
            assert_ne!(f.verdict, Verdict::Fail, "{}", f.log_line());
        }
    }
    assert_verdicts(
        &findings,
        &[
            ("io_uring.seccomp", Verdict::Skip),
            ("cpu.governor", Verdict::Skip),
            ("disk.filesystem", Verdict::Skip),
            ("mem.swappiness", Verdict::Skip),
        ],
    );
}

#[test]
fn the_quick_subset_skips_the_scans() {
    let facts = healthy_facts();
    let host = fixture("untuned");
    let ctx = CheckContext {
        host: &host,
        facts: &facts,
        data_dir: PathBuf::from("/var/lib/weir"),
        smp: None,
        partitions: 1000,
    };
    let quick = checks::quick(&ctx);
    assert!(quick
        .iter()
        .all(|f| !f.check.starts_with("net.irq") && !f.check.starts_with("net.rps")));
    assert_verdicts(
        &quick,
        &[
            ("cpu.governor", Verdict::Warn),
            ("mem.swappiness", Verdict::Warn),
            ("net.somaxconn", Verdict::Warn),
            ("disk.filesystem", Verdict::Warn),
        ],
    );
}

#[test]
fn quick_checks_returns_only_problems_with_one_line_each() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/untuned");
    let problems = weir_tune::quick_checks(&root, "/var/lib/weir", None);
    assert!(problems.iter().all(Finding::is_problem));
    let swappiness = problems
        .iter()
        .find(|f| f.check == "mem.swappiness")
        .expect("swappiness is a problem");
    let line = swappiness.log_line();
    assert!(line.starts_with("WARN mem.swappiness: found 60"), "{line}");
    assert!(!line.contains('\n'));
}
