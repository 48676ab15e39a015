//! Kafka's topic name rules (`org.apache.kafka.common.internals.Topic.validate`).

/// Kafka's limit: 249, so that `{topic}-{partition}` directory names stay under 255 bytes.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Kafka's internal topics (`Topic.INTERNAL_TOPICS`): written only by the broker itself, never
/// deleted. A name that merely starts with `__` is an ordinary topic, as on Kafka.
pub const INTERNAL_TOPICS: [&str; 2] = ["__consumer_offsets", "__transaction_state"];

pub fn is_internal(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

/// Why a topic name is not allowed; the text goes back to clients in error messages.
pub fn validate(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!(
            "Topic name is illegal, it can't be longer than {TOPIC_NAME_BYTES_MAX} characters, topic name: {name}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "Topic name {name:?} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-' ({bad:?})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_legal_names_and_rejects_the_rest() {
        for ok in [
            "a",
            "orders.v1",
            "my_topic-2",
            "__consumer_offsets",
            &"x".repeat(249),
        ] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "bad name!", "a/b", "ü", &"x".repeat(250)] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_kafkas_internal_topics_are_internal() {
        assert!(is_internal(crate::group::OFFSETS_TOPIC));
        assert!(is_internal("__transaction_state"));
        assert!(!is_internal("__my_topic"));
        assert!(!is_internal("orders"));
    }
}
