//! Thread-per-core shards: one glommio executor per core, pinned, and typed cross-shard calls.
//!
//! A shard owns its state outright (`S`, built on the shard's own thread and never shared).
//! Work for another shard travels as a boxed closure over a glommio channel mesh and runs
//! *on the target's thread* against the target's state; the result comes back on a oneshot.
//! This crate knows nothing of Kafka: it moves closures and results, nothing else.
//!
//! It must never hand one shard's state to another thread: jobs receive `Rc<S>` on the
//! target, and only `Send` values cross.

use std::cell::{Cell, OnceCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::time::Duration;

use futures::channel::oneshot;
use glommio::channels::channel_mesh::{MeshBuilder, Senders};
use glommio::{LocalExecutorBuilder, Placement};

pub mod cpuset;

/// Index of a shard, `0..count`.
pub type ShardId = usize;

/// Messages queued per ordered shard pair before a sender waits. Bounded so a flood of
/// calls to a busy shard applies back-pressure instead of growing memory.
pub const MESH_CHANNEL_DEPTH: usize = 1024;

/// How long an idle executor spins before it parks. Parking costs a `membarrier` IPI that
/// is dear in VMs; spinning briefly cuts a cross-shard round trip from ~38 µs to ~15 µs p50
/// (measured in DESIGN.md, "Known ground").
pub const SPIN_BEFORE_PARK: Duration = Duration::from_micros(50);

type Job<S> = Box<dyn FnOnce(Rc<S>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("shard {0} does not exist")]
    NoSuchShard(ShardId),
    #[error("shard {0} has stopped")]
    Stopped(ShardId),
    #[error("shard {0} dropped the call before answering")]
    Canceled(ShardId),
    #[error("starting shard executors: {0}")]
    Start(String),
}

/// Calls this shard made to other shards: how many, and their round-trip time in total.
/// Plain cells: only this shard's thread touches them.
#[derive(Debug, Default)]
pub struct CallStats {
    pub calls: Cell<u64>,
    pub round_trip_nanos: Cell<u64>,
}

/// The handle a shard uses to reach itself and its peers. Lives on one shard's thread.
pub struct Shard<S: 'static> {
    id: ShardId,
    count: usize,
    senders: Senders<Job<S>>,
    /// Weak so that state holding an `Rc<Shard<S>>` does not form a cycle.
    local: OnceCell<Weak<S>>,
    stats: CallStats,
}

impl<S: 'static> Shard<S> {
    pub fn id(&self) -> ShardId {
        self.id
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Cross-shard calls made from this shard (calls to itself are not counted).
    pub fn call_stats(&self) -> &CallStats {
        &self.stats
    }

    /// The state of this shard. Panics before `serve`, which is a startup-order bug.
    pub fn local_state(&self) -> Rc<S> {
        self.local
            .get()
            .and_then(Weak::upgrade)
            .expect("shard state is installed by serve() before any call is made")
    }

    /// Installs this shard's state and starts running calls from peers against it.
    pub fn serve(self: &Rc<Self>, state: &Rc<S>, receivers: Receivers<S>) {
        self.local
            .set(Rc::downgrade(state))
            .unwrap_or_else(|_| panic!("serve() is called once per shard"));
        for (_peer, receiver) in receivers.0 {
            let this = Rc::downgrade(self);
            glommio::spawn_local(async move {
                while let Some(job) = receiver.recv().await {
                    let Some(shard) = this.upgrade() else { break };
                    let Some(state) = shard.local.get().and_then(Weak::upgrade) else {
                        break;
                    };
                    // Each call runs as its own task so a slow call (a long-poll fetch, a
                    // flush) never holds up the calls queued behind it.
                    glommio::spawn_local(job(state)).detach();
                }
            })
            .detach();
        }
    }

    /// Runs `call` on shard `target` against its state and returns the result. A call to
    /// this shard runs directly, without a channel hop, so both paths look the same to callers.
    pub async fn invoke_on<T, F, Fut>(&self, target: ShardId, call: F) -> Result<T, ShardError>
    where
        F: FnOnce(Rc<S>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        if target == self.id {
            return Ok(call(self.local_state()).await);
        }
        if target >= self.count {
            return Err(ShardError::NoSuchShard(target));
        }
        let started = std::time::Instant::now();
        let (reply, answer) = oneshot::channel();
        let job: Job<S> = Box::new(move |state| {
            Box::pin(async move {
                // The caller may have given up (timeout, closed connection): nothing to do then.
                let _ = reply.send(call(state).await);
            })
        });
        self.senders
            .send_to(target, job)
            .await
            .map_err(|_| ShardError::Stopped(target))?;
        let result = answer.await.map_err(|_| ShardError::Canceled(target));
        self.stats.calls.set(self.stats.calls.get() + 1);
        let nanos = started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.stats
            .round_trip_nanos
            .set(self.stats.round_trip_nanos.get().saturating_add(nanos));
        result
    }

    /// Runs `call` on every shard (this one included) concurrently; results in shard order.
    pub async fn broadcast<T, F, Fut>(&self, call: F) -> Vec<Result<T, ShardError>>
    where
        F: FnOnce(Rc<S>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let calls = (0..self.count).map(|target| self.invoke_on(target, call.clone()));
        futures::future::join_all(calls).await
    }
}

