//! Zero-copy transfer of a segment file range to a socket.
//!
//! glommio 0.9 exposes neither sendfile nor socket write-readiness. The socket is set
//! O_NONBLOCK (glommio itself sends with MSG_DONTWAIT, so this changes nothing for it) and
//! `sendfile(2)` moves page-cache pages to the socket without a user-space copy. On EAGAIN
//! (the peer is slower than we send: rare, per DESIGN.md's measurements) the task sleeps
//! briefly on a glommio timer and retries, so the reactor never blocks on a full socket.
//! Measured in DESIGN.md: 5.8–8.7 GB/s over loopback at about half the CPU of read+write.
//!
//! A range that is not in the page cache would make sendfile read the disk inline, blocking
//! the reactor for milliseconds per cold MiB. So each chunk's residency is checked first with
//! `mincore` on a transient mapping (no I/O, no copy); a cold chunk is read into the page cache
//! by a read on glommio's blocking thread pool, then sent zero-copy like a warm one.
//! Tail reads, the common case, are warm and pay only the check.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::errno::Errno;
use weir_storage::FileSlice;

/// Bytes moved per sendfile call before yielding, so one large fetch cannot starve the
/// other tasks of the shard.
pub const SENDFILE_CHUNK_BYTES: usize = 1024 * 1024;
/// First back-off when the socket buffer is full; doubles up to the cap.
const FULL_SOCKET_BACKOFF_START: Duration = Duration::from_micros(50);
const FULL_SOCKET_BACKOFF_MAX: Duration = Duration::from_millis(5);

/// Sends the whole slice to `socket` (which must be O_NONBLOCK).
pub async fn send_file_slice(socket: BorrowedFd<'_>, slice: &FileSlice) -> std::io::Result<()> {
    let mut offset = slice.position as i64;
    let end = offset + i64::from(slice.len);
    let mut backoff = FULL_SOCKET_BACKOFF_START;
    while offset < end {
        let count = ((end - offset) as usize).min(SENDFILE_CHUNK_BYTES);
        if !is_resident(&slice.file, offset as u64, count) {
            let file = slice.file.clone();
            let at = offset as u64;
            glommio::executor()
                .spawn_blocking(move || warm(&file, at, count))
                .await;
        }
        match nix::sys::sendfile::sendfile64(socket, slice.file.as_fd(), Some(&mut offset), count) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment file is shorter than the range being fetched",
                ))
            }
            Ok(_) => {
                backoff = FULL_SOCKET_BACKOFF_START;
                glommio::yield_if_needed().await;
            }
            Err(Errno::EAGAIN) => {
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(FULL_SOCKET_BACKOFF_MAX);
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads `file[offset..offset + len]` into the page cache, blocking: for glommio's blocking
/// pool only. `readahead(2)` may return before the pages arrive, so the range is read
/// through a scratch buffer, which waits for them (a copy, but only on the cold path).
fn warm(file: &File, offset: u64, len: usize) {
    use std::os::unix::fs::FileExt;
    let mut scratch = vec![0u8; len];
    if let Err(e) = file.read_exact_at(&mut scratch, offset) {
        tracing::warn!("reading a cold range into the page cache: {e}");
    }
}

const PAGE_BYTES: usize = 4096;
/// Pages in the largest chunk checked at once; the residency vector lives on the stack.
const CHUNK_PAGES_MAX: usize = SENDFILE_CHUNK_BYTES / PAGE_BYTES + 1;

/// Whether every page of `file[offset..offset + len]` is in the page cache. Maps the range
/// (no I/O happens: nothing is touched) and asks `mincore`. When it cannot tell, it says yes:
/// sendfile then works as without the check.
pub fn is_resident(file: &File, offset: u64, len: usize) -> bool {
    if len == 0 || len > SENDFILE_CHUNK_BYTES {
        return len == 0;
    }
    let start = offset & !(PAGE_BYTES as u64 - 1);
    let map_len = (offset - start) as usize + len;
    let pages = map_len.div_ceil(PAGE_BYTES);
    debug_assert!(pages <= CHUNK_PAGES_MAX);
    let mut resident = [0u8; CHUNK_PAGES_MAX];
    // SAFETY: a read-only shared mapping of a file range that is never dereferenced; it is
    // unmapped before returning. mincore writes one byte per page into `resident`, which has
    // room for `pages` entries.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            start as libc::off_t,
        );
        if addr == libc::MAP_FAILED {
            return true;
        }
        let ok = libc::mincore(addr, map_len, resident.as_mut_ptr()) == 0;
        libc::munmap(addr, map_len);
        !ok || resident[..pages].iter().all(|page| page & 1 == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn dropped_pages_are_not_resident_and_read_pages_are() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![7u8; 64 * 1024]).unwrap();
        file.sync_all().unwrap();
        assert!(is_resident(&file, 0, 0));
        // SAFETY: plain syscalls on a descriptor this test owns.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
        let dropped = !is_resident(&file, 100, 8192);
        warm(&file, 0, 64 * 1024);
        assert!(
            is_resident(&file, 100, 8192),
            "pages just read are resident"
        );
        assert!(
            is_resident(&file, 4095, 2),
            "a range straddling a page boundary"
        );
        // Dropping clean pages is advice the kernel may ignore, so only report it.
        eprintln!("pages were dropped by FADV_DONTNEED: {dropped}");
    }
}
