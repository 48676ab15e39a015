//! `weirctl`: administer any Kafka-compatible broker over the Kafka protocol (topics,
//! consumer groups, the cluster, a few records for debugging). Blocking and single-threaded:
//! a command is a handful of requests.

pub mod client;
pub mod groups;
pub mod output;
pub mod records;
pub mod topics;

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use self::client::{Client, ClientError};
use self::output::{Output, Table};

/// ListOffsets' special timestamps.
pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{what}: {error:?}{}", if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
    Kafka {
        what: String,
        error: ResponseError,
        detail: String,
    },
    #[error("{0}")]
    Failed(String),
}

pub fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// A Kafka error code as an error, with what was being done.
pub fn check(code: i16, what: &str) -> Result<(), AdminError> {
    if code == 0 {
        return Ok(());
    }
    match ResponseError::try_from_code(code) {
        Some(error) => Err(AdminError::Kafka {
            what: what.to_owned(),
            error,
            detail: String::new(),
        }),
        None => Err(AdminError::Failed(format!("{what}: error code {code}"))),
    }
}

/// ListOffsets for partitions of a topic at `timestamp` (or LATEST / EARLIEST): partition →
/// offset (-1 when no record reaches the time).
pub fn list_offsets(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>, AdminError> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let response: ListOffsetsResponse = client.call(ApiKey::ListOffsets, 7, &request)?;
    let mut out = BTreeMap::new();
    for p in response.topics.iter().flat_map(|t| &t.partitions) {
        check(
            p.error_code,
            &format!("offsets of {topic}-{}", p.partition_index),
        )?;
        out.insert(p.partition_index, p.offset);
    }
    Ok(out)
}

/// A connection to the group's coordinator (FindCoordinator), reusing `client` when that is
/// the broker it already talks to.
pub fn coordinator(
    client: Client,
    group: &str,
    timeout: std::time::Duration,
) -> Result<Client, AdminError> {
    let mut client = client;
    let response: FindCoordinatorResponse = client.call(
        ApiKey::FindCoordinator,
        3,
        &FindCoordinatorRequest::default().with_key(s(group)),
    )?;
    check(
        response.error_code,
        &format!("finding the coordinator of {group}"),
    )?;
    let addr = format!("{}:{}", response.host, response.port);
    if addr == client.addr() {
        return Ok(client);
    }
    Ok(Client::connect(&addr, timeout)?)
}

/// `weirctl cluster describe`.
pub fn describe_cluster(client: &mut Client) -> Result<Output, AdminError> {
    let response: DescribeClusterResponse = client.call(
        ApiKey::DescribeCluster,
        0,
        &DescribeClusterRequest::default(),
    )?;
    check(response.error_code, "describing the cluster")?;
    let mut table = Table::new(&["BROKER", "HOST", "PORT", "RACK"]);
    let mut brokers = Vec::new();
    for b in &response.brokers {
        let rack = b.rack.as_ref().map(|r| r.to_string());
        table.row(vec![
            b.broker_id.0.to_string(),
            b.host.to_string(),
            b.port.to_string(),
            rack.clone().unwrap_or_else(|| "-".into()),
        ]);
        brokers.push(
            json!({"id": b.broker_id.0, "host": b.host.to_string(), "port": b.port, "rack": rack}),
        );
    }
    Ok(Output {
        json: json!({"cluster_id": response.cluster_id.to_string(), "controller": response.controller_id.0, "brokers": brokers}),
        table: Some(table),
        message: Some(format!(
            "cluster {} (controller {})",
            response.cluster_id, response.controller_id.0
        )),
    })
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.mmm][Z]` (UTC, as kafka-consumer-groups' --to-datetime) or
/// plain epoch milliseconds.
pub fn parse_datetime(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let text = text.trim_end_matches('Z');
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, millis) = match time.split_once('.') {
        Some((hms, frac)) => (hms, format!("{frac:0<3}")[..3].parse::<i64>().ok()?),
        None => (time, 0),
    };
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (h, min, sec) = (
        t.next()?.ok()?,
        t.next()?.ok()?,
        t.next().unwrap_or(Ok(0)).ok()?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), then to milliseconds.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + min) * 60_000 + sec * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_as_utc() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00"), Some(0));
        assert_eq!(
            parse_datetime("2024-02-29T12:30:15.5Z"),
            Some(1_709_209_815_500)
        );
        assert_eq!(parse_datetime("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(parse_datetime("2024-13-01T00:00:00"), None);
        assert_eq!(parse_datetime("yesterday"), None);
    }
}
