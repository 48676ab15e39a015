//! Runs one workload against one target: sets the topic up, starts one pinned glommio
//! executor per core with its share of producers and consumers, prints a progress line every
//! second, decides when the consumers have drained, and merges what every core measured.
//!
//! The setup (`set_up`), the watch loop (`watch`) and the result assembly (`finish`) are the
//! same for every client: `rdkafka_client` calls them around its own threads, so both clients
//! measure the same window and report the same way.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use crate::client::admin::{start_offsets, AdminClient, TopicLayout};
use crate::clock::{monotonic_now_ns, unix_now_ms};
use crate::consumer::{run_consumer, ConsumerOutcome, ConsumerPlan};
use crate::error::BenchError;
use crate::host_limits::{self, HostLimitsOptions};
use crate::producer::{run_producer, ProducerOutcome, ProducerPlan};
use crate::report::{Errors, RunResult, Throughput, RESULT_FORMAT_VERSION};
use crate::stats::delivery::{ConsumedLog, DeliveryReport, PerProducer};
use crate::stats::latency::LatencyRecorder;
use crate::stats::live::{LiveCounters, LiveSnapshot};
use crate::stats::series::TimeSeries;
use crate::workload::Workload;

/// Time between starting the executors and the first intended send: connections are made
/// meanwhile, so connecting never counts as latency.
const START_DELAY: Duration = Duration::from_millis(500);

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub bootstrap: String,
    pub workload: Workload,
    pub cores: usize,
    /// After the producers finish, how long consumers may take to catch up.
    pub drain_timeout: Duration,
    pub progress: bool,
    pub host_limits: Option<HostLimitsOptions>,
    /// Seconds per window of the per-window report (`RunResult::windows`); 0 for none.
    pub window_s: u64,
}

/// What a group of producers and consumers hands back: one core's executor, or all of the
/// rdkafka client's threads.
#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    pub producers: Vec<ProducerOutcome>,
    pub consumers: Vec<ConsumerOutcome>,
    pub errors: Vec<String>,
}

/// The run's phases on the monotonic clock: warm-up from `start_ns`, the measured window
/// from `warmup_end_ns` to `end_ns`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub start_ns: u64,
    pub warmup_end_ns: u64,
    pub end_ns: u64,
}

/// Everything a client needs before the load starts.
#[derive(Debug)]
pub(crate) struct Setup {
    pub layout: TopicLayout,
    /// Log end offset of each partition when the run started: where consumers begin.
    pub offsets: Vec<i64>,
    /// Distinguishes this run's messages from any left in a reused topic.
    pub run_tag: u32,
    pub started_at_unix_ms: i64,
    pub timing: Timing,
    pub live: Arc<LiveCounters>,
}

pub fn run(options: &RunOptions) -> Result<RunResult, BenchError> {
    let workload = &options.workload;
    workload.validate()?;
    let setup = set_up(options)?;
    let (timing, live) = (&setup.timing, &setup.live);
    let producer_plans = producer_plans(workload, &setup.layout, setup.run_tag, timing, live);
    let consumer_plans = consumer_plans(
        workload,
        &setup.layout,
        &setup.offsets,
        setup.run_tag,
        timing,
        live,
    );
    let cores = options.cores.max(1);
    let mut handles = Vec::with_capacity(cores);
    // Producers then consumers, dealt round-robin over the cores: with one of each on two
    // cores they get a core each.
    let producers_count = producer_plans.len();
    let core_of = |task: usize| task % cores;
    // Pinned within the process's mask (`--cpuset`, taskset), never to CPU `i` regardless.
    let cpus = weir_shard::cpuset::allowed_cpus();
    for core in 0..cores {
        let producers: Vec<ProducerPlan> = (0..producer_plans.len())
            .filter(|&i| core_of(i) == core)
            .map(|i| producer_plans[i].clone())
            .collect();
        let consumers: Vec<ConsumerPlan> = (0..consumer_plans.len())
            .filter(|&i| core_of(producers_count + i) == core)
            .map(|i| consumer_plans[i].clone())
            .collect();
        let live = live.clone();
        let placement = match cpus.get(core % cpus.len().max(1)) {
            Some(&cpu) => Placement::Fixed(cpu),
            None => Placement::Unbound,
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("weir-bench-{core}"))
            .spawn(move || run_core(producers, consumers, live))
            .map_err(|e| {
                BenchError::Executor(format!("starting the executor of core {core}: {e}"))
            })?;
        handles.push(handle);
    }
    watch(
        options,
        timing,
        live,
        producer_plans.len() as u64,
        !consumer_plans.is_empty(),
    );
    let mut outcomes = Vec::with_capacity(cores);
    for handle in handles {
        outcomes.push(
            handle
                .join()
                .map_err(|e| BenchError::Executor(format!("a core's executor failed: {e}")))?,
        );
    }
    finish(options, setup, outcomes, "native".into())
}

