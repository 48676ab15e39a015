//! One librdkafka consumer on its own thread: its partitions assigned by hand (no group),
//! from the offsets the run started at, every record booked through the native consumer's
//! `Tracker` (delivery log, order check, end-to-end latency from the value header). Stops
//! when the runner's watch says so.
//!
//! Hot path: `poll_burst` runs once per message, on the value librdkafka holds; nothing is
//! allocated per message here.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::config::{client_config, consumer_properties};
use crate::clock::monotonic_now_ns;
use crate::consumer::{ConsumerOutcome, Tracker, FETCH_MAX_WAIT_MS};
use crate::error::BenchError;
use crate::runner::Timing;
use crate::stats::live::LiveCounters;
use crate::workload::Workload;

/// Longest wait for the first message of a burst: as long as a fetch may wait at the
/// broker, so the stop flag is seen as promptly as the native consumer sees it.
const POLL_TIMEOUT: Duration = Duration::from_millis(FETCH_MAX_WAIT_MS as u64);
/// Most messages booked together into the time series and the live counters.
const POLL_BURST_MAX: usize = 1024;

/// Everything one consumer thread needs.
#[derive(Clone, Debug)]
pub(super) struct ConsumerTask {
    pub consumer_id: u32,
    pub bootstrap: String,
    pub topic: String,
    pub run_tag: u32,
    pub workload: Workload,
    /// (partition, offset to start from)
    pub partitions: Vec<(i32, i64)>,
    pub timing: Timing,
    pub live: Arc<LiveCounters>,
}

pub(super) fn run_consumer(task: &ConsumerTask) -> Result<ConsumerOutcome, BenchError> {
    let properties = consumer_properties(
        &task.bootstrap,
        &task.workload,
        task.run_tag,
        task.consumer_id,
    );
    let consumer: BaseConsumer = client_config(&properties)
        .create()
        .map_err(|e| failure(task, "creating the librdkafka consumer", &e))?;
    let mut assignment = TopicPartitionList::with_capacity(task.partitions.len());
    for &(partition, offset) in &task.partitions {
        assignment
            .add_partition_offset(&task.topic, partition, Offset::Offset(offset))
            .map_err(|e| failure(task, "building the assignment", &e))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| failure(task, "assigning its partitions", &e))?;
    let mut tracker = Tracker::new(
        task.run_tag,
        task.workload.producers,
        task.workload.partitions,
        task.timing.start_ns,
        (task.timing.warmup_end_ns, task.timing.end_ns),
    );
    let mut errors_seen = 0u64;
    while !task.live.consumers_should_stop() {
        poll_burst(task, &consumer, &mut tracker, &mut errors_seen);
    }
    Ok(tracker.into_outcome())
}

/// Waits up to `POLL_TIMEOUT` for a message, takes whatever else is already there (up to a
/// burst), and books the burst.
fn poll_burst(
    task: &ConsumerTask,
    consumer: &BaseConsumer,
    tracker: &mut Tracker,
    errors_seen: &mut u64,
) {
    let partitions_total = task.workload.partitions as usize;
    let mark = tracker.mark();
    let mut now_ns = monotonic_now_ns();
    let mut timeout = POLL_TIMEOUT;
    for _ in 0..POLL_BURST_MAX {
        match consumer.poll(timeout) {
            None => break,
            Some(Ok(message)) => {
                now_ns = monotonic_now_ns();
                match usize::try_from(message.partition()) {
                    Ok(partition) if partition < partitions_total => {
                        tracker.on_record(partition, message.payload().unwrap_or_default(), now_ns)
                    }
                    // Only assigned partitions are fetched; anything else is an error.
                    _ => tracker.fetch_error(),
                }
            }
            Some(Err(error)) => {
                tracker.fetch_error();
                if *errors_seen == 0 {
                    eprintln!(
                        "weir-bench: rdkafka consumer {}: {error} (further errors only counted)",
                        task.consumer_id
                    );
                }
                *errors_seen += 1;
            }
        }
        timeout = Duration::ZERO;
    }
    tracker.book_since(mark, now_ns, &task.live);
}

fn failure(task: &ConsumerTask, what: &str, error: &KafkaError) -> BenchError {
    BenchError::Executor(format!(
        "rdkafka consumer {}: {what}: {error}",
        task.consumer_id
    ))
}
