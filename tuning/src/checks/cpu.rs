//! The cores shards run on: how many there are against `--smp`, whether weir-shard can pin to
//! them, SMT siblings, the frequency governor, deep idle states, isolation and the clock.
//! A shard that shares its core, sleeps deeply or runs slow adds directly to produce latency.

use super::{selected_choice, skip_reason, CheckContext};
use crate::cpu_set::{self, CpuSet};
use crate::finding::{Finding, Tweak, Verdict};

/// Idle states that take longer than this to leave add visibly to a p99 measured in tens of
/// microseconds; C1 (about 1-2 µs) is fine, C6 (often 100+ µs) is not.
pub const IDLE_EXIT_LATENCY_US_MAX: u64 = 10;

const CPU_DIR: &str = "/sys/devices/system/cpu";

pub fn check(ctx: &CheckContext) -> Vec<Finding> {
    let mut findings = check_quick(ctx);
    findings.push(smt(ctx));
    findings.push(idle_states(ctx));
    findings.push(isolation(ctx));
    findings
}

/// The start-up subset: each a read of one or two files per shard core.
pub fn check_quick(ctx: &CheckContext) -> Vec<Finding> {
    vec![shards(ctx), governor(ctx), clocksource(ctx)]
}

fn shards(ctx: &CheckContext) -> Finding {
    const ID: &str = "cpu.shards";
    let Some(available) = ctx.available_cpus() else {
        return Finding::skip(
            ID,
            "neither /proc/self/status nor /sys/devices/system/cpu/online is readable",
        );
    };
    let shard_count = ctx.shard_count();
    let finding = Finding::new(ID, Verdict::Ok)
        .found(format!(
            "{shard_count} shards, {} CPUs available ({})",
            available.len(),
            cpu_set::format_list(&available)
        ))
        .expected("shards <= available CPUs, shard i on CPU i");
    if shard_count > available.len() {
        return finding
            .verdict(Verdict::Warn)
            .why("with more shards than CPUs weir-shard pins nothing: shards share cores and the scheduler moves them")
            .fix(format!("start Weir with --smp {} or fewer", available.len()));
    }
    let shard_cpus = ctx.shard_cpus();
    let unavailable: CpuSet = shard_cpus.difference(&available).copied().collect();
    if !unavailable.is_empty() {
        return finding
            .verdict(Verdict::Fail)
            .why(format!(
                "weir-shard pins shard i to CPU i, and CPUs {} are outside this process's cpuset/affinity: those shards cannot start",
                cpu_set::format_list(&unavailable)
            ))
            .fix("give the broker CPUs 0..smp (cgroup cpuset, taskset, the container's --cpuset-cpus)");
    }
    finding
}

fn governor(ctx: &CheckContext) -> Finding {
    const ID: &str = "cpu.governor";
    let mut slow = Vec::new();
    let mut tweaks = Vec::new();
    let mut governors = Vec::new();
    for cpu in ctx.shard_cpus() {
        let path = format!("{CPU_DIR}/cpu{cpu}/cpufreq/scaling_governor");
        match ctx.host.read_value(&path) {
            Ok(governor) => {
                if governor != "performance" {
                    slow.push(cpu);
                    tweaks.push(Tweak::new(&path, "performance"));
                }
                governors.push(governor);
            }
            Err(error) if cpu == 0 => {
                return Finding::skip(
                    ID,
                    format!(
                        "{}; frequency is the hypervisor's or firmware's to set",
                        skip_reason(&error)
                    ),
                );
            }
            Err(_) => {}
        }
    }
    governors.dedup();
    let finding = Finding::new(ID, Verdict::Ok)
        .found(governors.join(","))
        .expected("performance on shard CPUs");
    if slow.is_empty() {
        return finding;
    }
    finding
        .verdict(Verdict::Warn)
        .why("a shard polls in bursts; powersave/schedutil clock it down between bursts and each request pays the ramp-up")
        .fix(format!(
            "performance governor on CPUs {} (cpupower frequency-set -g performance)",
            cpu_set::format_list(&slow.into_iter().collect())
        ))
        .tweaks(tweaks)
}

fn smt(ctx: &CheckContext) -> Finding {
    const ID: &str = "cpu.smt";
    let shard_cpus = ctx.shard_cpus();
    let mut shared_pairs = Vec::new();
    for &cpu in &shard_cpus {
        let path = format!("{CPU_DIR}/cpu{cpu}/topology/thread_siblings_list");
        let siblings = match ctx.host.read_value(&path) {
            Ok(text) => cpu_set::parse_list(&text).unwrap_or_default(),
            Err(error) => return Finding::skip(ID, skip_reason(&error)),
        };
        for sibling in siblings {
            if sibling > cpu && shard_cpus.contains(&sibling) {
                shared_pairs.push(format!("{cpu}+{sibling}"));
            }
        }
    }
    let finding = Finding::new(ID, Verdict::Ok).expected("each shard on its own physical core");
    if shared_pairs.is_empty() {
        return finding.found("no two shards share a physical core");
    }
    finding
        .found(format!("shards share physical cores: {}", shared_pairs.join(" ")))
        .verdict(Verdict::Warn)
        .why("SMT siblings share a core's execution units and caches; two busy shards on one core each run markedly slower")
        .fix("run one shard per physical core (a smaller --smp with siblings left idle), or disable SMT in firmware / `echo off > /sys/devices/system/cpu/smt/control` (not done by apply: it takes CPUs offline)")
}

