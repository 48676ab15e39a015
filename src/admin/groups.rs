//! `weirctl group ...`: list, describe (with lag, like kafka-consumer-groups.sh), delete,
//! reset-offsets.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use serde_json::json;

use super::client::Client;
use super::output::{Output, Table};
use super::{check, list_offsets, s, AdminError, EARLIEST, LATEST};

pub fn list(client: &mut Client) -> Result<Output, AdminError> {
    let response: ListGroupsResponse =
        client.call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())?;
    check(response.error_code, "listing groups")?;
    let mut groups: Vec<_> = response
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.to_string(),
                g.group_state.to_string(),
                g.protocol_type.to_string(),
            )
        })
        .collect();
    groups.sort();
    let mut table = Table::new(&["GROUP", "STATE", "PROTOCOL TYPE"]);
    for (g, st, p) in &groups {
        table.row(vec![g.clone(), st.clone(), p.clone()]);
    }
    Ok(Output {
        json: json!(groups
            .iter()
            .map(|(g, st, p)| json!({"group": g, "state": st, "protocol_type": p}))
            .collect::<Vec<_>>()),
        table: Some(table),
        message: None,
    })
}

/// Members, and per partition: committed offset, log end, lag and the owning member.
pub fn describe(client: &mut Client, group: &str) -> Result<Output, AdminError> {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let response: DescribeGroupsResponse = client.call(ApiKey::DescribeGroups, 5, &request)?;
    let g = response
        .groups
        .first()
        .ok_or_else(|| AdminError::Failed("no DescribeGroups result".into()))?;
    check(g.error_code, &format!("group {group}"))?;
    // Which member consumes which partition, from the consumer protocol's assignments.
    let mut owner: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    let mut members = Vec::new();
    for m in &g.members {
        let assigned = assigned_partitions(&m.member_assignment);
        for (topic, partition) in &assigned {
            owner.insert(
                (topic.clone(), *partition),
                (
                    m.member_id.to_string(),
                    m.client_host.to_string(),
                    m.client_id.to_string(),
                ),
            );
        }
        members.push(json!({
            "member_id": m.member_id.to_string(),
            "group_instance_id": m.group_instance_id.as_ref().map(|i| i.to_string()),
            "client_id": m.client_id.to_string(),
            "host": m.client_host.to_string(),
            "assignment": assigned.iter().map(|(t, p)| format!("{t}-{p}")).collect::<Vec<_>>(),
        }));
    }
    let committed = committed_offsets(client, group)?;
    let keys: BTreeSet<(String, i32)> = committed
        .keys()
        .cloned()
        .chain(owner.keys().cloned())
        .collect();
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in &keys {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    let mut ends = BTreeMap::new();
    for (topic, partitions) in &by_topic {
        for (p, end) in list_offsets(client, topic, partitions, LATEST)? {
            ends.insert((topic.clone(), p), end);
        }
    }
    let mut table = Table::new(&[
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    let mut rows = Vec::new();
    for key in &keys {
        let current = committed.get(key).copied();
        let end = ends.get(key).copied();
        let lag = match (current, end) {
            (Some(c), Some(e)) if c >= 0 => Some((e - c).max(0)),
            _ => None,
        };
        let (member, host, client_id) = owner.get(key).cloned().unwrap_or_default();
        let show = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        let dash = |v: &str| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.to_string()
            }
        };
        table.row(vec![
            key.0.clone(),
            key.1.to_string(),
            show(current),
            show(end),
            show(lag),
            dash(&member),
            dash(&host),
            dash(&client_id),
        ]);
        rows.push(json!({"topic": key.0, "partition": key.1, "current_offset": current, "log_end_offset": end, "lag": lag, "consumer_id": member, "host": host, "client_id": client_id}));
    }
    let total_lag: i64 = rows.iter().filter_map(|r| r["lag"].as_i64()).sum();
    Ok(Output {
        json: json!({"group": group, "state": g.group_state.to_string(), "protocol_type": g.protocol_type.to_string(), "protocol": g.protocol_data.to_string(), "members": members, "partitions": rows, "total_lag": total_lag}),
        table: Some(table),
        message: Some(format!(
            "group {group}: {} ({} member(s), protocol {}), total lag {total_lag}",
            g.group_state,
            g.members.len(),
            if g.protocol_data.is_empty() {
                "-"
            } else {
                g.protocol_data.as_str()
            }
        )),
    })
}

pub fn delete(client: &mut Client, group: &str) -> Result<Output, AdminError> {
    let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
    let response: DeleteGroupsResponse = client.call(ApiKey::DeleteGroups, 2, &request)?;
    let r = response
        .results
        .first()
        .ok_or_else(|| AdminError::Failed("no DeleteGroups result".into()))?;
    check(r.error_code, &format!("deleting group {group}"))?;
    Ok(Output {
        json: json!({"group": group, "deleted": true}),
        table: None,
        message: Some(format!("deleted group {group}")),
    })
}

/// Where reset-offsets moves a group's positions.
#[derive(Clone, Copy, Debug)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
    Timestamp(i64),
}

