//! Setup before the load starts, over a plain blocking socket: create the topic, find each
//! partition's leader, read the log end offsets consumers start from. Control plane: clarity
//! over speed, one request at a time.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    create_topics_request::CreatableTopic, list_offsets_request::ListOffsetsPartition,
    list_offsets_request::ListOffsetsTopic, metadata_request::MetadataRequestTopic, ApiKey,
    BrokerId, CreateTopicsRequest, CreateTopicsResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::codec::{decode_response, encode_request, frame_len};
use super::retry;
use crate::error::BenchError;

const METADATA_VERSION: i16 = 9;
const CREATE_TOPICS_VERSION: i16 = 5;
const LIST_OFFSETS_VERSION: i16 = 5;
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Kafka's `ListOffsets` timestamp meaning "the log end offset".
const LATEST_TIMESTAMP: i64 = -1;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for a new topic's partitions to have leaders.
const LEADERS_WAIT: Duration = Duration::from_secs(15);

/// One partition's answer to ListOffsets: its offset, or the broker's error code.
type PartitionOffset = Result<i64, i16>;

pub struct AdminClient {
    stream: TcpStream,
    addr: String,
    next_correlation_id: i32,
    buf: BytesMut,
}

/// Where each partition of a topic lives.
#[derive(Clone, Debug)]
pub struct TopicLayout {
    pub topic: String,
    /// Index = partition; value = leader's `host:port`.
    pub leaders: Vec<String>,
}

impl AdminClient {
    pub fn connect(addr: &str) -> Result<AdminClient, BenchError> {
        let stream = TcpStream::connect(addr).map_err(|e| BenchError::io(addr, e))?;
        stream
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .map_err(|e| BenchError::io(addr, e))?;
        Ok(AdminClient {
            stream,
            addr: addr.to_string(),
            next_correlation_id: 1,
            buf: BytesMut::new(),
        })
    }

    fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, BenchError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        encode_request(&mut self.buf, key, version, correlation_id, request)?;
        let io = |e| BenchError::io(self.addr.clone(), e);
        self.stream.write_all(&self.buf).map_err(io)?;
        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix).map_err(io)?;
        let mut frame = vec![0u8; frame_len(prefix)?];
        self.stream.read_exact(&mut frame).map_err(io)?;
        decode_response(Bytes::from(frame), key, version, correlation_id)
    }

    /// Creates the topic; an existing topic is fine if it has enough partitions.
    pub fn create_topic(
        &mut self,
        topic: &str,
        partitions: u32,
        replication_factor: i16,
    ) -> Result<(), BenchError> {
        let request = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_num_partitions(partitions as i32)
                .with_replication_factor(replication_factor)])
            .with_timeout_ms(30_000);
        let response: CreateTopicsResponse =
            self.call(ApiKey::CreateTopics, CREATE_TOPICS_VERSION, &request)?;
        for result in response.topics {
            match result.error_code {
                0 | TOPIC_ALREADY_EXISTS => {}
                code => {
                    return Err(BenchError::Topic {
                        topic: topic.to_string(),
                        message: format!(
                            "CreateTopics failed with error {code}: {}",
                            result.error_message.as_deref().unwrap_or("")
                        ),
                    })
                }
            }
        }
        Ok(())
    }

    /// Every partition's leader, waiting (briefly) until all have one.
    pub fn topic_layout(&mut self, topic: &str) -> Result<TopicLayout, BenchError> {
        let deadline = Instant::now() + LEADERS_WAIT;
        loop {
            match self.try_topic_layout(topic)? {
                Some(layout) => return Ok(layout),
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                None => {
                    return Err(BenchError::Topic {
                        topic: topic.to_string(),
                        message: "partitions still have no leader".to_string(),
                    })
                }
            }
        }
    }

    fn try_topic_layout(&mut self, topic: &str) -> Result<Option<TopicLayout>, BenchError> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(topic.to_string())),
            ))]))
            .with_allow_auto_topic_creation(false);
        let response: MetadataResponse = self.call(ApiKey::Metadata, METADATA_VERSION, &request)?;
        let brokers: BTreeMap<i32, String> = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        let Some(meta) = response.topics.into_iter().next() else {
            return Ok(None);
        };
        if meta.error_code != 0 || meta.partitions.is_empty() {
            return Ok(None);
        }
        let mut leaders = vec![String::new(); meta.partitions.len()];
        for p in &meta.partitions {
            let index = usize::try_from(p.partition_index)
                .ok()
                .filter(|&i| i < leaders.len());
            match (index, brokers.get(&p.leader_id.0)) {
                (Some(i), Some(addr)) if p.error_code == 0 => leaders[i] = addr.clone(),
                _ => return Ok(None),
            }
        }
        Ok(Some(TopicLayout {
            topic: topic.to_string(),
            leaders,
        }))
    }

    /// The log end offset of each of `partitions` (all led by the broker this client is
    /// connected to). Retriable errors (a new topic's leader not ready yet) are retried with
    /// backoff until `LEADERS_WAIT`; any other error fails.
    pub fn latest_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, i64)>, BenchError> {
        let deadline = Instant::now() + LEADERS_WAIT;
        let mut pending: Vec<i32> = partitions.to_vec();
        let mut out = Vec::with_capacity(partitions.len());
        let mut attempt = 0;
        loop {
            let mut retry = Vec::new();
            for (partition, result) in self.try_latest_offsets(topic, &pending)? {
                match result {
                    Ok(offset) => out.push((partition, offset)),
                    Err(code) if retry::is_retriable(code) && Instant::now() < deadline => {
                        retry.push(partition)
                    }
                    Err(code) => {
                        return Err(BenchError::Broker {
                            code,
                            what: format!("ListOffsets {topic}/{partition}"),
                        })
                    }
                }
            }
            if retry.is_empty() {
                return Ok(out);
            }
            attempt += 1;
            std::thread::sleep(retry::backoff(attempt));
            pending = retry;
        }
    }

    /// One ListOffsets request: each partition's log end offset or error code.
    fn try_latest_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, PartitionOffset)>, BenchError> {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(LATEST_TIMESTAMP)
                        })
                        .collect(),
                )]);
        let response: ListOffsetsResponse =
            self.call(ApiKey::ListOffsets, LIST_OFFSETS_VERSION, &request)?;
        let mut out = Vec::with_capacity(partitions.len());
        for topic_response in response.topics {
            for p in topic_response.partitions {
                let result = match p.error_code {
                    0 => Ok(p.offset),
                    code => Err(code),
                };
                out.push((p.partition_index, result));
            }
        }
        // A partition the broker left out of its answer is asked again, as if retriable.
        for &p in partitions {
            if !out.iter().any(|(q, _)| *q == p) {
                out.push((p, Err(retry::UNKNOWN_TOPIC_OR_PARTITION)));
            }
        }
        Ok(out)
    }
}

/// Log end offsets of every partition of the topic, asking each leader.
pub fn start_offsets(layout: &TopicLayout) -> Result<Vec<i64>, BenchError> {
    let mut by_leader: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (partition, leader) in layout.leaders.iter().enumerate() {
        by_leader.entry(leader).or_default().push(partition as i32);
    }
    let mut offsets = vec![0i64; layout.leaders.len()];
    for (leader, partitions) in by_leader {
        let mut client = AdminClient::connect(leader)?;
        for (partition, offset) in client.latest_offsets(&layout.topic, &partitions)? {
            if let Some(slot) = usize::try_from(partition)
                .ok()
                .and_then(|p| offsets.get_mut(p))
            {
                *slot = offset;
            }
        }
    }
    Ok(offsets)
}
