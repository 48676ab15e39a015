//! Can Weir create its io_uring rings, and open every file it will need? Kernel version, the
//! `kernel.io_uring_disabled` sysctl, seccomp, RLIMIT_MEMLOCK and RLIMIT_NOFILE. These are
//! the checks that can FAIL: without io_uring glommio cannot start a shard at all.

use super::{skip_reason, status_field, CheckContext};
use crate::finding::{Finding, Verdict};
use crate::host::ReadError;
use crate::system::{kernel_version, IoUringProbe, Limit};

/// glommio 0.9 needs 5.8 (the README's floor for Weir).
pub const KERNEL_MIN: (u32, u32) = (5, 8);
/// From 6.0 buffered writes submitted through io_uring complete inline on XFS (async buffered
/// writes) instead of being punted to io-wq worker threads; ext4 and btrfs followed.
pub const KERNEL_RECOMMENDED: (u32, u32) = (6, 0);

/// Files each partition keeps open: the active segment's `.log` (twice: the io_uring write
/// handle, and the plain read descriptor fetches send from with sendfile), `.index` and
/// `.timeindex` (`weir_storage::segment::SegmentFiles`).
pub const FILES_PER_PARTITION: u64 = 4;
/// Sockets and everything else besides partitions: client connections (one listen backlog's
/// worth), the shards' eventfds and rings, the metadata snapshot.
pub const FILES_BESIDES_PARTITIONS: u64 = 1024 + 64;

/// glommio registers a 10 MiB I/O buffer area per executor, and registered buffers count
/// against RLIMIT_MEMLOCK for a process without CAP_IPC_LOCK; rings and slack on top.
pub const MEMLOCK_BYTES_PER_SHARD: u64 = 16 * 1024 * 1024;

pub fn check(ctx: &CheckContext) -> Vec<Finding> {
    vec![
        kernel(ctx),
        disabled_sysctl(ctx),
        setup_probe(ctx),
        seccomp(ctx),
        locked_memory(ctx),
        open_files(ctx),
    ]
}

fn kernel(ctx: &CheckContext) -> Finding {
    const ID: &str = "io_uring.kernel";
    let Some(release) = ctx.facts.kernel_release() else {
        return Finding::skip(ID, "uname failed");
    };
    let expected = format!(">= {}.{}", KERNEL_RECOMMENDED.0, KERNEL_RECOMMENDED.1);
    let Some(version) = kernel_version(&release) else {
        return Finding::skip(ID, format!("cannot parse kernel release {release:?}"));
    };
    let finding = Finding::new(ID, Verdict::Ok)
        .found(&release)
        .expected(expected);
    if version < KERNEL_MIN {
        finding
            .verdict(Verdict::Fail)
            .why("glommio, Weir's executor, needs io_uring features from Linux 5.8")
            .fix("upgrade the kernel to 6.x (5.8 at the very least)")
    } else if version < KERNEL_RECOMMENDED {
        finding
            .verdict(Verdict::Warn)
            .why("before 6.0 buffered writes through io_uring are punted to io-wq worker threads, adding a thread hop to every append")
            .fix("upgrade to a 6.x kernel")
    } else {
        finding
    }
}

fn disabled_sysctl(ctx: &CheckContext) -> Finding {
    const ID: &str = "io_uring.disabled_sysctl";
    let finding = Finding::new(ID, Verdict::Ok).expected("0");
    match ctx.host.sysctl("kernel.io_uring_disabled") {
        // The sysctl arrived in 6.6; before it nothing restricts io_uring this way.
        Err(ReadError::Missing { .. }) => finding.found("not present (kernel before 6.6: no restriction)"),
        Err(error) => Finding::skip(ID, skip_reason(&error)),
        Ok(value) => match value.as_str() {
            "0" => finding.found("0"),
            "1" => finding
                .found("1")
                .verdict(Verdict::Warn)
                .why("io_uring is allowed only to CAP_SYS_ADMIN and to members of kernel.io_uring_group; any other broker user cannot start")
                .fix("run Weir as a member of kernel.io_uring_group, or `sysctl -w kernel.io_uring_disabled=0` (a security policy: weir-tune leaves it to you)"),
            other => finding
                .found(other)
                .verdict(Verdict::Fail)
                .why("io_uring is disabled for every process: Weir cannot start a shard")
                .fix("`sysctl -w kernel.io_uring_disabled=0` and persist it in /etc/sysctl.d (a security policy: weir-tune leaves it to you)"),
        },
    }
}

fn setup_probe(ctx: &CheckContext) -> Finding {
    const ID: &str = "io_uring.setup";
    match ctx.facts.probe_io_uring() {
        IoUringProbe::Available => Finding::new(ID, Verdict::Ok)
            .found("io_uring_setup succeeded")
            .expected("io_uring_setup succeeds"),
        IoUringProbe::Unknown => Finding::skip(ID, "not probed"),
        IoUringProbe::Refused { errno, message } => {
            let cause = match errno {
                libc::EPERM => "kernel.io_uring_disabled, a seccomp filter (Docker's default profile blocks io_uring) or an LSM",
                libc::ENOSYS => "a kernel built without io_uring, or a seccomp filter answering ENOSYS",
                libc::ENOMEM => "RLIMIT_MEMLOCK too small for the ring (kernels before 5.12)",
                _ => "see the error",
            };
            Finding::new(ID, Verdict::Fail)
                .found(format!("io_uring_setup failed: {message}"))
                .expected("io_uring_setup succeeds")
                .why(format!("every shard needs io_uring rings; refused by {cause}"))
                .fix("allow io_uring: kernel.io_uring_disabled=0; in a container run with a seccomp profile that allows io_uring_setup/io_uring_enter/io_uring_register")
        }
    }
}

