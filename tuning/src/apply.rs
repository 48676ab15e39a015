//! `weir-tune apply` and `revert`: the only code that writes to the host. `apply` writes the
//! findings' tweaks (sysctl, sysfs, IRQ affinity) and records each file's previous value in a
//! state file *before* moving on, so `revert` can put back exactly what was there; applying
//! twice keeps the first previous value, so revert returns to the host as it was found.
//! Nothing here runs unless the operator asked for `apply` or `revert`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checks::selected_choice;
use crate::finding::Finding;
use crate::host::Host;

pub const STATE_FORMAT_VERSION: u32 = 1;
/// Where `apply` records previous values unless told otherwise.
pub const STATE_PATH_DEFAULT: &str = "/var/lib/weir-tune/applied.json";
/// A state file holds one entry per tweaked file: a few hundred on a large host.
pub const STATE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// One write `apply` plans, from one finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedWrite {
    pub check: String,
    pub path: PathBuf,
    pub value: String,
    /// The file's value now (normalized as it would be written back), if readable.
    pub current: Option<String>,
}

/// The state file: what `apply` changed and what was there before.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState {
    pub format_version: u32,
    pub entries: Vec<AppliedWrite>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedWrite {
    pub check: String,
    pub path: PathBuf,
    pub previous: String,
    pub written: String,
}

