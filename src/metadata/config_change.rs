//! Alterations of a topic's config overrides: AlterConfigs replaces the whole set,
//! IncrementalAlterConfigs (KIP-339) sets, deletes, appends to or subtracts from single
//! configs.
//!
//! Pure: computes the new overrides, which the controller then persists and publishes. Every
//! value a change leaves behind is checked by `topic_config::validate`, the same check
//! CreateTopics makes, so an alteration can never store what a creation would refuse.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;

use super::topic_config::{self, ConfigType};

/// What a request asks to do to one topic's overrides.
#[derive(Clone, Debug)]
pub enum ConfigChange {
    /// AlterConfigs: these become the topic's overrides and every other override goes back
    /// to its default. A null value sets no override.
    Replace(Vec<(String, Option<String>)>),
    /// IncrementalAlterConfigs: each operation on one config, the rest left as they are.
    Incremental(Vec<ConfigOp>),
}

/// One IncrementalAlterConfigs operation.
#[derive(Clone, Debug)]
pub struct ConfigOp {
    pub name: String,
    pub op: OpType,
    pub value: Option<String>,
}

/// Kafka's `AlterConfigOp.OpType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpType {
    Set,
    Delete,
    /// Adds list items not already there (list configs only, e.g. `cleanup.policy`).
    Append,
    /// Removes list items (list configs only).
    Subtract,
}

impl OpType {
    /// From the wire id (`config_operation`).
    pub fn from_code(code: i8) -> Result<OpType, ConfigChangeError> {
        match code {
            0 => Ok(OpType::Set),
            1 => Ok(OpType::Delete),
            2 => Ok(OpType::Append),
            3 => Ok(OpType::Subtract),
            other => Err(ConfigChangeError::UnknownOperation(other)),
        }
    }

    fn verb(self) -> &'static str {
        match self {
            OpType::Set => "set",
            OpType::Delete => "delete",
            OpType::Append => "append",
            OpType::Subtract => "subtract",
        }
    }
}

/// Why a change is refused; the texts are Kafka's where Kafka has one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigChangeError {
    #[error("Unknown alter config operation type {0}")]
    UnknownOperation(i8),
    #[error("Error due to duplicate config keys: {0}")]
    DuplicateKey(String),
    #[error("Null value not supported for : {0}")]
    NullValue(String),
    #[error("Config value {verb} is not allowed for config key: {name}")]
    NotAList { verb: &'static str, name: String },
    /// An unknown name or a bad value, as `topic_config::validate` words it.
    #[error("{0}")]
    Invalid(String),
}

impl ConfigChangeError {
    /// The Kafka error a response carries for this refusal.
    pub fn error_code(&self) -> ResponseError {
        match self {
            ConfigChangeError::UnknownOperation(_)
            | ConfigChangeError::DuplicateKey(_)
            | ConfigChangeError::NullValue(_) => ResponseError::InvalidRequest,
            ConfigChangeError::NotAList { .. } | ConfigChangeError::Invalid(_) => {
                ResponseError::InvalidConfig
            }
        }
    }
}

/// The overrides `current` becomes under `change`, or why the change is refused (nothing of
/// a refused change applies: a request's change to one topic is all or nothing, as in Kafka).
pub fn apply(
    current: &BTreeMap<String, String>,
    change: &ConfigChange,
) -> Result<BTreeMap<String, String>, ConfigChangeError> {
    match change {
        ConfigChange::Replace(entries) => replace(entries),
        ConfigChange::Incremental(ops) => incremental(current, ops),
    }
}

fn replace(
    entries: &[(String, Option<String>)],
) -> Result<BTreeMap<String, String>, ConfigChangeError> {
    check_unique(entries.iter().map(|(name, _)| name))?;
    let mut overrides = BTreeMap::new();
    for (name, value) in entries {
        // Checked even with a null value: an unknown name is a mistake either way.
        check_known(name)?;
        if let Some(value) = value {
            validate(name, value)?;
            overrides.insert(name.clone(), value.clone());
        }
    }
    Ok(overrides)
}

fn incremental(
    current: &BTreeMap<String, String>,
    ops: &[ConfigOp],
) -> Result<BTreeMap<String, String>, ConfigChangeError> {
    check_unique(ops.iter().map(|op| &op.name))?;
    let mut overrides = current.clone();
    for op in ops {
        check_known(&op.name)?;
        let value = match (op.op, &op.value) {
            (OpType::Delete, _) => {
                overrides.remove(&op.name);
                continue;
            }
            (_, None) => return Err(ConfigChangeError::NullValue(op.name.clone())),
            (OpType::Set, Some(value)) => value.clone(),
            (OpType::Append | OpType::Subtract, Some(value)) => {
                list_op(&overrides, &op.name, op.op, value)?
            }
        };
        validate(&op.name, &value)?;
        overrides.insert(op.name.clone(), value);
    }
    Ok(overrides)
}

/// APPEND / SUBTRACT on a list config, starting from its effective value (the default when
/// there is no override, as Kafka does). Returns the new comma-separated value.
fn list_op(
    overrides: &BTreeMap<String, String>,
    name: &str,
    op: OpType,
    value: &str,
) -> Result<String, ConfigChangeError> {
    let def = topic_config::find(name).ok_or_else(|| unknown(name))?;
    if def.kind != ConfigType::List {
        return Err(ConfigChangeError::NotAList {
            verb: op.verb(),
            name: name.to_owned(),
        });
    }
    let items = |list: &str| -> Vec<String> {
        list.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut list = items(topic_config::effective(overrides, def));
    let operands = items(value);
    if op == OpType::Append {
        for item in operands {
            if !list.contains(&item) {
                list.push(item);
            }
        }
    } else {
        list.retain(|item| !operands.contains(item));
    }
    Ok(list.join(","))
}

fn check_unique<'a>(names: impl Iterator<Item = &'a String>) -> Result<(), ConfigChangeError> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(ConfigChangeError::DuplicateKey(name.clone()));
        }
    }
    Ok(())
}

