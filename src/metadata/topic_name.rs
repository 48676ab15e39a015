//! Kafka's topic name rules (`org.apache.kafka.common.internals.Topic.validate`).

/// Kafka's limit: 249, so that `{topic}-{partition}` directory names stay under 255 bytes.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

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
}
