//! The short disk measurement behind `weir-tune measure` (Weir's `iotune`): the write patterns
//! Weir itself makes, timed on the data dir's filesystem.
//!
//! 1. sequential write bandwidth: one writer appending 1 MiB blocks, `fdatasync` every 8 MiB
//!    (a busy partition's flusher);
//! 2. `fdatasync` latency: append 4 KiB, `fdatasync`, one at a time (an acks=all produce of
//!    one small batch), recorded in an HDR histogram;
//! 3. write concurrency: 1, 2, 4, ... 64 writers each appending 256 KiB + `fdatasync` to its
//!    own file (partitions flushing at once), and the depth where bandwidth stops growing.
//!
//! Writes are buffered plus `fdatasync`, as Weir's are (DESIGN.md: the page cache serves
//! sendfile), not O_DIRECT. Everything goes into a scratch directory under the data dir that
//! is removed afterwards, and the bytes kept on disk at once are bounded
//! ([`MeasureOptions::scratch_bytes_max`]); nothing else in the data dir is touched.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::profile::{
    Concurrency, ConcurrencyStep, IoProfile, SequentialWrite, SyncLatency, PROFILE_FORMAT_VERSION,
};

pub const SEQUENTIAL_BLOCK_BYTES: usize = 1024 * 1024;
pub const SEQUENTIAL_BYTES_PER_SYNC: u64 = 8 * 1024 * 1024;
pub const SYNC_WRITE_BYTES: usize = 4096;
pub const CONCURRENCY_WRITE_BYTES: usize = 256 * 1024;
/// The writer counts tried; past 64 concurrent flushes no device we know still scales.
pub const CONCURRENCY_DEPTHS: [u32; 7] = [1, 2, 4, 8, 16, 32, 64];
/// Bandwidth within this share of the peak counts as having stopped growing.
pub const KNEE_SHARE_OF_PEAK: f64 = 0.90;
/// Default bound on scratch bytes on disk at once.
pub const SCRATCH_BYTES_MAX_DEFAULT: u64 = 1024 * 1024 * 1024;
/// Free space left to everyone else beyond the scratch bytes.
pub const FREE_BYTES_MARGIN: u64 = 256 * 1024 * 1024;
/// The longest measurement accepted: this is a quick check, not a soak test.
pub const DURATION_MAX: Duration = Duration::from_secs(600);
/// Latencies above this are recorded as this (an fsync that takes a minute is a broken disk).
const LATENCY_US_MAX: u64 = 60_000_000;

#[derive(Clone, Debug)]
pub struct MeasureOptions {
    pub data_dir: PathBuf,
    /// Total wall time: a quarter each for bandwidth and latency, half for concurrency.
    pub duration: Duration,
    pub scratch_bytes_max: u64,
    /// Free space the measurement must leave to everyone else on the filesystem.
    pub free_bytes_reserved: u64,
}

impl MeasureOptions {
    pub fn new(data_dir: impl Into<PathBuf>, duration: Duration) -> MeasureOptions {
        MeasureOptions {
            data_dir: data_dir.into(),
            duration,
            scratch_bytes_max: SCRATCH_BYTES_MAX_DEFAULT,
            free_bytes_reserved: FREE_BYTES_MARGIN,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} has {available_bytes} bytes free; the measurement needs {needed_bytes}")]
    NotEnoughSpace {
        path: PathBuf,
        available_bytes: u64,
        needed_bytes: u64,
    },
    #[error("measurement duration must be between 1 s and {}s", DURATION_MAX.as_secs())]
    BadDuration,
    #[error("a measurement writer thread panicked")]
    WriterPanicked,
}

/// Runs the measurement on `options.data_dir` (created if missing). The profile's
/// `filesystem` and `device` are left empty for the caller to fill in.
pub fn measure(options: &MeasureOptions) -> Result<IoProfile, MeasureError> {
    if options.duration < Duration::from_secs(1) || options.duration > DURATION_MAX {
        return Err(MeasureError::BadDuration);
    }
    let scratch = ScratchDir::create(&options.data_dir)?;
    check_free_space(
        &options.data_dir,
        options.scratch_bytes_max + options.free_bytes_reserved,
    )?;
    let started = Instant::now();
    let quarter = options.duration / 4;
    let sequential_write = sequential_bandwidth(&scratch, quarter, options.scratch_bytes_max)?;
    let fdatasync = sync_latency(&scratch, quarter, options.scratch_bytes_max)?;
    let concurrency = concurrency(&scratch, options.duration / 2, options.scratch_bytes_max)?;
    Ok(IoProfile {
        format_version: PROFILE_FORMAT_VERSION,
        measured_at_unix_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
        data_dir: options.data_dir.clone(),
        filesystem: None,
        device: None,
        duration_s: started.elapsed().as_secs_f64(),
        sequential_write,
        fdatasync,
        concurrency,
    })
}

fn check_free_space(dir: &Path, needed_bytes: u64) -> Result<(), MeasureError> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(|errno| MeasureError::Io {
        what: "statvfs",
        path: dir.to_path_buf(),
        source: std::io::Error::from(errno),
    })?;
    let available_bytes =
        (stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64);
    if available_bytes < needed_bytes {
        return Err(MeasureError::NotEnoughSpace {
            path: dir.to_path_buf(),
            available_bytes,
            needed_bytes,
        });
    }
    Ok(())
}

