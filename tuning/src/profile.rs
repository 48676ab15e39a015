//! The disk profile `weir-tune measure` writes and Weir reads at start to size its write
//! concurrency and flush windows: a small TOML file, `<data-dir>/io-profile.toml` by default.
//!
//! The format is a contract with the broker, so it is versioned: `format_version` changes only
//! when a field is removed or changes meaning, and [`load`] refuses versions it does not know.
//! New fields may be added within a version; readers ignore fields they do not know.
//!
//! ```toml
//! format_version = 1
//! measured_at_unix_s = 1764000000
//! data_dir = "/var/lib/weir"
//! filesystem = "xfs"
//! device = "nvme0n1"
//! duration_s = 10.0
//!
//! [sequential_write]
//! block_bytes = 1048576
//! bytes_per_sync = 8388608
//! bandwidth_bytes_per_s = 1850000000
//!
//! [fdatasync]
//! write_bytes = 4096
//! samples = 5210
//! latency_us_p50 = 180
//! latency_us_p99 = 420
//! latency_us_p999 = 900
//! latency_us_max = 2100
//!
//! [concurrency]
//! write_bytes = 262144
//! knee_depth = 8
//!
//! [[concurrency.steps]]
//! depth = 1
//! bandwidth_bytes_per_s = 600000000
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The format this crate writes and the only one [`load`] accepts.
pub const PROFILE_FORMAT_VERSION: u32 = 1;
/// The profile's file name inside the data dir, where Weir looks for it by default.
pub const PROFILE_FILE_NAME: &str = "io-profile.toml";
/// A profile is a few hundred bytes; a much larger file is not one.
pub const PROFILE_BYTES_MAX: u64 = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IoProfile {
    pub format_version: u32,
    pub measured_at_unix_s: u64,
    /// The directory measured (its filesystem is what matters).
    pub data_dir: PathBuf,
    /// Filesystem type of the data dir, when it could be told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<String>,
    /// Block device (`/sys/block` name) under the data dir, when it could be told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Wall time the measurement took.
    pub duration_s: f64,
    pub sequential_write: SequentialWrite,
    pub fdatasync: SyncLatency,
    pub concurrency: Concurrency,
}

/// One writer appending `block_bytes` at a time with an `fdatasync` every `bytes_per_sync`:
/// a single partition's flusher under heavy load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SequentialWrite {
    pub block_bytes: u64,
    pub bytes_per_sync: u64,
    pub bandwidth_bytes_per_s: u64,
}

/// Appending `write_bytes` then `fdatasync`, one at a time: what an acks=all produce of one
/// small batch waits for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncLatency {
    pub write_bytes: u64,
    pub samples: u64,
    pub latency_us_p50: u64,
    pub latency_us_p99: u64,
    pub latency_us_p999: u64,
    pub latency_us_max: u64,
}

/// `depth` writers, each appending `write_bytes` then `fdatasync` to its own file (partitions
/// flushing at once), and the aggregate bandwidth at each depth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Concurrency {
    pub write_bytes: u64,
    /// The smallest depth reaching 90% of the best bandwidth measured: how many flushes Weir
    /// should keep in flight on this device.
    pub knee_depth: u32,
    pub steps: Vec<ConcurrencyStep>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConcurrencyStep {
    pub depth: u32,
    pub bandwidth_bytes_per_s: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read disk profile {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write disk profile {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("disk profile {path} is {len} bytes, more than {PROFILE_BYTES_MAX}: not a profile")]
    TooLarge { path: PathBuf, len: u64 },
    #[error("disk profile {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("disk profile {path} has format_version {found}; this Weir reads {PROFILE_FORMAT_VERSION} (run `weir-tune measure` again)")]
    UnknownVersion { path: PathBuf, found: u32 },
}

/// The default profile path for a data dir.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join(PROFILE_FILE_NAME)
}

/// Reads and validates a profile. What Weir calls at start.
pub fn load(path: &Path) -> Result<IoProfile, ProfileError> {
    let read_error = |source| ProfileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let len = fs::metadata(path).map_err(read_error)?.len();
    if len > PROFILE_BYTES_MAX {
        return Err(ProfileError::TooLarge {
            path: path.to_path_buf(),
            len,
        });
    }
    let text = fs::read_to_string(path).map_err(read_error)?;
    parse(&text).map_err(|error| match error {
        ParseError::Version(found) => ProfileError::UnknownVersion {
            path: path.to_path_buf(),
            found,
        },
        ParseError::Invalid(message) => ProfileError::Invalid {
            path: path.to_path_buf(),
            message,
        },
    })
}

enum ParseError {
    Version(u32),
    Invalid(String),
}

