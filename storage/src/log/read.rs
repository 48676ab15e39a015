//! Reads: the file range for a Fetch, the offset for a timestamp (ListOffsets), and the
//! long-poll wait for new data.
//!
//! Hot path (Fetch). Reads hand out file ranges, never copies: the bytes go from the page
//! cache to the socket with sendfile on whichever shard holds the connection. A read must
//! never return bytes at or above the high watermark, nor span two segments.

use super::PartitionLog;
use crate::batch::{self, BatchHeader};
use crate::error::StorageError;
use crate::log::FileSlice;
use crate::segment::SegmentFiles;

impl PartitionLog {
    /// Whole batches from the one containing `offset`, at most `max_bytes` (but the whole
    /// first batch when `min_one_batch`, KIP-74), never past the high watermark, and within
    /// one segment. At the high watermark: Ok(None). Below the log start or above the high
    /// watermark: `OffsetOutOfRange`.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: u32,
        min_one_batch: bool,
    ) -> Result<Option<FileSlice>, StorageError> {
        let mut target = offset;
        loop {
            let (files, start, limit, next_base) = {
                let state = self.state.borrow();
                if state.closed {
                    return Err(StorageError::Closed(self.dir.clone()));
                }
                if target == state.high_watermark {
                    return Ok(None);
                }
                if target < state.log_start_offset || target > state.high_watermark {
                    return Err(StorageError::OffsetOutOfRange {
                        offset,
                        log_start_offset: state.log_start_offset,
                        log_end_offset: state.log_end_offset,
                        high_watermark: state.high_watermark,
                    });
                }
                // log_start_offset is the first segment's base, so at least one segment
                // starts at or before `target`.
                let i = state.segments.partition_point(|s| s.base_offset <= target) - 1;
                let segment = &state.segments[i];
                let files = segment
                    .files
                    .clone()
                    .expect("a segment holding data below the high watermark has files");
                let relative = u32::try_from(target - segment.base_offset).unwrap_or(u32::MAX);
                let start = u64::from(segment.index.floor_position(relative));
                let next_base = state.segments.get(i + 1).map(|s| s.base_offset);
                (files, start, segment.durable_size, next_base)
            };
            let Some((position, first_len)) = find_batch(&files, start, limit, target).await?
            else {
                // The offset is past this segment's last batch: only possible where recovery
                // cut a damaged closed segment short, leaving a gap. Kafka serves the next
                // batch after a gap, so read on from the next segment.
                match next_base {
                    Some(base) if base > target => {
                        target = base;
                        continue;
                    }
                    _ => return Ok(None),
                }
            };
            let available = limit - position;
            let mut len = available.min(u64::from(max_bytes));
            if min_one_batch {
                len = len.max(first_len.min(available));
            }
            if len == 0 {
                return Ok(None);
            }
            return Ok(Some(FileSlice {
                file: files.reader.clone(),
                position,
                len: u32::try_from(len).unwrap_or(u32::MAX),
            }));
        }
    }

    /// Resolves once the high watermark is past `offset`, or the log failed or was deleted
    /// (then a read tells the caller which). The Fetch long poll races this with a timer;
    /// dropping it deregisters the waiter.
    pub async fn wait_for_data(&self, offset: i64) {
        self.waiters
            .until(|| {
                let state = self.state.borrow();
                state.failed || state.closed || state.high_watermark > offset
            })
            .await
    }

    /// First offset whose batch reaches `timestamp` (max timestamp ≥ it), with that batch's
    /// max timestamp (Kafka ListOffsets by time). The time index gives where to start; the
    /// batch headers from there give the answer.
    pub async fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        Ok(self
            .find_timestamp_batch(timestamp)
            .await?
            .map(|(_, _, header)| (header.base_offset, header.max_timestamp)))
    }

    /// The whole first batch reaching `timestamp`, for a caller that looks inside it for the
    /// first record at or after the time (Kafka answers with that record, not the batch).
    /// The largest timestamp of any written batch (ListOffsets MAX_TIMESTAMP, KIP-734), or
    /// None for a log with no written batch. Retention's deletions are counted out: only
    /// segments still in the log are looked at.
    pub fn max_timestamp(&self) -> Option<i64> {
        let state = self.state.borrow();
        state
            .segments
            .iter()
            .filter(|s| s.durable_size > 0)
            .map(|s| s.max_timestamp)
            .max()
    }

    pub async fn batch_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let Some((files, position, header)) = self.find_timestamp_batch(timestamp).await? else {
            return Ok(None);
        };
        let bytes = files
            .log
            .read_at(position, header.batch_len)
            .await
            .map_err(StorageError::glommio("reading", &files.log_path))?;
        Ok(Some(bytes.to_vec()))
    }

    async fn find_timestamp_batch(
        &self,
        timestamp: i64,
    ) -> Result<Option<(std::rc::Rc<SegmentFiles>, u64, BatchHeader)>, StorageError> {
        let target = {
            let state = self.state.borrow();
            if state.closed {
                return Err(StorageError::Closed(self.dir.clone()));
            }
            state
                .segments
                .iter()
                .find(|s| s.max_timestamp >= timestamp && s.durable_size > 0)
                .map(|s| {
                    let relative = s.time_index.scan_start(timestamp);
                    (
                        s.files.clone(),
                        u64::from(s.index.floor_position(relative)),
                        s.durable_size,
                    )
                })
        };
        // The first segment reaching the timestamp may reach it only with a batch not yet
        // written; then no written batch reaches it either (later segments are later).
        let Some((Some(files), start, end)) = target else {
            return Ok(None);
        };
        let mut position = start;
        while position < end {
            let header = read_header(&files, position).await?;
            if header.max_timestamp >= timestamp {
                return Ok(Some((files, position, header)));
            }
            position += header.batch_len as u64;
        }
        Ok(None)
    }
}

