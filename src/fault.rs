//! Faults that tests inject into the real binary through the `WEIR_FAULT` environment
//! variable, to prove what the broker does when a shard panics or wedges. Unset in
//! production; an unparsable value is refused at start rather than ignored.
//!
//! `WEIR_FAULT=panic-shard=1:500` panics shard 1 500 ms after it starts serving;
//! `WEIR_FAULT=wedge-shard-on-shutdown=0` blocks shard 0's thread when shutdown begins.

use std::time::Duration;

use weir_shard::ShardId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Panic on this shard's thread, this long after it starts serving.
    PanicShard { shard: ShardId, after: Duration },
    /// Block this shard's thread (its reactor with it) once shutdown begins.
    WedgeShardOnShutdown { shard: ShardId },
}

pub const FAULT_ENV: &str = "WEIR_FAULT";

/// The fault named by `WEIR_FAULT`, if any.
pub fn from_env() -> anyhow::Result<Option<Fault>> {
    match std::env::var(FAULT_ENV) {
        Ok(value) => parse(&value)
            .map(Some)
            .ok_or_else(|| anyhow::anyhow!("{FAULT_ENV}={value:?} is not a known fault")),
        Err(_) => Ok(None),
    }
}

fn parse(value: &str) -> Option<Fault> {
    let (kind, arg) = value.split_once('=')?;
    match kind {
        "panic-shard" => {
            let (shard, after_ms) = arg.split_once(':')?;
            Some(Fault::PanicShard {
                shard: shard.parse().ok()?,
                after: Duration::from_millis(after_ms.parse().ok()?),
            })
        }
        "wedge-shard-on-shutdown" => Some(Fault::WedgeShardOnShutdown {
            shard: arg.parse().ok()?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_faults_and_refuses_others() {
        assert_eq!(
            parse("panic-shard=1:500"),
            Some(Fault::PanicShard {
                shard: 1,
                after: Duration::from_millis(500)
            })
        );
        assert_eq!(
            parse("wedge-shard-on-shutdown=0"),
            Some(Fault::WedgeShardOnShutdown { shard: 0 })
        );
        assert_eq!(parse("panic-shard=1"), None);
        assert_eq!(parse("explode"), None);
    }
}