fn sequential_bandwidth(
    scratch: &ScratchDir,
    budget: Duration,
    scratch_bytes_max: u64,
) -> Result<SequentialWrite, MeasureError> {
    let mut file = scratch.file("sequential", scratch_bytes_max)?;
    let block = pattern(SEQUENTIAL_BLOCK_BYTES, 1);
    let started = Instant::now();
    let mut since_sync = 0u64;
    loop {
        file.append(&block)?;
        since_sync += block.len() as u64;
        if since_sync >= SEQUENTIAL_BYTES_PER_SYNC {
            file.sync()?;
            since_sync = 0;
            if started.elapsed() >= budget {
                break;
            }
        }
    }
    Ok(SequentialWrite {
        block_bytes: SEQUENTIAL_BLOCK_BYTES as u64,
        bytes_per_sync: SEQUENTIAL_BYTES_PER_SYNC,
        bandwidth_bytes_per_s: per_second(file.appended_bytes, started.elapsed()),
    })
}

fn sync_latency(
    scratch: &ScratchDir,
    budget: Duration,
    scratch_bytes_max: u64,
) -> Result<SyncLatency, MeasureError> {
    let mut file = scratch.file("fdatasync", scratch_bytes_max)?;
    let block = pattern(SYNC_WRITE_BYTES, 2);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, LATENCY_US_MAX, 3)
        .expect("constant bounds 1..60e6 with 3 significant digits are valid");
    let started = Instant::now();
    // At least one sample even on a disk slower than the whole budget.
    while histogram.is_empty() || started.elapsed() < budget {
        let sync_started = Instant::now();
        file.append(&block)?;
        file.sync()?;
        let latency_us = sync_started
            .elapsed()
            .as_micros()
            .min(u128::from(LATENCY_US_MAX)) as u64;
        histogram.saturating_record(latency_us.max(1));
    }
    Ok(SyncLatency {
        write_bytes: SYNC_WRITE_BYTES as u64,
        samples: histogram.len(),
        latency_us_p50: histogram.value_at_quantile(0.50),
        latency_us_p99: histogram.value_at_quantile(0.99),
        latency_us_p999: histogram.value_at_quantile(0.999),
        latency_us_max: histogram.max(),
    })
}

fn concurrency(
    scratch: &ScratchDir,
    budget: Duration,
    scratch_bytes_max: u64,
) -> Result<Concurrency, MeasureError> {
    let per_depth = budget / CONCURRENCY_DEPTHS.len() as u32;
    let mut steps = Vec::with_capacity(CONCURRENCY_DEPTHS.len());
    for depth in CONCURRENCY_DEPTHS {
        let bandwidth_bytes_per_s =
            writers_bandwidth(scratch, depth, per_depth, scratch_bytes_max)?;
        steps.push(ConcurrencyStep {
            depth,
            bandwidth_bytes_per_s,
        });
    }
    Ok(Concurrency {
        write_bytes: CONCURRENCY_WRITE_BYTES as u64,
        knee_depth: knee_depth(&steps),
        steps,
    })
}