fn seccomp(ctx: &CheckContext) -> Finding {
    const ID: &str = "io_uring.seccomp";
    let status = match ctx.host.read("/proc/self/status") {
        Ok(status) => status,
        Err(error) => return Finding::skip(ID, skip_reason(&error)),
    };
    let Some(mode) = status_field(&status, "Seccomp") else {
        return Finding::skip(
            ID,
            "no Seccomp field in /proc/self/status (kernel without seccomp)",
        );
    };
    let finding =
        Finding::new(ID, Verdict::Ok).expected("0 (none), or a filter that allows io_uring");
    match mode {
        "0" => finding.found("0 (no seccomp)"),
        "2" => {
            let found = "2 (a seccomp filter is active)";
            match ctx.facts.probe_io_uring() {
                IoUringProbe::Refused { .. } => finding
                    .found(found)
                    .verdict(Verdict::Fail)
                    .why("a seccomp filter (a container runtime's default profile) may be what refuses io_uring_setup")
                    .fix("run the container with a seccomp profile allowing io_uring_setup, io_uring_enter and io_uring_register"),
                _ => finding.found(format!("{found}, io_uring allowed")),
            }
        }
        other => finding
            .found(format!("{other} (strict mode)"))
            .verdict(Verdict::Fail)
            .why("strict seccomp allows only read/write/exit: Weir cannot run under it")
            .fix("run Weir without strict seccomp"),
    }
}

fn locked_memory(ctx: &CheckContext) -> Finding {
    const ID: &str = "io_uring.memlock";
    let Some(limit) = ctx.facts.locked_memory_limit() else {
        return Finding::skip(ID, "getrlimit(RLIMIT_MEMLOCK) failed");
    };
    let needed_bytes = MEMLOCK_BYTES_PER_SHARD * ctx.shard_count() as u64;
    let finding = Finding::new(ID, Verdict::Ok)
        .found(format_limit_bytes(limit.soft))
        .expected(format!(
            ">= {} ({} shards), or unlimited",
            mib(needed_bytes),
            ctx.shard_count()
        ));
    if limit.soft.is_none_or(|soft| soft >= needed_bytes) {
        return finding;
    }
    if ctx.facts.is_root() {
        // CAP_IPC_LOCK exempts root from the limit; a broker run as another user is not.
        return finding.found(format!(
            "{} (root: exempt through CAP_IPC_LOCK)",
            format_limit_bytes(limit.soft)
        ));
    }
    finding
        .verdict(Verdict::Warn)
        .why("glommio registers I/O buffers per shard, and registered memory counts against RLIMIT_MEMLOCK unless the broker has CAP_IPC_LOCK (root does)")
        .fix("LimitMEMLOCK=infinity in the broker's systemd unit, or `memlock unlimited` in /etc/security/limits.conf (a per-process limit: weir-tune cannot set it for the broker)")
}

fn open_files(ctx: &CheckContext) -> Finding {
    const ID: &str = "io_uring.nofile";
    let Some(Limit { soft, hard }) = ctx.facts.open_files_limit() else {
        return Finding::skip(ID, "getrlimit(RLIMIT_NOFILE) failed");
    };
    let partition_files = FILES_PER_PARTITION * ctx.partitions;
    let needed = partition_files + FILES_BESIDES_PARTITIONS;
    let found = soft.map_or("unlimited".to_string(), |soft| soft.to_string());
    let finding = Finding::new(ID, Verdict::Ok).found(found).expected(format!(
        ">= {needed} ({} partitions x {FILES_PER_PARTITION} files + {FILES_BESIDES_PARTITIONS} sockets and others)",
        ctx.partitions
    ));
    let Some(soft) = soft else {
        return finding;
    };
    if soft >= needed {
        return finding;
    }
    let hard_allows = hard.is_none_or(|hard| hard >= needed);
    let fix = if hard_allows {
        format!("`ulimit -n {needed}` before starting Weir (the hard limit allows it), or LimitNOFILE={needed} in its systemd unit")
    } else {
        format!("LimitNOFILE={needed} in the broker's systemd unit, or `nofile {needed}` in /etc/security/limits.conf (the hard limit is lower)")
    };
    let (verdict, why) = if soft < partition_files {
        (Verdict::Fail, "Weir keeps every partition's active segment and indexes open: it runs out of descriptors before all partitions are open")
    } else {
        (
            Verdict::Warn,
            "the partitions fit but client connections will hit EMFILE under load",
        )
    };
    finding.verdict(verdict).why(why).fix(fix)
}

fn format_limit_bytes(limit: Option<u64>) -> String {
    limit.map_or("unlimited".to_string(), mib)
}

fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{} KiB", bytes / 1024)
    }
}