/// Creates the topic (or checks an existing one), finds its leaders and start offsets, and
/// fixes the run's phases.
pub(crate) fn set_up(options: &RunOptions) -> Result<Setup, BenchError> {
    let workload = &options.workload;
    let started_at_unix_ms = unix_now_ms();
    let topic = workload
        .topic
        .clone()
        .unwrap_or_else(|| format!("weir-bench-{started_at_unix_ms}"));
    let mut admin = AdminClient::connect(&options.bootstrap)?;
    admin.create_topic(&topic, workload.partitions, workload.replication_factor)?;
    let layout = admin.topic_layout(&topic)?;
    if layout.leaders.len() < workload.partitions as usize {
        return Err(BenchError::Topic {
            topic,
            message: format!(
                "has {} partitions, the workload needs {}",
                layout.leaders.len(),
                workload.partitions
            ),
        });
    }
    let offsets = start_offsets(&layout)?;
    let run_tag =
        (started_at_unix_ms as u64 ^ u64::from(std::process::id()).rotate_left(32)) as u32;

    let start_ns = monotonic_now_ns() + START_DELAY.as_nanos() as u64;
    let warmup_end_ns = start_ns + workload.warmup_s * 1_000_000_000;
    let timing = Timing {
        start_ns,
        warmup_end_ns,
        end_ns: warmup_end_ns + workload.duration_s * 1_000_000_000,
    };
    Ok(Setup {
        layout,
        offsets,
        run_tag,
        started_at_unix_ms,
        timing,
        live: Arc::new(LiveCounters::default()),
    })
}

/// After every producer and consumer has returned: measures the host's limits if asked,
/// then merges the outcomes into the run's result.
pub(crate) fn finish(
    options: &RunOptions,
    setup: Setup,
    outcomes: Vec<Outcomes>,
    client: String,
) -> Result<RunResult, BenchError> {
    let host_limits = match &options.host_limits {
        Some(limits_options) => Some(host_limits::measure(limits_options)?),
        None => None,
    };
    merge(options, outcomes, setup, client, host_limits)
}

/// The partitions consumer `consumer_id` reads: `p ≡ consumer_id (mod consumers)`.
pub(crate) fn consumer_partitions(workload: &Workload, consumer_id: u32) -> Vec<usize> {
    (0..workload.partitions as usize)
        .filter(|p| *p as u32 % workload.consumers == consumer_id)
        .collect()
}

fn producer_plans(
    workload: &Workload,
    layout: &TopicLayout,
    run_tag: u32,
    timing: &Timing,
    live: &Arc<LiveCounters>,
) -> Vec<ProducerPlan> {
    (0..workload.producers)
        .map(|producer_id| ProducerPlan {
            producer_id,
            producers: workload.producers,
            run_tag,
            topic: layout.topic.clone(),
            leaders: layout.leaders[..workload.partitions as usize].to_vec(),
            workload: workload.clone(),
            start_ns: timing.start_ns,
            warmup_end_ns: timing.warmup_end_ns,
            end_ns: timing.end_ns,
            live: live.clone(),
        })
        .collect()
}

