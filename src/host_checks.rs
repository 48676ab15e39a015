//! At start: the cheap host checks of `weir-tune` (one warning line per problem, so nobody
//! runs Weir untuned without knowing) and the disk profile `weir-tune measure` saved in the
//! data dir, if there is one.

use crate::config::Config;

pub fn report(config: &Config) {
    for problem in weir_tune::quick_checks("/", &config.data_dir, Some(config.smp)) {
        tracing::warn!("host: {}", problem.log_line());
    }
    let path = config.data_dir.join(weir_tune::profile::PROFILE_FILE_NAME);
    match weir_tune::load(&path) {
        Ok(profile) => tracing::info!(
            "disk profile ({}): sequential write {} MB/s, fdatasync p50 {} us p99 {} us, \
             bandwidth knee at {} concurrent flushes",
            path.display(),
            profile.sequential_write.bandwidth_bytes_per_s / 1_000_000,
            profile.fdatasync.latency_us_p50,
            profile.fdatasync.latency_us_p99,
            profile.concurrency.knee_depth
        ),
        Err(weir_tune::profile::ProfileError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            tracing::info!(
                "no disk profile in the data dir: `weir-tune measure --data-dir {}` makes one",
                config.data_dir.display()
            )
        }
        Err(e) => tracing::warn!("disk profile: {e}"),
    }
}