/// This shard's ends of the mesh, handed to `Shard::serve`.
pub struct Receivers<S: 'static>(
    Vec<(
        usize,
        glommio::channels::shared_channel::ConnectedReceiver<Job<S>>,
    )>,
);

/// How to start the shards.
#[derive(Clone, Debug)]
pub struct ShardsConfig {
    pub count: usize,
    /// Pin shard `i` to the `i`-th CPU of `cpus`. Off when there are more shards than CPUs.
    pub pin: bool,
    /// The CPUs shards may be pinned to, ascending: the process's affinity mask.
    pub cpus: Vec<usize>,
}

impl ShardsConfig {
    /// One shard per CPU the process may run on, pinned.
    pub fn per_core() -> Self {
        let cpus = cpuset::allowed_cpus();
        ShardsConfig {
            count: cpus.len(),
            pin: true,
            cpus,
        }
    }
}

/// Starts `config.count` executors, each running `main(shard, receivers)` on its own thread
/// until it returns, and waits for all of them. `main` builds the shard's state, calls
/// `shard.serve(&state, receivers)`, then runs the shard's work.
pub fn run<S, F, Fut>(config: &ShardsConfig, main: F) -> Result<(), ShardError>
where
    S: 'static,
    F: Fn(Rc<Shard<S>>, Receivers<S>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let pin = config.pin && config.count <= config.cpus.len();
    let mesh: MeshBuilder<Job<S>, _> = MeshBuilder::full(config.count, MESH_CHANNEL_DEPTH);
    let mut handles = Vec::with_capacity(config.count);
    for id in 0..config.count {
        let placement = if pin {
            Placement::Fixed(config.cpus[id])
        } else {
            Placement::Unbound
        };
        let mesh = mesh.clone();
        let main = main.clone();
        let count = config.count;
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("weir-shard-{id}"))
            .spin_before_park(SPIN_BEFORE_PARK)
            .spawn(move || async move {
                let (senders, mut receivers) = mesh
                    .join()
                    .await
                    .expect("every shard joins the mesh exactly once");
                // The mesh numbers peers in join order; shard ids are that order.
                let shard = Rc::new(Shard {
                    id: senders.peer_id(),
                    count,
                    senders,
                    local: OnceCell::new(),
                    stats: CallStats::default(),
                });
                main(shard, Receivers(receivers.streams())).await;
            })
            .map_err(|e| ShardError::Start(e.to_string()))?;
        handles.push(handle);
    }
    let mut first_error = None;
    for handle in handles {
        if let Err(e) = handle.join() {
            first_error.get_or_insert(ShardError::Start(e.to_string()));
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Counter {
        shard: Rc<Shard<Counter>>,
        hits: Cell<u64>,
    }

    #[test]
    fn calls_run_on_the_target_shard_and_return_results() {
        let done = Arc::new(AtomicUsize::new(0));
        let config = ShardsConfig {
            count: 3,
            pin: false,
            cpus: Vec::new(),
        };
        let finished = done.clone();
        run(&config, move |shard: Rc<Shard<Counter>>, receivers| {
            let finished = finished.clone();
            async move {
                let state = Rc::new(Counter {
                    shard: shard.clone(),
                    hits: Cell::new(0),
                });
                shard.serve(&state, receivers);
                let me = shard.id();
                for target in 0..shard.count() {
                    let (ran_on, hits) = shard
                        .invoke_on(target, |s: Rc<Counter>| async move {
                            s.hits.set(s.hits.get() + 1);
                            (s.shard.id(), s.hits.get())
                        })
                        .await
                        .unwrap();
                    assert_eq!(ran_on, target, "call from {me} ran on the wrong shard");
                    assert!(hits >= 1);
                }
                let ids: Vec<_> = shard
                    .broadcast(|s: Rc<Counter>| async move { s.shard.id() })
                    .await
                    .into_iter()
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(ids, vec![0, 1, 2]);
                assert!(matches!(
                    shard.invoke_on(7, |_s: Rc<Counter>| async {}).await,
                    Err(ShardError::NoSuchShard(7))
                ));
                finished.fetch_add(1, Ordering::SeqCst);
                // Keep serving until every shard has made its calls.
                while finished.load(Ordering::SeqCst) < 3 {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
            }
        })
        .unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 3);
    }

    /// glommio 0.9 pushed a fresh waker clone each time a task polled a send on a full shared
    /// channel; a task polled ~32k times while its peer was busy overflowed its i16 reference
    /// count and panicked the shard (issue 16). The vendored patch keeps one waker per task.
    #[test]
    fn a_sender_polled_often_on_a_full_channel_keeps_one_waker() {
        const POLLS: usize = 40_000;
        let served = Arc::new(AtomicUsize::new(0));
        let config = ShardsConfig {
            count: 2,
            pin: false,
            cpus: Vec::new(),
        };
        let counted = served.clone();
        run(&config, move |shard: Rc<Shard<Counter>>, receivers| {
            let counted = counted.clone();
            async move {
                let state = Rc::new(Counter {
                    shard: shard.clone(),
                    hits: Cell::new(0),
                });
                shard.serve(&state, receivers);
                let calls = MESH_CHANNEL_DEPTH + 1;
                if shard.id() == 1 {
                    // Busy (not polling its receivers) while shard 0 fills the channel and
                    // polls the send that does not fit, over and over.
                    std::thread::sleep(Duration::from_millis(1500));
                    // Bounded: without the patch shard 0 panics and never finishes counting.
                    let deadline = std::time::Instant::now() + Duration::from_secs(20);
                    while counted.load(Ordering::SeqCst) < calls
                        && std::time::Instant::now() < deadline
                    {
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                    }
                    return;
                }
                for _ in 0..MESH_CHANNEL_DEPTH {
                    let (shard, counted) = (shard.clone(), counted.clone());
                    glommio::spawn_local(async move {
                        shard
                            .invoke_on(1, |_s: Rc<Counter>| async {})
                            .await
                            .unwrap();
                        counted.fetch_add(1, Ordering::SeqCst);
                    })
                    .detach();
                }
                glommio::executor().yield_task_queue_now().await;
                // Each yield wakes this task, and `or` polls the blocked send again first.
                let spin = async {
                    for _ in 0..POLLS {
                        futures_lite::future::yield_now().await;
                    }
                    false
                };
                let last = async {
                    shard
                        .invoke_on(1, |_s: Rc<Counter>| async {})
                        .await
                        .unwrap();
                    true
                };
                if !futures_lite::future::or(last, spin).await {
                    shard
                        .invoke_on(1, |_s: Rc<Counter>| async {})
                        .await
                        .unwrap();
                }
                counted.fetch_add(1, Ordering::SeqCst);
                while counted.load(Ordering::SeqCst) < calls {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
            }
        })
        .expect("no shard panicked");
        assert_eq!(served.load(Ordering::SeqCst), MESH_CHANNEL_DEPTH + 1);
    }

    /// glommio 0.9 dropped a task's last waker on a foreign thread by decrementing the count
    /// to 0 and then cloning a new waker to send home. The owner's `JoinHandle::drop` of the
    /// completed task read 0 in between and freed it; the clone's wake freed it again (the
    /// broker's "double free or corruption" under a keyed benchmark, issue 16). The vendored
    /// patch never lets the count pass through 0 off the owner's thread. Racing the two
    /// drops, with the handle's delay swept across the window, aborts the process without it.
    #[test]
    fn a_foreign_waker_dropped_beside_the_join_handle_frees_the_task_once() {
        use std::sync::atomic::AtomicBool;
        use std::task::Waker;
        const ROUNDS: u32 = 1_000_000;
        let (to_helper, from_tasks) = std::sync::mpsc::channel::<(Waker, Arc<AtomicBool>)>();
        let helper = std::thread::spawn(move || {
            for (waker, go) in from_tasks {
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                drop(waker);
            }
        });
        glommio::LocalExecutor::default().run(async move {
            for round in 0..ROUNDS {
                let go = Arc::new(AtomicBool::new(false));
                let done = Rc::new(Cell::new(false));
                // Task sizes rotate, so a task freed too early is not reused by the next
                // round before the stray wake reaches it, and glibc sees the second free.
                let task = match round % 4 {
                    0 => spawn_sized::<64>(&to_helper, &go, &done),
                    1 => spawn_sized::<1024>(&to_helper, &go, &done),
                    2 => spawn_sized::<2048>(&to_helper, &go, &done),
                    _ => spawn_sized::<4096>(&to_helper, &go, &done),
                };
                while !done.get() {
                    glommio::yield_if_needed().await;
                    futures_lite::future::yield_now().await;
                }
                // The task has completed; only the helper's waker and this handle remain.
                futures_lite::future::yield_now().await;
                go.store(true, Ordering::Release);
                for _ in 0..round % 97 {
                    std::hint::spin_loop();
                }
                drop(task);
            }
            drop(to_helper);
            // Let the last wakers sent home be processed.
            glommio::timer::sleep(Duration::from_millis(50)).await;
        });
        helper.join().expect("the helper thread finished");
    }

    /// A task of at least `N` bytes that sends its waker to the helper thread and completes.
    fn spawn_sized<const N: usize>(
        to_helper: &std::sync::mpsc::Sender<(std::task::Waker, Arc<std::sync::atomic::AtomicBool>)>,
        go: &Arc<std::sync::atomic::AtomicBool>,
        done: &Rc<Cell<bool>>,
    ) -> glommio::Task<()> {
        let (to_helper, go, done) = (to_helper.clone(), go.clone(), done.clone());
        let ballast = [0u8; N];
        glommio::spawn_local(async move {
            let waker = std::future::poll_fn(|cx| std::task::Poll::Ready(cx.waker().clone())).await;
            to_helper.send((waker, go)).unwrap();
            done.set(std::hint::black_box(ballast)[N - 1] == 0);
        })
    }
}
