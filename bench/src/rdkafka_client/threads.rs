//! The rdkafka run: the runner's setup, one thread per producer and per consumer, the
//! runner's watch while they work, then the runner's result assembly.

use std::sync::Arc;
use std::thread::{self, JoinHandle};

use super::consumer::{run_consumer, ConsumerTask};
use super::producer::{run_producer, ProducerTask};
use crate::consumer::ConsumerOutcome;
use crate::error::BenchError;
use crate::producer::ProducerOutcome;
use crate::report::RunResult;
use crate::runner::{self, Outcomes, RunOptions, Setup};
use crate::stats::live::LiveCounters;

pub fn run(options: &RunOptions) -> Result<RunResult, BenchError> {
    options.workload.validate()?;
    let setup = runner::set_up(options)?;
    let consumer_tasks = consumer_tasks(options, &setup);
    let producer_tasks = producer_tasks(options, &setup);
    let consumers = spawn_all(&setup.live, consumer_tasks, |task| {
        (format!("rdkafka-c{}", task.consumer_id), Role::Consumer)
    })?;
    let producers = spawn_all(&setup.live, producer_tasks, |task| {
        (format!("rdkafka-p{}", task.producer_id), Role::Producer)
    })?;
    runner::watch(
        options,
        &setup.timing,
        &setup.live,
        producers.len() as u64,
        !consumers.is_empty(),
    );
    let mut outcomes = Outcomes::default();
    for (name, handle) in producers {
        match join(name, handle) {
            Ok(outcome) => outcomes.producers.push(outcome),
            Err(error) => outcomes.errors.push(error),
        }
    }
    for (name, handle) in consumers {
        match join(name, handle) {
            Ok(outcome) => outcomes.consumers.push(outcome),
            Err(error) => outcomes.errors.push(error),
        }
    }
    runner::finish(options, setup, vec![outcomes], super::client_name())
}

fn producer_tasks(options: &RunOptions, setup: &Setup) -> Vec<ProducerTask> {
    (0..options.workload.producers)
        .map(|producer_id| ProducerTask {
            producer_id,
            bootstrap: options.bootstrap.clone(),
            topic: setup.layout.topic.clone(),
            run_tag: setup.run_tag,
            workload: options.workload.clone(),
            timing: setup.timing,
            live: setup.live.clone(),
        })
        .collect()
}

/// One consumer per consumer id that has partitions to read (as the native runner plans
/// them), each from the offsets the run started at.
fn consumer_tasks(options: &RunOptions, setup: &Setup) -> Vec<ConsumerTask> {
    (0..options.workload.consumers)
        .map(|consumer_id| ConsumerTask {
            consumer_id,
            bootstrap: options.bootstrap.clone(),
            topic: setup.layout.topic.clone(),
            run_tag: setup.run_tag,
            workload: options.workload.clone(),
            partitions: runner::consumer_partitions(&options.workload, consumer_id)
                .into_iter()
                .map(|p| (p as i32, setup.offsets[p]))
                .collect(),
            timing: setup.timing,
            live: setup.live.clone(),
        })
        .filter(|task| !task.partitions.is_empty())
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Producer,
    Consumer,
}

trait Task: Send + 'static {
    type Outcome: Send + 'static;
    fn run(&self) -> Result<Self::Outcome, BenchError>;
}

impl Task for ProducerTask {
    type Outcome = ProducerOutcome;
    fn run(&self) -> Result<ProducerOutcome, BenchError> {
        run_producer(self)
    }
}

impl Task for ConsumerTask {
    type Outcome = ConsumerOutcome;
    fn run(&self) -> Result<ConsumerOutcome, BenchError> {
        run_consumer(self)
    }
}

type Spawned<O> = Vec<(String, JoinHandle<Result<O, BenchError>>)>;

fn spawn_all<T: Task>(
    live: &Arc<LiveCounters>,
    tasks: Vec<T>,
    name_of: impl Fn(&T) -> (String, Role),
) -> Result<Spawned<T::Outcome>, BenchError> {
    let mut handles = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (name, role) = name_of(&task);
        let thread_live = live.clone();
        let handle = thread::Builder::new().name(name.clone()).spawn(move || {
            let mut exit = ThreadExit {
                live: thread_live,
                role,
                ok: false,
            };
            let result = task.run();
            exit.ok = result.is_ok();
            result
        });
        match handle {
            Ok(handle) => handles.push((name, handle)),
            Err(e) => {
                // Threads already started would otherwise read until the drain timeout.
                live.stop_consumers();
                return Err(BenchError::Executor(format!("starting thread {name}: {e}")));
            }
        }
    }
    Ok(handles)
}

/// Tells the watch how a thread ended, however it ends (a panic included), so the watch
/// never waits for a thread that is gone: a producer counts as done, a failure as an error,
/// and a failed consumer stops the others, which would otherwise wait for messages it
/// should have read (as the native runner does).
struct ThreadExit {
    live: Arc<LiveCounters>,
    role: Role,
    ok: bool,
}

impl Drop for ThreadExit {
    fn drop(&mut self) {
        if !self.ok {
            LiveCounters::add(&self.live.errors, 1);
            if self.role == Role::Consumer {
                self.live.stop_consumers();
            }
        }
        if self.role == Role::Producer {
            LiveCounters::add(&self.live.producers_done, 1);
        }
    }
}

fn join<O>(name: String, handle: JoinHandle<Result<O, BenchError>>) -> Result<O, String> {
    match handle.join() {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("thread {name} panicked")),
    }
}
