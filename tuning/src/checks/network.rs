//! The network path into the shards: the listen backlog and socket buffer sysctls, busy
//! polling, and where the NICs' interrupts and receive/transmit steering (RPS/XPS) run
//! relative to the shard CPUs.

use std::collections::BTreeMap;

use super::{skip_reason, CheckContext};
use crate::cpu_set::{self, CpuSet};
use crate::finding::{Finding, Tweak, Verdict};
use crate::host::sysctl_path;

/// Weir's listen backlog per shard (`LISTEN_BACKLOG` in src/server/listener.rs); the kernel
/// silently caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u64 = 1024;
/// What `apply` sets `somaxconn` to: the kernel's own default since 5.4.
pub const SOMAXCONN_APPLIED: u64 = 4096;
/// TCP autotuning's ceiling for one socket's buffer. A fetch response of a few MiB to a
/// consumer one RTT away needs the window to grow past the 4 MiB `tcp_wmem` default.
pub const TCP_BUFFER_BYTES_MIN: u64 = 16 * 1024 * 1024;

const NET_DIR: &str = "/sys/class/net";

pub fn check(ctx: &CheckContext) -> Vec<Finding> {
    let mut findings = check_quick(ctx);
    findings.push(busy_poll(ctx));
    findings.extend(nics(ctx));
    findings
}

/// The start-up subset: three sysctls.
pub fn check_quick(ctx: &CheckContext) -> Vec<Finding> {
    vec![
        somaxconn(ctx),
        tcp_buffer(ctx, "net.ipv4.tcp_rmem", "net.tcp_rmem"),
        tcp_buffer(ctx, "net.ipv4.tcp_wmem", "net.tcp_wmem"),
    ]
}

fn somaxconn(ctx: &CheckContext) -> Finding {
    const ID: &str = "net.somaxconn";
    let value = match ctx.host.sysctl("net.core.somaxconn") {
        Ok(value) => value,
        Err(error) => return Finding::skip(ID, skip_reason(&error)),
    };
    let finding = Finding::new(ID, Verdict::Ok)
        .found(&value)
        .expected(format!(">= {LISTEN_BACKLOG} (Weir's listen backlog)"));
    match value.parse::<u64>() {
        Ok(n) if n >= LISTEN_BACKLOG => finding,
        _ => finding
            .verdict(Verdict::Warn)
            .why("the kernel caps Weir's backlog to this: a burst of connecting clients (a consumer group rebalancing) sees SYNs dropped and 1 s+ retries")
            .fix(format!("sysctl -w net.core.somaxconn={SOMAXCONN_APPLIED}"))
            .tweaks(vec![Tweak::new(
                sysctl_path("net.core.somaxconn"),
                SOMAXCONN_APPLIED.to_string(),
            )]),
    }
}

fn tcp_buffer(ctx: &CheckContext, sysctl: &str, id: &str) -> Finding {
    let value = match ctx.host.sysctl(sysctl) {
        Ok(value) => value,
        Err(error) => return Finding::skip(id, skip_reason(&error)),
    };
    let fields: Vec<u64> = value
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [min, default, max] = fields[..] else {
        return Finding::skip(id, format!("cannot parse {sysctl} = {value:?}"));
    };
    let finding = Finding::new(id, Verdict::Ok)
        .found(value.split_whitespace().collect::<Vec<_>>().join(" "))
        .expected(format!("max >= {TCP_BUFFER_BYTES_MIN}"));
    if max >= TCP_BUFFER_BYTES_MIN {
        return finding;
    }
    let wanted = format!("{min} {default} {TCP_BUFFER_BYTES_MIN}");
    finding
        .verdict(Verdict::Warn)
        .why("autotuning stops growing a connection's window here: large produce and fetch transfers over a real network are capped at max/RTT")
        .fix(format!("sysctl -w {sysctl}=\"{wanted}\""))
        .tweaks(vec![Tweak::new(sysctl_path(sysctl), wanted)])
}