/// What happened to one write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WriteOutcome {
    pub check: String,
    pub path: PathBuf,
    pub value: String,
    pub result: WriteResult,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum WriteResult {
    Written { previous: String },
    AlreadySet,
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write state file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The writes the findings ask for, one per file (the first finding naming a file wins),
/// with each file's current value.
pub fn plan(host: &Host, findings: &[Finding]) -> Vec<PlannedWrite> {
    let mut planned: Vec<PlannedWrite> = Vec::new();
    for finding in findings {
        for tweak in &finding.tweaks {
            if planned.iter().any(|p| p.path == tweak.path) {
                continue;
            }
            planned.push(PlannedWrite {
                check: finding.check.clone(),
                path: tweak.path.clone(),
                value: tweak.value.clone(),
                current: host.read(&tweak.path).ok().map(|raw| writable_form(&raw)),
            });
        }
    }
    planned
}

/// A value as read, in the form that writing it back restores it: the selected entry of a
/// choice file (`none [mq-deadline]` → `mq-deadline`), whitespace collapsed otherwise
/// (`tcp_rmem` reads back tab-separated and is written space-separated).
pub fn writable_form(raw: &str) -> String {
    if raw.contains('[') {
        selected_choice(raw).to_string()
    } else {
        raw.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Whether a planned value is already in place. CPU masks compare by the CPUs they name
/// (`00000003` is `3`).
fn already_set(current: &str, wanted: &str) -> bool {
    if current == wanted {
        return true;
    }
    let is_mask = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit() || c == ',');
    is_mask(current)
        && is_mask(wanted)
        && crate::cpu_set::parse_mask(current).is_some()
        && crate::cpu_set::parse_mask(current) == crate::cpu_set::parse_mask(wanted)
}

/// Writes every planned value, recording previous values in `state_path` as it goes.
/// A write the kernel refuses (read-only in a container, a managed IRQ) is reported and
/// skipped; the others still happen.
pub fn apply(
    host: &Host,
    planned: &[PlannedWrite],
    state_path: &Path,
) -> Result<Vec<WriteOutcome>, StateError> {
    let mut state = load_state(state_path)?.unwrap_or_default();
    state.format_version = STATE_FORMAT_VERSION;
    let mut outcomes = Vec::with_capacity(planned.len());
    for write in planned {
        let outcome = |result| WriteOutcome {
            check: write.check.clone(),
            path: write.path.clone(),
            value: write.value.clone(),
            result,
        };
        let previous = match host.read(&write.path) {
            Ok(raw) => writable_form(&raw),
            Err(error) => {
                outcomes.push(outcome(WriteResult::Failed(error.to_string())));
                continue;
            }
        };
        if already_set(&previous, &write.value) {
            outcomes.push(outcome(WriteResult::AlreadySet));
            continue;
        }
        if let Err(error) = host.write(&write.path, &write.value) {
            outcomes.push(outcome(WriteResult::Failed(error.to_string())));
            continue;
        }
        // Keep the value from before the first apply: that is the host as we found it.
        match state
            .entries
            .iter_mut()
            .find(|entry| entry.path == write.path)
        {
            Some(entry) => entry.written = write.value.clone(),
            None => state.entries.push(AppliedWrite {
                check: write.check.clone(),
                path: write.path.clone(),
                previous: previous.clone(),
                written: write.value.clone(),
            }),
        }
        // Saved after every write so an interrupted apply can still be reverted.
        save_state(&state, state_path)?;
        outcomes.push(outcome(WriteResult::Written { previous }));
    }
    Ok(outcomes)
}

/// Restores every recorded previous value, newest first. Entries restored are dropped from the
/// state file; the file is removed once all are.
pub fn revert(host: &Host, state_path: &Path) -> Result<Vec<WriteOutcome>, StateError> {
    let Some(state) = load_state(state_path)? else {
        return Ok(Vec::new());
    };
    let mut remaining = Vec::new();
    let mut outcomes = Vec::with_capacity(state.entries.len());
    for entry in state.entries.into_iter().rev() {
        let result = match host.write(&entry.path, &entry.previous) {
            Ok(()) => WriteResult::Written {
                previous: entry.written.clone(),
            },
            Err(error) => WriteResult::Failed(error.to_string()),
        };
        outcomes.push(WriteOutcome {
            check: entry.check.clone(),
            path: entry.path.clone(),
            value: entry.previous.clone(),
            result: result.clone(),
        });
        if matches!(result, WriteResult::Failed(_)) {
            remaining.push(entry);
        }
    }
    if remaining.is_empty() {
        fs::remove_file(state_path).map_err(|source| StateError::Write {
            path: state_path.to_path_buf(),
            source,
        })?;
    } else {
        remaining.reverse();
        let state = AppliedState {
            format_version: STATE_FORMAT_VERSION,
            entries: remaining,
        };
        save_state(&state, state_path)?;
    }
    Ok(outcomes)
}

/// The state file, or `None` when nothing has been applied.
pub fn load_state(path: &Path) -> Result<Option<AppliedState>, StateError> {
    let read_error = |source| StateError::Read {
        path: path.to_path_buf(),
        source,
    };
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(read_error(error)),
    };
    let invalid = |message: String| StateError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    if metadata.len() > STATE_BYTES_MAX {
        return Err(invalid(format!("larger than {STATE_BYTES_MAX} bytes")));
    }
    let text = fs::read_to_string(path).map_err(read_error)?;
    let state: AppliedState = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if state.format_version != STATE_FORMAT_VERSION {
        return Err(invalid(format!(
            "unknown format_version {}",
            state.format_version
        )));
    }
    Ok(Some(state))
}

fn save_state(state: &AppliedState, path: &Path) -> Result<(), StateError> {
    let write_error = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(write_error)?;
    }
    let text = serde_json::to_string_pretty(state).map_err(|e| StateError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // Temp file and rename: a crash mid-save must not lose the record of earlier writes.
    let temp = path.with_extension("json.tmp");
    let mut file = fs::File::create(&temp).map_err(write_error)?;
    file.write_all(text.as_bytes()).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    fs::rename(&temp, path).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_normalized_for_writing_back() {
        assert_eq!(writable_form("none [mq-deadline] kyber\n"), "mq-deadline");
        assert_eq!(
            writable_form("4096\t131072\t6291456\n"),
            "4096 131072 6291456"
        );
        assert_eq!(writable_form("60\n"), "60");
    }

    #[test]
    fn masks_compare_by_cpus() {
        assert!(already_set("00000003", "3"));
        assert!(!already_set("1", "3"));
        assert!(already_set("performance", "performance"));
        assert!(!already_set("0-1", "1"));
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("state.json");
        fs::write(&path, "{ not json").expect("written");
        assert!(matches!(load_state(&path), Err(StateError::Invalid { .. })));
        assert!(matches!(
            load_state(&dir.path().join("absent.json")),
            Ok(None)
        ));
    }
}
