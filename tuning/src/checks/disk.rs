//! The data dir's filesystem and block device: filesystem type and mount options (from
//! `/proc/self/mountinfo`), then the device's queue settings (I/O scheduler, `nr_requests`,
//! read-ahead, write cache). Every acks=all produce waits on one `fdatasync` here.

use std::path::{Path, PathBuf};

use super::{offered_choices, selected_choice, skip_reason, CheckContext};
use crate::finding::{Finding, Tweak, Verdict};
use crate::host::Host;

/// Below this the block layer, not the device, limits how many flushes are in flight.
pub const NR_REQUESTS_MIN: u64 = 64;
/// What `apply` sets a too-small `nr_requests` to: the kernel's default queue depth.
pub const NR_REQUESTS_APPLIED: u64 = 128;
/// Read-ahead for catch-up consumers reading cold segments sequentially.
pub const READ_AHEAD_KB_MIN: u64 = 128;
/// Beyond this each cold read drags MiBs into the page cache, evicting the tail that
/// consumers are reading.
pub const READ_AHEAD_KB_MAX: u64 = 16384;
pub const READ_AHEAD_KB_APPLIED: u64 = 512;

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub major: u32,
    pub minor: u32,
    pub mount_point: PathBuf,
    pub mount_options: String,
    pub filesystem: String,
    pub source: String,
    pub super_options: String,
}

/// Parses mountinfo (see proc(5)): `id parent major:minor root mount_point options
/// [optional...] - fstype source super_options`. Lines that do not parse are ignored.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_mount_line).collect()
}

