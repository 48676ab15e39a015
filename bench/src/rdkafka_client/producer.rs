//! One librdkafka producer on its own thread. It sends on the open-loop schedule the native
//! producer uses (`Pace`), polls for delivery reports, and books each report as the native
//! producer books an acknowledged record: latency from the intended send time, the sequence
//! in the acknowledged set, counts by acknowledgement time. A message librdkafka's queue has
//! no room for waits, keeping its intended time, so the wait counts as latency.
//!
//! Hot path: `send_due` and `Deliveries::delivery` run once per message. The value is built
//! in one reused buffer (librdkafka copies it), and a delivery report is read back from the
//! delivered value's header, so nothing of ours is allocated per message. (The `rdkafka`
//! crate's `send` does allocate the topic's C string per message; every user of it pays
//! that too.)

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use super::config::{client_config, producer_properties};
use crate::clock::monotonic_now_ns;
use crate::error::BenchError;
use crate::payload::{decimal_key, filler, MessageShape, ValueHeader, VALUE_HEADER_BYTES};
use crate::producer::ProducerOutcome;
use crate::runner::Timing;
use crate::schedule::{Pace, Slot};
use crate::stats::live::LiveCounters;
use crate::stats::series::TimeSeries;
use crate::workload::Workload;

/// How long to wait for the topic's metadata before the run starts.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// After the run ends, how long to wait for the last acknowledgements (as the native
/// producer does).
const ACK_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Most messages sent between two polls: the clock is read again and delivery reports are
/// served at least this often, even at max rate.
const SEND_BURST_MAX: usize = 1024;
/// With librdkafka's queue full, the longest wait for a delivery report to free room.
const QUEUE_FULL_POLL: Duration = Duration::from_millis(10);
/// Shortest sleep before a scheduled message (as the native producer's): whatever the sleep
/// overshoots is counted in latency anyway, intended times being fixed.
const SLEEP_NS_MIN: u64 = 20_000;
const POLL_FLUSH: Duration = Duration::from_millis(100);
/// Error code booked for a delivered message whose value is not this producer's (cannot
/// happen: every value sent carries our header), as the native client books a missing answer.
const UNREADABLE_DELIVERY: i16 = -1;

/// Everything one producer thread needs.
#[derive(Clone, Debug)]
pub(super) struct ProducerTask {
    pub producer_id: u32,
    pub bootstrap: String,
    pub topic: String,
    pub run_tag: u32,
    pub workload: Workload,
    pub timing: Timing,
    pub live: Arc<LiveCounters>,
}

pub(super) fn run_producer(task: &ProducerTask) -> Result<ProducerOutcome, BenchError> {
    let deliveries = Deliveries {
        producer_id: task.producer_id,
        window: (task.timing.warmup_end_ns, task.timing.end_ns),
        record_latency: task.workload.acks != 0,
        recording: Mutex::new(Recording {
            outcome: ProducerOutcome {
                producer_id: task.producer_id,
                series: TimeSeries::new(task.timing.start_ns),
                ..ProducerOutcome::default()
            },
            unpublished: Unpublished::default(),
        }),
    };
    let properties = producer_properties(&task.bootstrap, &task.workload, task.producer_id);
    let producer: BaseProducer<Deliveries> = client_config(&properties)
        .create_with_context(deliveries)
        .map_err(|e| failure(task, "creating the librdkafka producer", &e))?;
    // Connected and the topic's leaders known before the first intended send, so connecting
    // never counts as latency (the native client connects before the start too).
    producer
        .client()
        .fetch_metadata(Some(&task.topic), METADATA_TIMEOUT)
        .map_err(|e| failure(task, "fetching the topic's metadata", &e))?;
    let mut sender = Sender::new(task, &producer);
    sleep_until(task.timing.start_ns);
    sender.run();
    sender.drain()?;
    let outcome = std::mem::take(&mut producer.context().lock().outcome);
    Ok(outcome)
}

fn failure(task: &ProducerTask, what: &str, error: &KafkaError) -> BenchError {
    BenchError::Executor(format!(
        "rdkafka producer {}: {what}: {error}",
        task.producer_id
    ))
}

/// The producer's context: librdkafka hands it every delivery report, on the producer's own
/// thread (from `poll`), so the mutex is never contended.
struct Deliveries {
    producer_id: u32,
    window: (u64, u64),
    record_latency: bool,
    recording: Mutex<Recording>,
}

struct Recording {
    outcome: ProducerOutcome,
    unpublished: Unpublished,
}

/// Booked but not yet added to the live counters, which are bumped once per poll.
#[derive(Debug, Default)]
struct Unpublished {
    acked_msgs: u64,
    acked_bytes: u64,
    failed_msgs: u64,
}

impl Deliveries {
    fn lock(&self) -> MutexGuard<'_, Recording> {
        // Only this producer's thread ever takes the lock; a panic there ends the run anyway.
        self.recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// One acknowledged message, booked as `producer::Shared::acknowledge` books each record.
    fn acknowledge(&self, header: &ValueHeader, value_bytes: u64, now_ns: u64) {
        let mut recording = self.lock();
        let Recording {
            outcome: r,
            unpublished,
        } = &mut *recording;
        r.book_acked(
            header.seq,
            header.intended_ns,
            now_ns,
            self.window,
            self.record_latency,
        );
        r.book_acked_counts(1, value_bytes, now_ns, self.window);
        unpublished.acked_msgs += 1;
        unpublished.acked_bytes += value_bytes;
    }

