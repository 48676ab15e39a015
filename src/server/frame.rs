//! Request framing: a 4-byte big-endian length, then that many bytes of request.
//!
//! Hot path. A frame is admitted to the shard's request budget by its declared length
//! before its body is read (`budget.rs`), and its buffer grows as the bytes arrive, so a
//! length prefix alone never allocates what it announces.

use std::rc::Rc;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncReadExt};

use super::budget::{RequestBudget, RequestPermit};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("request frame of {len} bytes is over socket.request.max.bytes ({max})")]
    TooLarge { len: u32, max: u32 },
    #[error("request frame of {len} bytes is too short for a request header")]
    TooShort { len: u32 },
    #[error("connection closed mid-frame")]
    Truncated,
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// The smallest request: api key, api version, correlation id (2 + 2 + 4) and a client id length.
pub const REQUEST_BYTES_MIN: u32 = 10;

/// Checks the length prefix before anything is allocated for the frame: it comes straight from
/// the network (Kafka's `socket.request.max.bytes`).
pub fn frame_len(prefix: [u8; 4], max: u32) -> Result<u32, FrameError> {
    let len = u32::from_be_bytes(prefix);
    if len > max || len > i32::MAX as u32 {
        Err(FrameError::TooLarge { len, max })
    } else if len < REQUEST_BYTES_MIN {
        Err(FrameError::TooShort { len })
    } else {
        Ok(len)
    }
}

/// Step by which a frame's buffer grows ahead of the bytes read into it. As large as the
/// connection's read buffer, so reads of a large frame bypass that buffer (no second copy).
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A frame up to this size gets its whole buffer in one allocation: most produce requests,
/// with no growth copies. Pages are still touched only as bytes arrive.
pub const FRAME_BUFFER_FIRST_BYTES: usize = 1024 * 1024;

/// A request frame and the budget it holds; the permit must live as long as the request.
pub struct Frame {
    pub bytes: Bytes,
    pub permit: RequestPermit,
}

/// Reads the next frame, waiting for budget after its length prefix (the socket is not read
/// meanwhile). Ok(None) on a clean close between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
    budget: &Rc<RequestBudget>,
) -> Result<Option<Frame>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    while filled < prefix.len() {
        match reader.read(&mut prefix[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    let len = frame_len(prefix, max)? as usize;
    let permit = budget.acquire(len).await;
    let bytes = read_body(reader, len).await?;
    Ok(Some(Frame { bytes, permit }))
}

/// Reads `len` bytes into a buffer whose initialized part stays at most two chunks ahead of
/// what arrived, and whose capacity passes `FRAME_BUFFER_FIRST_BYTES` only as bytes arrive.
async fn read_body<R: AsyncRead + Unpin>(reader: &mut R, len: usize) -> Result<Bytes, FrameError> {
    let mut body: Vec<u8> = Vec::with_capacity(len.min(FRAME_BUFFER_FIRST_BYTES));
    let mut filled = 0;
    while filled < len {
        let ahead = (len - filled).min(READ_CHUNK_BYTES);
        if body.len() < filled + ahead {
            let new_len = (filled + 2 * READ_CHUNK_BYTES).min(len);
            if body.capacity() < new_len {
                // Doubling, capped at the declared length: each byte is copied about once
                // over the whole frame (glibc moves large blocks with mremap, not a copy).
                let capacity = body.capacity().saturating_mul(2).clamp(new_len, len);
                body.reserve_exact(capacity - body.len());
            }
            // Zeroed once per byte: the socket read needs initialized memory.
            body.resize(new_len, 0);
        }
        match reader.read(&mut body[filled..]).await? {
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    debug_assert_eq!(body.len(), len, "the buffer never grows past the frame");
    Ok(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], max: u32) -> Result<Option<Bytes>, FrameError> {
        let budget = RequestBudget::new(1 << 20);
        let frame = futures_lite::future::block_on(read_frame(&mut &bytes[..], max, &budget));
        frame.map(|f| f.map(|f| f.bytes))
    }

    /// Hands out at most `step` bytes per read, as a socket with a slow sender does.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.step).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            std::task::Poll::Ready(Ok(n))
        }
    }

    #[test]
    fn a_large_frame_arrives_in_pieces_and_holds_its_length_in_budget() {
        let body: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let mut wire = (body.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(&body);
        let budget = RequestBudget::new(1 << 20);
        for step in [1000, 70_000, usize::MAX] {
            let mut reader = Trickle { bytes: &wire, step };
            let frame = futures_lite::future::block_on(read_frame(&mut reader, 1 << 20, &budget))
                .unwrap()
                .unwrap();
            assert_eq!(frame.bytes, body);
            assert_eq!(
                (frame.permit.len(), budget.reserved()),
                (body.len(), body.len())
            );
            drop(frame);
            assert_eq!(budget.reserved(), 0);
        }
        // Cut short: the error drops the permit.
        let mut reader = Trickle {
            bytes: &wire[..200_000],
            step: 4096,
        };
        let read = futures_lite::future::block_on(read_frame(&mut reader, 1 << 20, &budget));
        assert!(matches!(read, Err(FrameError::Truncated)));
        assert_eq!(budget.reserved(), 0);
    }

    #[test]
    fn reads_frames_and_clean_eof() {
        let mut wire = 12u32.to_be_bytes().to_vec();
        wire.extend_from_slice(&[7; 12]);
        assert_eq!(read(&wire, 100).unwrap().unwrap(), Bytes::from(vec![7; 12]));
        assert!(read(&[], 100).unwrap().is_none());
    }

    #[test]
    fn rejects_oversized_short_and_truncated_frames() {
        assert!(matches!(
            read(&101u32.to_be_bytes(), 100),
            Err(FrameError::TooLarge { len: 101, .. })
        ));
        assert!(matches!(
            read(&u32::MAX.to_be_bytes(), u32::MAX),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            read(&3u32.to_be_bytes(), 100),
            Err(FrameError::TooShort { len: 3 })
        ));
        let mut wire = 20u32.to_be_bytes().to_vec();
        wire.extend_from_slice(&[1; 5]);
        assert!(matches!(read(&wire, 100), Err(FrameError::Truncated)));
        assert!(matches!(read(&[0, 0], 100), Err(FrameError::Truncated)));
    }
}
