//! The host's physical limits, measured in the same run so a result can be read as a
//! fraction of what the machine allows: loopback TCP bandwidth (a built-in one-stream blast,
//! like `iperf3 -t 1`) and sequential write bandwidth of a directory — into the page cache,
//! with one fdatasync at the end, and with an fdatasync after every MiB.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::BenchError;

const CHUNK_BYTES: usize = 1024 * 1024;

#[derive(Clone, Debug)]
pub struct HostLimitsOptions {
    pub loopback_duration: Duration,
    pub disk_dir: PathBuf,
    pub disk_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostLimits {
    pub loopback_mb_per_s: f64,
    pub disk_dir: String,
    pub disk_bytes: u64,
    /// Buffered writes, no sync: the page cache's speed.
    pub disk_write_no_sync_mb_per_s: f64,
    /// Buffered writes then one fdatasync, timed to the end of the sync.
    pub disk_write_one_fdatasync_mb_per_s: f64,
    /// An fdatasync after every 1 MiB write.
    pub disk_write_fdatasync_per_mib_mb_per_s: f64,
}

pub fn measure(options: &HostLimitsOptions) -> Result<HostLimits, BenchError> {
    let loopback_mb_per_s = loopback_blast(options.loopback_duration)?;
    let dir = &options.disk_dir;
    Ok(HostLimits {
        loopback_mb_per_s,
        disk_dir: dir.display().to_string(),
        disk_bytes: options.disk_bytes,
        disk_write_no_sync_mb_per_s: write_bandwidth(dir, options.disk_bytes, SyncMode::None)?,
        disk_write_one_fdatasync_mb_per_s: write_bandwidth(
            dir,
            options.disk_bytes,
            SyncMode::AtEnd,
        )?,
        disk_write_fdatasync_per_mib_mb_per_s: write_bandwidth(
            dir,
            options.disk_bytes,
            SyncMode::EveryChunk,
        )?,
    })
}

/// One TCP stream over loopback, as fast as it goes, for `duration`.
fn loopback_blast(duration: Duration) -> Result<f64, BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut total = 0u64;
        loop {
            match stream.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });
    let mut stream = TcpStream::connect(addr)?;
    let chunk = vec![0x5au8; CHUNK_BYTES];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < duration {
        stream.write_all(&chunk)?;
        sent += CHUNK_BYTES as u64;
    }
    drop(stream);
    let received = receiver
        .join()
        .map_err(|_| BenchError::Executor("loopback receiver thread panicked".into()))??;
    let seconds = start.elapsed().as_secs_f64();
    debug_assert_eq!(received, sent);
    Ok(received as f64 / seconds / 1e6)
}

#[derive(Clone, Copy)]
enum SyncMode {
    None,
    AtEnd,
    EveryChunk,
}

fn write_bandwidth(dir: &Path, bytes: u64, mode: SyncMode) -> Result<f64, BenchError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(".weir-bench-write-probe-{}", std::process::id()));
    let result = write_file(&path, bytes, mode);
    // Removed whatever happened: the probe must not leave 256 MiB behind.
    let _ = std::fs::remove_file(&path);
    result
}

fn write_file(path: &Path, bytes: u64, mode: SyncMode) -> Result<f64, BenchError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    let chunk = vec![0xa5u8; CHUNK_BYTES];
    let start = Instant::now();
    let mut written = 0u64;
    while written < bytes {
        file.write_all(&chunk)?;
        written += CHUNK_BYTES as u64;
        if matches!(mode, SyncMode::EveryChunk) {
            fdatasync(&file)?;
        }
    }
    if matches!(mode, SyncMode::AtEnd) {
        fdatasync(&file)?;
    }
    Ok(written as f64 / start.elapsed().as_secs_f64() / 1e6)
}

fn fdatasync(file: &std::fs::File) -> Result<(), BenchError> {
    // SAFETY: the descriptor belongs to `file`, which outlives the call.
    if unsafe { libc::fdatasync(file.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().into())
    }
}

impl HostLimits {
    /// The limits, and the run's throughput as a fraction of them.
    pub fn render_against(&self, produce_mb_per_s: f64, consume_mb_per_s: f64) -> String {
        let pct = |v: f64, limit: f64| if limit > 0.0 { 100.0 * v / limit } else { 0.0 };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "host limits (same run)                MB/s   produce %   consume %"
        );
        let rows = [
            ("loopback TCP, one stream", self.loopback_mb_per_s),
            ("disk write, page cache", self.disk_write_no_sync_mb_per_s),
            (
                "disk write + one fdatasync",
                self.disk_write_one_fdatasync_mb_per_s,
            ),
            (
                "disk write, fdatasync per MiB",
                self.disk_write_fdatasync_per_mib_mb_per_s,
            ),
        ];
        for (name, limit) in rows {
            let _ = writeln!(
                out,
                "{name:<32}{limit:>10.0}{:>11.1}%{:>11.1}%",
                pct(produce_mb_per_s, limit),
                pct(consume_mb_per_s, limit)
            );
        }
        let _ = writeln!(
            out,
            "(disk: {} MiB in {})",
            self.disk_bytes / (1024 * 1024),
            self.disk_dir
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_something_plausible_quickly() {
        let dir = tempfile::tempdir().expect("temp dir");
        let limits = measure(&HostLimitsOptions {
            loopback_duration: Duration::from_millis(100),
            disk_dir: dir.path().to_path_buf(),
            disk_bytes: 4 * 1024 * 1024,
        })
        .expect("measures");
        assert!(limits.loopback_mb_per_s > 10.0, "{limits:?}");
        assert!(limits.disk_write_no_sync_mb_per_s > 1.0);
        assert!(limits.disk_write_fdatasync_per_mib_mb_per_s > 0.1);
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            0,
            "probe file removed"
        );
        let text = limits.render_against(100.0, 50.0);
        assert!(text.contains("loopback TCP"));
    }
}