fn parse_mount_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split_whitespace().collect();
    let (major, minor) = fields.get(2)?.split_once(':')?;
    let mut after = after.split_whitespace();
    Some(Mount {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        mount_point: PathBuf::from(unescape_octal(fields.get(4)?)),
        mount_options: fields.get(5)?.to_string(),
        filesystem: after.next()?.to_string(),
        source: after.next().unwrap_or("").to_string(),
        super_options: after.next().unwrap_or("").to_string(),
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\040`-style octal.
fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let digits = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(digits, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount holding `path`: the longest mount point that is a whole-component prefix of it;
/// among equal mount points the later one, which shadows the earlier.
pub fn mount_of<'m>(mounts: &'m [Mount], path: &Path) -> Option<&'m Mount> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, mount)| path.starts_with(&mount.mount_point))
        .max_by_key(|(index, mount)| (mount.mount_point.components().count(), *index))
        .map(|(_, mount)| mount)
}

/// The filesystem type and block device holding `data_dir`, where they can be told: what
/// `measure` records beside its numbers.
pub fn data_dir_location(host: &Host, data_dir: &Path) -> (Option<String>, Option<String>) {
    let resolved = host.resolve(data_dir);
    let Ok(mountinfo) = host.read("/proc/self/mountinfo") else {
        return (None, None);
    };
    let mounts = parse_mountinfo(&mountinfo);
    match mount_of(&mounts, &resolved) {
        Some(mount) => (Some(mount.filesystem.clone()), disk_name(host, mount).ok()),
        None => (None, None),
    }
}

pub fn check(ctx: &CheckContext) -> Vec<Finding> {
    let data_dir = ctx.host.resolve(&ctx.data_dir);
    let mountinfo = match ctx.host.read("/proc/self/mountinfo") {
        Ok(text) => text,
        Err(error) => return vec![Finding::skip("disk.filesystem", skip_reason(&error))],
    };
    let mounts = parse_mountinfo(&mountinfo);
    let Some(mount) = mount_of(&mounts, &data_dir) else {
        return vec![Finding::skip(
            "disk.filesystem",
            format!(
                "no mount in /proc/self/mountinfo holds {}",
                data_dir.display()
            ),
        )];
    };
    let mut findings = vec![filesystem(mount, &data_dir), mount_options(mount)];
    findings.extend(block_device(ctx, mount));
    findings
}

fn filesystem(mount: &Mount, data_dir: &Path) -> Finding {
    const ID: &str = "disk.filesystem";
    let finding = Finding::new(ID, Verdict::Ok)
        .found(format!(
            "{} ({} on {})",
            mount.filesystem,
            data_dir.display(),
            mount.mount_point.display()
        ))
        .expected("xfs or ext4");
    let (verdict, why, fix) = match mount.filesystem.as_str() {
        "xfs" | "ext4" => return finding,
        "tmpfs" | "ramfs" => (
            Verdict::Warn,
            "memory-backed: every message is lost on reboot, and it competes with the page cache",
            "put --data-dir on an xfs or ext4 filesystem on a local SSD/NVMe",
        ),
        "overlay" | "aufs" => (
            Verdict::Warn,
            "a container's copy-on-write layer: slow fsync, and the data goes with the container",
            "mount a volume (xfs or ext4) at the data dir",
        ),
        "btrfs" | "zfs" | "bcachefs" => (
            Verdict::Warn,
            "copy-on-write: each fdatasync also writes metadata trees, so group commit costs more and latency jitters",
            "use xfs or ext4 for the data dir",
        ),
        "nfs" | "nfs4" | "cifs" | "smb3" | "fuse" | "ceph" => (
            Verdict::Warn,
            "a network filesystem: fdatasync is a network round trip and its durability is the server's",
            "use local xfs or ext4 for the data dir",
        ),
        _ => (Verdict::Warn, "untested with Weir", "use xfs or ext4 for the data dir"),
    };
    finding.verdict(verdict).why(why).fix(fix)
}

fn mount_options(mount: &Mount) -> Finding {
    const ID: &str = "disk.mount_options";
    let options: Vec<&str> = mount
        .mount_options
        .split(',')
        .chain(mount.super_options.split(','))
        .collect();
    let mut problems = Vec::new();
    let has = |name: &str| options.contains(&name);
    if has("sync") || has("dirsync") {
        problems.push("sync: every write waits for the disk, defeating group commit");
    }
    if has("strictatime") {
        problems.push("strictatime: every fetch read writes an atime update");
    }
    if has("nobarrier") || has("barrier=0") {
        problems
            .push("nobarrier: fdatasync no longer makes acknowledged writes durable on power loss");
    }
    if has("data=journal") {
        problems.push("data=journal: every byte is written twice");
    }
    if has("discard") {
        problems.push("discard: deleting a segment (retention) issues synchronous TRIMs that stall writes; prefer fstrim.timer");
    }
    let finding = Finding::new(ID, Verdict::Ok)
        .found(
            format!("{} {}", mount.mount_options, mount.super_options)
                .trim()
                .to_string(),
        )
        .expected("noatime or relatime; no sync, nobarrier, data=journal or online discard");
    if problems.is_empty() {
        return finding;
    }
    finding
        .verdict(Verdict::Warn)
        .why(problems.join("; "))
        .fix(format!(
            "remount {} without them (edit /etc/fstab; not done by apply)",
            mount.mount_point.display()
        ))
}

/// The whole disk behind a mount: `/sys/dev/block/M:m/uevent` names the device; a partition's
/// queue settings live on its parent disk (`/sys/block/nvme0n1/nvme0n1p1`).
fn disk_name(host: &Host, mount: &Mount) -> Result<String, String> {
    if mount.major == 0 {
        return Err(format!(
            "{} ({}) has no block device (anonymous or network filesystem)",
            mount.mount_point.display(),
            mount.filesystem
        ));
    }
    let uevent_path = format!("/sys/dev/block/{}:{}/uevent", mount.major, mount.minor);
    let uevent = host.read(&uevent_path).map_err(|e| skip_reason(&e))?;
    let device = uevent
        .lines()
        .find_map(|line| line.strip_prefix("DEVNAME="))
        .ok_or_else(|| format!("no DEVNAME in {uevent_path}"))?;
    if host.exists(format!("/sys/block/{device}")) {
        return Ok(device.to_string());
    }
    host.list("/sys/block")
        .unwrap_or_default()
        .into_iter()
        .find(|disk| host.exists(format!("/sys/block/{disk}/{device}")))
        .ok_or_else(|| format!("no disk in /sys/block holds {device}"))
}

fn block_device(ctx: &CheckContext, mount: &Mount) -> Vec<Finding> {
    let disk = match disk_name(ctx.host, mount) {
        Ok(disk) => disk,
        Err(reason) => return vec![Finding::skip("disk.device", reason)],
    };
    let queue = format!("/sys/block/{disk}/queue");
    let read = |file: &str| ctx.host.read_value(format!("{queue}/{file}"));
    let rotational = read("rotational").is_ok_and(|value| value == "1");
    let slaves = ctx
        .host
        .list(format!("/sys/block/{disk}/slaves"))
        .unwrap_or_default();
    let mut found = format!(
        "{disk} ({}:{}), {}",
        mount.major,
        mount.minor,
        if rotational {
            "rotational"
        } else {
            "non-rotational"
        }
    );
    if !slaves.is_empty() {
        found.push_str(&format!(
            "; over {} (their queues are not checked)",
            slaves.join(",")
        ));
    }
    let device = Finding::new("disk.device", Verdict::Ok)
        .found(found)
        .expected("SSD or NVMe");
    let device = if rotational {
        device
            .verdict(Verdict::Warn)
            .why("a spinning disk's fdatasync costs a rotation (several ms): every acks=all produce waits for one")
            .fix("put the data dir on SSD or NVMe (a VM's virtio disk reports rotational by default: check what backs it, and `weir-tune measure`)")
    } else {
        device
    };
    vec![
        device,
        scheduler(&queue, read("scheduler"), rotational),
        nr_requests(&queue, read("nr_requests"), read("scheduler")),
        read_ahead(&queue, read("read_ahead_kb")),
        write_cache(read("write_cache")),
    ]
}

type Value = Result<String, crate::host::ReadError>;

fn scheduler(queue: &str, value: Value, rotational: bool) -> Finding {
    const ID: &str = "disk.scheduler";
    let text = match value {
        Ok(text) => text,
        Err(error) => return Finding::skip(ID, skip_reason(&error)),
    };
    let current = selected_choice(&text).to_string();
    let offered = offered_choices(&text);
    let good: &[&str] = if rotational {
        &["mq-deadline"]
    } else {
        &["none", "mq-deadline"]
    };
    let finding = Finding::new(ID, Verdict::Ok)
        .found(&current)
        .expected(good.join(" or "));
    if good.contains(&current.as_str()) {
        return finding;
    }
    let finding = finding
        .verdict(Verdict::Warn)
        .why("bfq and kyber spend CPU per request and reorder flushes; a fast device needs none (or mq-deadline)");
    match good
        .iter()
        .find(|choice| offered.iter().any(|o| o == *choice))
    {
        Some(choice) => finding
            .fix(format!(
                "echo {choice} > {queue}/scheduler (a udev rule keeps it across reboots)"
            ))
            .tweaks(vec![Tweak::new(format!("{queue}/scheduler"), *choice)]),
        None => finding.fix(format!("load a scheduler offering {}", good.join(" or "))),
    }
}

fn nr_requests(queue: &str, value: Value, scheduler: Value) -> Finding {
    const ID: &str = "disk.nr_requests";
    let value = match value {
        Ok(value) => value,
        Err(error) => return Finding::skip(ID, skip_reason(&error)),
    };
    let finding = Finding::new(ID, Verdict::Ok)
        .found(&value)
        .expected(format!(">= {NR_REQUESTS_MIN}"));
    if value.parse::<u64>().is_ok_and(|n| n >= NR_REQUESTS_MIN) {
        return finding;
    }
    let finding = finding
        .verdict(Verdict::Warn)
        .why("concurrent partition flushes queue in the block layer instead of at the device");
    // Without a scheduler nr_requests is the hardware's tag depth and cannot be raised.
    let no_scheduler = scheduler.is_ok_and(|text| selected_choice(&text) == "none");
    if no_scheduler {
        finding.fix("the device's own queue depth: nothing to raise without a scheduler")
    } else {
        finding
            .fix(format!("echo {NR_REQUESTS_APPLIED} > {queue}/nr_requests"))
            .tweaks(vec![Tweak::new(
                format!("{queue}/nr_requests"),
                NR_REQUESTS_APPLIED.to_string(),
            )])
    }
}

fn read_ahead(queue: &str, value: Value) -> Finding {
    const ID: &str = "disk.read_ahead_kb";
    let value = match value {
        Ok(value) => value,
        Err(error) => return Finding::skip(ID, skip_reason(&error)),
    };
    let finding = Finding::new(ID, Verdict::Ok)
        .found(&value)
        .expected(format!("{READ_AHEAD_KB_MIN}..={READ_AHEAD_KB_MAX}"));
    let why = match value.parse::<u64>() {
        Ok(kb) if (READ_AHEAD_KB_MIN..=READ_AHEAD_KB_MAX).contains(&kb) => return finding,
        Ok(kb) if kb > READ_AHEAD_KB_MAX => "each cold read pulls this much into the page cache, evicting the tail that live consumers read",
        _ => "catch-up consumers read cold segments sequentially; small read-ahead turns that into many small disk reads",
    };
    finding
        .verdict(Verdict::Warn)
        .why(why)
        .fix(format!(
            "echo {READ_AHEAD_KB_APPLIED} > {queue}/read_ahead_kb"
        ))
        .tweaks(vec![Tweak::new(
            format!("{queue}/read_ahead_kb"),
            READ_AHEAD_KB_APPLIED.to_string(),
        )])
}

fn write_cache(value: Value) -> Finding {
    const ID: &str = "disk.write_cache";
    match value {
        Ok(mode) => Finding::new(ID, Verdict::Ok)
            .found(&mode)
            .expected("as the device reports it")
            .why(if mode == "write back" {
                "a volatile cache: every fdatasync also flushes it (that cost is in `measure`); never force 'write through' on a cache without power-loss protection"
            } else {
                "no volatile cache (or a power-loss-protected one): fdatasync needs no cache flush"
            }),
        Err(error) => Finding::skip(ID, skip_reason(&error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
40 27 259:2 / /var/lib/weir rw,noatime - xfs /dev/nvme0n1p2 rw,attr2,inode64
41 27 0:50 / /var/lib/weir\\040old rw - tmpfs tmpfs rw
42 27 0:51 / /var/lib/weir rw - tmpfs tmpfs rw
";

    #[test]
    fn the_longest_and_latest_mount_wins() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 4);
        let mount = mount_of(&mounts, Path::new("/var/lib/weir/data")).expect("a mount");
        // Mounted over the xfs one later: it shadows it.
        assert_eq!(mount.filesystem, "tmpfs");
        let root = mount_of(&mounts, Path::new("/var/lib/weirdo")).expect("a mount");
        assert_eq!(root.filesystem, "ext4");
    }

    #[test]
    fn escaped_mount_points_are_decoded() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts[2].mount_point, PathBuf::from("/var/lib/weir old"));
    }

    #[test]
    fn broken_lines_are_ignored() {
        assert!(parse_mountinfo("garbage\n1 2 x / / rw - ext4 /dev/x rw\n").is_empty());
    }
}
