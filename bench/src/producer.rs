//! One producer: an accumulator of per-partition batches fed by the pace (open-loop schedule
//! or max rate), a sender that pipelines Produce v9 requests on one connection per leader
//! (at most `max_in_flight` unanswered), and a response reader per connection that records
//! acknowledgement latency from each message's intended send time.
//!
//! Hot path: `generate` runs once per message. It writes the record straight into its
//! partition's batch buffer and pushes one `Slot` (16 bytes) into a reused vector; nothing is
//! allocated per message. Requests and responses allocate per request only.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{select, Either};
use glommio::task::JoinHandle;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::codec::decode_response;
use crate::client::connection::{connect, RequestWriter, ResponseReader};
use crate::client::retry;
use crate::clock::{monotonic_now_ns, unix_now_ms};
use crate::error::BenchError;
use crate::notify::Notify;
use crate::payload::{decimal_key, filler, MessageShape, ValueHeader, VALUE_HEADER_BYTES};
use crate::protocol::murmur2::partition_for_key;
use crate::protocol::record_batch::BatchBuilder;
use crate::schedule::{Pace, Slot};
use crate::stats::delivery::SeqSet;
use crate::stats::latency::LatencyRecorder;
use crate::stats::live::LiveCounters;
use crate::stats::series::TimeSeries;
use crate::workload::Workload;

pub const PRODUCE_VERSION: i16 = 9;
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// After the run ends, how long to wait for the last acknowledgements.
const ACK_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Shortest sleep between schedule steps. Sleeping less costs more wake-ups than it saves;
/// whatever the sleep overshoots is counted in latency anyway (intended times are fixed).
const SLEEP_NS_MIN: u64 = 20_000;
/// How long a batch may be retried after its first retriable error (Kafka's
/// `delivery.timeout.ms` is 120 s; a benchmark run has less patience).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for an acknowledgement before the producer looks at its state again.
const IDLE_WAIT_MAX: Duration = Duration::from_millis(100);
/// Error code recorded when a partition's batch got no answer in its response.
const MISSING_PARTITION_RESPONSE: i16 = -1;

/// Everything a producer needs; `Send` so it can travel to its core's executor.
#[derive(Clone, Debug)]
pub struct ProducerPlan {
    pub producer_id: u32,
    pub producers: u32,
    pub run_tag: u32,
    pub topic: String,
    /// Leader address of each partition.
    pub leaders: Vec<String>,
    pub workload: Workload,
    pub start_ns: u64,
    pub warmup_end_ns: u64,
    pub end_ns: u64,
    pub live: Arc<LiveCounters>,
}

/// What a producer measured, merged by the runner.
#[derive(Debug, Default)]
pub struct ProducerOutcome {
    pub producer_id: u32,
    pub latency: LatencyRecorder,
    pub series: TimeSeries,
    pub acked: SeqSet,
    pub acked_msgs_total: u64,
    pub acked_bytes_total: u64,
    pub acked_msgs_window: u64,
    pub acked_bytes_window: u64,
    pub failed_msgs: u64,
    pub error_codes: BTreeMap<i16, u64>,
    /// Batches sent again after a retriable error, and those errors' codes.
    pub retried_batches: u64,
    pub retried_error_codes: BTreeMap<i16, u64>,
}

impl ProducerOutcome {
    /// Books one acknowledged message: the delivery set, and its latency from the intended
    /// send time when that falls in the measured `window` (and latency is recorded at all).
    pub fn book_acked(
        &mut self,
        seq: u64,
        intended_ns: u64,
        now_ns: u64,
        window: (u64, u64),
        record_latency: bool,
    ) {
        self.acked.insert(seq);
        if record_latency && intended_ns >= window.0 && intended_ns < window.1 {
            let latency_ns = now_ns.saturating_sub(intended_ns);
            self.latency.record_ns(latency_ns);
            self.series
                .produce_latency(intended_ns)
                .record_ns(latency_ns);
        }
    }

