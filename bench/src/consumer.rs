//! One consumer: assign-style (no group), a fixed set of partitions on one leader, one Fetch
//! v12 in flight at a time as Kafka's consumers do per broker. Every record is checked off
//! in the delivery log and its end-to-end latency taken from the intended send time the
//! producer embedded in the value.
//!
//! Hot path: `on_record` runs once per message, on slices borrowed from the response frame;
//! nothing is allocated per message.

use std::sync::Arc;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::codec::decode_response;
use crate::client::connection::connect;
use crate::client::retry;
use crate::clock::monotonic_now_ns;
use crate::error::BenchError;
use crate::payload::ValueHeader;
use crate::protocol::record_reader::for_each_record;
use crate::stats::delivery::{ConsumedLog, PerProducer};
use crate::stats::latency::LatencyRecorder;
use crate::stats::live::LiveCounters;
use crate::stats::series::TimeSeries;

pub const FETCH_VERSION: i16 = 12;
/// Short enough that a consumer notices the stop flag promptly, long enough not to spin.
pub const FETCH_MAX_WAIT_MS: i32 = 100;
/// Kafka's `fetch.max.bytes` default.
pub const FETCH_MAX_BYTES: i32 = 50 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct ConsumerPlan {
    pub consumer_id: u32,
    pub run_tag: u32,
    pub producers: u32,
    pub topic: String,
    pub leader: String,
    /// (partition, offset to start from)
    pub partitions: Vec<(i32, i64)>,
    pub partitions_total: u32,
    /// Kafka's `max.partition.fetch.bytes`.
    pub partition_max_bytes: i32,
    pub start_ns: u64,
    pub warmup_end_ns: u64,
    pub end_ns: u64,
    pub live: Arc<LiveCounters>,
}

#[derive(Debug)]
pub struct ConsumerOutcome {
    pub latency: LatencyRecorder,
    pub series: TimeSeries,
    pub consumed: ConsumedLog,
    pub consumed_msgs_total: u64,
    pub consumed_bytes_total: u64,
    pub consumed_msgs_window: u64,
    pub consumed_bytes_window: u64,
    pub fetch_errors: u64,
}

/// Books every record a consumer receives: the delivery log, the order check, throughput and
/// end-to-end latency. Shared with the rdkafka client so both count the same way.
pub(crate) struct Tracker {
    outcome: ConsumerOutcome,
    run_tag: u32,
    window: (u64, u64),
    /// Last sequence seen per (producer, partition), for the order check.
    last_seq: Vec<Option<u64>>,
    partitions_total: usize,
}

/// Totals at some moment, to book what arrived since (`Tracker::book_since`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TrackerMark {
    msgs: u64,
    bytes: u64,
}

impl Tracker {
    pub(crate) fn new(
        run_tag: u32,
        producers: u32,
        partitions_total: u32,
        start_ns: u64,
        window: (u64, u64),
    ) -> Tracker {
        Tracker {
            outcome: ConsumerOutcome {
                latency: LatencyRecorder::new(),
                series: TimeSeries::new(start_ns),
                consumed: ConsumedLog {
                    seqs: PerProducer::with_producers(producers as usize),
                    ..ConsumedLog::default()
                },
                consumed_msgs_total: 0,
                consumed_bytes_total: 0,
                consumed_msgs_window: 0,
                consumed_bytes_window: 0,
                fetch_errors: 0,
            },
            run_tag,
            window,
            last_seq: vec![None; producers as usize * partitions_total as usize],
            partitions_total: partitions_total as usize,
        }
    }

