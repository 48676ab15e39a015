//! A one-second disk measurement on a temp dir: the profile is sane, round-trips through
//! `load`, and the scratch files are gone afterwards.

use std::time::Duration;

use weir_tune::measure::{self, MeasureOptions, CONCURRENCY_DEPTHS};
use weir_tune::profile::{self, PROFILE_FORMAT_VERSION};

#[test]
fn a_short_measurement_round_trips_through_load() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data_dir = dir.path().join("data");
    let mut options = MeasureOptions::new(&data_dir, Duration::from_secs(1));
    // Small, so CI disks are not filled: each writer wraps within its share of 32 MiB.
    options.scratch_bytes_max = 32 * 1024 * 1024;
    options.free_bytes_reserved = 8 * 1024 * 1024;
    let measured = measure::measure(&options).expect("measured");

    assert_eq!(measured.format_version, PROFILE_FORMAT_VERSION);
    assert!(measured.sequential_write.bandwidth_bytes_per_s > 0);
    let sync = &measured.fdatasync;
    assert!(sync.samples >= 1);
    assert!(sync.latency_us_p50 >= 1);
    assert!(sync.latency_us_p50 <= sync.latency_us_p99);
    assert!(sync.latency_us_p99 <= sync.latency_us_p999);
    assert!(sync.latency_us_p999 <= sync.latency_us_max);
    assert_eq!(measured.concurrency.steps.len(), CONCURRENCY_DEPTHS.len());
    assert!(CONCURRENCY_DEPTHS.contains(&measured.concurrency.knee_depth));
    assert!(
        measured.duration_s >= 0.9 && measured.duration_s < 30.0,
        "{}",
        measured.duration_s
    );

    let path = profile::default_path(&data_dir);
    profile::save(&measured, &path).expect("saved");
    assert_eq!(profile::load(&path).expect("loaded"), measured);

    let left: Vec<_> = std::fs::read_dir(&data_dir)
        .expect("data dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("io-profile.toml")],
        "only the profile is left"
    );
}
