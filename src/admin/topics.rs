//! `weirctl topic ...`: list, describe, create, delete, alter-config, add-partitions.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use serde_json::json;

use super::client::Client;
use super::output::{Output, Table};
use super::{check, list_offsets, s, AdminError, EARLIEST, LATEST};

const RESOURCE_TOPIC: i8 = 2;
/// DescribeConfigs source of a config set on the topic (Kafka's DYNAMIC_TOPIC_CONFIG).
const SOURCE_TOPIC: i8 = 1;

pub fn list(client: &mut Client) -> Result<Output, AdminError> {
    let metadata: MetadataResponse = client.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(None),
    )?;
    let mut topics: Vec<_> = metadata
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                t.partitions.len(),
                t.is_internal,
            )
        })
        .collect();
    topics.sort();
    let mut table = Table::new(&["TOPIC", "PARTITIONS", "INTERNAL"]);
    for (name, partitions, internal) in &topics {
        table.row(vec![
            name.clone(),
            partitions.to_string(),
            internal.to_string(),
        ]);
    }
    Ok(Output {
        json: json!(topics
            .iter()
            .map(|(n, p, i)| json!({"topic": n, "partitions": p, "internal": i}))
            .collect::<Vec<_>>()),
        table: Some(table),
        message: None,
    })
}

pub fn describe(client: &mut Client, topic: &str) -> Result<Output, AdminError> {
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(s(topic))))
        ]));
    let metadata: MetadataResponse = client.call(ApiKey::Metadata, 12, &request)?;
    let t = metadata
        .topics
        .first()
        .ok_or_else(|| AdminError::Failed("the broker returned no topic".into()))?;
    check(t.error_code, &format!("topic {topic}"))?;
    let partitions: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    let earliest = list_offsets(client, topic, &partitions, EARLIEST)?;
    let latest = list_offsets(client, topic, &partitions, LATEST)?;
    let mut table = Table::new(&["PARTITION", "LEADER", "REPLICAS", "EARLIEST", "LATEST"]);
    let mut rows = Vec::new();
    let mut sorted: Vec<_> = t.partitions.iter().collect();
    sorted.sort_by_key(|p| p.partition_index);
    for p in sorted {
        let i = p.partition_index;
        let replicas: Vec<String> = p.replica_nodes.iter().map(|r| r.0.to_string()).collect();
        let (lo, hi) = (
            earliest.get(&i).copied().unwrap_or(-1),
            latest.get(&i).copied().unwrap_or(-1),
        );
        table.row(vec![
            i.to_string(),
            p.leader_id.0.to_string(),
            replicas.join(","),
            lo.to_string(),
            hi.to_string(),
        ]);
        rows.push(json!({"partition": i, "leader": p.leader_id.0, "replicas": replicas, "earliest": lo, "latest": hi}));
    }
    let configs = topic_overrides(client, topic)?;
    let config_text = if configs.is_empty() {
        "configs: (all defaults)".to_string()
    } else {
        format!(
            "configs: {}",
            configs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Ok(Output {
        json: json!({"topic": topic, "partitions": rows, "configs": configs.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()}),
        table: Some(table),
        message: Some(format!(
            "topic {topic}, {} partition(s); {config_text}",
            t.partitions.len()
        )),
    })
}

/// The configs set on the topic itself (not defaults).
fn topic_overrides(client: &mut Client, topic: &str) -> Result<Vec<(String, String)>, AdminError> {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(s(topic))
            .with_configuration_keys(None)]);
    let response: DescribeConfigsResponse = client.call(ApiKey::DescribeConfigs, 4, &request)?;
    let result = response
        .results
        .first()
        .ok_or_else(|| AdminError::Failed("no DescribeConfigs result".into()))?;
    check(result.error_code, &format!("configs of {topic}"))?;
    Ok(result
        .configs
        .iter()
        .filter(|c| c.config_source == SOURCE_TOPIC)
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_deref().unwrap_or("").to_string(),
            )
        })
        .collect())
}

