//! Storage errors. The broker maps them to Kafka error codes at the API edge; this module
//! only names what went wrong and must never decide a Kafka error code itself.

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
    /// An idempotent producer's batch out of sequence or from a fenced epoch (Kafka
    /// OUT_OF_ORDER_SEQUENCE_NUMBER / INVALID_PRODUCER_EPOCH); nothing was appended.
    #[error(transparent)]
    Producer(#[from] crate::producer_state::ProducerError),
    /// A read outside `[log_start_offset, high_watermark]` (Kafka OFFSET_OUT_OF_RANGE).
    /// `log_end_offset` may be past `high_watermark` while a write is in flight; readable
    /// data ends at the high watermark.
    #[error(
        "offset {offset} is outside the readable log [{log_start_offset}, {high_watermark}] \
         (log end offset {log_end_offset})"
    )]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
        high_watermark: i64,
    },
    /// The log was deleted (or is being deleted) and takes no more calls.
    #[error("the log of {0} is closed")]
    Closed(PathBuf),
    /// A write or sync failed: what reached the disk is unknown, so the log refuses further
    /// appends until it is reopened (and recovery re-validates the tail).
    #[error("the log of {0} failed a write and takes no more appends until restarted")]
    Failed(PathBuf),
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// A stored batch the cleaner cannot take apart (its records or its codec); the segment
    /// is left as it is.
    #[error("compaction: {0}")]
    Compaction(String),
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