/// Consumer `c` of `C` reads partitions `p ≡ c (mod C)`; one fetch loop per leader it needs.
fn consumer_plans(
    workload: &Workload,
    layout: &TopicLayout,
    offsets: &[i64],
    run_tag: u32,
    timing: &Timing,
    live: &Arc<LiveCounters>,
) -> Vec<ConsumerPlan> {
    let mut plans = Vec::new();
    for consumer_id in 0..workload.consumers {
        let mine = consumer_partitions(workload, consumer_id);
        let mut leaders: Vec<&String> = mine.iter().map(|&p| &layout.leaders[p]).collect();
        leaders.sort();
        leaders.dedup();
        for leader in leaders {
            let partitions = mine
                .iter()
                .filter(|&&p| &layout.leaders[p] == leader)
                .map(|&p| (p as i32, offsets[p]))
                .collect();
            plans.push(ConsumerPlan {
                consumer_id,
                run_tag,
                producers: workload.producers,
                topic: layout.topic.clone(),
                leader: leader.clone(),
                partitions,
                partitions_total: workload.partitions,
                partition_max_bytes: workload.fetch_partition_max_bytes,
                start_ns: timing.start_ns,
                warmup_end_ns: timing.warmup_end_ns,
                end_ns: timing.end_ns,
                live: live.clone(),
            });
        }
    }
    plans
}

/// One core: every producer and consumer assigned to it as tasks of one executor.
async fn run_core(
    producers: Vec<ProducerPlan>,
    consumers: Vec<ConsumerPlan>,
    live: Arc<LiveCounters>,
) -> Outcomes {
    let producer_tasks: Vec<_> = producers
        .into_iter()
        .map(|plan| glommio::spawn_local(run_producer(plan)))
        .collect();
    let consumer_tasks: Vec<_> = consumers
        .into_iter()
        .map(|plan| {
            let live = live.clone();
            glommio::spawn_local(async move {
                let result = run_consumer(plan).await;
                if result.is_err() {
                    // Told at once, not when this core's producers are joined: the watch
                    // would otherwise wait out the drain for messages nobody reads.
                    LiveCounters::add(&live.errors, 1);
                    live.stop_consumers();
                }
                result
            })
        })
        .collect();
    let mut outcome = Outcomes::default();
    for task in producer_tasks {
        match task.await {
            Ok(p) => outcome.producers.push(p),
            Err(e) => {
                LiveCounters::add(&live.errors, 1);
                outcome.errors.push(format!("producer: {e}"));
            }
        }
    }
    for task in consumer_tasks {
        match task.await {
            Ok(c) => outcome.consumers.push(c),
            // Counted and the consumers stopped by the task itself (above).
            Err(e) => outcome.errors.push(format!("consumer: {e}")),
        }
    }
    outcome
}

/// Runs on the caller's thread while the producers and consumers work: progress lines, and
/// the decision when consumers stop (all producers done and every acknowledged message
/// consumed, or the drain timeout).
pub(crate) fn watch(
    options: &RunOptions,
    timing: &Timing,
    live: &LiveCounters,
    producers: u64,
    has_consumers: bool,
) {
    let mut last = LiveSnapshot::default();
    let mut last_print_ns = timing.start_ns;
    let mut producers_done_at: Option<u64> = None;
    let drain_ns = options.drain_timeout.as_nanos() as u64;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now_ns = monotonic_now_ns();
        let snapshot = live.snapshot();
        if options.progress && now_ns >= last_print_ns + 1_000_000_000 {
            print_progress(timing, now_ns, &snapshot, &last, now_ns - last_print_ns);
            last = snapshot;
            last_print_ns = now_ns;
        }
        if snapshot.producers_done < producers {
            continue;
        }
        let done_at = *producers_done_at.get_or_insert(now_ns);
        let drained = snapshot.consumed_msgs >= snapshot.acked_msgs;
        if !has_consumers || drained || snapshot.errors > 0 || now_ns >= done_at + drain_ns {
            live.stop_consumers();
            return;
        }
    }
}

