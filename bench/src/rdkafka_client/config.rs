//! The workload in librdkafka's terms: one property list per producer and per consumer.
//! Control plane: plain strings, built once per client.

use rdkafka::ClientConfig;

use crate::consumer::{FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS};
use crate::workload::{KeyStrategy, Workload};

/// librdkafka's largest `message.max.bytes`.
const MESSAGE_BYTES_MAX: u64 = 1_000_000_000;
/// librdkafka's default `message.max.bytes`, kept unless the workload needs more.
const MESSAGE_BYTES_DEFAULT: u64 = 1_000_000;
/// Room for the request framing around the largest batch or record (librdkafka counts it
/// in `message.max.bytes`).
const FRAMING_BYTES: u64 = 1024;
/// librdkafka's largest `batch.num.messages`: high enough that `batch.size` alone bounds a
/// batch, as in Kafka's Java producer (which has no message count limit).
const BATCH_MESSAGES_MAX: u32 = 1_000_000;
/// librdkafka's default `receive.message.max.bytes`; must exceed `fetch.max.bytes` by 512.
const RECEIVE_BYTES_DEFAULT: i64 = 100_000_000;
/// librdkafka's largest `fetch.max.bytes`.
const FETCH_BYTES_MAX: i64 = 2_147_483_135;
/// A broker that stops answering fails the run in the time the native client allows (its
/// 30 s request timeout and ack drain), not librdkafka's default of five minutes.
const MESSAGE_TIMEOUT_MS: u32 = 30_000;

