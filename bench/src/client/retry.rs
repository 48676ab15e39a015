//! Which broker errors a client waits out, and how long it waits between tries: the part of
//! Kafka's client behaviour (`RetriableException`, `retry.backoff.ms` growing to
//! `retry.backoff.max.ms`, KIP-580) that a benchmark needs to run against any broker. A new
//! topic on stock Kafka answers NOT_LEADER_OR_FOLLOWER for a moment after Metadata already
//! names its leader (the broker publishes the metadata image before its replica manager
//! becomes leader), which a client that gives up at once mistakes for a failure.

use std::time::Duration;

pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const LEADER_NOT_AVAILABLE: i16 = 5;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const REQUEST_TIMED_OUT: i16 = 7;

/// Error codes whose exception Kafka's clients treat as retriable: the request may succeed
/// if sent again unchanged, after the broker (or the metadata) catches up. Not
/// kafka-protocol's `ResponseError::is_retriable`, which also retries CORRUPT_MESSAGE (Kafka's
/// `CorruptRecordException` is retriable): a benchmark must fail on a broker that corrupts or
/// refuses its batches, not resend them until the delivery timeout hides it.
pub fn is_retriable(code: i16) -> bool {
    matches!(
        code,
        UNKNOWN_TOPIC_OR_PARTITION
            | LEADER_NOT_AVAILABLE
            | NOT_LEADER_OR_FOLLOWER
            | REQUEST_TIMED_OUT
            | 13 // NETWORK_EXCEPTION
            | 14 // COORDINATOR_LOAD_IN_PROGRESS
            | 15 // COORDINATOR_NOT_AVAILABLE
            | 16 // NOT_COORDINATOR
            | 19 // NOT_ENOUGH_REPLICAS
            | 20 // NOT_ENOUGH_REPLICAS_AFTER_APPEND
            | 56 // KAFKA_STORAGE_ERROR
            | 74 // FENCED_LEADER_EPOCH
            | 75 // UNKNOWN_LEADER_EPOCH
            | 78 // OFFSET_NOT_AVAILABLE
            | 89 // THROTTLING_QUOTA_EXCEEDED
            | 100 // UNKNOWN_TOPIC_ID
    )
}

/// Kafka's `retry.backoff.ms` default.
pub const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Kafka's `retry.backoff.max.ms` default.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(1000);

/// The wait before try `attempt` + 1 (attempt 1 is the first retry): doubling from
/// `RETRY_BACKOFF_MIN` up to `RETRY_BACKOFF_MAX`. No jitter: one benchmark client per
/// partition, nothing to de-synchronise, and runs stay repeatable.
pub fn backoff(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    RETRY_BACKOFF_MIN
        .saturating_mul(1u32 << doublings)
        .min(RETRY_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leadership_and_timeouts_are_retriable_the_rest_is_not() {
        for code in [3, 5, 6, 7, 14, 19, 20] {
            assert!(is_retriable(code), "{code}");
        }
        // NONE, OFFSET_OUT_OF_RANGE, CORRUPT_MESSAGE, MESSAGE_TOO_LARGE, TOPIC_AUTHORIZATION_FAILED,
        // and an unknown code.
        for code in [0, 1, 2, 10, 29, -1, 32_000] {
            assert!(!is_retriable(code), "{code}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(5), Duration::from_millis(1000));
        assert_eq!(backoff(u32::MAX), Duration::from_millis(1000));
    }
}
