//! Broker lifecycle: lock the data dir, load metadata, start one shard per core, serve until
//! SIGINT/SIGTERM, then flush every log and exit.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use weir_shard::{Receivers, Shard, ShardsConfig};
use weir_storage::LastShutdown;

use crate::clean_shutdown;
use crate::config::Config;
use crate::fault::{self, Fault};
use crate::group::coordinator::GroupCoordinator;
use crate::metadata::image::new_cluster_id;
use crate::metadata::{snapshot, topic_config, MetadataImage};
use crate::server::listener;
use crate::shard_context::ShardContext;
use crate::shutdown::{self, Shutdown};

/// Holds an exclusive flock on `<data_dir>/.lock` for the life of the process, so a second
/// broker on the same data dir refuses to start instead of corrupting the logs.
pub struct DataDirLock(#[allow(dead_code)] File);

impl DataDirLock {
    pub fn acquire(data_dir: &Path) -> anyhow::Result<DataDirLock> {
        let path = data_dir.join(".lock");
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!(
                "data dir {} is in use by another Weir process ({})",
                data_dir.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(DataDirLock(file))
    }
}

/// How long start-up waits for the listen port to be released by a previous process.
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Every shard binds with SO_REUSEPORT, which would silently share the port with another
/// process doing the same (and, after a crash, with a dead one); a plain bind proves the port
/// is ours. A process killed with SIGKILL keeps its listening socket alive for a moment after
/// it is reaped, while the kernel tears down its io_uring (pending accepts hold the socket),
/// so a busy port is retried briefly before giving up.
///
/// The probe binds without listening: a listening probe would accept (and then reset) a
/// client's connection that arrived in the instant it existed.
fn wait_for_port(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + PORT_RELEASE_WAIT;
    let mut logged = false;
    loop {
        match bind_probe(addr) {
            Ok(()) => return Ok(()),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                if !std::mem::replace(&mut logged, true) {
                    tracing::info!(
                        "{addr} is busy; waiting up to {PORT_RELEASE_WAIT:?} for it to be released"
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("listen address {addr} is not available"))
            }
        }
    }
}

/// Binds (SO_REUSEADDR, as the shards' listeners do, so TIME_WAIT does not count) and drops.
fn bind_probe(addr: std::net::SocketAddr) -> std::io::Result<()> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}

/// Loads the metadata image, creating it on a fresh data dir and re-homing partitions whose
/// shard no longer exists.
fn load_image(config: &Config) -> anyhow::Result<MetadataImage> {
    let (mut image, fresh) = match snapshot::load(&config.data_dir)? {
        Some(image) => (image, false),
        None => (
            MetadataImage {
                cluster_id: new_cluster_id(),
                ..MetadataImage::default()
            },
            true,
        ),
    };
    let moved = image.rebalance_missing_owners(config.smp);
    if fresh || moved {
        image.version += 1;
        snapshot::store(&config.data_dir, &image)?;
    }
    Ok(image)
}

/// Exit code of a broker stopped by a panic: Rust's own for a panicking `main`.
pub const PANIC_EXIT_CODE: i32 = 101;

/// A panic on any thread ends the process at once, non-zero, with the panic in the log.
/// glommio catches a panicking shard's unwind and lets the other shards run on: a half-alive
/// broker that owns partitions nobody serves, and whose SIGTERM waits forever for the dead
/// shard (issue 16). Exiting is safe: an acknowledged write is already on stable storage,
/// and the next start recovers as after SIGKILL; a supervisor restarts us.
fn fail_fast_on_panic() {
    let print_panic = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        print_panic(info);
        let thread = std::thread::current();
        tracing::error!(
            "thread {} panicked ({info}); exiting at once with code {PANIC_EXIT_CODE}",
            thread.name().unwrap_or("unnamed")
        );
        // SAFETY: _exit ends the process without unwinding or running atexit handlers,
        // which could block on state the panicking thread holds; nothing is left unsafe.
        unsafe { libc::_exit(PANIC_EXIT_CODE) }
    }));
}