pub fn create(
    client: &mut Client,
    topic: &str,
    partitions: i32,
    configs: &[(String, String)],
) -> Result<Output, AdminError> {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s(topic)))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(s(k))
                            .with_value(Some(s(v)))
                    })
                    .collect(),
            )]);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &request)?;
    let t = response
        .topics
        .first()
        .ok_or_else(|| AdminError::Failed("no CreateTopics result".into()))?;
    check_with_message(
        t.error_code,
        t.error_message.as_deref(),
        &format!("creating {topic}"),
    )?;
    Ok(done(
        json!({"topic": topic, "partitions": t.num_partitions}),
        format!(
            "created topic {topic} with {} partition(s)",
            t.num_partitions
        ),
    ))
}

pub fn delete(client: &mut Client, topic: &str) -> Result<Output, AdminError> {
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topic_names(vec![TopicName(s(topic))]);
    let response: DeleteTopicsResponse = client.call(ApiKey::DeleteTopics, 5, &request)?;
    let r = response
        .responses
        .first()
        .ok_or_else(|| AdminError::Failed("no DeleteTopics result".into()))?;
    check_with_message(
        r.error_code,
        r.error_message.as_deref(),
        &format!("deleting {topic}"),
    )?;
    Ok(done(
        json!({"topic": topic, "deleted": true}),
        format!("deleted topic {topic}"),
    ))
}

/// IncrementalAlterConfigs: SET each `set`, DELETE (back to the default) each `unset`.
pub fn alter_config(
    client: &mut Client,
    topic: &str,
    set: &[(String, String)],
    unset: &[String],
) -> Result<Output, AdminError> {
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    let configs = set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(SET)
                .with_value(Some(s(v)))
        })
        .chain(unset.iter().map(|k| {
            AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(DELETE)
                .with_value(None)
        }))
        .collect();
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(s(topic))
            .with_configs(configs),
    ]);
    let response: IncrementalAlterConfigsResponse =
        client.call(ApiKey::IncrementalAlterConfigs, 1, &request)?;
    let r = response
        .responses
        .first()
        .ok_or_else(|| AdminError::Failed("no IncrementalAlterConfigs result".into()))?;
    check_with_message(
        r.error_code,
        r.error_message.as_deref(),
        &format!("altering {topic}"),
    )?;
    let changed = set
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain(unset.iter().map(|k| format!("{k} (default)")));
    Ok(done(
        json!({"topic": topic, "set": set.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(), "deleted": unset}),
        format!(
            "altered {topic}: {}",
            changed.collect::<Vec<_>>().join(", ")
        ),
    ))
}

pub fn add_partitions(client: &mut Client, topic: &str, total: i32) -> Result<Output, AdminError> {
    let request = CreatePartitionsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_count(total)
            .with_assignments(None)]);
    let response: CreatePartitionsResponse = client.call(ApiKey::CreatePartitions, 3, &request)?;
    let r = response
        .results
        .first()
        .ok_or_else(|| AdminError::Failed("no CreatePartitions result".into()))?;
    check_with_message(
        r.error_code,
        r.error_message.as_deref(),
        &format!("adding partitions to {topic}"),
    )?;
    Ok(done(
        json!({"topic": topic, "partitions": total}),
        format!("topic {topic} now has {total} partition(s)"),
    ))
}

fn done(json: serde_json::Value, message: String) -> Output {
    Output {
        json,
        table: None,
        message: Some(message),
    }
}

fn check_with_message(code: i16, message: Option<&str>, what: &str) -> Result<(), AdminError> {
    check(code, what).map_err(|e| match (e, message) {
        (AdminError::Kafka { what, error, .. }, Some(m)) if !m.is_empty() => AdminError::Kafka {
            what,
            error,
            detail: m.to_owned(),
        },
        (e, _) => e,
    })
}