fn busy_poll(ctx: &CheckContext) -> Finding {
    const ID: &str = "net.busy_poll";
    let poll = ctx.host.sysctl("net.core.busy_poll");
    let read = ctx.host.sysctl("net.core.busy_read");
    match (poll, read) {
        (Ok(poll), Ok(read)) => Finding::new(ID, Verdict::Ok)
            .found(format!("busy_poll {poll}, busy_read {read}"))
            .expected("0 (Weir's shards already spin before parking), or ~50 on hosts that trade CPU for the last microseconds"),
        (Err(error), _) | (_, Err(error)) => Finding::skip(ID, skip_reason(&error)),
    }
}

/// Interfaces backed by a device: `lo`, bridges, veths and ifbs have no `device` link and
/// no interrupts of their own.
fn physical_interfaces(ctx: &CheckContext) -> Vec<String> {
    ctx.host
        .list(NET_DIR)
        .unwrap_or_default()
        .into_iter()
        .filter(|name| name != "lo" && ctx.host.exists(format!("{NET_DIR}/{name}/device")))
        .collect()
}

fn nics(ctx: &CheckContext) -> Vec<Finding> {
    let interfaces = physical_interfaces(ctx);
    if interfaces.is_empty() {
        return vec![Finding::skip(
            "net.nic",
            "no physical network interface (a container's veth, or loopback only)",
        )];
    }
    let interrupts = ctx.host.read("/proc/interrupts");
    let irqbalance = irqbalance_running(ctx);
    let mut findings = Vec::new();
    for interface in &interfaces {
        findings.push(match &interrupts {
            Ok(text) => irq_affinity(ctx, interface, text, irqbalance),
            Err(error) => {
                Finding::skip(format!("net.irq_affinity.{interface}"), skip_reason(error))
            }
        });
        findings.push(rps(ctx, interface));
        findings.push(xps(ctx, interface));
    }
    findings
}

/// IRQ number → action name (`eth0-TxRx-0`, `virtio2-input.0`, `mlx5_comp3@pci:...`).
pub fn parse_interrupts(text: &str) -> BTreeMap<u32, String> {
    text.lines()
        .filter_map(|line| {
            let (number, rest) = line.trim_start().split_once(':')?;
            let irq = number.parse().ok()?;
            let name = rest.split_whitespace().last()?;
            Some((irq, name.to_string()))
        })
        .collect()
}

/// Whether an interrupt name belongs to a device known by `token`, matching whole names only
/// (`virtio2` must not claim `virtio20-input.0`).
fn names_device(irq_name: &str, token: &str) -> bool {
    irq_name.match_indices(token).any(|(at, _)| {
        let before_ok = at == 0 || !irq_name.as_bytes()[at - 1].is_ascii_alphanumeric();
        let after = irq_name.as_bytes().get(at + token.len());
        let after_ok = after.is_none_or(|c| !c.is_ascii_alphanumeric());
        before_ok && after_ok
    })
}

/// The queue interrupts of one NIC: named after the interface or its device (PCI address,
/// virtio number), without the control interrupts that carry no traffic.
fn nic_irqs(ctx: &CheckContext, interface: &str, interrupts: &str) -> Vec<u32> {
    let mut tokens = vec![interface.to_string()];
    tokens.extend(ctx.host.link_name(format!("{NET_DIR}/{interface}/device")));
    parse_interrupts(interrupts)
        .into_iter()
        .filter(|(_, name)| !name.ends_with("-config") && !name.contains("async"))
        .filter(|(_, name)| tokens.iter().any(|token| names_device(name, token)))
        .map(|(irq, _)| irq)
        .collect()
}