    /// Books the counters of `msgs` messages of `bytes` value bytes acknowledged at `now_ns`.
    pub fn book_acked_counts(&mut self, msgs: u64, bytes: u64, now_ns: u64, window: (u64, u64)) {
        self.acked_msgs_total += msgs;
        self.acked_bytes_total += bytes;
        if now_ns >= window.0 && now_ns < window.1 {
            self.acked_msgs_window += msgs;
            self.acked_bytes_window += bytes;
        }
        self.series.record_acks(now_ns, msgs, bytes);
    }
}

struct SentBatch {
    partition: i32,
    records: Bytes,
    slots: Vec<Slot>,
    value_bytes: u64,
    /// Tries that failed with a retriable error so far.
    retries: u32,
    /// When the first try failed (0: none did): retries stop `DELIVERY_TIMEOUT` after it.
    first_failed_ns: u64,
}

/// A batch waiting out its backoff before it is sent again.
struct RetryBatch {
    batch: SentBatch,
    retry_at_ns: u64,
}

struct InFlight {
    correlation_id: i32,
    batches: Vec<SentBatch>,
}

/// State a lane's writer and reader share (one executor, so `Cell`/`RefCell`, never held
/// across an await).
struct Shared {
    recording: RefCell<ProducerOutcome>,
    window: (u64, u64),
    record_latency: bool,
    buffered_bytes: Cell<u64>,
    notify: Notify,
    error: RefCell<Option<BenchError>>,
    slot_pool: RefCell<Vec<Vec<Slot>>>,
    /// Batches a broker answered with a retriable error, until their backoff ends.
    retries: RefCell<Vec<RetryBatch>>,
    live: Arc<LiveCounters>,
}

impl Shared {
    /// Books an acknowledged batch: latency per message from its intended time, the delivery
    /// set, and the counters.
    fn acknowledge(&self, batch: SentBatch, now_ns: u64) {
        let mut r = self.recording.borrow_mut();
        for slot in &batch.slots {
            r.book_acked(
                slot.seq,
                slot.intended_ns,
                now_ns,
                self.window,
                self.record_latency,
            );
        }
        let msgs = batch.slots.len() as u64;
        r.book_acked_counts(msgs, batch.value_bytes, now_ns, self.window);
        drop(r);
        LiveCounters::add(&self.live.acked_msgs, msgs);
        LiveCounters::add(&self.live.acked_bytes, batch.value_bytes);
        self.release(batch);
    }

    fn fail(&self, batch: SentBatch, error_code: i16) {
        let msgs = batch.slots.len() as u64;
        let mut r = self.recording.borrow_mut();
        r.failed_msgs += msgs;
        *r.error_codes.entry(error_code).or_default() += msgs;
        drop(r);
        LiveCounters::add(&self.live.failed_msgs, msgs);
        self.release(batch);
    }

    /// A partition's answer with an error: retriable ones are sent again after a backoff
    /// (Kafka's producer: `retries`, `retry.backoff.ms`, within `delivery.timeout.ms`), the
    /// rest fail the batch's messages.
    fn failed_try(&self, mut batch: SentBatch, error_code: i16, now_ns: u64) {
        if batch.first_failed_ns == 0 {
            batch.first_failed_ns = now_ns;
        }
        let within = now_ns < batch.first_failed_ns + DELIVERY_TIMEOUT.as_nanos() as u64;
        if !(retry::is_retriable(error_code) && within) {
            return self.fail(batch, error_code);
        }
        batch.retries += 1;
        let mut r = self.recording.borrow_mut();
        r.retried_batches += 1;
        *r.retried_error_codes.entry(error_code).or_default() += 1;
        drop(r);
        let retry_at_ns = now_ns + retry::backoff(batch.retries).as_nanos() as u64;
        self.retries
            .borrow_mut()
            .push(RetryBatch { batch, retry_at_ns });
    }

    fn release(&self, mut batch: SentBatch) {
        let buffered = self.buffered_bytes.get();
        let len = batch.records.len() as u64;
        debug_assert!(
            buffered >= len,
            "the buffer counts every batch until released"
        );
        self.buffered_bytes.set(buffered.saturating_sub(len));
        batch.slots.clear();
        self.slot_pool.borrow_mut().push(batch.slots);
    }
}

