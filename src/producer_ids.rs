//! Producer ids for idempotent producers (InitProducerId), handed out by shard 0.
//!
//! An id must never be handed out twice, across restarts too: a reused id would make the
//! partitions take a new producer's batches for an old one's retries. Ids are reserved in
//! blocks (Kafka's controller does the same, 1,000 at a time): the end of the current block
//! is written durably to `producer-id-block` before any id of it is given out, and a start
//! resumes at that end, skipping whatever the last run reserved but did not use.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use glommio::sync::Semaphore;

/// Ids reserved per write of the block file.
pub const BLOCK_SIZE: i64 = 1_000;
const FILE_NAME: &str = "producer-id-block";
/// magic, next block start i64, CRC32C of the magic and start u32.
const MAGIC: &[u8; 8] = b"WEIRPIDS";
const FILE_BYTES: usize = 8 + 8 + 4;

#[derive(Debug, thiserror::Error)]
#[error("producer id block {path}: {source}")]
pub struct ProducerIdError {
    path: PathBuf,
    source: std::io::Error,
}

pub struct ProducerIdManager {
    path: PathBuf,
    next: Cell<i64>,
    /// First id past the durably reserved block.
    block_end: Cell<i64>,
    /// One reservation at a time: allocations wait while a block is being written.
    reserving: Semaphore,
}

impl ProducerIdManager {
    /// Resumes after the last reserved block. A damaged file cannot say which ids were given
    /// out, so ids then start from the wall clock (milliseconds × 1,000), far past any this
    /// data dir can have used unless the clock went back years.
    pub fn load(data_dir: &Path) -> ProducerIdManager {
        let path = data_dir.join(FILE_NAME);
        let start = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).unwrap_or_else(|| {
                let start = crate::clock::now_ms().max(0).saturating_mul(BLOCK_SIZE);
                tracing::error!(
                    "{} is damaged: producer ids resume at {start} so none is reused",
                    path.display()
                );
                start
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => {
                let start = crate::clock::now_ms().max(0).saturating_mul(BLOCK_SIZE);
                tracing::error!(
                    "reading {}: {e}; producer ids resume at {start}",
                    path.display()
                );
                start
            }
        };
        ProducerIdManager {
            path,
            next: Cell::new(start),
            block_end: Cell::new(start),
            reserving: Semaphore::new(1),
        }
    }

    /// A new producer id, never given out before by this data dir.
    pub async fn allocate(&self) -> Result<i64, ProducerIdError> {
        // The semaphore is never closed, so acquiring only ever waits.
        let _turn = self.reserving.acquire_permit(1).await.ok();
        if self.next.get() >= self.block_end.get() {
            let end = self.next.get().saturating_add(BLOCK_SIZE);
            let (path, bytes) = (self.path.clone(), encode(end));
            glommio::executor()
                .spawn_blocking(move || write_atomically(&path, &bytes))
                .await
                .map_err(|source| ProducerIdError {
                    path: self.path.clone(),
                    source,
                })?;
            self.block_end.set(end);
        }
        let id = self.next.get();
        self.next.set(id + 1);
        Ok(id)
    }
}

pub(crate) fn encode(block_end: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(FILE_BYTES);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&block_end.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&out).to_be_bytes());
    out
}

/// The block file: None unless it is whole and its CRC holds (read at every start).
pub(crate) fn decode(bytes: &[u8]) -> Option<i64> {
    if bytes.len() != FILE_BYTES || &bytes[..8] != MAGIC {
        return None;
    }
    let crc = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
    if crc32c::crc32c(&bytes[..16]) != crc {
        return None;
    }
    let end = i64::from_be_bytes(bytes[8..16].try_into().ok()?);
    (end >= 0).then_some(end)
}

/// Temp file, fsync, rename, fsync dir: a crash leaves the old block end or the new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(test: impl std::future::Future<Output = ()>) {
        glommio::LocalExecutorBuilder::default()
            .make()
            .expect("an executor")
            .run(test);
    }

    #[test]
    fn ids_are_unique_across_restarts_and_blocks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_path_buf();
        run(async move {
            let first = ProducerIdManager::load(&path);
            let mut ids = Vec::new();
            for _ in 0..(BLOCK_SIZE + 5) {
                ids.push(first.allocate().await.expect("allocates"));
            }
            assert_eq!(
                ids,
                (0..BLOCK_SIZE + 5).collect::<Vec<_>>(),
                "dense within a run"
            );
            let second = ProducerIdManager::load(&path);
            let resumed = second.allocate().await.expect("allocates");
            assert_eq!(resumed, 2 * BLOCK_SIZE, "after the last reserved block");
        });
    }

    #[test]
    fn a_damaged_file_resumes_far_past_every_block() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(FILE_NAME), encode(5_000)).expect("write");
        let mut damaged = encode(5_000);
        damaged[10] ^= 1;
        assert_eq!(decode(&encode(5_000)), Some(5_000));
        assert_eq!(decode(&damaged), None);
        assert_eq!(decode(b"short"), None);
        std::fs::write(dir.path().join(FILE_NAME), damaged).expect("write");
        let manager = ProducerIdManager::load(dir.path());
        assert!(
            manager.next.get() > 1_000_000_000_000_000,
            "{}",
            manager.next.get()
        );
    }
}
