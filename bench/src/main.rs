//! `weir-bench`: run, compare, presets. Exit 0 on success, 1 when a run fails or its
//! delivery check fails, 2 for bad usage (clap's convention).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use weir_bench::cli::{Cli, ClientKind, Command, CommonArgs, CompareArgs, RunArgs};
use weir_bench::clock::unix_now_ms;
use weir_bench::report::{default_out_dir, table, RunResult};
use weir_bench::runner::RunOptions;
use weir_bench::{
    broker_stages, broker_usage, compare, presets, rdkafka_client, runner, BenchError,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => run(&args),
        Command::Compare(args) => run_compare(&args),
        Command::Presets => {
            for name in presets::names() {
                println!("{name}");
            }
            Ok(true)
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("weir-bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_options(
    bootstrap: &str,
    common: &CommonArgs,
    host_limits: bool,
) -> Result<RunOptions, BenchError> {
    common.apply_cpuset()?;
    Ok(RunOptions {
        bootstrap: bootstrap.to_string(),
        workload: common.workload.resolve()?,
        cores: common.cores(),
        drain_timeout: Duration::from_secs(common.drain_timeout_s),
        progress: !common.quiet,
        host_limits: host_limits.then(|| common.host_limits_options()),
        window_s: common.window_s,
    })
}

fn run_with_client(client: ClientKind, options: &RunOptions) -> Result<RunResult, BenchError> {
    match client {
        ClientKind::Native => runner::run(options),
        ClientKind::Rdkafka => rdkafka_client::run(options),
    }
}

/// Runs, and with `metrics` (the broker's Prometheus endpoint) adds the broker's stage
/// breakdown of the run. A failed scrape is reported and leaves the breakdown out: it must
/// not throw away the run.
fn run_observed(
    client: ClientKind,
    options: &RunOptions,
    metrics: Option<&str>,
) -> Result<RunResult, BenchError> {
    let scrape = |address: &str| {
        broker_stages::scrape(address)
            .map_err(|e| eprintln!("weir-bench: {e}; no broker stage breakdown"))
            .ok()
    };
    let before = metrics.and_then(scrape);
    let mut result = run_with_client(client, options)?;
    if let (Some(address), Some(before)) = (metrics, before) {
        if let Some(after) = scrape(address) {
            result.broker_stages = broker_stages::between(&before, &after);
        }
    }
    Ok(result)
}

fn run(args: &RunArgs) -> Result<bool, BenchError> {
    let options = run_options(&args.bootstrap, &args.common, args.host_limits)?;
    let result = run_observed(args.common.client, &options, args.broker_metrics.as_deref())?;
    println!("{}", table::render(&result));
    let dir = args
        .common
        .out
        .clone()
        .unwrap_or_else(|| default_out_dir(result.started_at_unix_ms));
    report_files(&result.write_to(&dir)?);
    Ok(result.delivery.exactly_once || !result.delivery.checked)
}

fn run_compare(args: &CompareArgs) -> Result<bool, BenchError> {
    if args.targets.len() < 2 {
        return Err(BenchError::Config(
            "compare needs at least two --target".into(),
        ));
    }
    let dir = args
        .common
        .out
        .clone()
        .unwrap_or_else(|| default_out_dir(unix_now_ms()));
    let run_round = |name: &str, address: &str, round: u32, rate: Option<u64>| {
        let mut options = run_options(address, &args.common, false)?;
        if let Some(rate) = rate {
            options.workload.rate_msgs_per_s = rate;
        }
        // How the round is named on stderr and in its result directory.
        let (pace, label) = match options.workload.rate_msgs_per_s {
            0 => ("max rate".to_string(), "max".to_string()),
            r => (format!("{r} msg/s"), r.to_string()),
        };
        eprintln!(
            "--- {pace}, round {} of {}: {name} ({address}) ---",
            round + 1,
            args.rounds
        );
        let metrics = lookup(&args.broker_metrics, name).map(String::as_str);
        let pid = lookup(&args.broker_pids, name).copied();
        let cpu_before = pid.map(broker_usage::cpu_now).transpose()?;
        let mut result = run_observed(args.common.client, &options, metrics)?;
        if let Some(before) = cpu_before {
            result.broker_usage = Some(broker_usage::since(before, result.produce.bytes_total)?);
        }
        println!("{}", table::render(&result));
        result.write_to(&dir.join(format!("{name}-{label}-round{}", round + 1)))?;
        Ok(result)
    };
    std::fs::create_dir_all(&dir)?;
    let (first, all_exact) = if args.levels.is_empty() {
        let comparison = compare::compare(&args.targets, args.rounds, |name, address, round| {
            run_round(name, address, round, None)
        })?;
        println!("{}", comparison.render());
        write_json(&dir.join("compare.json"), &comparison)?;
        let all_exact = comparison.all_exact();
        (comparison, all_exact)
    } else {
        let sweep = compare::sweep(
            &args.targets,
            args.rounds,
            &args.levels,
            |name, address, round, rate| run_round(name, address, round, Some(rate)),
        )?;
        for phase in &sweep.phases {
            println!("{}\n{}", phase.title(), phase.comparison.render());
        }
        write_json(&dir.join("sweep.json"), &sweep)?;
        let report = dir.join("report.md");
        std::fs::write(&report, sweep.render_markdown())?;
        report_files(&[report]);
        let all_exact = sweep.all_exact();
        (sweep.phases[0].comparison.clone(), all_exact)
    };
    if args.host_limits {
        let limits = weir_bench::host_limits::measure(&args.common.host_limits_options())?;
        println!(
            "{}",
            limits.render_against(
                first.median_of(0, |r| r.produce.mb_per_s),
                first.median_of(0, |r| r.consume.mb_per_s)
            )
        );
    }
    Ok(all_exact)
}

/// The value given for target `name` in a list of NAME=value flags.
fn lookup<'a, T>(list: &'a [(String, T)], name: &str) -> Option<&'a T> {
    list.iter()
        .find(|(target, _)| target == name)
        .map(|(_, v)| v)
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), BenchError> {
    let json =
        serde_json::to_string_pretty(value).map_err(|e| BenchError::Config(e.to_string()))?;
    std::fs::write(path, json)?;
    report_files(&[path.to_path_buf()]);
    Ok(())
}

fn report_files(files: &[PathBuf]) {
    for file in files {
        println!("wrote {}", display(file));
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