fn print_progress(
    timing: &Timing,
    now_ns: u64,
    now: &LiveSnapshot,
    last: &LiveSnapshot,
    elapsed_ns: u64,
) {
    let seconds = elapsed_ns as f64 / 1e9;
    let t = (now_ns.saturating_sub(timing.start_ns)) as f64 / 1e9;
    let phase = if now_ns < timing.warmup_end_ns {
        "warm-up"
    } else if now_ns < timing.end_ns {
        "measure"
    } else {
        "drain  "
    };
    let rate = |a: u64, b: u64| (a - b) as f64 / seconds;
    eprintln!(
        "[{t:6.1}s {phase}] produce {:>12} msg/s {:>8.1} MB/s | consume {:>12} msg/s {:>8.1} MB/s | in flight {:>9} | failed {}",
        crate::report::table::thousands(rate(now.acked_msgs, last.acked_msgs)),
        rate(now.acked_bytes, last.acked_bytes) / 1e6,
        crate::report::table::thousands(rate(now.consumed_msgs, last.consumed_msgs)),
        rate(now.consumed_bytes, last.consumed_bytes) / 1e6,
        crate::report::table::thousands(now.sent_msgs.saturating_sub(now.acked_msgs + now.failed_msgs) as f64),
        now.failed_msgs,
    );
    let _ = std::io::stderr().flush();
}

fn merge(
    options: &RunOptions,
    outcomes: Vec<Outcomes>,
    setup: Setup,
    client: String,
    host_limits: Option<crate::host_limits::HostLimits>,
) -> Result<RunResult, BenchError> {
    let workload = &options.workload;
    let errors: Vec<String> = outcomes
        .iter()
        .flat_map(|o| o.errors.iter().cloned())
        .collect();
    if !errors.is_empty() {
        return Err(BenchError::Executor(errors.join("; ")));
    }
    let mut produce_latency = LatencyRecorder::new();
    let mut e2e_latency = LatencyRecorder::new();
    let mut series = TimeSeries::new(setup.timing.start_ns);
    let mut acked = PerProducer::with_producers(workload.producers as usize);
    let mut consumed = ConsumedLog::default();
    let mut totals = Errors::default();
    let (mut p_msgs, mut p_bytes, mut p_total, mut p_total_bytes) = (0, 0, 0, 0);
    let (mut c_msgs, mut c_bytes, mut c_total, mut c_total_bytes) = (0, 0, 0, 0);
    for core in &outcomes {
        for p in &core.producers {
            produce_latency.merge(&p.latency);
            series.merge(&p.series);
            acked.sets[p.producer_id as usize].union_counting_overlap(&p.acked);
            p_msgs += p.acked_msgs_window;
            p_bytes += p.acked_bytes_window;
            p_total += p.acked_msgs_total;
            p_total_bytes += p.acked_bytes_total;
            totals.produce_failed_msgs += p.failed_msgs;
            for (code, n) in &p.error_codes {
                *totals.produce_error_codes.entry(*code).or_default() += n;
            }
            totals.produce_retried_batches += p.retried_batches;
            for (code, n) in &p.retried_error_codes {
                *totals.produce_retry_codes.entry(*code).or_default() += n;
            }
        }
        for c in &core.consumers {
            e2e_latency.merge(&c.latency);
            series.merge(&c.series);
            consumed.merge(&c.consumed);
            c_msgs += c.consumed_msgs_window;
            c_bytes += c.consumed_bytes_window;
            c_total += c.consumed_msgs_total;
            c_total_bytes += c.consumed_bytes_total;
            totals.fetch_errors += c.fetch_errors;
        }
    }
    let window_s = workload.duration_s as f64;
    Ok(RunResult {
        format_version: RESULT_FORMAT_VERSION,
        tool: format!("weir-bench {}", env!("CARGO_PKG_VERSION")),
        started_at_unix_ms: setup.started_at_unix_ms,
        target: options.bootstrap.clone(),
        client,
        cores: options.cores,
        topic: setup.layout.topic,
        workload: workload.clone(),
        produce: Throughput::new(p_msgs, p_bytes, window_s, p_total, p_total_bytes),
        consume: Throughput::new(c_msgs, c_bytes, window_s, c_total, c_total_bytes),
        produce_latency: produce_latency.summary(),
        end_to_end_latency: e2e_latency.summary(),
        produce_latency_percentiles: produce_latency.percentile_points(),
        end_to_end_latency_percentiles: e2e_latency.percentile_points(),
        windows: series.windows(workload.warmup_s, workload.duration_s, options.window_s),
        series: series.samples(),
        delivery: DeliveryReport::compare(&acked, &consumed, workload.consumers > 0),
        errors: totals,
        host_limits,
        broker_stages: Vec::new(),
        broker_usage: None,
    })
}