    /// One record of `partition` (which must be below the topic's partition count).
    pub(crate) fn on_record(&mut self, partition: usize, value: &[u8], now_ns: u64) {
        debug_assert!(
            partition < self.partitions_total,
            "a partition of the topic"
        );
        let o = &mut self.outcome;
        let header = match ValueHeader::decode(value) {
            Some(h)
                if h.run_tag == self.run_tag
                    && (h.producer_id as usize) < o.consumed.seqs.sets.len() =>
            {
                h
            }
            _ => {
                o.consumed.foreign += 1;
                return;
            }
        };
        let producer = header.producer_id as usize;
        if !o.consumed.seqs.sets[producer].insert(header.seq) {
            o.consumed.duplicates += 1;
        }
        let last = &mut self.last_seq[producer * self.partitions_total + partition];
        if last.is_some_and(|l| header.seq <= l) {
            o.consumed.out_of_order += 1;
        }
        *last = Some(header.seq);
        let bytes = value.len() as u64;
        o.consumed_msgs_total += 1;
        o.consumed_bytes_total += bytes;
        let (start, end) = self.window;
        if now_ns >= start && now_ns < end {
            o.consumed_msgs_window += 1;
            o.consumed_bytes_window += bytes;
        }
        if header.intended_ns >= start && header.intended_ns < end {
            let latency_ns = now_ns.saturating_sub(header.intended_ns);
            o.latency.record_ns(latency_ns);
            o.series
                .end_to_end_latency(header.intended_ns)
                .record_ns(latency_ns);
        }
    }

    pub(crate) fn fetch_error(&mut self) {
        self.outcome.fetch_errors += 1;
    }

    pub(crate) fn mark(&self) -> TrackerMark {
        TrackerMark {
            msgs: self.outcome.consumed_msgs_total,
            bytes: self.outcome.consumed_bytes_total,
        }
    }

    /// Books what arrived since `mark` into the time series and the live counters: once per
    /// fetch, not per record.
    pub(crate) fn book_since(&mut self, mark: TrackerMark, now_ns: u64, live: &LiveCounters) {
        let msgs = self.outcome.consumed_msgs_total - mark.msgs;
        let bytes = self.outcome.consumed_bytes_total - mark.bytes;
        self.outcome.series.record_consumed(now_ns, msgs, bytes);
        LiveCounters::add(&live.consumed_msgs, msgs);
        LiveCounters::add(&live.consumed_bytes, bytes);
    }

    pub(crate) fn into_outcome(self) -> ConsumerOutcome {
        self.outcome
    }
}

pub async fn run_consumer(plan: ConsumerPlan) -> Result<ConsumerOutcome, BenchError> {
    let (mut writer, mut reader) = connect(&plan.leader).await?;
    let mut offsets: Vec<(i32, i64)> = plan.partitions.clone();
    let mut tracker = Tracker::new(
        plan.run_tag,
        plan.producers,
        plan.partitions_total,
        plan.start_ns,
        (plan.warmup_end_ns, plan.end_ns),
    );
    let topic = TopicName(StrBytes::from_string(plan.topic.clone()));
    let mut failed_tries = 0;
    while !plan.live.consumers_should_stop() {
        let request = fetch_request(&topic, &offsets, plan.partition_max_bytes);
        let correlation_id = writer.send(ApiKey::Fetch, FETCH_VERSION, &request).await?;
        let frame = reader.next_frame().await?;
        let response: FetchResponse =
            decode_response(frame, ApiKey::Fetch, FETCH_VERSION, correlation_id)?;
        let now_ns = monotonic_now_ns();
        let mark = tracker.mark();
        let mut retriable = response.error_code != 0;
        if response.error_code != 0 && !retry::is_retriable(response.error_code) {
            return Err(BenchError::Broker {
                code: response.error_code,
                what: "Fetch".into(),
            });
        }
        for topic_response in &response.responses {
            for data in &topic_response.partitions {
                let Some(slot) = offsets.iter_mut().find(|(p, _)| *p == data.partition_index)
                else {
                    continue;
                };
                if data.error_code != 0 {
                    tracker.fetch_error();
                    if !retry::is_retriable(data.error_code) {
                        // OFFSET_OUT_OF_RANGE and the like: fetching again would spin on the
                        // same answer while the run waits for these messages.
                        return Err(BenchError::Broker {
                            code: data.error_code,
                            what: format!("Fetch {}/{}", plan.topic, data.partition_index),
                        });
                    }
                    retriable = true;
                    continue;
                }
                let Some(records) = &data.records else {
                    continue;
                };
                let partition = data.partition_index as usize;
                let next = for_each_record(records, |offset, value| {
                    // A fetch may start inside a batch: skip what was already consumed.
                    if offset >= slot.1 {
                        tracker.on_record(partition, value, now_ns);
                    }
                })?;
                if let Some(next) = next {
                    slot.1 = slot.1.max(next);
                }
            }
        }
        tracker.book_since(mark, now_ns, &plan.live);
        if retriable {
            // Kafka answers an unready partition at once: back off instead of spinning.
            failed_tries += 1;
            glommio::timer::sleep(retry::backoff(failed_tries)).await;
        } else {
            failed_tries = 0;
        }
    }
    Ok(tracker.into_outcome())
}