pub fn run(mut config: Config) -> anyhow::Result<()> {
    fail_fast_on_panic();
    if let Some(cpus) = &config.cpuset {
        // Before any thread starts: they inherit the mask (io_uring's workers and the
        // blocking pool too), and the shards pin within it.
        weir_shard::cpuset::restrict_process_to(cpus).context("--cpuset")?;
    }
    let fault = fault::from_env()?;
    weir_storage::partition_dir::create_durably(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let _lock = DataDirLock::acquire(&config.data_dir)?;
    wait_for_port(config.listen)?;
    let profile = crate::host_checks::report(&config);
    let flush_concurrency = crate::host_checks::flush_concurrency(&config, profile.as_ref());
    config.log_flush_concurrency = Some(flush_concurrency.map_or(0, |n| n.get()));
    topic_config::set_broker_defaults(config.topic_defaults.clone());
    let image = Arc::new(load_image(&config)?);
    let tidied = crate::stray_partitions::tidy(&config.data_dir, &image)
        .context("removing the partitions of deleted topics")?;
    if tidied.leftover_deletions > 0 || !tidied.strays.is_empty() {
        tracing::warn!(
            "finished {} partition removal(s) a crash cut short; removed {} stray partition              director(ies): {:?}",
            tidied.leftover_deletions,
            tidied.strays.len(),
            tidied.strays
        );
    }
    let last_shutdown =
        clean_shutdown::take(&config.data_dir).context("reading the clean-shutdown marker")?;
    tracing::info!(
        "starting: {} shard(s), data dir {}, {} topic(s), last shutdown {}, flushes in flight \
         per shard: {}",
        config.smp,
        config.data_dir.display(),
        image.topics.len(),
        match last_shutdown {
            LastShutdown::Clean => "clean",
            LastShutdown::Unclean => "unclean: re-validating active segments",
        },
        flush_concurrency.map_or("no limit".to_string(), |n| n.to_string())
    );
    shutdown::block_signals().context("blocking signals")?;
    let shutdown = Shutdown::default();
    let config = Arc::new(config);
    let started = Arc::new(AtomicUsize::new(0));
    let flush_failed = Arc::new(AtomicBool::new(false));
    let shards = ShardsConfig {
        count: config.smp,
        ..ShardsConfig::per_core()
    };
    tracing::info!(
        "CPUs: {} ({})",
        weir_shard::cpuset::format_cpu_list(&shards.cpus),
        if config.smp <= shards.cpus.len() {
            "shard i pinned to the i-th of them".to_string()
        } else {
            format!(
                "{} shards on {} CPUs: not pinned",
                config.smp,
                shards.cpus.len()
            )
        }
    );
    let (stopped_tx, stopped_rx) = std::sync::mpsc::channel::<()>();
    let shard_thread = {
        let (config, shutdown) = (config.clone(), shutdown.clone());
        let (started, flush_failed) = (started.clone(), flush_failed.clone());
        std::thread::Builder::new()
            .name("weir-shards".into())
            .spawn(move || {
                let result = weir_shard::run(&shards, move |shard, receivers| {
                    shard_main(
                        shard,
                        receivers,
                        config.clone(),
                        image.clone(),
                        shutdown.clone(),
                        Startup {
                            started: started.clone(),
                            last_shutdown,
                            flush_failed: flush_failed.clone(),
                            fault,
                        },
                    )
                });
                // The main thread waits on this, not on join, so that it can give up.
                let _ = stopped_tx.send(());
                result
            })?
    };
    let signal = shutdown::wait_for_signal(&shutdown).context("waiting for signals")?;
    tracing::info!("{signal:?}: shutting down");
    let timeout = Duration::from_millis(config.shutdown_timeout_ms);
    if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped_rx.recv_timeout(timeout) {
        // A wedged shard (blocked in a syscall, a task that never yields) must not keep the
        // process alive: returning ends it, without the clean-shutdown marker.
        bail!(
            "shutdown did not finish within {} ms (--shutdown-timeout-ms): a shard is wedged; \
             exiting without a clean shutdown, the next start re-validates the logs",
            config.shutdown_timeout_ms
        );
    }
    shard_thread
        .join()
        .map_err(|_| anyhow::anyhow!("a shard panicked"))?
        .context("running shards")?;
    // Clean only if every shard got through start-up (so every log was recovered) and then
    // flushed everything.
    if started.load(Ordering::Acquire) == config.smp && !flush_failed.load(Ordering::Acquire) {
        clean_shutdown::mark(&config.data_dir).context("writing the clean-shutdown marker")?;
        tracing::info!("stopped cleanly");
    } else {
        tracing::warn!("stopped without a clean shutdown: the next start re-validates the logs");
    }
    Ok(())
}

/// What the shards share about start-up and shutdown.
#[derive(Clone)]
struct Startup {
    /// Shards that finished start-up (recovered their partitions).
    started: Arc<AtomicUsize>,
    last_shutdown: LastShutdown,
    /// Set by a shard whose final flush failed.
    flush_failed: Arc<AtomicBool>,
    /// A fault a test asked for (`WEIR_FAULT`).
    fault: Option<Fault>,
}

/// Stops the whole broker from inside a shard (startup failure): the main thread is parked in
/// sigwait, so it is woken the way an operator would wake it.
fn abort_startup(shutdown: &Shutdown, why: String) {
    tracing::error!("{why}");
    shutdown.begin();
    let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGTERM);
}

