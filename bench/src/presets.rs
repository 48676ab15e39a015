//! Named workloads with the OpenMessaging Benchmark's standard shapes: one topic with 1, 16
//! or 100 partitions, 100 B or 1 KiB messages, at max rate or a fixed rate. The producer
//! settings follow OMB's Kafka driver (acks=all, linger 1 ms, large batches).
//!
//! Names: `omb-{1,16,100}p-{100b,1kb}-{max,fixed}`.

use crate::error::BenchError;
use crate::workload::{MessageSize, Workload};

/// OMB's fixed-rate workloads publish 50,000 msg/s.
pub const FIXED_RATE_MSGS_PER_S: u64 = 50_000;

pub fn names() -> Vec<String> {
    let mut out = Vec::new();
    for partitions in [1, 16, 100] {
        for size in ["100b", "1kb"] {
            for pace in ["max", "fixed"] {
                out.push(format!("omb-{partitions}p-{size}-{pace}"));
            }
        }
    }
    out
}

pub fn preset(name: &str) -> Result<Workload, BenchError> {
    let unknown = || BenchError::UnknownPreset(name.to_string());
    let rest = name.strip_prefix("omb-").ok_or_else(unknown)?;
    let mut parts = rest.split('-');
    let (Some(partitions), Some(size), Some(pace), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unknown());
    };
    let partitions = match partitions {
        "1p" => 1,
        "16p" => 16,
        "100p" => 100,
        _ => return Err(unknown()),
    };
    let message_bytes = match size {
        "100b" => 100,
        "1kb" => 1024,
        _ => return Err(unknown()),
    };
    let rate_msgs_per_s = match pace {
        "max" => 0,
        "fixed" => FIXED_RATE_MSGS_PER_S,
        _ => return Err(unknown()),
    };
    Ok(Workload {
        partitions,
        producers: 1,
        consumers: 1,
        message_size: MessageSize::Fixed(message_bytes),
        acks: -1,
        batch_bytes: 1024 * 1024,
        linger_ms: 1,
        rate_msgs_per_s,
        warmup_s: 5,
        duration_s: 60,
        ..Workload::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_preset_resolves_and_validates() {
        let names = names();
        assert_eq!(names.len(), 12);
        for name in names {
            let workload = preset(&name).expect("listed presets exist");
            workload.validate().expect("presets are valid");
        }
        let w = preset("omb-16p-1kb-fixed").expect("exists");
        assert_eq!(
            (w.partitions, w.message_size, w.rate_msgs_per_s),
            (16, MessageSize::Fixed(1024), 50_000)
        );
    }

    #[test]
    fn unknown_presets_are_errors() {
        for bad in [
            "omb-2p-100b-max",
            "omb-1p-100b",
            "kafka-1p-100b-max",
            "omb-1p-100b-max-x",
        ] {
            assert!(preset(bad).is_err(), "{bad}");
        }
    }
}
