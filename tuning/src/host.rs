//! The host's `/proc` and `/sys`, read (and, for `apply` only, written) under a root
//! directory: `/` in production, a fixture tree in tests. Every file access of the checks and
//! of `apply` goes through here; nothing else in the crate opens a `/proc` or `/sys` path.
//!
//! Missing and unreadable files are ordinary in containers and VMs, so they are typed
//! ([`ReadError`]) for the checks to turn into a SKIP with the reason, never a panic.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Upper bound on one file read from `/proc` or `/sys`. `/proc/interrupts` on a 256-core host
/// is the largest we read (a few hundred KiB); anything bigger is not what we think it is.
pub const HOST_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// A view of the host's kernel files under `root`. Paths given to its methods are the
/// absolute paths as they are on a real host (`/proc/sys/vm/swappiness`).
#[derive(Clone, Debug)]
pub struct Host {
    pub root: PathBuf,
}

/// Why a host file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Not there: a kernel without the feature, a VM without the device, a container
    /// that does not mount it.
    Missing { path: PathBuf },
    /// There but not readable by us (permissions, an LSM, a masked container path).
    Denied { path: PathBuf },
    /// Anything else, with the OS's words.
    Other { path: PathBuf, message: String },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Missing { path } => write!(f, "{} is not present", path.display()),
            ReadError::Denied { path } => write!(f, "{} is not readable", path.display()),
            ReadError::Other { path, message } => write!(f, "{}: {message}", path.display()),
        }
    }
}

/// Why a host file could not be written (only `apply` and `revert` write).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path} is read-only here (a container, or a value the kernel fixes)")]
    ReadOnly { path: String },
    #[error("{path} is not writable by this user (apply needs root)")]
    Denied { path: String },
    #[error("{path} is not present")]
    Missing { path: String },
    #[error("{path}: the kernel refused {value:?}: {message}")]
    Refused {
        path: String,
        value: String,
        message: String,
    },
}

impl Host {
    /// The real host.
    pub fn live() -> Host {
        Host {
            root: PathBuf::from("/"),
        }
    }

    pub fn new(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into() }
    }

    /// The file behind a host path: `path` re-rooted under `root`.
    pub fn locate(&self, path: &Path) -> PathBuf {
        let relative: PathBuf = path
            .components()
            .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
            .collect();
        self.root.join(relative)
    }

    /// The whole file as text.
    pub fn read(&self, path: impl AsRef<Path>) -> Result<String, ReadError> {
        let path = path.as_ref();
        let file = self.locate(path);
        let metadata = fs::metadata(&file).map_err(|e| read_error(path, &e))?;
        // sysfs and procfs report 4096 or 0 for every file, so the bound only catches
        // fixture or bind-mounted regular files that are not what we expect.
        if metadata.is_file() && metadata.len() > HOST_FILE_BYTES_MAX {
            return Err(ReadError::Other {
                path: path.to_path_buf(),
                message: format!("larger than {HOST_FILE_BYTES_MAX} bytes"),
            });
        }
        fs::read_to_string(&file).map_err(|e| read_error(path, &e))
    }

    /// The file's text without surrounding whitespace: what one-value sysfs files hold.
    pub fn read_value(&self, path: impl AsRef<Path>) -> Result<String, ReadError> {
        self.read(path).map(|text| text.trim().to_string())
    }

    /// A sysctl by its dotted name (`vm.swappiness`), read from `/proc/sys`.
    pub fn sysctl(&self, name: &str) -> Result<String, ReadError> {
        self.read_value(sysctl_path(name))
    }

    pub fn exists(&self, path: impl AsRef<Path>) -> bool {
        self.locate(path.as_ref()).exists()
    }

    /// Names of a directory's entries, sorted so output and tests are deterministic.
    pub fn list(&self, path: impl AsRef<Path>) -> Result<Vec<String>, ReadError> {
        let path = path.as_ref();
        let entries = fs::read_dir(self.locate(path)).map_err(|e| read_error(path, &e))?;
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort_by(|a, b| natural_order(a, b));
        Ok(names)
    }

    /// The last component of a symlink's target (`/sys/class/net/eth0/device` →
    /// `0000:3b:00.0` or `virtio2`), which is how the kernel names a device's interrupts.
    /// `None` where the path is not a symlink, as in fixture trees.
    pub fn link_name(&self, path: impl AsRef<Path>) -> Option<String> {
        let target = fs::read_link(self.locate(path.as_ref())).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// Writes one value the way `echo value > path` does: a single write of the whole value,
    /// because sysfs and procfs take one write as one value.
    pub fn write(&self, path: impl AsRef<Path>, value: &str) -> Result<(), WriteError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let file = self.locate(path);
        if !file.exists() {
            return Err(WriteError::Missing { path: shown });
        }
        fs::write(&file, value).map_err(|e| match e.raw_os_error() {
            Some(libc::EROFS) => WriteError::ReadOnly { path: shown },
            Some(libc::EACCES) | Some(libc::EPERM) => WriteError::Denied { path: shown },
            _ => WriteError::Refused {
                path: shown,
                value: value.to_string(),
                message: e.to_string(),
            },
        })
    }

    /// The data dir as the host sees it: absolute, symlinks resolved as far as it exists
    /// (a data dir Weir has not created yet still lives on its parent's filesystem).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        let absolute = if path.is_absolute() || self.root != Path::new("/") {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|cwd| cwd.join(path))
                .unwrap_or_else(|_| path.to_path_buf())
        };
        let root = fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        let mut existing = absolute.clone();
        let mut missing_tail: Vec<std::ffi::OsString> = Vec::new();
        loop {
            if let Ok(real) = fs::canonicalize(self.locate(&existing)) {
                let inside = real.strip_prefix(&root).unwrap_or(&real);
                let mut resolved = PathBuf::from("/").join(inside);
                for part in missing_tail.iter().rev() {
                    resolved.push(part);
                }
                return resolved;
            }
            match (existing.file_name(), existing.parent()) {
                (Some(name), Some(parent)) => {
                    missing_tail.push(name.to_os_string());
                    existing = parent.to_path_buf();
                }
                _ => return absolute,
            }
        }
    }
}