async fn shard_main(
    shard: Rc<Shard<ShardContext>>,
    receivers: Receivers<ShardContext>,
    config: Arc<Config>,
    image: Arc<MetadataImage>,
    shutdown: Shutdown,
    startup: Startup,
) {
    let ctx = Rc::new(ShardContext::new(
        shard.clone(),
        config.clone(),
        image.clone(),
    ));
    shard.serve(&ctx, receivers);
    if let Err(e) = open_owned_partitions(&ctx, &image, startup.last_shutdown).await {
        return abort_startup(
            &shutdown,
            format!("shard {}: recovering partitions: {e}", shard.id()),
        );
    }
    match crate::group::load::load_groups(&ctx).await {
        Ok(groups) => ctx.groups.install(groups),
        Err(e) => {
            return abort_startup(
                &shutdown,
                format!("shard {}: loading consumer groups: {e:#}", shard.id()),
            )
        }
    }
    let timers = glommio::spawn_local(GroupCoordinator::run_timers(ctx.clone()));
    let retention = glommio::spawn_local(crate::retention::run(ctx.clone()));
    let cleaner = glommio::spawn_local(crate::cleaner::run(ctx.clone()));
    let listener = match listener::bind(config.listen) {
        Ok(listener) => listener,
        Err(e) => {
            return abort_startup(
                &shutdown,
                format!("shard {}: binding {}: {e}", shard.id(), config.listen),
            )
        }
    };
    // Accept only once every shard has recovered its partitions, so no request is routed to
    // a log that is not open yet.
    startup.started.fetch_add(1, Ordering::AcqRel);
    while startup.started.load(Ordering::Acquire) < shard.count() && !shutdown.is_started() {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    if shard.id() == 0 {
        tracing::info!(
            "listening on {} (advertised as {}:{})",
            config.listen,
            config.advertised_host,
            config.advertised_port
        );
    }
    let metrics = (shard.id() == 0).then(|| start_metrics(&ctx, shutdown.clone()));
    if let Some(Fault::PanicShard { shard: id, after }) = startup.fault {
        if id == shard.id() {
            glommio::spawn_local(async move {
                glommio::timer::sleep(after).await;
                panic!("{}={id}: injected panic on shard {id}", fault::FAULT_ENV);
            })
            .detach();
        }
    }
    listener::accept_loop(ctx.clone(), listener, shutdown).await;
    if let Some(Fault::WedgeShardOnShutdown { shard: id }) = startup.fault {
        if id == shard.id() {
            tracing::warn!("shard {id}: wedged by {}", fault::FAULT_ENV);
            // Blocks the reactor on purpose: nothing on this shard runs again.
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    if let Some(Some(metrics)) = metrics {
        metrics.await;
    }
    // Dropping a glommio task cancels it: no group timer fires during the final flush.
    drop(timers);
    drop(retention);
    drop(cleaner);
    for log in ctx.all_partitions() {
        if let Err(e) = log.flush().await {
            tracing::error!("shard {}: flushing on shutdown: {e}", shard.id());
            startup.flush_failed.store(true, Ordering::Release);
        }
    }
}

/// The metrics endpoint, on shard 0. A port that cannot be bound is logged, not fatal:
/// metrics must never keep a broker from serving.
fn start_metrics(
    ctx: &Rc<ShardContext>,
    shutdown: Shutdown,
) -> Option<glommio::task::JoinHandle<()>> {
    let addr = ctx.config.metrics_listen;
    match crate::metrics::http::bind(addr) {
        Ok(listener) => {
            let bound = listener.local_addr().map_or(addr, |a| a);
            tracing::info!("metrics on http://{bound}/metrics");
            let ctx = ctx.clone();
            Some(
                glommio::spawn_local(crate::metrics::http::serve(ctx, listener, shutdown)).detach(),
            )
        }
        Err(e) => {
            tracing::warn!("metrics endpoint {addr} not started: {e}");
            None
        }
    }
}

async fn open_owned_partitions(
    ctx: &Rc<ShardContext>,
    image: &MetadataImage,
    last_shutdown: LastShutdown,
) -> anyhow::Result<()> {
    let me = ctx.shard.id();
    let opens = image.topics.values().flat_map(|topic| {
        let log_config = topic_config::log_config(&topic.configs);
        topic
            .partitions
            .iter()
            .enumerate()
            .filter(move |(_, p)| p.owner_shard as usize == me)
            .map(move |(index, _)| {
                let (ctx, name, log_config) = (ctx.clone(), topic.name.clone(), log_config.clone());
                let id = topic.id;
                async move {
                    ctx.open_partition_after(&name, id, index as i32, log_config, last_shutdown)
                        .await
                        .with_context(|| format!("{name}-{index}"))
                }
            })
    });
    for result in futures::future::join_all(opens).await {
        result?;
    }
    Ok(())
}