/// Aggregate bandwidth of `depth` writers, each appending and syncing its own file.
fn writers_bandwidth(
    scratch: &ScratchDir,
    depth: u32,
    budget: Duration,
    scratch_bytes_max: u64,
) -> Result<u64, MeasureError> {
    let file_bytes_max = scratch_bytes_max / u64::from(depth);
    let mut files = Vec::with_capacity(depth as usize);
    for writer in 0..depth {
        files.push(scratch.file(&format!("depth{depth}-writer{writer}"), file_bytes_max)?);
    }
    let block = pattern(CONCURRENCY_WRITE_BYTES, 3);
    let started = Instant::now();
    let results: Vec<Result<u64, MeasureError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter_mut()
            .map(|file| {
                let block = &block;
                scope.spawn(move || -> Result<u64, MeasureError> {
                    while file.appended_bytes == 0 || started.elapsed() < budget {
                        file.append(block)?;
                        file.sync()?;
                    }
                    Ok(file.appended_bytes)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or(Err(MeasureError::WriterPanicked)))
            .collect()
    });
    let elapsed = started.elapsed();
    let mut total_bytes = 0;
    for result in results {
        total_bytes += result?;
    }
    Ok(per_second(total_bytes, elapsed))
}

/// The smallest depth that reaches [`KNEE_SHARE_OF_PEAK`] of the best bandwidth seen: past
/// it more writers buy little. Against the peak rather than step to step, so one noisy step
/// of a short run does not end the curve early.
pub fn knee_depth(steps: &[ConcurrencyStep]) -> u32 {
    let peak = steps
        .iter()
        .map(|step| step.bandwidth_bytes_per_s)
        .max()
        .unwrap_or(0);
    steps
        .iter()
        .find(|step| step.bandwidth_bytes_per_s as f64 >= peak as f64 * KNEE_SHARE_OF_PEAK)
        .map_or(1, |step| step.depth)
}

fn per_second(bytes: u64, elapsed: Duration) -> u64 {
    (bytes as f64 / elapsed.as_secs_f64().max(1e-9)) as u64
}

/// Incompressible-looking bytes (xorshift from a fixed seed), so a compressing or
/// deduplicating device does not flatter the numbers, and runs are repeatable.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The scratch directory under the data dir, removed with everything in it when dropped.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn create(data_dir: &Path) -> Result<ScratchDir, MeasureError> {
        let io_error = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| MeasureError::Io { what, path, source }
        };
        fs::create_dir_all(data_dir).map_err(io_error("cannot create", data_dir))?;
        let path = data_dir.join(format!(".weir-tune-measure-{}", std::process::id()));
        fs::create_dir_all(&path).map_err(io_error("cannot create", &path))?;
        Ok(ScratchDir { path })
    }

    fn file(&self, name: &str, bytes_max: u64) -> Result<ScratchFile, MeasureError> {
        let path = self.path.join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|source| MeasureError::Io {
                what: "cannot create",
                path: path.clone(),
                source,
            })?;
        Ok(ScratchFile {
            file,
            path,
            size_bytes: 0,
            bytes_max,
            appended_bytes: 0,
        })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Best effort: a leftover scratch dir is only wasted space, and its name says whose.
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// An append-only scratch file that starts over (truncates) at `bytes_max`, so appends stay
/// appends (with the metadata updates Weir's segment appends cause) and disk use stays bounded.
struct ScratchFile {
    file: File,
    path: PathBuf,
    size_bytes: u64,
    bytes_max: u64,
    appended_bytes: u64,
}

impl ScratchFile {
    fn append(&mut self, block: &[u8]) -> Result<(), MeasureError> {
        if self.size_bytes + block.len() as u64 > self.bytes_max.max(block.len() as u64) {
            self.file
                .set_len(0)
                .map_err(|e| self.error("cannot truncate", e))?;
            // set_len leaves the cursor where it was; appends continue from the start.
            use std::io::Seek;
            self.file
                .seek(std::io::SeekFrom::Start(0))
                .map_err(|e| self.error("cannot seek", e))?;
            self.size_bytes = 0;
        }
        self.file
            .write_all(block)
            .map_err(|e| self.error("cannot write", e))?;
        self.size_bytes += block.len() as u64;
        self.appended_bytes += block.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), MeasureError> {
        self.file
            .sync_data()
            .map_err(|e| self.error("cannot fdatasync", e))
    }

    fn error(&self, what: &'static str, source: std::io::Error) -> MeasureError {
        MeasureError::Io {
            what,
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(bandwidths: &[u64]) -> Vec<ConcurrencyStep> {
        bandwidths
            .iter()
            .zip(CONCURRENCY_DEPTHS)
            .map(|(&bandwidth_bytes_per_s, depth)| ConcurrencyStep {
                depth,
                bandwidth_bytes_per_s,
            })
            .collect()
    }

    #[test]
    fn the_knee_is_where_bandwidth_nears_its_peak() {
        assert_eq!(knee_depth(&steps(&[100, 190, 350, 360, 365])), 4);
        assert_eq!(knee_depth(&steps(&[100, 105])), 1);
        assert_eq!(knee_depth(&steps(&[100, 200, 400])), 4);
        // A dip on the way does not end the curve.
        assert_eq!(knee_depth(&steps(&[100, 80, 300])), 4);
        // Past the peak (a device that degrades with depth) the knee stays before it.
        assert_eq!(knee_depth(&steps(&[100, 400, 200, 150])), 2);
        assert_eq!(knee_depth(&[]), 1);
    }

    #[test]
    fn durations_out_of_range_are_refused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let options = MeasureOptions::new(dir.path(), Duration::from_millis(10));
        assert!(matches!(measure(&options), Err(MeasureError::BadDuration)));
    }

    #[test]
    fn scratch_files_wrap_at_their_bound() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let scratch = ScratchDir::create(dir.path()).expect("scratch dir");
        let mut file = scratch.file("f", 10_000).expect("scratch file");
        for _ in 0..5 {
            file.append(&[7u8; 4096]).expect("append");
        }
        assert_eq!(file.appended_bytes, 5 * 4096);
        let on_disk = fs::metadata(&file.path).expect("metadata").len();
        assert!(on_disk <= 10_000, "{on_disk} bytes on disk");
        let scratch_path = scratch.path.clone();
        drop(file);
        drop(scratch);
        assert!(!scratch_path.exists(), "the scratch dir is removed");
    }
}
