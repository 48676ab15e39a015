//! Facts about this process and kernel that come from syscalls rather than files: the kernel
//! release, resource limits, the effective user, and whether `io_uring_setup` is allowed.
//! Behind a trait so tests substitute values; [`LiveSystem`] is the only code here that makes
//! a syscall, and it changes nothing.

use nix::sys::resource::{getrlimit, Resource};

/// A resource limit; `None` means unlimited (`RLIM_INFINITY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// What creating a small io_uring instance told us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoUringProbe {
    Available,
    /// The syscall failed: `EPERM` (sysctl or seccomp), `ENOSYS` (kernel without io_uring or a
    /// filter that pretends so), `ENOMEM` (memlock), with the OS's words.
    Refused {
        errno: i32,
        message: String,
    },
    /// Not tried (tests, or a platform without the syscall).
    Unknown,
}

pub trait SystemFacts {
    /// `uname -r`, e.g. `6.8.0-45-generic`.
    fn kernel_release(&self) -> Option<String>;
    fn open_files_limit(&self) -> Option<Limit>;
    fn locked_memory_limit(&self) -> Option<Limit>;
    fn is_root(&self) -> bool;
    fn probe_io_uring(&self) -> IoUringProbe;
}

/// The running kernel and this process.
#[derive(Clone, Copy, Debug, Default)]
pub struct LiveSystem;

impl SystemFacts for LiveSystem {
    fn kernel_release(&self) -> Option<String> {
        let uts = nix::sys::utsname::uname().ok()?;
        Some(uts.release().to_string_lossy().into_owned())
    }

    fn open_files_limit(&self) -> Option<Limit> {
        live_limit(Resource::RLIMIT_NOFILE)
    }

    fn locked_memory_limit(&self) -> Option<Limit> {
        live_limit(Resource::RLIMIT_MEMLOCK)
    }

    fn is_root(&self) -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn probe_io_uring(&self) -> IoUringProbe {
        probe_io_uring_setup()
    }
}

fn live_limit(resource: Resource) -> Option<Limit> {
    let (soft, hard) = getrlimit(resource).ok()?;
    let finite = |value: u64| (value != libc::RLIM_INFINITY).then_some(value);
    Some(Limit {
        soft: finite(soft),
        hard: finite(hard),
    })
}

/// Creates and closes a 4-entry ring. This is the one question only the kernel can answer:
/// the sysctl, a seccomp filter, an LSM and the memlock limit all have a say.
fn probe_io_uring_setup() -> IoUringProbe {
    // `struct io_uring_params` is 120 bytes; all zero asks for defaults. u32s keep the
    // kernel's alignment.
    let mut params = [0u32; 30];
    let entries: u32 = 4;
    // SAFETY: io_uring_setup reads and writes only `params`, which lives for the call and is
    // as large as the kernel's struct; the returned fd is ours and closed right below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            entries,
            params.as_mut_ptr() as *mut libc::c_void,
        )
    };
    if fd < 0 {
        let error = std::io::Error::last_os_error();
        return IoUringProbe::Refused {
            errno: error.raw_os_error().unwrap_or(0),
            message: error.to_string(),
        };
    }
    // SAFETY: fd was just returned by io_uring_setup and is not shared.
    unsafe { libc::close(fd as libc::c_int) };
    IoUringProbe::Available
}

/// Fixed answers, for tests and for `--root` runs against a fixture tree.
#[derive(Clone, Debug)]
pub struct FixedFacts {
    pub kernel_release: Option<String>,
    pub open_files: Option<Limit>,
    pub locked_memory: Option<Limit>,
    pub root: bool,
    pub io_uring: IoUringProbe,
}

impl SystemFacts for FixedFacts {
    fn kernel_release(&self) -> Option<String> {
        self.kernel_release.clone()
    }
    fn open_files_limit(&self) -> Option<Limit> {
        self.open_files
    }
    fn locked_memory_limit(&self) -> Option<Limit> {
        self.locked_memory
    }
    fn is_root(&self) -> bool {
        self.root
    }
    fn probe_io_uring(&self) -> IoUringProbe {
        self.io_uring.clone()
    }
}

/// `(major, minor)` of a release string like `6.8.0-45-generic` or `5.15.0`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse_from_distribution_releases() {
        assert_eq!(kernel_version("6.8.0-45-generic"), Some((6, 8)));
        assert_eq!(kernel_version("5.15.0"), Some((5, 15)));
        assert_eq!(kernel_version("4.18.0-553.el8_10.x86_64"), Some((4, 18)));
        assert_eq!(kernel_version("garbage"), None);
        assert_eq!(kernel_version(""), None);
    }

    #[test]
    fn the_live_system_answers_without_panicking() {
        let live = LiveSystem;
        assert!(live.kernel_release().is_some());
        assert!(live.open_files_limit().is_some());
        let _ = live.probe_io_uring();
    }
}
