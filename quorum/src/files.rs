//! Checked frames and atomic file replacement: the two on-disk shapes the quorum's storage
//! uses. Everything read back is untrusted: lengths are bounded by the bytes present before
//! anything is allocated, and a frame whose checksum fails is never decoded.
//!
//! Blocking: call these off the reactor (the quorum's storage runs them on the blocking
//! pool).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Bytes before a frame's payload: its length (u32 LE) and the CRC32C of the payload.
pub const FRAME_HEADER: usize = 8;
/// No frame is larger: a metadata record is small, and a snapshot of a large cluster's
/// metadata is tens of MiB. A length above this is damage, not data.
pub const MAX_FRAME: usize = 256 << 20;

/// Appends one frame holding `payload` to `out`.
pub fn put_frame(out: &mut Vec<u8>, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_FRAME);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What the bytes at the front of a buffer are.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole frame whose checksum matches, and the bytes it occupies.
    Whole { payload: &'a [u8], len: usize },
    /// Fewer bytes than the header, or than the length the header claims.
    Incomplete,
    /// A zero or oversized length, or a checksum that does not match.
    Bad,
}

/// Where a bad frame at the front of `bytes` claims to end: past its header and the payload
/// length it states when that length is plausible, else just past its header. A bad frame
/// with nothing but zeros (or nothing) beyond this point is a torn last write.
pub fn claimed_end(bytes: &[u8]) -> usize {
    let len = bytes
        .get(..4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let payload = if len <= MAX_FRAME { len } else { 0 };
    (FRAME_HEADER + payload).min(bytes.len())
}

/// Reads the frame at the front of `bytes`.
pub fn take_frame(bytes: &[u8]) -> Frame<'_> {
    let Some(header) = bytes.get(..FRAME_HEADER) else {
        return Frame::Incomplete;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    // A zero length is refused because zero-filled blocks (a file extended whose data never
    // reached the disk) would otherwise read as an endless run of valid empty frames.
    if len == 0 || len > MAX_FRAME {
        return Frame::Bad;
    }
    let Some(payload) = bytes.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Frame::Incomplete;
    };
    if crc32c::crc32c(payload) != crc {
        return Frame::Bad;
    }
    Frame::Whole {
        payload,
        len: FRAME_HEADER + len,
    }
}

/// Replaces `dir/name` with one frame of `payload`, durably: a temporary file is written and
/// synced, renamed over the old one, and the directory synced so that the rename survives a
/// power cut. A crash at any point leaves either the old file or the new one.
pub fn replace(dir: &Path, name: &str, payload: &[u8]) -> io::Result<()> {
    let mut framed = Vec::with_capacity(FRAME_HEADER + payload.len());
    put_frame(&mut framed, payload);
    replace_raw(dir, name, &framed)
}

/// Replaces `dir/name` with `bytes` as they are, durably, as [`replace`] does.
pub fn replace_raw(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// An error for stored bytes that do not read as what they should be.
pub fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Runs blocking file work on the executor's blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    glommio::executor().spawn_blocking(f).await
}

/// Reads a file written by [`replace`]: None if it does not exist.
pub fn read_replaced(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match take_frame(&bytes) {
        // `replace` renames only a synced file into place, so a torn frame here is damage.
        Frame::Whole { payload, len } if len == bytes.len() => Ok(Some(payload.to_vec())),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is damaged (bad frame)", path.display()),
        )),
    }
}

/// Creates `dir` and any missing parents durably: each new directory's entry is synced in
/// its parent, so that a power cut cannot take away a directory whose files were synced.
pub fn create_dir_durably(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.exists() {
        missing.push(at);
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    std::fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Syncs a directory, so that entries created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_back_and_every_damage_is_seen() {
        let mut buf = Vec::new();
        put_frame(&mut buf, b"hello");
        assert_eq!(
            take_frame(&buf),
            Frame::Whole {
                payload: b"hello",
                len: 13
            }
        );
        for cut in 0..buf.len() {
            assert_eq!(take_frame(&buf[..cut]), Frame::Incomplete, "cut at {cut}");
        }
        let mut flipped = buf.clone();
        flipped[10] ^= 1;
        assert_eq!(take_frame(&flipped), Frame::Bad);
        assert_eq!(take_frame(&[0u8; 64]), Frame::Bad, "zero-filled blocks");
        let mut huge = buf.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            take_frame(&huge),
            Frame::Bad,
            "a lying length allocates nothing"
        );
    }

    #[test]
    fn a_replaced_file_reads_back_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_replaced(&dir.path().join("state")).unwrap(), None);
        replace(dir.path(), "state", b"one").unwrap();
        replace(dir.path(), "state", b"two").unwrap();
        assert_eq!(
            read_replaced(&dir.path().join("state")).unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert!(!dir.path().join("state.tmp").exists());
        let path = dir.path().join("state");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.push(0);
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_replaced(&path).is_err(), "trailing bytes");
    }
}
