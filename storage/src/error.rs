//! Storage errors. The broker maps them to Kafka error codes at the API edge.

use std::path::PathBuf;

use crate::batch::BatchError;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("offset {offset} is outside the log [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        high_watermark: i64,
    },
    #[error("the log of {0} failed a write and takes no more appends until restarted")]
    Failed(PathBuf),
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

impl StorageError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io { op, path, source }
    }

    /// glommio's errors carry their own context; keep it as the io::Error's message.
    pub(crate) fn glommio<T>(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(glommio::GlommioError<T>) -> StorageError {
        let path = path.into();
        move |e| StorageError::Io {
            op,
            path,
            source: std::io::Error::other(e.to_string()),
        }
    }
}
