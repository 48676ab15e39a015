//! Three voters on one executor, over an in-process network that can cut a node off: a
//! leader is elected, records commit on a majority and are applied everywhere in the same
//! order, a new leader takes over when the old one is cut off or stopped, and a node
//! restarted from its directory comes back with everything it had (snapshot and log behind it
//! purged included) and catches up.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Applied, Network, Router};
use openraft::{BasicNode, Config, SnapshotPolicy};
use openraft_rt::watch::WatchReceiver as _;
use weir_quorum::{LogStore, NodeId, Raft, Record, StateMachine};

type Log = common::AppliedLog;

fn config() -> Arc<Config> {
    Arc::new(
        Config {
            heartbeat_interval: 50,
            election_timeout_min: 200,
            election_timeout_max: 400,
            // Snapshot often and purge behind it, so a restart depends on the saved snapshot.
            snapshot_policy: SnapshotPolicy::LogsSinceLast(40),
            max_in_snapshot_log_to_keep: 5,
            purge_batch_size: 1,
            ..Default::default()
        }
        .validate()
        .unwrap(),
    )
}

async fn start(id: NodeId, dir: &Path, router: &Router) -> (Raft, Log) {
    let applied = Applied::default();
    let log = applied.0.clone();
    let raft = Raft::new(
        id,
        config(),
        Network {
            router: router.clone(),
            from: id,
        },
        LogStore::open(dir).unwrap(),
        StateMachine::open(dir, Box::new(applied)).unwrap(),
    )
    .await
    .unwrap();
    router.nodes.borrow_mut().insert(id, raft.clone());
    (raft, log)
}

/// The leader every reachable node agrees on, once they do.
async fn leader(router: &Router, among: &[NodeId]) -> NodeId {
    for _ in 0..200 {
        let leaders: Vec<Option<NodeId>> = {
            let nodes = router.nodes.borrow();
            among
                .iter()
                .map(|id| nodes[id].metrics().borrow_watched().current_leader)
                .collect()
        };
        if let Some(Some(first)) = leaders.first() {
            if among.contains(first) && leaders.iter().all(|l| l == &Some(*first)) {
                return *first;
            }
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    panic!("no leader agreed among {among:?}");
}

async fn write(router: &Router, leader: NodeId, records: std::ops::Range<u32>) {
    let raft = router.nodes.borrow()[&leader].clone();
    for n in records {
        raft.client_write(Record(n.to_be_bytes().to_vec()))
            .await
            .unwrap();
    }
}

/// Waits until `log` holds exactly `count` records: 0, 1, ... in order.
async fn applied_in_order(log: &Log, count: u32) {
    for _ in 0..300 {
        if log.borrow().len() >= count as usize {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    let values: Vec<u32> = log
        .borrow()
        .iter()
        .map(|(_, bytes)| u32::from_be_bytes(bytes[..4].try_into().unwrap()))
        .collect();
    assert_eq!(values, (0..count).collect::<Vec<_>>());
    let indexes: Vec<u64> = log.borrow().iter().map(|(index, _)| *index).collect();
    assert!(
        indexes.windows(2).all(|w| w[0] < w[1]),
        "applied out of log order: {indexes:?}"
    );
}

#[test]
fn three_voters_elect_replicate_fail_over_and_recover_from_disk() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    glommio::LocalExecutor::default().run(async {
        let router = Router::default();
        let mut logs = BTreeMap::new();
        for id in 1..=3u64 {
            let (_, log) = start(id, dirs[id as usize - 1].path(), &router).await;
            logs.insert(id, log);
        }
        let members: BTreeMap<NodeId, BasicNode> = (1..=3)
            .map(|id| (id, BasicNode::new(format!("node-{id}"))))
            .collect();
        let first_node = router.nodes.borrow()[&1].clone();
        first_node.initialize(members).await.unwrap();

        let first = leader(&router, &[1, 2, 3]).await;
        write(&router, first, 0..100).await;
        for log in logs.values() {
            applied_in_order(log, 100).await;
        }

        // Cut the leader off: the other two elect one of themselves and go on committing.
        router.cut.borrow_mut().insert(first);
        let rest: Vec<NodeId> = (1..=3).filter(|id| *id != first).collect();
        let second = leader(&router, &rest).await;
        assert_ne!(second, first);
        write(&router, second, 100..200).await;
        for id in &rest {
            applied_in_order(&logs[id], 200).await;
        }
        // A write to the isolated old leader cannot commit.
        let isolated = router.nodes.borrow()[&first].clone();
        let stale = glommio::timer::timeout(Duration::from_millis(500), async move {
            Ok(isolated.client_write(Record(vec![0xff; 4])).await)
        })
        .await;
        assert!(
            !matches!(stale, Ok(Ok(_))),
            "a write on the cut-off leader was acknowledged"
        );

        // Heal it: it follows the new leader and applies exactly what was committed.
        router.cut.borrow_mut().clear();
        applied_in_order(&logs[&first], 200).await;

        // Stop a follower, write on, restart it from its directory: the snapshot and the log
        // after it bring back everything, and it catches up with what it missed.
        let current = leader(&router, &[1, 2, 3]).await;
        let stopped = (1..=3).find(|id| *id != current).unwrap();
        let raft = router.nodes.borrow_mut().remove(&stopped).unwrap();
        raft.shutdown().await.unwrap();
        drop(raft);
        write(&router, current, 200..300).await;
        let (_, log) = start(stopped, dirs[stopped as usize - 1].path(), &router).await;
        applied_in_order(&log, 300).await;
        let metrics = router.nodes.borrow()[&stopped]
            .metrics()
            .borrow_watched()
            .clone();
        assert!(
            metrics.snapshot.is_some() && metrics.purged.is_some(),
            "the restart should have gone through a saved snapshot and purged log: {metrics:?}"
        );

        let running: Vec<Raft> = router.nodes.borrow().values().cloned().collect();
        for raft in running {
            raft.shutdown().await.unwrap();
        }
    });
}