    /// One failed message, booked as `producer::Shared::fail` books each record.
    fn fail(&self, error_code: i16) {
        let mut recording = self.lock();
        recording.outcome.failed_msgs += 1;
        *recording.outcome.error_codes.entry(error_code).or_default() += 1;
        recording.unpublished.failed_msgs += 1;
    }

    fn publish(&self, live: &LiveCounters) {
        let unpublished = std::mem::take(&mut self.lock().unpublished);
        LiveCounters::add(&live.acked_msgs, unpublished.acked_msgs);
        LiveCounters::add(&live.acked_bytes, unpublished.acked_bytes);
        LiveCounters::add(&live.failed_msgs, unpublished.failed_msgs);
    }
}

impl ClientContext for Deliveries {
    /// Client-wide errors (a broker unreachable, say) would otherwise go to the `log` crate,
    /// which this tool does not print; the run's outcome still comes from delivery reports.
    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!(
            "weir-bench: rdkafka producer {}: {error}: {reason}",
            self.producer_id
        );
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let now_ns = monotonic_now_ns();
        match result {
            Ok(message) => {
                let value = message.payload().unwrap_or_default();
                match ValueHeader::decode(value) {
                    Some(header) => self.acknowledge(&header, value.len() as u64, now_ns),
                    None => self.fail(UNREADABLE_DELIVERY),
                }
            }
            Err((error, _)) => self.fail(error_code(error)),
        }
    }
}

/// Kafka's error code for a broker error; librdkafka's own (negative, -200..-100) for a
/// local one such as a message timeout.
fn error_code(error: &KafkaError) -> i16 {
    error
        .rdkafka_error_code()
        .map_or(UNREADABLE_DELIVERY, |code| code as i16)
}

/// A message taken from the schedule: its slot and shape.
#[derive(Clone, Copy, Debug)]
struct Scheduled {
    slot: Slot,
    value_len: usize,
    key: Option<u64>,
}

enum Sent {
    Queued,
    /// librdkafka's queue (`queue.buffering.max.kbytes`) has no room: try again after a poll.
    QueueFull,
    /// Refused outright (too large, unknown partition, ...): booked as failed.
    Refused(i16),
}

struct Sender<'a> {
    task: &'a ProducerTask,
    producer: &'a BaseProducer<Deliveries>,
    pace: Pace,
    shape: MessageShape,
    filler: Vec<u8>,
    value: Vec<u8>,
    /// A message the queue had no room for, sent first once it has.
    waiting: Option<Scheduled>,
}

