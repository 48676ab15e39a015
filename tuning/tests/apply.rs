//! `apply` and `revert` on a copy of the untuned fixture: the fixes land, the checks then
//! pass, previous values are recorded once, and revert puts every file back.

use std::fs;
use std::path::{Path, PathBuf};

use weir_tune::apply::{self, WriteResult};
use weir_tune::checks::{self, CheckContext};
use weir_tune::system::{FixedFacts, IoUringProbe, Limit};
use weir_tune::{Finding, Host, Verdict};

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create dir");
    for entry in fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

fn untuned_copy() -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/untuned");
    copy_tree(&fixture, &dir.path().join("root"));
    let host = Host::new(dir.path().join("root"));
    (dir, host)
}

fn check(host: &Host) -> Vec<Finding> {
    let facts = FixedFacts {
        kernel_release: Some("6.8.0".to_string()),
        open_files: Some(Limit {
            soft: None,
            hard: None,
        }),
        locked_memory: Some(Limit {
            soft: None,
            hard: None,
        }),
        root: true,
        io_uring: IoUringProbe::Available,
    };
    let ctx = CheckContext {
        host,
        facts: &facts,
        data_dir: PathBuf::from("/var/lib/weir"),
        smp: None,
        partitions: 1000,
    };
    checks::all(&ctx)
}

#[test]
fn apply_fixes_what_it_can_and_revert_restores_everything() {
    let (dir, host) = untuned_copy();
    let state_path = dir.path().join("state/applied.json");
    let before = check(&host);
    let planned = apply::plan(&host, &before);
    assert!(planned.len() >= 10, "{planned:#?}");
    let originals: Vec<(PathBuf, String)> = planned
        .iter()
        .map(|p| {
            (
                p.path.clone(),
                apply::writable_form(&host.read(&p.path).expect("readable")),
            )
        })
        .collect();

    // Planning (the dry run) writes nothing.
    for (path, original) in &originals {
        assert_eq!(
            &apply::writable_form(&host.read(path).expect("readable")),
            original
        );
    }

    let outcomes = apply::apply(&host, &planned, &state_path).expect("applied");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o.result, WriteResult::Written { .. })),
        "{outcomes:#?}"
    );
    assert_eq!(
        host.read_value("/proc/sys/vm/swappiness")
            .expect("readable"),
        "1"
    );

    // Every finding apply could fix is fixed; what it cannot touch still warns.
    let after = check(&host);
    for finding in after.iter().filter(|f| {
        before
            .iter()
            .any(|b| b.check == f.check && !b.tweaks.is_empty())
    }) {
        assert_eq!(finding.verdict, Verdict::Ok, "{}", finding.log_line());
    }
    let still = |check: &str| after.iter().find(|f| f.check == check).map(|f| f.verdict);
    assert_eq!(still("disk.mount_options"), Some(Verdict::Warn));
    assert_eq!(still("cpu.smt"), Some(Verdict::Warn));

    // Applying again changes nothing and keeps the first previous values.
    let again = apply::apply(&host, &apply::plan(&host, &after), &state_path).expect("applied");
    assert!(again.is_empty() || again.iter().all(|o| o.result == WriteResult::AlreadySet));
    let state = apply::load_state(&state_path)
        .expect("state")
        .expect("present");
    let swappiness = state
        .entries
        .iter()
        .find(|e| e.path == Path::new("/proc/sys/vm/swappiness"))
        .expect("recorded");
    assert_eq!(swappiness.previous, "60");

    let reverted = apply::revert(&host, &state_path).expect("reverted");
    assert_eq!(reverted.len(), originals.len());
    for (path, original) in &originals {
        assert_eq!(
            &apply::writable_form(&host.read(path).expect("readable")),
            original,
            "{} restored",
            path.display()
        );
    }
    assert!(
        !state_path.exists(),
        "a fully reverted state file is removed"
    );
    assert!(apply::revert(&host, &state_path)
        .expect("nothing to revert")
        .is_empty());
}

#[test]
fn a_failed_write_is_reported_and_the_others_still_happen() {
    let (dir, host) = untuned_copy();
    let state_path = dir.path().join("applied.json");
    let findings = check(&host);
    let mut planned = apply::plan(&host, &findings);
    // A file that vanished between check and apply (or a path the kernel does not have).
    planned.insert(
        0,
        apply::PlannedWrite {
            check: "test.missing".to_string(),
            path: PathBuf::from("/proc/sys/net/core/not_a_sysctl"),
            value: "1".to_string(),
            current: None,
        },
    );
    let outcomes = apply::apply(&host, &planned, &state_path).expect("applied");
    assert!(matches!(outcomes[0].result, WriteResult::Failed(_)));
    assert!(outcomes[1..]
        .iter()
        .all(|o| matches!(o.result, WriteResult::Written { .. })));
    let state = apply::load_state(&state_path)
        .expect("state")
        .expect("present");
    assert_eq!(
        state.entries.len(),
        outcomes.len() - 1,
        "only real writes are recorded"
    );
}