async fn read_header(files: &SegmentFiles, position: u64) -> Result<BatchHeader, StorageError> {
    let bytes = files
        .log
        .read_at(position, batch::HEADER_BYTES)
        .await
        .map_err(StorageError::glommio("reading", &files.log_path))?;
    batch::parse_header(&bytes).map_err(|e| StorageError::Corrupt {
        path: files.log_path.clone(),
        reason: format!("at byte {position}: {e}"),
    })
}

/// From `start` (an index position at or before the target), the position and length of the
/// batch containing `offset`, or None if the segment's readable bytes end first.
async fn find_batch(
    files: &SegmentFiles,
    start: u64,
    limit: u64,
    offset: i64,
) -> Result<Option<(u64, u64)>, StorageError> {
    let mut position = start;
    while position < limit {
        let header = read_header(files, position).await?;
        if header.last_offset() >= offset {
            return Ok(Some((position, header.batch_len as u64)));
        }
        position += header.batch_len as u64;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{all_bases, bases, batch, read_slice, run, small_segments};
    use super::super::{LogConfig, PartitionLog};
    use crate::error::StorageError;

    #[test]
    fn reads_start_at_the_batch_holding_the_offset_and_respect_limits() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
            for i in 0..10 {
                log.append(&batch(&[b"aaaa", b"bbbb", b"cccc"], i))
                    .await
                    .unwrap();
            }
            let batch_len = batch(&[b"aaaa", b"bbbb", b"cccc"], 0).len() as u32;
            let slice = log.read(4, 1 << 20, true).await.unwrap().unwrap();
            let found = bases(&read_slice(&slice));
            assert_eq!(found[0], 3, "offset 4 is inside the batch at 3");
            assert_eq!(
                found.len(),
                9,
                "everything from there to the high watermark"
            );
            assert_eq!(slice.position, u64::from(batch_len));

            let one = log.read(0, 1, true).await.unwrap().unwrap();
            assert_eq!(
                one.len, batch_len,
                "min_one_batch returns the whole first batch"
            );
            assert_eq!(bases(&read_slice(&one)), vec![0]);

            let two = log.read(0, 2 * batch_len + 5, true).await.unwrap().unwrap();
            assert_eq!(two.len, 2 * batch_len + 5, "max_bytes bounds the range");
            assert_eq!(bases(&read_slice(&two)), vec![0, 3], "two whole batches");

            let cut = log.read(0, 10, false).await.unwrap().unwrap();
            assert_eq!(
                cut.len, 10,
                "without min_one_batch the first batch may be cut"
            );
            assert!(log.read(0, 0, false).await.unwrap().is_none());

            assert!(
                log.read(30, 100, true).await.unwrap().is_none(),
                "at the high watermark"
            );
            assert!(matches!(
                log.read(31, 100, true).await,
                Err(StorageError::OffsetOutOfRange {
                    offset: 31,
                    log_start_offset: 0,
                    high_watermark: 30,
                    ..
                })
            ));
            assert!(matches!(
                log.read(-1, 100, true).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
        });
    }

    #[test]
    fn reads_stay_inside_one_segment_and_follow_rolls() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, small_segments()).await.unwrap();
            for i in 0..40 {
                log.append(&batch(
                    &[format!("value-{i:04}-padding-padding").as_bytes()],
                    i,
                ))
                .await
                .unwrap();
            }
            assert!(log.segment_count() > 3, "{} segments", log.segment_count());
            assert_eq!(all_bases(&log).await, (0..40).collect::<Vec<_>>());
            for offset in 0..40 {
                let slice = log.read(offset, 1 << 20, true).await.unwrap().unwrap();
                let found = bases(&read_slice(&slice));
                assert_eq!(found[0], offset, "each batch holds one record");
                assert!(
                    slice.position + u64::from(slice.len) <= 1024,
                    "a read never spans two segments"
                );
            }
        });
    }

    #[test]
    fn offset_for_timestamp_finds_the_first_batch_reaching_it() {
        run(|dir| async move {
            let config = LogConfig {
                index_interval_bytes: 1,
                segment_bytes: 250,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir, config).await.unwrap();
            // Not monotonic: 150 comes after 200, as producers' clocks allow.
            for (i, ts) in [100, 200, 150, 300, 400].into_iter().enumerate() {
                let outcome = log.append(&batch(&[b"x"], ts)).await.unwrap();
                assert_eq!(outcome.base_offset, i as i64);
            }
            assert!(
                log.segment_count() > 1,
                "timestamps are found across segments"
            );
            let at = |ts| log.offset_for_timestamp(ts);
            assert_eq!(at(i64::MIN).await.unwrap(), Some((0, 100)));
            assert_eq!(at(50).await.unwrap(), Some((0, 100)));
            assert_eq!(at(150).await.unwrap(), Some((1, 200)));
            assert_eq!(at(200).await.unwrap(), Some((1, 200)));
            assert_eq!(at(250).await.unwrap(), Some((3, 300)));
            assert_eq!(at(400).await.unwrap(), Some((4, 400)));
            assert_eq!(at(401).await.unwrap(), None);
        });
    }

    #[test]
    fn wait_for_data_resolves_after_an_append_and_not_before() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
            let early = log.wait_for_data(0);
            let timer = glommio::timer::sleep(std::time::Duration::from_millis(5));
            let timed_out = futures_lite::future::or(
                async {
                    early.await;
                    false
                },
                async {
                    timer.await;
                    true
                },
            )
            .await;
            assert!(timed_out, "nothing to wait for yet");
            assert_eq!(log.waiters.len(), 0, "the losing wait deregistered");

            let waiter = {
                let log = log.clone();
                glommio::spawn_local(async move {
                    log.wait_for_data(0).await;
                    log.high_watermark()
                })
            };
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            log.append(&batch(&[b"x"], 1)).await.unwrap();
            assert_eq!(waiter.await, 1);
            // Already past: resolves at once.
            log.wait_for_data(0).await;
        });
    }
}
