//! Power loss under the quorum's storage: a single voter, in a process of its own, commits
//! records with its directory on weir-powercut (the FUSE file system that drops whatever no
//! fsync covered). At a seeded moment the process is SIGKILLed and the power cut: every
//! unsynced byte and directory entry is dropped, each file's last write torn at a sector
//! boundary half the time. The voter restarts on what survived. Every record whose write was
//! acknowledged must be applied again, in order, once, and the restart must succeed every time.
//!
//! `WEIR_POWERCUT_SEED=<u64>` replays a run; `WEIR_POWERCUT_CYCLES=N` (default 6).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::{Applied, Network, Router};
use openraft::{BasicNode, Config, SnapshotPolicy};
use weir_powercut::{DurabilityMode, PowerCutMount};
use weir_quorum::{LogStore, Raft, Record, StateMachine};

/// Set by the test for the voter process it starts: the quorum's directory.
const VOTER_DIR: &str = "WEIR_QUORUM_VOTER_DIR";
/// Set for the first start only: initialize the one-voter membership.
const VOTER_FIRST: &str = "WEIR_QUORUM_VOTER_FIRST";

fn config() -> Arc<Config> {
    Arc::new(
        Config {
            heartbeat_interval: 50,
            election_timeout_min: 150,
            election_timeout_max: 300,
            // Snapshots and purges happen within a cycle, so the cut also lands on them.
            snapshot_policy: SnapshotPolicy::LogsSinceLast(60),
            max_in_snapshot_log_to_keep: 10,
            purge_batch_size: 1,
            ..Default::default()
        }
        .validate()
        .unwrap(),
    )
}

/// A tiny seeded generator (splitmix64), so a run replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The numbered records in what a node applied (the empty marker records left out).
fn numbers(log: &common::AppliedLog) -> Vec<u32> {
    log.borrow()
        .iter()
        .filter(|(_, bytes)| !bytes.is_empty())
        .map(|(_, bytes)| u32::from_be_bytes(bytes[..4].try_into().unwrap()))
        .collect()
}

/// Not a test of its own: the voter process that the power-cut test starts, doing nothing
/// unless that test set `WEIR_QUORUM_VOTER_DIR`. It waits until it leads and has applied all
/// that was committed (an empty marker record goes through: writes are answered once applied,
/// and entries apply in order), prints `found N` (the numbered records it applied) or
/// `disorder ...`, then writes records numbered on from N, printing `acked M` (one past the
/// highest acknowledged) after each, until it is killed.
#[test]
fn voter_process() {
    let Ok(dir) = std::env::var(VOTER_DIR) else {
        return;
    };
    let first = std::env::var(VOTER_FIRST).is_ok();
    glommio::LocalExecutor::default().run(async move {
        let router = Router::default();
        let applied = Applied::default();
        let log = applied.0.clone();
        let dir = std::path::PathBuf::from(dir);
        let raft = Raft::new(
            1,
            config(),
            Network {
                router: router.clone(),
                from: 1,
            },
            LogStore::open(&dir).expect("the log opens after every cut"),
            StateMachine::open(&dir, Box::new(applied)).expect("the snapshot opens"),
        )
        .await
        .unwrap();
        router.nodes.borrow_mut().insert(1, raft.clone());
        if first {
            let members = BTreeMap::from([(1u64, BasicNode::new("node-1"))]);
            raft.initialize(members).await.unwrap();
        }
        while raft.client_write(Record(Vec::new())).await.is_err() {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        let found = numbers(&log);
        let mut out = std::io::stdout().lock();
        // libtest has printed "test voter_process ... " without a newline: start a line.
        writeln!(out).unwrap();
        if found != (0..found.len() as u32).collect::<Vec<_>>() {
            writeln!(out, "disorder {found:?}").unwrap();
        }
        writeln!(out, "found {}", found.len()).unwrap();
        out.flush().unwrap();
        let mut next = found.len() as u32;
        loop {
            if raft
                .client_write(Record(next.to_be_bytes().to_vec()))
                .await
                .is_ok()
            {
                next += 1;
                writeln!(out, "acked {next}").unwrap();
                out.flush().unwrap();
            }
        }
    });
}

/// What one power-on of the voter reported.
#[derive(Default)]
struct Report {
    found: Option<usize>,
    disorder: Option<String>,
}

#[test]
fn every_acknowledged_record_survives_power_cuts_at_random_moments() {
    let seed = std::env::var("WEIR_POWERCUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let cycles: u32 = std::env::var("WEIR_POWERCUT_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    eprintln!("power-cut seed {seed} (WEIR_POWERCUT_SEED={seed} replays it), {cycles} cycles");
    let mut rng = Rng(seed);
    let root = tempfile::tempdir().unwrap();
    let mut mount = PowerCutMount::mount(&root.path().join("mnt"), DurabilityMode::Posix)
        .unwrap_or_else(|e| panic!("the power-cut test cannot run: {e}"));
    let dir = mount.path().join("quorum");
    let acked = Arc::new(AtomicU32::new(0));
    for cycle in 0..=cycles {
        let before = acked.load(Ordering::SeqCst);
        let mut voter = Command::new(std::env::current_exe().unwrap());
        voter
            .args([
                "--exact",
                "voter_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(VOTER_DIR, &dir)
            .stdout(Stdio::piped());
        if cycle == 0 {
            voter.env(VOTER_FIRST, "1");
        }
        let mut child = voter.spawn().unwrap();
        let report = Arc::new(Mutex::new(Report::default()));
        let reader = {
            let (report, acked) = (report.clone(), acked.clone());
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(n) = line.strip_prefix("acked ") {
                        acked.store(n.parse().unwrap(), Ordering::SeqCst);
                    } else if let Some(n) = line.strip_prefix("found ") {
                        report.lock().unwrap().found = Some(n.parse().unwrap());
                    } else if line.starts_with("disorder ") {
                        report.lock().unwrap().disorder = Some(line);
                    }
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while report.lock().unwrap().found.is_none() && Instant::now() < deadline {
            assert!(
                child.try_wait().unwrap().is_none(),
                "seed {seed}, cycle {cycle}: the voter exited"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // Power on for a random while, writing; then the crash.
        std::thread::sleep(Duration::from_millis(100 + rng.next() % 1_200));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let report = report.lock().unwrap();
        let found = report.found.unwrap_or_else(|| {
            panic!("seed {seed}, cycle {cycle}: the voter never led after the restart")
        });
        assert_eq!(report.disorder, None, "seed {seed}, cycle {cycle}");
        assert!(
            found >= before as usize,
            "seed {seed}: {before} records were acknowledged before cut {}, {found} came back",
            cycle.saturating_sub(1)
        );
        if cycle == cycles {
            break;
        }
        let tear = rng.next().is_multiple_of(2).then(|| rng.next());
        let cut = mount.cut(tear).unwrap();
        eprintln!(
            "cut {cycle}: {found} found at start, {} acknowledged; dropped {} unsynced bytes, {} torn writes",
            acked.load(Ordering::SeqCst),
            cut.dropped.unsynced_bytes,
            cut.torn_writes.len()
        );
    }
}
