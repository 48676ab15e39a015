//! The model's errors, each one an errno the kernel understands.

use thiserror::Error;

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ModelError {
    #[error("no such file or directory")]
    NotFound,
    #[error("entry exists")]
    Exists,
    #[error("not a directory")]
    NotDirectory,
    #[error("is a directory")]
    IsDirectory,
    #[error("directory not empty")]
    NotEmpty,
    #[error("invalid argument")]
    Invalid,
    #[error("operation not supported")]
    Unsupported,
    /// A handle from before a power cut: the "disk" it pointed at is gone.
    #[error("handle predates a power cut")]
    StaleAfterCut,
}

impl ModelError {
    pub fn errno(self) -> i32 {
        match self {
            ModelError::NotFound => libc::ENOENT,
            ModelError::Exists => libc::EEXIST,
            ModelError::NotDirectory => libc::ENOTDIR,
            ModelError::IsDirectory => libc::EISDIR,
            ModelError::NotEmpty => libc::ENOTEMPTY,
            ModelError::Invalid => libc::EINVAL,
            ModelError::Unsupported => libc::EOPNOTSUPP,
            ModelError::StaleAfterCut => libc::EIO,
        }
    }
}

/// Mounting, unmounting or cutting the FUSE file system failed.
#[derive(Debug, Error)]
pub enum MountError {
    #[error("/dev/fuse is not available ({0}); the power-loss test needs FUSE (run as root with /dev/fuse)")]
    NoFuseDevice(std::io::Error),
    #[error("mounting the FUSE file system at {path} failed: {source}")]
    Mount {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("unmounting {path} failed: {source}")]
    Unmount {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}