fn irq_affinity(
    ctx: &CheckContext,
    interface: &str,
    interrupts: &str,
    irqbalance: bool,
) -> Finding {
    let id = format!("net.irq_affinity.{interface}");
    let irqs = nic_irqs(ctx, interface, interrupts);
    if irqs.is_empty() {
        return Finding::skip(
            id,
            format!("no interrupts named after {interface} in /proc/interrupts"),
        );
    }
    let shard_cpus = ctx.shard_cpus();
    let available = ctx.available_cpus().unwrap_or_else(|| shard_cpus.clone());
    let spare: CpuSet = available.difference(&shard_cpus).copied().collect();
    let shard_list: Vec<usize> = shard_cpus.iter().copied().collect();

    let mut current = Vec::new();
    let mut tweaks = Vec::new();
    let mut pinned_cpus = CpuSet::new();
    let mut all_placed = true;
    for (index, irq) in irqs.iter().enumerate() {
        let path = format!("/proc/irq/{irq}/smp_affinity_list");
        let Some(affinity) = ctx
            .host
            .read_value(&path)
            .ok()
            .and_then(|t| cpu_set::parse_list(&t))
        else {
            continue;
        };
        // Spare CPUs take the interrupts so shards keep their cores; without spares, one
        // queue per shard CPU so each shard handles its own share of the softirq work.
        let wanted: CpuSet = if spare.is_empty() {
            [shard_list[index % shard_list.len()]].into_iter().collect()
        } else {
            spare.clone()
        };
        let placed = if spare.is_empty() {
            // Pinned to one CPU that no other queue of this NIC uses.
            affinity.len() == 1 && affinity.first().is_some_and(|&cpu| pinned_cpus.insert(cpu))
        } else {
            affinity.is_subset(&spare)
        };
        if !placed {
            all_placed = false;
        }
        current.push(format!("{irq}:{}", cpu_set::format_list(&affinity)));
        tweaks.push(Tweak::new(path, cpu_set::format_list(&wanted)));
    }
    if current.is_empty() {
        return Finding::skip(
            id,
            "no readable /proc/irq/N/smp_affinity_list for its interrupts",
        );
    }
    let expected = if spare.is_empty() {
        "each queue's IRQ on one shard CPU, spread over the shards".to_string()
    } else {
        format!(
            "on CPUs {} (not used by shards)",
            cpu_set::format_list(&spare)
        )
    };
    let finding = Finding::new(id, Verdict::Ok)
        .found(current.join(" "))
        .expected(expected);
    if all_placed {
        return finding;
    }
    let mut fix = "pin the NIC queue interrupts as expected (writes /proc/irq/N/smp_affinity_list)"
        .to_string();
    if irqbalance {
        fix.push_str("; irqbalance is running and will move them back: stop it or ban these IRQs (IRQBALANCE_BANNED_CPULIST)");
    }
    finding
        .verdict(Verdict::Warn)
        .why(if spare.is_empty() {
            "interrupts that float or pile onto one CPU make that shard do every connection's softirq work and its own"
        } else {
            "interrupts on shard CPUs preempt the shards; spare CPUs can take them instead"
        })
        .fix(fix)
        .tweaks(tweaks)
}

fn queues(ctx: &CheckContext, interface: &str, prefix: &str) -> Vec<String> {
    ctx.host
        .list(format!("{NET_DIR}/{interface}/queues"))
        .unwrap_or_default()
        .into_iter()
        .filter(|queue| queue.starts_with(prefix))
        .collect()
}