pub(super) type Properties = Vec<(&'static str, String)>;

/// Producer `producer_id`: acks, codec, batching, in-flight limit and buffer as the workload
/// says; no idempotence, as the native producer sends no producer id (so both make the same
/// requests); Java's murmur2 partitioner for keyed messages, so keys land where the native
/// and Java clients put them.
pub(super) fn producer_properties(
    bootstrap: &str,
    workload: &Workload,
    producer_id: u32,
) -> Properties {
    // librdkafka caps `batch.size` and each record by `message.max.bytes`; raise it rather
    // than let the workload's batches or largest record be cut or refused.
    let record_bytes_max =
        u64::from(workload.message_size.bounds().1).max(u64::from(workload.batch_bytes));
    let message_max_bytes =
        (record_bytes_max + FRAMING_BYTES).clamp(MESSAGE_BYTES_DEFAULT, MESSAGE_BYTES_MAX);
    let mut properties: Properties = vec![
        ("bootstrap.servers", bootstrap.to_string()),
        ("client.id", format!("weir-bench-producer-{producer_id}")),
        ("acks", workload.acks.to_string()),
        ("compression.type", workload.compression.to_string()),
        ("batch.size", workload.batch_bytes.to_string()),
        ("batch.num.messages", BATCH_MESSAGES_MAX.to_string()),
        ("linger.ms", workload.linger_ms.to_string()),
        (
            "max.in.flight.requests.per.connection",
            workload.max_in_flight.to_string(),
        ),
        // Bytes bound the queue, as Kafka's `buffer.memory` does; 0 lifts the message count.
        (
            "queue.buffering.max.kbytes",
            workload.buffer_bytes.div_ceil(1024).max(1).to_string(),
        ),
        ("queue.buffering.max.messages", "0".to_string()),
        ("message.max.bytes", message_max_bytes.to_string()),
        ("message.timeout.ms", MESSAGE_TIMEOUT_MS.to_string()),
        ("enable.idempotence", "false".to_string()),
    ];
    if workload.keys != KeyStrategy::None {
        properties.push(("partitioner", "murmur2_random".to_string()));
    }
    properties
}

/// Consumer `consumer_id`: assign-style with a throwaway group id (librdkafka wants one even
/// without a group) and nothing committed; fetch sizes and wait as the native consumer's;
/// read_uncommitted as the native consumer reads (librdkafka defaults to read_committed).
pub(super) fn consumer_properties(
    bootstrap: &str,
    workload: &Workload,
    run_tag: u32,
    consumer_id: u32,
) -> Properties {
    let fetch_max_bytes = i64::from(FETCH_MAX_BYTES)
        .max(i64::from(workload.fetch_partition_max_bytes))
        .min(FETCH_BYTES_MAX);
    vec![
        ("bootstrap.servers", bootstrap.to_string()),
        ("client.id", format!("weir-bench-consumer-{consumer_id}")),
        ("group.id", format!("weir-bench-{run_tag:08x}-rdkafka")),
        ("enable.auto.commit", "false".to_string()),
        ("enable.auto.offset.store", "false".to_string()),
        ("isolation.level", "read_uncommitted".to_string()),
        (
            "max.partition.fetch.bytes",
            workload.fetch_partition_max_bytes.to_string(),
        ),
        ("fetch.max.bytes", fetch_max_bytes.to_string()),
        (
            "receive.message.max.bytes",
            RECEIVE_BYTES_DEFAULT.max(fetch_max_bytes + 512).to_string(),
        ),
        ("fetch.wait.max.ms", FETCH_MAX_WAIT_MS.to_string()),
    ]
}

pub(super) fn client_config(properties: &Properties) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in properties {
        config.set(*key, value);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Compression, MessageSize};

    fn value<'a>(properties: &'a Properties, key: &str) -> Option<&'a str> {
        properties
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn producer_properties_follow_the_workload() {
        let workload = Workload {
            acks: 1,
            compression: Compression::Lz4,
            batch_bytes: 16 * 1024,
            linger_ms: 7,
            max_in_flight: 3,
            buffer_bytes: 1024 * 1024 + 1,
            ..Workload::default()
        };
        let p = producer_properties("127.0.0.1:1", &workload, 2);
        assert_eq!(value(&p, "bootstrap.servers"), Some("127.0.0.1:1"));
        assert_eq!(value(&p, "acks"), Some("1"));
        assert_eq!(value(&p, "compression.type"), Some("lz4"));
        assert_eq!(value(&p, "batch.size"), Some("16384"));
        assert_eq!(value(&p, "linger.ms"), Some("7"));
        assert_eq!(
            value(&p, "max.in.flight.requests.per.connection"),
            Some("3")
        );
        assert_eq!(value(&p, "queue.buffering.max.kbytes"), Some("1025"));
        assert_eq!(value(&p, "enable.idempotence"), Some("false"));
        assert_eq!(value(&p, "message.max.bytes"), Some("1000000"));
        assert_eq!(
            value(&p, "partitioner"),
            None,
            "no keys: librdkafka's default"
        );
    }

    #[test]
    fn keys_use_javas_partitioner_and_big_messages_fit() {
        let workload = Workload {
            keys: KeyStrategy::Random(10),
            message_size: MessageSize::Fixed(4 * 1024 * 1024),
            ..Workload::default()
        };
        let p = producer_properties("b:1", &workload, 0);
        assert_eq!(value(&p, "partitioner"), Some("murmur2_random"));
        let max: u64 = value(&p, "message.max.bytes")
            .and_then(|v| v.parse().ok())
            .expect("a number");
        assert!(max > 4 * 1024 * 1024);
    }

    #[test]
    fn consumer_properties_never_commit_and_fetch_as_the_native_consumer() {
        let workload = Workload {
            fetch_partition_max_bytes: 64 * 1024 * 1024,
            ..Workload::default()
        };
        let c = consumer_properties("b:1", &workload, 0xab, 1);
        assert_eq!(value(&c, "group.id"), Some("weir-bench-000000ab-rdkafka"));
        assert_eq!(value(&c, "enable.auto.commit"), Some("false"));
        assert_eq!(value(&c, "max.partition.fetch.bytes"), Some("67108864"));
        // fetch.max.bytes grows to hold one partition's fetch, and the receive limit with it.
        assert_eq!(value(&c, "fetch.max.bytes"), Some("67108864"));
        assert_eq!(value(&c, "receive.message.max.bytes"), Some("100000000"));
        assert_eq!(value(&c, "fetch.wait.max.ms"), Some("100"));
    }

    /// librdkafka itself accepts every property (unknown names or bad values fail here).
    #[test]
    fn librdkafka_accepts_the_properties() {
        use rdkafka::config::RDKafkaLogLevel;
        use rdkafka::consumer::BaseConsumer;
        use rdkafka::producer::BaseProducer;
        let workload = Workload {
            keys: KeyStrategy::RoundRobin(4),
            compression: Compression::Zstd,
            ..Workload::default()
        };
        // No broker there: quiet librdkafka's log of the failed connection.
        let quiet = |properties: &Properties| {
            let mut config = client_config(properties);
            config.set_log_level(RDKafkaLogLevel::Emerg);
            config
        };
        let producer: Result<BaseProducer, _> =
            quiet(&producer_properties("127.0.0.1:1", &workload, 0)).create();
        assert!(producer.is_ok(), "{:?}", producer.err());
        let consumer: Result<BaseConsumer, _> =
            quiet(&consumer_properties("127.0.0.1:1", &workload, 1, 0)).create();
        assert!(consumer.is_ok(), "{:?}", consumer.err());
    }
}