fn parse(text: &str) -> Result<IoProfile, ParseError> {
    // The version first, alone, so a future format gets "unknown version" rather than a
    // confusing missing-field error.
    #[derive(Deserialize)]
    struct VersionOnly {
        format_version: u32,
    }
    let version: VersionOnly =
        toml::from_str(text).map_err(|e| ParseError::Invalid(e.message().to_string()))?;
    if version.format_version != PROFILE_FORMAT_VERSION {
        return Err(ParseError::Version(version.format_version));
    }
    let profile: IoProfile =
        toml::from_str(text).map_err(|e| ParseError::Invalid(e.message().to_string()))?;
    validate(&profile).map_err(ParseError::Invalid)?;
    Ok(profile)
}

/// Numbers the broker sizes things from must be sane: a zero knee would mean no flushes.
fn validate(profile: &IoProfile) -> Result<(), String> {
    if profile.concurrency.knee_depth == 0 {
        return Err("concurrency.knee_depth is 0".to_string());
    }
    let sync = &profile.fdatasync;
    if !(sync.latency_us_p50 <= sync.latency_us_p99
        && sync.latency_us_p99 <= sync.latency_us_p999
        && sync.latency_us_p999 <= sync.latency_us_max)
    {
        return Err("fdatasync percentiles are not in increasing order".to_string());
    }
    Ok(())
}

/// Writes the profile atomically (temp file, fsync, rename), so Weir never reads half of one.
pub fn save(profile: &IoProfile, path: &Path) -> Result<(), ProfileError> {
    let write_error = |source| ProfileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let text = toml::to_string(profile).map_err(|e| ProfileError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let header = "# Disk profile written by `weir-tune measure`; read by Weir at start.\n# Format: see the README, \"Tuning the host (weir-tune)\".\n";
    let temp = path.with_extension("toml.tmp");
    let mut file = fs::File::create(&temp).map_err(write_error)?;
    file.write_all(header.as_bytes()).map_err(write_error)?;
    file.write_all(text.as_bytes()).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    fs::rename(&temp, path).map_err(write_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> IoProfile {
        IoProfile {
            format_version: PROFILE_FORMAT_VERSION,
            measured_at_unix_s: 1_764_000_000,
            data_dir: PathBuf::from("/var/lib/weir"),
            filesystem: Some("xfs".to_string()),
            device: None,
            duration_s: 10.0,
            sequential_write: SequentialWrite {
                block_bytes: 1 << 20,
                bytes_per_sync: 8 << 20,
                bandwidth_bytes_per_s: 1_850_000_000,
            },
            fdatasync: SyncLatency {
                write_bytes: 4096,
                samples: 5210,
                latency_us_p50: 180,
                latency_us_p99: 420,
                latency_us_p999: 900,
                latency_us_max: 2100,
            },
            concurrency: Concurrency {
                write_bytes: 256 << 10,
                knee_depth: 8,
                steps: vec![ConcurrencyStep {
                    depth: 1,
                    bandwidth_bytes_per_s: 600_000_000,
                }],
            },
        }
    }

    #[test]
    fn profiles_round_trip() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = default_path(dir.path());
        save(&sample(), &path).expect("saved");
        assert_eq!(load(&path).expect("loaded"), sample());
    }

    #[test]
    fn the_documented_example_loads() {
        let doc = include_str!("profile.rs");
        let example: String = doc
            .lines()
            .skip_while(|line| !line.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|line| !line.starts_with("//! ```"))
            .map(|line| line.trim_start_matches("//!").trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            parse(&example).is_ok(),
            "the module doc's example must stay loadable"
        );
    }

    #[test]
    fn unknown_versions_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("p.toml");
        let future = toml::to_string(&sample())
            .expect("serializes")
            .replace("format_version = 1", "format_version = 2");
        fs::write(&path, future).expect("written");
        assert!(matches!(
            load(&path),
            Err(ProfileError::UnknownVersion { found: 2, .. })
        ));

        fs::write(&path, "format_version = 1\n").expect("written");
        assert!(matches!(load(&path), Err(ProfileError::Invalid { .. })));

        fs::write(&path, "not toml at all [").expect("written");
        assert!(matches!(load(&path), Err(ProfileError::Invalid { .. })));

        fs::write(&path, vec![b'#'; PROFILE_BYTES_MAX as usize + 1]).expect("written");
        assert!(matches!(load(&path), Err(ProfileError::TooLarge { .. })));

        assert!(matches!(
            load(&dir.path().join("absent.toml")),
            Err(ProfileError::Read { .. })
        ));
    }

    #[test]
    fn unknown_fields_are_ignored_for_forward_compatibility() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("p.toml");
        let text = toml::to_string(&sample()).expect("serializes");
        fs::write(&path, format!("added_later = true\n{text}")).expect("written");
        assert_eq!(load(&path).expect("loaded"), sample());
    }
}
