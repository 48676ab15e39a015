//! The `weir-tune` binary against fixture roots: exit codes, JSON output, dry runs that write
//! nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn weir_tune(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir-tune"))
        .args(args)
        .output()
        .expect("weir-tune runs")
}

#[test]
fn check_exits_1_when_weir_cannot_run_and_prints_json() {
    let root = fixture("container");
    let output = weir_tune(&[
        "check",
        "--json",
        "--data-dir",
        "/var/lib/weir",
        "--root",
        root.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert!(json["summary"]["fail"].as_u64().expect("a count") >= 1);
    let sysctl = json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["check"] == "io_uring.disabled_sysctl")
        .expect("the sysctl finding");
    assert_eq!(sysctl["verdict"], "FAIL");
}

#[test]
fn check_is_the_default_command() {
    let root = fixture("untuned");
    let output = weir_tune(&[
        "--data-dir",
        "/var/lib/weir",
        "--root",
        root.to_str().expect("utf-8 path"),
    ]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("WARN    mem.swappiness"), "{table}");
    assert!(table.contains("fix:"), "{table}");
}

#[test]
fn apply_dry_run_writes_nothing() {
    let root = fixture("untuned");
    let before = std::fs::read_to_string(root.join("proc/sys/vm/swappiness")).expect("fixture");
    let output = weir_tune(&[
        "apply",
        "--dry-run",
        "--data-dir",
        "/var/lib/weir",
        "--root",
        root.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(output.status.code(), Some(0));
    let plan = String::from_utf8_lossy(&output.stdout);
    assert!(
        plan.contains("would write \"1\" to /proc/sys/vm/swappiness (now \"60\")"),
        "{plan}"
    );
    let after = std::fs::read_to_string(root.join("proc/sys/vm/swappiness")).expect("fixture");
    assert_eq!(before, after);
}

#[test]
fn revert_without_a_state_file_has_nothing_to_do() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let state = dir.path().join("absent.json");
    let output = weir_tune(&[
        "revert",
        "--state-file",
        state.to_str().expect("utf-8 path"),
        "--root",
        dir.path().to_str().expect("utf-8 path"),
    ]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Nothing to revert"));
}