/// One connection to one leader: its ready queue and what is in flight on it.
struct Lane {
    writer: RequestWriter,
    ready: VecDeque<SentBatch>,
    in_flight: Rc<RefCell<VecDeque<InFlight>>>,
    reader: Option<JoinHandle<()>>,
}

struct OpenBatch {
    builder: BatchBuilder,
    slots: Vec<Slot>,
    value_bytes: u64,
    opened_ns: u64,
}

pub struct Producer {
    plan: ProducerPlan,
    pace: Pace,
    shared: Rc<Shared>,
    lanes: Vec<Lane>,
    /// Lane of each partition.
    lane_of: Vec<usize>,
    open: Vec<OpenBatch>,
    sticky_partition: u32,
    shape: MessageShape,
    filler: Vec<u8>,
    topic_name: TopicName,
}

pub async fn run_producer(plan: ProducerPlan) -> Result<ProducerOutcome, BenchError> {
    let live = plan.live.clone();
    let mut producer = match Producer::connect(plan).await {
        Ok(producer) => producer,
        Err(e) => {
            // Counted as done, so the runner's watch stops waiting for it.
            LiveCounters::add(&live.producers_done, 1);
            return Err(e);
        }
    };
    let result = producer.run().await;
    for lane in &mut producer.lanes {
        if let Some(reader) = lane.reader.take() {
            reader.cancel();
        }
    }
    LiveCounters::add(&producer.plan.live.producers_done, 1);
    result?;
    // The cancelled readers may still hold the shared state for a moment: take the
    // recording out rather than unwrapping the Rc.
    let outcome = std::mem::take(&mut *producer.shared.recording.borrow_mut());
    Ok(outcome)
}