fn check_known(name: &str) -> Result<(), ConfigChangeError> {
    topic_config::find(name)
        .map(|_| ())
        .ok_or_else(|| unknown(name))
}

fn unknown(name: &str) -> ConfigChangeError {
    // The same words `topic_config::validate` uses for an unknown name.
    ConfigChangeError::Invalid(format!("Unknown topic config name: {name}"))
}

fn validate(name: &str, value: &str) -> Result<(), ConfigChangeError> {
    topic_config::validate(name, value).map_err(ConfigChangeError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn op(name: &str, op: OpType, value: Option<&str>) -> ConfigOp {
        ConfigOp {
            name: name.into(),
            op,
            value: value.map(str::to_owned),
        }
    }

    fn incremental_on(
        current: &[(&str, &str)],
        ops: Vec<ConfigOp>,
    ) -> Result<BTreeMap<String, String>, ConfigChangeError> {
        apply(&map(current), &ConfigChange::Incremental(ops))
    }

    #[test]
    fn replace_drops_every_override_not_named() {
        let current = map(&[("retention.ms", "1000"), ("segment.bytes", "2048")]);
        let change = ConfigChange::Replace(vec![
            ("segment.bytes".into(), Some("4096".into())),
            ("retention.bytes".into(), None),
        ]);
        assert_eq!(
            apply(&current, &change),
            Ok(map(&[("segment.bytes", "4096")]))
        );
    }

    #[test]
    fn replace_refuses_unknown_names_bad_values_and_duplicates() {
        let refused = |entries: Vec<(&str, Option<&str>)>| {
            let entries = entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
                .collect();
            apply(&BTreeMap::new(), &ConfigChange::Replace(entries)).unwrap_err()
        };
        let unknown = refused(vec![("no.such.config", Some("1"))]);
        assert_eq!(unknown.error_code(), ResponseError::InvalidConfig);
        assert!(unknown.to_string().contains("Unknown topic config name"));
        let bad = refused(vec![("segment.bytes", Some("ten"))]);
        assert_eq!(bad.error_code(), ResponseError::InvalidConfig);
        assert!(bad.to_string().contains("Invalid value ten"), "{bad}");
        let twice = refused(vec![
            ("retention.ms", Some("1")),
            ("retention.ms", Some("2")),
        ]);
        assert_eq!(twice.error_code(), ResponseError::InvalidRequest);
    }

    #[test]
    fn set_and_delete_touch_only_their_config() {
        let result = incremental_on(
            &[("retention.ms", "1000"), ("segment.bytes", "2048")],
            vec![
                op("retention.ms", OpType::Delete, None),
                op("max.message.bytes", OpType::Set, Some("5000")),
                // Deleting what is not overridden is no error, as in Kafka.
                op("flush.ms", OpType::Delete, None),
            ],
        );
        assert_eq!(
            result,
            Ok(map(&[
                ("max.message.bytes", "5000"),
                ("segment.bytes", "2048")
            ]))
        );
    }

    #[test]
    fn append_and_subtract_start_from_the_effective_value() {
        let appended = incremental_on(
            &[],
            vec![op("cleanup.policy", OpType::Append, Some("compact"))],
        );
        assert_eq!(appended, Ok(map(&[("cleanup.policy", "delete,compact")])));
        let again = incremental_on(
            &[("cleanup.policy", "delete,compact")],
            vec![op("cleanup.policy", OpType::Append, Some("compact"))],
        );
        assert_eq!(
            again,
            Ok(map(&[("cleanup.policy", "delete,compact")])),
            "no duplicates"
        );
        let subtracted = incremental_on(
            &[("cleanup.policy", "delete,compact")],
            vec![op("cleanup.policy", OpType::Subtract, Some("delete"))],
        );
        assert_eq!(subtracted, Ok(map(&[("cleanup.policy", "compact")])));
        let emptied = incremental_on(
            &[],
            vec![op("cleanup.policy", OpType::Subtract, Some("delete"))],
        );
        assert_eq!(
            emptied.unwrap_err().error_code(),
            ResponseError::InvalidConfig,
            "an empty cleanup.policy is no policy"
        );
        let bad_item = incremental_on(
            &[],
            vec![op("cleanup.policy", OpType::Append, Some("shred"))],
        );
        assert_eq!(
            bad_item.unwrap_err().error_code(),
            ResponseError::InvalidConfig
        );
    }

    #[test]
    fn incremental_refusals_carry_kafkas_codes() {
        let code = |ops| incremental_on(&[], ops).unwrap_err().error_code();
        assert_eq!(
            code(vec![op("retention.ms", OpType::Append, Some("1"))]),
            ResponseError::InvalidConfig,
            "append on a non-list"
        );
        assert_eq!(
            code(vec![op("no.such.config", OpType::Delete, None)]),
            ResponseError::InvalidConfig
        );
        assert_eq!(
            code(vec![op("retention.ms", OpType::Set, None)]),
            ResponseError::InvalidRequest,
            "null value"
        );
        assert_eq!(
            code(vec![
                op("retention.ms", OpType::Set, Some("1")),
                op("retention.ms", OpType::Delete, None),
            ]),
            ResponseError::InvalidRequest,
            "duplicate key"
        );
        assert_eq!(
            code(vec![op("segment.bytes", OpType::Set, Some("1"))]),
            ResponseError::InvalidConfig,
            "below the minimum"
        );
        assert_eq!(
            OpType::from_code(7).unwrap_err().error_code(),
            ResponseError::InvalidRequest
        );
    }
}
