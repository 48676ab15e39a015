//! Provides compression utilities for encoding records.
//!
//! This module has implementations of gzip, Snappy, as well as a noop compression format that
//! allows encoding and decoding records into a [`Record`](crate::records::Record).

use crate::protocol::buf::{ByteBuf, ByteBufMut};
use anyhow::Result;

#[cfg(feature = "gzip")]
mod gzip;
#[cfg(feature = "lz4")]
mod lz4;
mod none;
#[cfg(feature = "snappy")]
mod snappy;
#[cfg(feature = "zstd")]
mod zstd;

#[cfg(feature = "gzip")]
pub use gzip::Gzip;
#[cfg(feature = "lz4")]
pub use lz4::Lz4;
pub use none::None;
#[cfg(feature = "snappy")]
pub use snappy::Snappy;
#[cfg(feature = "zstd")]
pub use zstd::Zstd;

/// A trait for record compression algorithms.
pub trait Compressor<B: ByteBufMut> {
    /// Target buffer type for compression.
    type BufMut: ByteBufMut;
    /// Compresses into provided [`ByteBufMut`], with records encoded by `F` into `R`.
    fn compress<R, F>(buf: &mut B, f: F) -> Result<R>
    where
        F: FnOnce(&mut Self::BufMut) -> Result<R>;
}

/// A trait for record decompression algorithms.
pub trait Decompressor<B: ByteBuf> {
    /// Target buffer type for decompression.
    type Buf: ByteBuf;
    /// Decompress records from `B` mapped using `F` into `R`.
    fn decompress<R, F>(buf: &mut B, f: F) -> Result<R>
    where
        F: FnOnce(&mut Self::Buf) -> Result<R>;
}

/// Weir patch: the most bytes one decompression may produce. A record batch comes from the
/// network, and a few KiB of gzip or zstd can expand to gigabytes (a decompression bomb):
/// every decompressor stops with an error once its output would pass this bound, before
/// allocating for it. Kafka's own batches are far below it (`message.max.bytes` is 1 MiB
/// compressed by default; the broker caps a batch at 64 MiB).
pub const DECOMPRESSED_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Weir patch: a writer that refuses to grow past `DECOMPRESSED_BYTES_MAX`.
pub(crate) struct BoundedWriter<W> {
    inner: W,
    written: usize,
}

impl<W> BoundedWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        BoundedWriter { inner, written: 0 }
    }

    pub(crate) fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: std::io::Write> std::io::Write for BoundedWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.written.saturating_add(data.len()) > DECOMPRESSED_BYTES_MAX {
            return Err(std::io::Error::other(format!(
                "decompressed data exceeds {DECOMPRESSED_BYTES_MAX} bytes"
            )));
        }
        let n = self.inner.write(data)?;
        self.written += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
