//! Request framing: a 4-byte big-endian length, then that many bytes of request.

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt};

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

/// Reads the next frame. Ok(None) on a clean close between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
) -> Result<Option<Bytes>, FrameError> {
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
    let mut body = BytesMut::zeroed(len);
    reader
        .read_exact(&mut body)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
            _ => FrameError::Io(e),
        })?;
    Ok(Some(body.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], max: u32) -> Result<Option<Bytes>, FrameError> {
        futures_lite::future::block_on(read_frame(&mut &bytes[..], max))
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