impl Producer {
    async fn connect(plan: ProducerPlan) -> Result<Producer, BenchError> {
        let workload = &plan.workload;
        let mut addrs: Vec<&String> = plan.leaders.iter().collect();
        addrs.sort();
        addrs.dedup();
        let lane_of = plan
            .leaders
            .iter()
            .map(|l| addrs.iter().position(|a| *a == l).unwrap_or(0))
            .collect();
        let outcome = ProducerOutcome {
            producer_id: plan.producer_id,
            latency: LatencyRecorder::new(),
            series: TimeSeries::new(plan.start_ns),
            acked: SeqSet::default(),
            acked_msgs_total: 0,
            acked_bytes_total: 0,
            acked_msgs_window: 0,
            acked_bytes_window: 0,
            failed_msgs: 0,
            error_codes: BTreeMap::new(),
            retried_batches: 0,
            retried_error_codes: BTreeMap::new(),
        };
        let shared = Rc::new(Shared {
            recording: RefCell::new(outcome),
            window: (plan.warmup_end_ns, plan.end_ns),
            record_latency: workload.acks != 0,
            buffered_bytes: Cell::new(0),
            notify: Notify::default(),
            error: RefCell::new(None),
            slot_pool: RefCell::new(Vec::new()),
            retries: RefCell::new(Vec::new()),
            live: plan.live.clone(),
        });
        let mut lanes = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let (writer, reader) = connect(addr).await?;
            let in_flight = Rc::new(RefCell::new(VecDeque::new()));
            let reader = (workload.acks != 0).then(|| {
                glommio::spawn_local(read_responses(reader, in_flight.clone(), shared.clone()))
                    .detach()
            });
            lanes.push(Lane {
                writer,
                ready: VecDeque::new(),
                in_flight,
                reader,
            });
        }
        let pace = Pace::for_producer(workload, plan.producer_id, plan.start_ns, plan.end_ns);
        let batch_capacity =
            workload.batch_bytes as usize + workload.message_size.bounds().1 as usize + 64;
        let open = (0..plan.leaders.len())
            .map(|_| OpenBatch {
                builder: BatchBuilder::with_capacity(batch_capacity)
                    .with_compression(workload.compression),
                slots: Vec::new(),
                value_bytes: 0,
                opened_ns: 0,
            })
            .collect();
        let max_value = workload.message_size.bounds().1 as usize;
        Ok(Producer {
            pace,
            shared,
            lanes,
            lane_of,
            open,
            sticky_partition: plan.producer_id % plan.leaders.len() as u32,
            shape: MessageShape::new(workload, plan.producer_id),
            filler: filler(max_value, workload.seed),
            topic_name: TopicName(StrBytes::from_string(plan.topic.clone())),
            plan,
        })
    }

    async fn run(&mut self) -> Result<(), BenchError> {
        sleep_until(self.plan.start_ns).await;
        loop {
            self.check_lanes()?;
            let now_ns = monotonic_now_ns();
            let buffer_full = self.generate(now_ns);
            self.close_lingering(now_ns);
            self.send_ready().await?;
            if self.pace.is_done(now_ns) {
                break;
            }
            if now_ns >= self.plan.end_ns + ACK_DRAIN_TIMEOUT.as_nanos() as u64 {
                // A bound, so a producer that cannot get its messages out fails the run
                // instead of keeping it in its drain phase for ever.
                return Err(BenchError::Executor(format!(
                    "producer {}: messages still unsent {} s after the run (buffered {} B, {} requests in flight)",
                    self.plan.producer_id,
                    ACK_DRAIN_TIMEOUT.as_secs(),
                    self.shared.buffered_bytes.get(),
                    self.lanes.iter().map(|l| l.in_flight.borrow().len()).sum::<usize>(),
                )));
            }
            self.wait_for_work(now_ns, buffer_full).await;
        }
        self.drain().await
    }

    fn check_lanes(&self) -> Result<(), BenchError> {
        match self.shared.error.borrow_mut().take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Adds every message that is due to its partition's batch, until the buffer is full.
    /// Returns whether it stopped because the buffer was full.
    fn generate(&mut self, now_ns: u64) -> bool {
        let timestamp_ms = unix_now_ms();
        let buffer_bytes = self.plan.workload.buffer_bytes;
        loop {
            if self.shared.buffered_bytes.get() >= buffer_bytes {
                // Messages not generated now keep their intended time and are generated
                // (late, with the lateness counted) once acknowledgements free space.
                return true;
            }
            let Some(slot) = self.pace.next_due(now_ns) else {
                return false;
            };
            self.append(slot, timestamp_ms, now_ns);
        }
    }

    fn append(&mut self, slot: Slot, timestamp_ms: i64, now_ns: u64) {
        let workload = &self.plan.workload;
        let (value_len, key_index) = self.shape.next(slot.seq);
        let mut key_buf = [0u8; 20];
        let key = key_index.map(|k| decimal_key(k, &mut key_buf));
        let partitions = self.open.len() as u32;
        let partition = match key {
            Some(key) => partition_for_key(key, partitions),
            None => self.sticky_partition,
        } as usize;
        let record_bytes = self.open[partition].builder.record_bytes(key, value_len);
        let batch = &self.open[partition];
        if !batch.builder.is_empty()
            && batch.builder.len_bytes() + record_bytes > workload.batch_bytes as usize
        {
            self.close(partition);
        }
        let header = ValueHeader {
            run_tag: self.plan.run_tag,
            producer_id: self.plan.producer_id,
            seq: slot.seq,
            intended_ns: slot.intended_ns,
        }
        .encode();
        let batch = &mut self.open[partition];
        // The buffer counts the bytes the builder really grew by, header included, never
        // `record_bytes`: that is an estimate taken before `close` and with a timestamp delta
        // of 0, and a batch open across a stall (the process descheduled for 64 ms or more)
        // writes 2-byte deltas. Counting estimates made `close` subtract more than was added,
        // the counter wrapped below 0, and the producer waited for buffer space forever with
        // nothing in flight: the fixed-rate run against Kafka that hung in its drain phase.
        let len_before = if batch.builder.is_empty() {
            batch.opened_ns = now_ns;
            if batch.slots.capacity() == 0 {
                batch.slots = self.shared.slot_pool.borrow_mut().pop().unwrap_or_default();
            }
            0
        } else {
            batch.builder.len_bytes()
        };
        batch.builder.append(
            timestamp_ms,
            key,
            &header,
            &self.filler[..value_len - VALUE_HEADER_BYTES],
        );
        batch.slots.push(slot);
        batch.value_bytes += value_len as u64;
        let grown = (batch.builder.len_bytes() - len_before) as u64;
        self.shared
            .buffered_bytes
            .set(self.shared.buffered_bytes.get() + grown);
    }

    /// Moves a partition's open batch to its lane's ready queue.
    fn close(&mut self, partition: usize) {
        let batch = &mut self.open[partition];
        if batch.builder.is_empty() {
            return;
        }
        let open_bytes = batch.builder.len_bytes() as u64;
        let records = batch.builder.finish();
        // The buffer counted the open batch's size; count the finished bytes from now on.
        let buffered = self.shared.buffered_bytes.get();
        debug_assert!(buffered >= open_bytes, "the buffer counts every open batch");
        let buffered = buffered.saturating_sub(open_bytes) + records.len() as u64;
        self.shared.buffered_bytes.set(buffered);
        let sent = SentBatch {
            partition: partition as i32,
            records,
            slots: std::mem::take(&mut batch.slots),
            value_bytes: std::mem::take(&mut batch.value_bytes),
            retries: 0,
            first_failed_ns: 0,
        };
        self.lanes[self.lane_of[partition]].ready.push_back(sent);
        if partition as u32 == self.sticky_partition {
            // KIP-480: a new batch goes to the next partition, spreading load evenly.
            self.sticky_partition = (self.sticky_partition + 1) % self.open.len() as u32;
        }
    }

    /// Closes the batches whose linger is over, but only on lanes with a request slot free.
    /// While a lane has `max_in_flight` requests unanswered its batches stay open and keep
    /// growing up to `batch_bytes`, as in Kafka's accumulator, where a batch is drained when
    /// the sender can send it. Closing them on time regardless queued one tiny batch per
    /// partition per linger: a keyed fixed-rate load then became many small requests, each
    /// waiting on every partition's flush, the client fell further behind the broker the
    /// longer it ran (p50 5 ms to 3 s at 20,000 msg/s over 16 partitions), and the time was
    /// spent in this queue, outside every broker stage.
    fn close_lingering(&mut self, now_ns: u64) {
        let linger_ns = self.plan.workload.linger_ms * 1_000_000;
        for partition in 0..self.open.len() {
            let batch = &self.open[partition];
            if !batch.builder.is_empty()
                && now_ns >= batch.opened_ns + linger_ns
                && self.lane_has_room(self.lane_of[partition])
            {
                self.close(partition);
            }
        }
    }

    /// Whether the lane may send another request now.
    fn lane_has_room(&self, lane_index: usize) -> bool {
        self.lanes[lane_index].in_flight.borrow().len() < self.plan.workload.max_in_flight as usize
    }

    /// Sends ready batches on every lane with room in flight: one request per lane at a
    /// time, at most one batch per partition per request (as Kafka's sender does).
    async fn send_ready(&mut self) -> Result<(), BenchError> {
        self.requeue_due_retries(monotonic_now_ns());
        for lane_index in 0..self.lanes.len() {
            while !self.lanes[lane_index].ready.is_empty() && self.lane_has_room(lane_index) {
                self.send_one(lane_index).await?;
            }
        }
        Ok(())
    }

    /// Puts batches whose backoff is over at the front of their lane's queue, so each goes
    /// before the partition's later batches that were not sent yet.
    fn requeue_due_retries(&mut self, now_ns: u64) {
        let mut retries = self.shared.retries.borrow_mut();
        if retries.is_empty() {
            return;
        }
        // Oldest last, so pushing each to the front leaves the oldest first.
        retries.sort_by_key(|r| std::cmp::Reverse(r.batch.slots.first().map(|s| s.seq)));
        let mut waiting = Vec::new();
        for retry in retries.drain(..) {
            if retry.retry_at_ns <= now_ns {
                let lane = self.lane_of[retry.batch.partition as usize];
                self.lanes[lane].ready.push_front(retry.batch);
            } else {
                waiting.push(retry);
            }
        }
        *retries = waiting;
    }

    fn next_retry_ns(&self) -> Option<u64> {
        self.shared
            .retries
            .borrow()
            .iter()
            .map(|r| r.retry_at_ns)
            .min()
    }

    async fn send_one(&mut self, lane_index: usize) -> Result<(), BenchError> {
        let lane = &mut self.lanes[lane_index];
        // The oldest ready batch of each partition: a partition's later batches wait for the
        // next request (keeping its order), and do not stop other partitions' batches from
        // joining this one.
        let mut batches: Vec<SentBatch> = Vec::new();
        let mut index = 0;
        while index < lane.ready.len() {
            let partition = lane.ready[index].partition;
            if batches.iter().any(|b| b.partition == partition) {
                index += 1;
            } else {
                batches.extend(lane.ready.remove(index));
            }
        }
        let request = ProduceRequest::default()
            .with_acks(self.plan.workload.acks)
            .with_timeout_ms(PRODUCE_TIMEOUT_MS)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(self.topic_name.clone())
                .with_partition_data(
                    batches
                        .iter()
                        .map(|b| {
                            PartitionProduceData::default()
                                .with_index(b.partition)
                                .with_records(Some(b.records.clone()))
                        })
                        .collect(),
                )]);
        // A retried batch was counted as sent the first time.
        let msgs: u64 = batches
            .iter()
            .filter(|b| b.retries == 0)
            .map(|b| b.slots.len() as u64)
            .sum();
        if self.plan.workload.acks == 0 {
            lane.writer
                .send(ApiKey::Produce, PRODUCE_VERSION, &request)
                .await?;
            // No response will come: written is as acknowledged as acks=0 gets.
            let now_ns = monotonic_now_ns();
            for batch in batches {
                self.shared.acknowledge(batch, now_ns);
            }
        } else {
            // Registered before the write completes: the response can arrive while the
            // write future is still being polled to completion.
            let correlation_id = lane.writer.next_correlation_id();
            lane.in_flight.borrow_mut().push_back(InFlight {
                correlation_id,
                batches,
            });
            lane.writer
                .send(ApiKey::Produce, PRODUCE_VERSION, &request)
                .await?;
        }
        LiveCounters::add(&self.plan.live.sent_msgs, msgs);
        Ok(())
    }

    /// Sleeps until the next intended send time or linger deadline, or until an
    /// acknowledgement frees buffer or in-flight room.
    async fn wait_for_work(&self, now_ns: u64, buffer_full: bool) {
        let linger_ns = self.plan.workload.linger_ms * 1_000_000;
        // A batch on a lane with no request slot free waits for an acknowledgement, which
        // notifies, not for its linger (that would spin).
        let next_linger = self
            .open
            .iter()
            .enumerate()
            .filter(|(p, b)| !b.builder.is_empty() && self.lane_has_room(self.lane_of[*p]))
            .map(|(_, b)| b.opened_ns + linger_ns)
            .min();
        let next_message = if buffer_full {
            None
        } else {
            match &self.pace {
                Pace::Max { .. } => Some(now_ns),
                Pace::Fixed(_) => self.pace.next_intended_ns(),
            }
        };
        let wake_ns = [next_linger, next_message, self.next_retry_ns()]
            .into_iter()
            .flatten()
            .min();
        match wake_ns {
            Some(wake_ns) if wake_ns <= now_ns => yield_now().await,
            Some(wake_ns) => {
                let sleep_ns = (wake_ns - now_ns).max(SLEEP_NS_MIN);
                let notified = self.shared.notify.wait();
                let timer = glommio::timer::sleep(Duration::from_nanos(sleep_ns));
                futures::pin_mut!(notified, timer);
                match select(notified, timer).await {
                    Either::Left(_) | Either::Right(_) => {}
                }
            }
            // Woken by an acknowledgement; the timer only bounds the wait, so the loop's
            // checks run even if none comes.
            None => {
                let notified = self.shared.notify.wait();
                let timer = glommio::timer::sleep(IDLE_WAIT_MAX);
                futures::pin_mut!(notified, timer);
                let _ = select(notified, timer).await;
            }
        }
    }

    /// After the last message: send everything left and wait for its acknowledgements.
    async fn drain(&mut self) -> Result<(), BenchError> {
        for partition in 0..self.open.len() {
            self.close(partition);
        }
        let deadline_ns = monotonic_now_ns() + ACK_DRAIN_TIMEOUT.as_nanos() as u64;
        loop {
            self.check_lanes()?;
            self.send_ready().await?;
            let idle = self.shared.retries.borrow().is_empty()
                && self
                    .lanes
                    .iter()
                    .all(|l| l.ready.is_empty() && l.in_flight.borrow().is_empty());
            if idle {
                return Ok(());
            }
            let now_ns = monotonic_now_ns();
            if now_ns >= deadline_ns {
                return Err(BenchError::Executor(format!(
                    "producer {}: acknowledgements still missing {} s after the run",
                    self.plan.producer_id,
                    ACK_DRAIN_TIMEOUT.as_secs()
                )));
            }
            let notified = self.shared.notify.wait();
            let timer = glommio::timer::sleep(Duration::from_millis(100));
            futures::pin_mut!(notified, timer);
            let _ = select(notified, timer).await;
        }
    }
}