fn idle_states(ctx: &CheckContext) -> Finding {
    const ID: &str = "cpu.idle";
    let driver = ctx
        .host
        .read_value(format!("{CPU_DIR}/cpuidle/current_driver"));
    let mut deep = Vec::new();
    let mut tweaks = Vec::new();
    for cpu in ctx.shard_cpus() {
        let dir = format!("{CPU_DIR}/cpu{cpu}/cpuidle");
        let Ok(states) = ctx.host.list(&dir) else {
            let reason = match &driver {
                Ok(driver) if !driver.is_empty() && driver != "none" => {
                    format!("no {dir} (idle driver {driver})")
                }
                _ => "no cpuidle states: the hypervisor or firmware owns idle (VM)".to_string(),
            };
            return Finding::skip(ID, reason);
        };
        for state in states.iter().filter(|s| s.starts_with("state")) {
            let read = |file: &str| ctx.host.read_value(format!("{dir}/{state}/{file}"));
            let latency_us: u64 = read("latency")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let disabled = read("disable").is_ok_and(|v| v == "1");
            if latency_us > IDLE_EXIT_LATENCY_US_MAX && !disabled {
                let name = read("name").unwrap_or_else(|_| state.clone());
                deep.push(format!("cpu{cpu}:{name}({latency_us}us)"));
                tweaks.push(Tweak::new(format!("{dir}/{state}/disable"), "1"));
            }
        }
    }
    let finding = Finding::new(ID, Verdict::Ok).expected(format!(
        "no enabled idle state with exit latency > {IDLE_EXIT_LATENCY_US_MAX} us on shard CPUs"
    ));
    if deep.is_empty() {
        return finding.found("no deep idle state enabled");
    }
    let shown = if deep.len() > 4 {
        format!("{} and {} more", deep[..4].join(" "), deep.len() - 4)
    } else {
        deep.join(" ")
    };
    finding
        .found(shown)
        .verdict(Verdict::Warn)
        .why("a parked shard in a deep C-state takes that long to wake for the next request: it lands in the tail latency")
        .fix("disable deep idle states on shard CPUs (cpupower idle-set -D 10), or processor.max_cstate=1 intel_idle.max_cstate=1 on the kernel command line")
        .tweaks(tweaks)
}

fn isolation(ctx: &CheckContext) -> Finding {
    const ID: &str = "cpu.isolation";
    let isolated = read_cpu_list(ctx, &format!("{CPU_DIR}/isolated"));
    let nohz_full = read_cpu_list(ctx, &format!("{CPU_DIR}/nohz_full"));
    let shard_cpus = ctx.shard_cpus();
    let describe = |set: &Option<CpuSet>| match set {
        Some(set) if !set.is_empty() => cpu_set::format_list(set),
        Some(_) => "none".to_string(),
        None => "n/a".to_string(),
    };
    let finding = Finding::new(ID, Verdict::Ok)
        .found(format!(
            "isolcpus {}, nohz_full {}",
            describe(&isolated),
            describe(&nohz_full)
        ))
        .expected("optional; when used, covering the shard CPUs");
    let isolated = isolated.unwrap_or_default();
    if isolated.is_empty() || shard_cpus.is_subset(&isolated) {
        return finding;
    }
    // Isolated CPUs that shards do not use are wasted, and shards outside them share with
    // everything else: the isolation is set up for some other layout.
    finding
        .verdict(Verdict::Warn)
        .why(format!(
            "CPUs {} are isolated but shards run on {}: shards share cores with the rest of the system while isolated ones idle",
            cpu_set::format_list(&isolated),
            cpu_set::format_list(&shard_cpus)
        ))
        .fix("isolate the shard CPUs (isolcpus=/nohz_full= on the kernel command line, then reboot), or choose --smp to match")
}

fn read_cpu_list(ctx: &CheckContext, path: &str) -> Option<CpuSet> {
    ctx.host
        .read_value(path)
        .ok()
        .and_then(|text| cpu_set::parse_list(&text))
}

fn clocksource(ctx: &CheckContext) -> Finding {
    const ID: &str = "cpu.clocksource";
    let dir = "/sys/devices/system/clocksource/clocksource0";
    let current = match ctx.host.read_value(format!("{dir}/current_clocksource")) {
        Ok(current) => current,
        Err(error) => return Finding::skip(ID, skip_reason(&error)),
    };
    // These are read in user space through the vDSO; hpet and acpi_pm need a system call (or
    // a slow MMIO read) for every timestamp Weir takes.
    let fast = [
        "tsc",
        "kvm-clock",
        "hyperv_clocksource_tsc_page",
        "arch_sys_counter",
    ];
    let finding = Finding::new(ID, Verdict::Ok)
        .found(&current)
        .expected("tsc (or another vDSO clock: kvm-clock, arch_sys_counter)");
    if fast.contains(&current.as_str()) {
        return finding;
    }
    let available = ctx
        .host
        .read_value(format!("{dir}/available_clocksource"))
        .unwrap_or_default();
    let tsc_offered = available.split_whitespace().any(|c| c == "tsc");
    let finding = finding
        .verdict(Verdict::Warn)
        .why(format!("every clock read through {} is a system call or slow device read; Weir timestamps every request", selected_choice(&current)));
    if tsc_offered {
        finding
            .fix("switch to tsc (clocksource=tsc tsc=reliable on the kernel command line to keep it)")
            .tweaks(vec![Tweak::new(format!("{dir}/current_clocksource"), "tsc")])
    } else {
        finding.fix(
            "tsc is not offered (unstable TSC?): check the BIOS/hypervisor for an invariant TSC",
        )
    }
}