impl<'a> Sender<'a> {
    fn new(task: &'a ProducerTask, producer: &'a BaseProducer<Deliveries>) -> Sender<'a> {
        let workload = &task.workload;
        let value_bytes_max = workload.message_size.bounds().1 as usize;
        Sender {
            task,
            producer,
            pace: Pace::for_producer(
                workload,
                task.producer_id,
                task.timing.start_ns,
                task.timing.end_ns,
            ),
            shape: MessageShape::new(workload, task.producer_id),
            filler: filler(value_bytes_max, workload.seed),
            value: Vec::with_capacity(value_bytes_max),
            waiting: None,
        }
    }

    fn run(&mut self) {
        loop {
            let now_ns = monotonic_now_ns();
            let queue_full = self.send_due(now_ns);
            self.producer.poll(Duration::ZERO);
            self.producer.context().publish(&self.task.live);
            if self.waiting.is_none() && self.pace.is_done(now_ns) {
                return;
            }
            self.wait(queue_full);
        }
    }

    /// Sends what is due (at most a burst), the waiting message first. Returns whether it
    /// stopped because librdkafka's queue is full.
    fn send_due(&mut self, now_ns: u64) -> bool {
        let mut sent = 0;
        let mut queue_full = false;
        for _ in 0..SEND_BURST_MAX {
            let message = match self.waiting.take() {
                Some(message) => message,
                None => match self.pace.next_due(now_ns) {
                    Some(slot) => {
                        let (value_len, key) = self.shape.next(slot.seq);
                        Scheduled {
                            slot,
                            value_len,
                            key,
                        }
                    }
                    None => break,
                },
            };
            match self.send(message) {
                Sent::Queued => sent += 1,
                Sent::QueueFull => {
                    self.waiting = Some(message);
                    queue_full = true;
                    break;
                }
                Sent::Refused(code) => {
                    // Counted as sent too, so that sent = acked + failed + in flight.
                    sent += 1;
                    self.producer.context().fail(code);
                }
            }
        }
        LiveCounters::add(&self.task.live.sent_msgs, sent);
        queue_full
    }

    fn send(&mut self, message: Scheduled) -> Sent {
        let header = ValueHeader {
            run_tag: self.task.run_tag,
            producer_id: self.task.producer_id,
            seq: message.slot.seq,
            intended_ns: message.slot.intended_ns,
        };
        self.value.clear();
        self.value.extend_from_slice(&header.encode());
        self.value
            .extend_from_slice(&self.filler[..message.value_len - VALUE_HEADER_BYTES]);
        let mut key_buf = [0u8; 20];
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.task.topic).payload(&self.value[..]);
        if let Some(key) = message.key {
            record = record.key(decimal_key(key, &mut key_buf));
        }
        match self.producer.send(record) {
            Ok(()) => Sent::Queued,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Sent::QueueFull,
            Err((error, _)) => Sent::Refused(error_code(&error)),
        }
    }

    /// Until the next scheduled message, or a delivery report when the queue is full; not
    /// at all at max rate.
    fn wait(&self, queue_full: bool) {
        if queue_full {
            // Returns as soon as a delivery report has been served.
            self.producer.poll(QUEUE_FULL_POLL);
            return;
        }
        let Some(next_ns) = self.pace.next_intended_ns() else {
            return;
        };
        let wait_ns = next_ns.saturating_sub(monotonic_now_ns());
        if wait_ns >= 1_000_000 {
            // Whole milliseconds (librdkafka's unit); returns early if a report comes.
            self.producer
                .poll(Duration::from_millis(wait_ns / 1_000_000));
        } else if wait_ns > 0 {
            std::thread::sleep(Duration::from_nanos(wait_ns.max(SLEEP_NS_MIN)));
        }
    }

    /// After the last message: every message delivered or failed, or an error after
    /// `ACK_DRAIN_TIMEOUT`.
    fn drain(&self) -> Result<(), BenchError> {
        let deadline_ns = monotonic_now_ns() + ACK_DRAIN_TIMEOUT.as_nanos() as u64;
        loop {
            // `flush` also sends lingering batches at once and serves delivery reports.
            let flushed = self.producer.flush(POLL_FLUSH).is_ok();
            self.producer.context().publish(&self.task.live);
            if flushed {
                return Ok(());
            }
            if monotonic_now_ns() >= deadline_ns {
                return Err(BenchError::Executor(format!(
                    "rdkafka producer {}: {} acknowledgements still missing {} s after the run",
                    self.task.producer_id,
                    self.producer.in_flight_count(),
                    ACK_DRAIN_TIMEOUT.as_secs()
                )));
            }
        }
    }
}

fn sleep_until(deadline_ns: u64) {
    let now_ns = monotonic_now_ns();
    if deadline_ns > now_ns {
        std::thread::sleep(Duration::from_nanos(deadline_ns - now_ns));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliveries(acks: i16) -> Deliveries {
        Deliveries {
            producer_id: 0,
            window: (1_000, 2_000),
            record_latency: acks != 0,
            recording: Mutex::new(Recording {
                outcome: ProducerOutcome {
                    series: TimeSeries::new(0),
                    ..ProducerOutcome::default()
                },
                unpublished: Unpublished::default(),
            }),
        }
    }

    fn header(seq: u64, intended_ns: u64) -> ValueHeader {
        ValueHeader {
            run_tag: 1,
            producer_id: 0,
            seq,
            intended_ns,
        }
    }

    /// Latency only for messages intended inside the window, window counts by ack time,
    /// totals for everything: exactly the native producer's booking.
    #[test]
    fn acknowledgements_are_booked_as_the_native_producer_books_them() {
        let d = deliveries(-1);
        d.acknowledge(&header(0, 500), 100, 1_200); // intended in warm-up, acked in window
        d.acknowledge(&header(1, 1_100), 100, 1_600); // intended and acked in the window
        d.acknowledge(&header(2, 1_900), 50, 2_500); // intended in the window, acked after
        d.fail(error_code(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut,
        )));
        let live = LiveCounters::default();
        d.publish(&live);
        d.publish(&live);
        let snapshot = live.snapshot();
        assert_eq!(
            (
                snapshot.acked_msgs,
                snapshot.acked_bytes,
                snapshot.failed_msgs
            ),
            (3, 250, 1),
            "published once"
        );
        let r = &d.lock().outcome;
        assert_eq!((r.acked_msgs_total, r.acked_bytes_total), (3, 250));
        assert_eq!((r.acked_msgs_window, r.acked_bytes_window), (2, 200));
        assert_eq!(r.latency.count(), 2);
        assert_eq!(r.acked.len(), 3);
        assert_eq!(r.failed_msgs, 1);
        assert_eq!(r.error_codes.get(&-192), Some(&1), "librdkafka's code");
    }

    #[test]
    fn acks_0_records_no_latency() {
        let d = deliveries(0);
        d.acknowledge(&header(0, 1_100), 100, 1_600);
        let r = &d.lock().outcome;
        assert_eq!(r.acked_msgs_window, 1);
        assert_eq!(r.latency.count(), 0);
    }

    #[test]
    fn broker_errors_keep_kafkas_code() {
        let error = KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas);
        assert_eq!(error_code(&error), 19);
        assert_eq!(error_code(&KafkaError::Canceled), UNREADABLE_DELIVERY);
    }
}
