//! At start: the cheap host checks of `weir-tune` (one warning line per problem, so nobody
//! runs Weir untuned without knowing), and the disk profile `weir-tune measure` saved in the
//! data dir, which sizes how many flushes each shard keeps in flight.

use std::num::NonZeroUsize;

use weir_tune::profile::{IoProfile, ProfileError};

use crate::config::Config;

pub fn report(config: &Config) -> Option<IoProfile> {
    for problem in weir_tune::quick_checks("/", &config.data_dir, Some(config.smp)) {
        tracing::warn!("host: {}", problem.log_line());
    }
    let path = config.data_dir.join(weir_tune::profile::PROFILE_FILE_NAME);
    match weir_tune::load(&path) {
        Ok(profile) => {
            tracing::info!(
                "disk profile ({}): sequential write {} MB/s, fdatasync p50 {} us p99 {} us, \
                 bandwidth knee at {} concurrent flushes",
                path.display(),
                profile.sequential_write.bandwidth_bytes_per_s / 1_000_000,
                profile.fdatasync.latency_us_p50,
                profile.fdatasync.latency_us_p99,
                profile.concurrency.knee_depth
            );
            Some(profile)
        }
        Err(ProfileError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(
                "no disk profile in the data dir: `weir-tune measure --data-dir {}` makes one",
                config.data_dir.display()
            );
            None
        }
        Err(e) => {
            tracing::warn!("disk profile: {e}");
            None
        }
    }
}

/// Flushes each shard keeps in flight at once (None: no limit): `--log-flush-concurrency`
/// when given (0 is no limit), else the profile's knee shared by the shards, else no limit.
pub fn flush_concurrency(config: &Config, profile: Option<&IoProfile>) -> Option<NonZeroUsize> {
    match (config.log_flush_concurrency, profile) {
        (Some(depth), _) => NonZeroUsize::new(depth),
        (None, Some(profile)) => Some(weir_storage::flush_gate::depth_per_shard(
            profile.concurrency.knee_depth,
            config.smp,
        )),
        (None, None) => None,
    }
}