/// `/proc/sys/vm/swappiness` for `vm.swappiness`.
pub fn sysctl_path(name: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(name.replace('.', "/"))
}

fn read_error(path: &Path, error: &io::Error) -> ReadError {
    let path = path.to_path_buf();
    match error.kind() {
        io::ErrorKind::NotFound => ReadError::Missing { path },
        io::ErrorKind::PermissionDenied => ReadError::Denied { path },
        _ => ReadError::Other {
            path,
            message: error.to_string(),
        },
    }
}

/// `rx-2` before `rx-10`, `cpu9` before `cpu10`: numbered sysfs entries in numeric order.
fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(s: &str) -> (&str, Option<u64>) {
        let digits_at = s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        (&s[..digits_at], s[digits_at..].parse().ok())
    }
    split(a).cmp(&split(b)).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_reroots_absolute_paths() {
        let host = Host::new("/fixtures/tuned");
        assert_eq!(
            host.locate(Path::new("/proc/sys/vm/swappiness")),
            PathBuf::from("/fixtures/tuned/proc/sys/vm/swappiness")
        );
    }

    #[test]
    fn sysctl_names_map_to_proc_sys() {
        assert_eq!(
            sysctl_path("net.core.somaxconn"),
            PathBuf::from("/proc/sys/net/core/somaxconn")
        );
    }

    #[test]
    fn numbered_entries_sort_numerically() {
        let mut names = vec!["rx-10", "rx-2", "rx-1", "cpu10", "cpu9"];
        names.sort_by(|a, b| natural_order(a, b));
        assert_eq!(names, vec!["cpu9", "cpu10", "rx-1", "rx-2", "rx-10"]);
    }

    #[test]
    fn missing_files_are_typed_not_panics() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let host = Host::new(dir.path());
        assert!(matches!(
            host.read("/proc/sys/kernel/io_uring_disabled"),
            Err(ReadError::Missing { .. })
        ));
    }

    #[test]
    fn resolve_keeps_a_data_dir_that_does_not_exist_yet() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let host = Host::new(dir.path());
        assert_eq!(
            host.resolve(Path::new("/var/lib/weir")),
            PathBuf::from("/var/lib/weir")
        );
    }
}