/// Reads Produce responses of one connection in order and books each batch.
async fn read_responses(
    mut reader: ResponseReader,
    in_flight: Rc<RefCell<VecDeque<InFlight>>>,
    shared: Rc<Shared>,
) {
    loop {
        let outcome = read_one_response(&mut reader, &in_flight, &shared).await;
        if let Err(error) = outcome {
            // Fail everything still in flight so the producer's accounting stays exact, then
            // hand the error to the producer, which stops the run.
            for entry in in_flight.borrow_mut().drain(..) {
                for batch in entry.batches {
                    shared.fail(batch, MISSING_PARTITION_RESPONSE);
                }
            }
            LiveCounters::add(&shared.live.errors, 1);
            *shared.error.borrow_mut() = Some(error);
            shared.notify.notify();
            return;
        }
        shared.notify.notify();
    }
}

async fn read_one_response(
    reader: &mut ResponseReader,
    in_flight: &RefCell<VecDeque<InFlight>>,
    shared: &Shared,
) -> Result<(), BenchError> {
    let frame = reader.next_frame().await?;
    let now_ns = monotonic_now_ns();
    let entry = in_flight.borrow_mut().pop_front().ok_or_else(|| {
        BenchError::Executor("a Produce response with no request in flight".into())
    })?;
    let response: ProduceResponse = decode_response(
        frame,
        ApiKey::Produce,
        PRODUCE_VERSION,
        entry.correlation_id,
    )?;
    let mut codes: Vec<(i32, i16)> = Vec::new();
    for topic in &response.responses {
        codes.extend(
            topic
                .partition_responses
                .iter()
                .map(|p| (p.index, p.error_code)),
        );
    }
    for batch in entry.batches {
        match codes.iter().find(|(p, _)| *p == batch.partition) {
            Some((_, 0)) => shared.acknowledge(batch, now_ns),
            Some((_, code)) => shared.failed_try(batch, *code, now_ns),
            None => shared.fail(batch, MISSING_PARTITION_RESPONSE),
        }
    }
    Ok(())
}

async fn sleep_until(deadline_ns: u64) {
    let now_ns = monotonic_now_ns();
    if deadline_ns > now_ns {
        glommio::timer::sleep(Duration::from_nanos(deadline_ns - now_ns)).await;
    }
}

/// Lets the executor run the response readers before this task continues: a task that
/// wakes itself goes to the back of its queue.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}