fn rps(ctx: &CheckContext, interface: &str) -> Finding {
    let id = format!("net.rps.{interface}");
    let rx_queues = queues(ctx, interface, "rx-");
    let shard_cpus = ctx.shard_cpus();
    let finding = Finding::new(&id, Verdict::Ok);
    if rx_queues.len() >= shard_cpus.len() || shard_cpus.len() == 1 {
        return finding
            .found(format!(
                "{} rx queues for {} shards",
                rx_queues.len(),
                shard_cpus.len()
            ))
            .expected("RPS not needed when hardware queues >= shards");
    }
    let wanted = cpu_set::format_mask(&shard_cpus);
    let mut tweaks = Vec::new();
    let mut masks = Vec::new();
    for queue in &rx_queues {
        let path = format!("{NET_DIR}/{interface}/queues/{queue}/rps_cpus");
        match ctx.host.read_value(&path) {
            Ok(mask) => {
                if cpu_set::parse_mask(&mask).is_none_or(|cpus| !shard_cpus.is_subset(&cpus)) {
                    tweaks.push(Tweak::new(path, wanted.clone()));
                }
                masks.push(format!("{queue}={mask}"));
            }
            Err(error) => return Finding::skip(id, skip_reason(&error)),
        }
    }
    let finding = finding
        .found(format!(
            "{} rx queue(s): {}",
            rx_queues.len(),
            masks.join(" ")
        ))
        .expected(format!("rps_cpus covering shard CPUs ({wanted})"));
    if tweaks.is_empty() {
        return finding;
    }
    finding
        .verdict(Verdict::Warn)
        .why("fewer receive queues than shards: without RPS one CPU does the protocol work for every connection")
        .fix(format!("echo {wanted} > {NET_DIR}/{interface}/queues/rx-*/rps_cpus"))
        .tweaks(tweaks)
}

fn xps(ctx: &CheckContext, interface: &str) -> Finding {
    let id = format!("net.xps.{interface}");
    let tx_queues = queues(ctx, interface, "tx-");
    if tx_queues.len() <= 1 {
        return Finding::new(&id, Verdict::Ok)
            .found(format!("{} tx queue", tx_queues.len()))
            .expected("XPS only matters with several tx queues");
    }
    let shard_list: Vec<usize> = ctx.shard_cpus().into_iter().collect();
    let mut tweaks = Vec::new();
    let mut masks = Vec::new();
    for (index, queue) in tx_queues.iter().enumerate() {
        let path = format!("{NET_DIR}/{interface}/queues/{queue}/xps_cpus");
        match ctx.host.read_value(&path) {
            Ok(mask) => {
                if cpu_set::parse_mask(&mask).is_none_or(|cpus| cpus.is_empty()) {
                    let cpu: CpuSet = [shard_list[index % shard_list.len()]].into_iter().collect();
                    tweaks.push(Tweak::new(path, cpu_set::format_mask(&cpu)));
                }
                masks.push(format!("{queue}={mask}"));
            }
            Err(error) => return Finding::skip(id, skip_reason(&error)),
        }
    }
    let finding = Finding::new(&id, Verdict::Ok)
        .found(masks.join(" "))
        .expected("every tx queue mapped to a shard CPU");
    if tweaks.is_empty() {
        return finding;
    }
    finding
        .verdict(Verdict::Warn)
        .why("without XPS a shard's sends pick tx queues by hash and contend for other CPUs' queue locks")
        .fix("map tx queue i to shard CPU i (xps_cpus)")
        .tweaks(tweaks)
}

/// irqbalance rewrites IRQ affinity every 10 s; pinning under it does not last.
fn irqbalance_running(ctx: &CheckContext) -> bool {
    ctx.host
        .list("/proc")
        .unwrap_or_default()
        .iter()
        .filter(|entry| entry.bytes().all(|b| b.is_ascii_digit()))
        .any(|pid| {
            ctx.host
                .read_value(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm == "irqbalance")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupts_parse_to_names() {
        let text = "           CPU0       CPU1\n 38:          0       8451  PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0\nNMI:  0  0   Non-maskable interrupts\n";
        let irqs = parse_interrupts(text);
        assert_eq!(irqs.get(&38).map(String::as_str), Some("virtio2-input.0"));
        assert_eq!(irqs.len(), 1);
    }

    #[test]
    fn device_names_match_whole_words_only() {
        assert!(names_device("virtio2-input.0", "virtio2"));
        assert!(!names_device("virtio20-input.0", "virtio2"));
        assert!(names_device("eth0-TxRx-3", "eth0"));
        assert!(!names_device("eth01-TxRx-3", "eth0"));
        assert!(names_device("mlx5_comp3@pci:0000:3b:00.0", "0000:3b:00.0"));
    }
}
