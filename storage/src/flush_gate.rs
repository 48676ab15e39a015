//! A shard's limit on flush windows in flight at once, over all its partitions.
//!
//! Each partition has one flusher, which writes its pending window and fdatasyncs it. With
//! many partitions on a shard, every flusher would otherwise put its window on the device at
//! the same moment. Past the device's knee (the depth where bandwidth stops growing, which
//! `weir-tune measure` finds) more windows in flight only queue in the device; held back
//! here instead, a partition's next window gathers more batches, so one fdatasync covers
//! more of them. A gate is shard-local (`Rc`, no locks) and shared by the shard's logs.
//!
//! Since every window of the shard passes the gate, the gate also keeps the shard's
//! flush-stage times (`FlushStages`): where a durable produce spends its time in the log.

use std::num::NonZeroUsize;
use std::rc::Rc;

use glommio::sync::{Semaphore, StaticPermit};

use crate::histogram::{Histogram, HistogramSnapshot, LATENCY_BUCKETS};

#[derive(Debug)]
pub struct FlushGate {
    /// None: no limit.
    permits: Option<Rc<Semaphore>>,
    depth: Option<NonZeroUsize>,
    stages: FlushStages,
}

/// Seconds spent in each stage of a log's flush pipeline, over the shard's logs: the parts
/// of a durable produce's latency that the storage layer owns.
#[derive(Debug)]
pub struct FlushStages {
    /// From the first batch of a window being staged to its flusher taking the window:
    /// the group-commit wait (the previous window's write and sync, then the gate).
    pub queued: Histogram<14>,
    /// Waiting at this gate for a window slot.
    pub gate: Histogram<14>,
    /// One window's io_uring writes (data and index entries).
    pub write: Histogram<14>,
    /// One fdatasync.
    pub sync: Histogram<14>,
}

impl Default for FlushStages {
    fn default() -> Self {
        FlushStages {
            queued: Histogram::new(&LATENCY_BUCKETS),
            gate: Histogram::new(&LATENCY_BUCKETS),
            write: Histogram::new(&LATENCY_BUCKETS),
            sync: Histogram::new(&LATENCY_BUCKETS),
        }
    }
}

impl FlushStages {
    /// (stage name, its numbers), the names as the metrics label them.
    pub fn snapshot(&self) -> [(&'static str, HistogramSnapshot); 4] {
        [
            ("log_queued", self.queued.snapshot()),
            ("log_gate", self.gate.snapshot()),
            ("log_write", self.write.snapshot()),
            ("log_fdatasync", self.sync.snapshot()),
        ]
    }
}

/// Held while a window is written and synced; dropping it lets the next flusher in.
pub struct FlushPermit {
    _permit: Option<StaticPermit>,
}

impl FlushGate {
    /// At most `depth` windows in flight at once; None for no limit.
    pub fn new(depth: Option<NonZeroUsize>) -> Rc<FlushGate> {
        Rc::new(FlushGate {
            permits: depth.map(|d| Rc::new(Semaphore::new(d.get() as u64))),
            depth,
            stages: FlushStages::default(),
        })
    }

    pub fn unlimited() -> Rc<FlushGate> {
        FlushGate::new(None)
    }

    pub fn depth(&self) -> Option<NonZeroUsize> {
        self.depth
    }

    /// The flush-stage times of the logs that share this gate.
    pub fn stages(&self) -> &FlushStages {
        &self.stages
    }

    /// Waits for room for one more window. Waiters are let in first come, first served.
    pub async fn enter(&self) -> FlushPermit {
        let permit = match &self.permits {
            // The semaphore is never closed, so acquiring only ever waits.
            Some(permits) => permits.acquire_static_permit(1).await.ok(),
            None => None,
        };
        FlushPermit { _permit: permit }
    }

    /// Windows in flight now (0 without a limit).
    pub fn in_flight(&self) -> usize {
        match (&self.permits, self.depth) {
            (Some(permits), Some(depth)) => depth.get() - permits.available() as usize,
            _ => 0,
        }
    }
}

/// Windows per shard from a disk profile's knee: the device's best depth shared evenly by
/// the shards that flush to it, at least one each.
pub fn depth_per_shard(knee_depth: u32, shards: usize) -> NonZeroUsize {
    let per_shard = (knee_depth as usize).div_ceil(shards.max(1));
    NonZeroUsize::new(per_shard).unwrap_or(NonZeroUsize::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutor;
    use std::cell::Cell;

    #[test]
    fn depth_is_the_knee_shared_by_the_shards_and_never_zero() {
        assert_eq!(depth_per_shard(16, 2).get(), 8);
        assert_eq!(depth_per_shard(5, 2).get(), 3);
        assert_eq!(depth_per_shard(1, 8).get(), 1);
        assert_eq!(depth_per_shard(0, 4).get(), 1);
        assert_eq!(depth_per_shard(7, 0).get(), 7);
    }

    #[test]
    fn no_more_than_depth_windows_are_in_flight() {
        LocalExecutor::default().run(async {
            let gate = FlushGate::new(NonZeroUsize::new(2));
            let peak = Rc::new(Cell::new(0));
            let tasks: Vec<_> = (0..6)
                .map(|_| {
                    let (gate, peak) = (gate.clone(), peak.clone());
                    glommio::spawn_local(async move {
                        let _permit = gate.enter().await;
                        peak.set(peak.get().max(gate.in_flight()));
                        glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
                    })
                })
                .collect();
            for task in tasks {
                task.await;
            }
            assert_eq!(peak.get(), 2, "two windows at once, never three");
            assert_eq!(gate.in_flight(), 0, "every permit came back");
        });
    }

    #[test]
    fn unlimited_never_waits() {
        LocalExecutor::default().run(async {
            let gate = FlushGate::unlimited();
            let permits: Vec<_> = enter_times(&gate, 1000).await;
            assert_eq!(permits.len(), 1000);
            assert_eq!(gate.depth(), None);
        });
    }

    async fn enter_times(gate: &FlushGate, n: usize) -> Vec<FlushPermit> {
        let mut permits = Vec::with_capacity(n);
        for _ in 0..n {
            permits.push(gate.enter().await);
        }
        permits
    }
}
