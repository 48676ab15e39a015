//! DescribeConfigs for topics (their overrides over Kafka's defaults) and for this broker.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{str_bytes, Answer, RequestContext};
use crate::metadata::topic_config::{self, ConfigType, Source, TOPIC_CONFIGS};
use crate::shard_context::ShardContext;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// One described entry: name, value, source, type, and (for topics) the lower levels the
/// value overrides, as Kafka lists synonyms: the topic's own, the broker's, the default.
struct Entry {
    name: String,
    value: String,
    source: i8,
    kind: ConfigType,
    /// (synonym name, value, source) below the entry's own level.
    lower: Vec<(String, String, i8)>,
}

pub fn handle(ctx: &ShardContext, request: RequestContext, body: DescribeConfigsRequest) -> Answer {
    let results = body
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name);
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => topic_entries(ctx, &name),
                RESOURCE_BROKER => broker_entries(ctx, &name),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("Unsupported resource type {other}"),
                )),
            };
            match entries {
                Err((error, message)) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(&message))),
                Ok(entries) => {
                    let keys = resource
                        .configuration_keys
                        .map(|k| k.iter().map(|s| s.to_string()).collect::<Vec<_>>());
                    let configs = entries
                        .into_iter()
                        .filter(|e| keys.as_ref().is_none_or(|k| k.contains(&e.name)))
                        .map(|e| describe(e, body.include_synonyms, request.version))
                        .collect();
                    result.with_configs(configs)
                }
            }
        })
        .collect();
    request.reply(&DescribeConfigsResponse::default().with_results(results))
}

/// config_type exists from v3; kafka-protocol rejects it set in older versions.
fn describe(entry: Entry, include_synonyms: bool, version: i16) -> DescribeConfigsResourceResult {
    let synonyms = if include_synonyms {
        std::iter::once((entry.name.clone(), entry.value.clone(), entry.source))
            .chain(entry.lower.iter().cloned())
            .map(|(name, value, source)| {
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(&name))
                    .with_value(Some(str_bytes(&value)))
                    .with_source(source)
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(&entry.name))
        .with_value(Some(str_bytes(&entry.value)))
        .with_config_source(entry.source)
        .with_config_type(if version >= 3 { entry.kind.code() } else { 0 })
        .with_synonyms(synonyms)
}

fn topic_entries(ctx: &ShardContext, name: &str) -> Result<Vec<Entry>, (ResponseError, String)> {
    let image = ctx.image();
    let topic = image.topic(name).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("Topic '{name}' does not exist."),
        )
    })?;
    Ok(TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let (value, source) = topic_config::effective_with_source(&topic.configs, def);
            // Kafka lists the broker-level synonyms under the broker config's name.
            let broker_name = topic_config::broker_config_name(def.name);
            let mut lower = Vec::new();
            if let (Source::Topic, Some(b)) = (source, topic_config::broker_default(def.name)) {
                lower.push((broker_name.clone(), b.to_owned(), SOURCE_STATIC_BROKER));
            }
            // The default under the same broker name only when the broker sets nothing (Kafka
            // names it by another synonym, e.g. log.retention.hours, which Weir does not take).
            if source != Source::Default && lower.is_empty() && source != Source::Broker {
                lower.push((broker_name, def.default.to_owned(), SOURCE_DEFAULT));
            }
            Entry {
                name: def.name.to_owned(),
                value: value.to_owned(),
                source: match source {
                    Source::Topic => SOURCE_DYNAMIC_TOPIC,
                    Source::Broker => SOURCE_STATIC_BROKER,
                    Source::Default => SOURCE_DEFAULT,
                },
                kind: def.kind,
                lower,
            }
        })
        .collect())
}

fn broker_entries(ctx: &ShardContext, name: &str) -> Result<Vec<Entry>, (ResponseError, String)> {
    let config = &ctx.config;
    if !name.is_empty() && name != config.node_id.to_string() {
        return Err((
            ResponseError::InvalidRequest,
            format!("Broker {name} is not this broker ({})", config.node_id),
        ));
    }
    let listener = format!("PLAINTEXT://{}", config.listen);
    let advertised = format!(
        "PLAINTEXT://{}:{}",
        config.advertised_host, config.advertised_port
    );
    let entry = |name: &str, value: String, source: i8, kind: ConfigType| Entry {
        name: name.to_owned(),
        value,
        source,
        kind,
        lower: Vec::new(),
    };
    let mut entries = vec![
        entry(
            "broker.id",
            config.node_id.to_string(),
            SOURCE_STATIC_BROKER,
            ConfigType::Int,
        ),
        entry(
            "node.id",
            config.node_id.to_string(),
            SOURCE_STATIC_BROKER,
            ConfigType::Int,
        ),
        entry(
            "listeners",
            listener,
            SOURCE_STATIC_BROKER,
            ConfigType::List,
        ),
        entry(
            "advertised.listeners",
            advertised,
            SOURCE_STATIC_BROKER,
            ConfigType::List,
        ),
        entry(
            "log.dirs",
            config.data_dir.display().to_string(),
            SOURCE_STATIC_BROKER,
            ConfigType::List,
        ),
        entry(
            "num.partitions",
            config.num_partitions.to_string(),
            SOURCE_STATIC_BROKER,
            ConfigType::Int,
        ),
        entry(
            "auto.create.topics.enable",
            config.auto_create_topics_enable.to_string(),
            SOURCE_STATIC_BROKER,
            ConfigType::Boolean,
        ),
        entry(
            "socket.request.max.bytes",
            config.socket_request_max_bytes.to_string(),
            SOURCE_STATIC_BROKER,
            ConfigType::Int,
        ),
        entry(
            "default.replication.factor",
            "1".into(),
            SOURCE_DEFAULT,
            ConfigType::Int,
        ),
    ];
    // The broker-level defaults of the topic configs, under Kafka's broker names
    // (`log.retention.ms`, `message.max.bytes`, ...): a `[topic_defaults]` value is the
    // broker's own (STATIC_BROKER_CONFIG), else Kafka's default.
    for def in TOPIC_CONFIGS {
        let (value, source) = match topic_config::broker_default(def.name) {
            Some(value) => (value.to_owned(), SOURCE_STATIC_BROKER),
            None => (def.default.to_owned(), SOURCE_DEFAULT),
        };
        entries.push(entry(
            &topic_config::broker_config_name(def.name),
            value,
            source,
            def.kind,
        ));
    }
    Ok(entries)
}