fn fetch_request(
    topic: &TopicName,
    offsets: &[(i32, i64)],
    partition_max_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(FETCH_MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1) // full fetch every time: no incremental fetch sessions
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic.clone())
            .with_partitions(
                offsets
                    .iter()
                    .map(|&(partition, offset)| {
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_current_leader_epoch(-1)
                            .with_fetch_offset(offset)
                            .with_last_fetched_epoch(-1)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(partition_max_bytes)
                    })
                    .collect(),
            )])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(run_tag: u32, producer_id: u32, seq: u64, intended_ns: u64) -> Vec<u8> {
        let mut value = ValueHeader {
            run_tag,
            producer_id,
            seq,
            intended_ns,
        }
        .encode()
        .to_vec();
        value.extend_from_slice(&[0u8; 76]);
        value
    }

    /// Window (1000, 2000) ns; two producers, two partitions.
    fn tracker() -> Tracker {
        Tracker::new(7, 2, 2, 0, (1_000, 2_000))
    }

    #[test]
    fn records_are_counted_by_receipt_time_and_latency_by_intended_time() {
        let mut t = tracker();
        let live = LiveCounters::default();
        let mark = t.mark();
        t.on_record(0, &value(7, 0, 0, 500), 1_200); // intended in warm-up, read in window
        t.on_record(0, &value(7, 0, 1, 1_100), 1_300); // both in the window
        t.on_record(1, &value(7, 1, 0, 1_900), 2_100); // intended in window, read after
        t.book_since(mark, 2_100, &live);
        let o = t.into_outcome();
        assert_eq!((o.consumed_msgs_total, o.consumed_bytes_total), (3, 300));
        assert_eq!((o.consumed_msgs_window, o.consumed_bytes_window), (2, 200));
        assert_eq!(o.latency.count(), 2);
        assert_eq!(o.consumed.seqs.len(), 3);
        let snapshot = live.snapshot();
        assert_eq!((snapshot.consumed_msgs, snapshot.consumed_bytes), (3, 300));
    }

    #[test]
    fn foreign_duplicate_and_out_of_order_records_are_told_apart() {
        let mut t = tracker();
        t.on_record(0, &value(8, 0, 0, 1_100), 1_200); // another run's tag
        t.on_record(0, &value(7, 5, 0, 1_100), 1_200); // a producer this run does not have
        t.on_record(0, b"short", 1_200); // not a value header at all
        t.on_record(0, &value(7, 0, 3, 1_100), 1_200);
        t.on_record(0, &value(7, 0, 3, 1_100), 1_200); // duplicate, and not after 3
        t.on_record(0, &value(7, 0, 2, 1_100), 1_200); // earlier seq, same partition
        t.on_record(1, &value(7, 0, 1, 1_100), 1_200); // other partition: its own order
        t.fetch_error();
        let o = t.into_outcome();
        assert_eq!(o.consumed.foreign, 3);
        assert_eq!(o.consumed.duplicates, 1);
        assert_eq!(o.consumed.out_of_order, 2);
        assert_eq!(o.consumed_msgs_total, 4, "foreign records are not counted");
        assert_eq!(o.fetch_errors, 1);
    }
}