/// Plans (and with `execute`, commits) new offsets for every partition of `topic`. The
/// group must be empty, as kafka-consumer-groups.sh requires: a live member would overwrite
/// them.
pub fn reset_offsets(
    client: &mut Client,
    group: &str,
    topic: &str,
    to: ResetTo,
    execute: bool,
) -> Result<Output, AdminError> {
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(TopicName(s(topic))))]));
    let metadata: MetadataResponse = client.call(ApiKey::Metadata, 12, &request)?;
    let t = metadata
        .topics
        .first()
        .ok_or_else(|| AdminError::Failed("no topic metadata".into()))?;
    check(t.error_code, &format!("topic {topic}"))?;
    let mut partitions: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    partitions.sort_unstable();
    let earliest = list_offsets(client, topic, &partitions, EARLIEST)?;
    let latest = list_offsets(client, topic, &partitions, LATEST)?;
    let by_time = match to {
        ResetTo::Timestamp(ts) => Some(list_offsets(client, topic, &partitions, ts)?),
        _ => None,
    };
    let mut plan = Vec::new();
    for &p in &partitions {
        let (lo, hi) = (earliest[&p], latest[&p]);
        let target = match to {
            ResetTo::Earliest => lo,
            ResetTo::Latest => hi,
            ResetTo::Offset(o) => o.clamp(lo, hi),
            // No record at or after the time: the end, as Kafka's tool does.
            ResetTo::Timestamp(_) => by_time
                .as_ref()
                .and_then(|m| m.get(&p).copied())
                .filter(|&o| o >= 0)
                .unwrap_or(hi),
        };
        plan.push((p, target));
    }
    if execute {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(s(""))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(
                    plan.iter()
                        .map(|&(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                        })
                        .collect(),
                )]);
        let response: OffsetCommitResponse = client.call(ApiKey::OffsetCommit, 8, &request)?;
        for p in response.topics.iter().flat_map(|t| &t.partitions) {
            check(
                p.error_code,
                &format!(
                    "committing {topic}-{} for {group} (is the group empty?)",
                    p.partition_index
                ),
            )?;
        }
    }
    let mut table = Table::new(&["TOPIC", "PARTITION", "NEW-OFFSET"]);
    for (p, o) in &plan {
        table.row(vec![topic.to_string(), p.to_string(), o.to_string()]);
    }
    Ok(Output {
        json: json!({"group": group, "topic": topic, "executed": execute, "offsets": plan.iter().map(|(p, o)| json!({"partition": p, "offset": o})).collect::<Vec<_>>()}),
        table: Some(table),
        message: Some(if execute {
            format!("reset {group} on {topic}:")
        } else {
            format!("plan for {group} on {topic} (nothing changed; add --execute to commit it):")
        }),
    })
}

/// All offsets the group committed: (topic, partition) → offset.
fn committed_offsets(
    client: &mut Client,
    group: &str,
) -> Result<BTreeMap<(String, i32), i64>, AdminError> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(None);
    let response: OffsetFetchResponse = client.call(ApiKey::OffsetFetch, 7, &request)?;
    check(response.error_code, &format!("offsets of {group}"))?;
    let mut out = BTreeMap::new();
    for t in &response.topics {
        for p in &t.partitions {
            if p.committed_offset >= 0 {
                out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// The partitions in a consumer-protocol assignment (Kafka's ConsumerProtocolAssignment:
/// version, then [topic, [partition]]). Empty for anything else.
pub fn assigned_partitions(assignment: &[u8]) -> Vec<(String, i32)> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (b.get(..n)?, b.get(n..)?);
        *b = tail;
        Some(head)
    }
    fn i16_(b: &mut &[u8]) -> Option<i16> {
        take(b, 2).map(|x| i16::from_be_bytes([x[0], x[1]]))
    }
    fn i32_(b: &mut &[u8]) -> Option<i32> {
        take(b, 4).map(|x| i32::from_be_bytes([x[0], x[1], x[2], x[3]]))
    }
    let parse = |mut b: &[u8]| -> Option<Vec<(String, i32)>> {
        i16_(&mut b)?;
        let topics = i32_(&mut b)?;
        let mut out = Vec::new();
        for _ in 0..topics.max(0) {
            let len = i16_(&mut b)?;
            let name =
                String::from_utf8(take(&mut b, usize::try_from(len).ok()?)?.to_vec()).ok()?;
            let count = i32_(&mut b)?;
            for _ in 0..count.max(0) {
                out.push((name.clone(), i32_(&mut b)?));
            }
        }
        Some(out)
    };
    parse(assignment).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_assignments_are_decoded() {
        let mut b = vec![
            0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 5,
        ];
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // null user data
        assert_eq!(
            assigned_partitions(&b),
            vec![("t".to_string(), 3), ("t".to_string(), 5)]
        );
        assert!(assigned_partitions(&[1, 2]).is_empty());
    }
}
