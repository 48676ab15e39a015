//! The `weir-tune` command line: parses flags, runs the library's checks, apply, revert or
//! measure, prints, and chooses the exit code. Exit codes: 0 fine, 1 a check FAILed (Weir
//! would not run) or a write failed, 2 weir-tune itself could not do its job.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use weir_tune::apply::{self, WriteResult};
use weir_tune::checks::{self, CheckContext, PARTITIONS_PLANNED_DEFAULT};
use weir_tune::measure::{self, MeasureOptions};
use weir_tune::{profile, report, Host, LiveSystem, SystemFacts, Verdict};

#[derive(Parser)]
#[command(
    name = "weir-tune",
    version,
    about = "Checks this host for what slows Weir down, and fixes it when asked"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Flags of `check`, the default command.
    #[command(flatten)]
    check: CheckArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Read-only: print OK / WARN / FAIL / SKIP for every check, with the fix (the default).
    Check(CheckArgs),
    /// Write the fixes weir-tune can make (sysctl, sysfs, IRQ affinity); needs root.
    Apply(ApplyArgs),
    /// Restore the values `apply` replaced.
    Revert(StateArgs),
    /// Measure the data dir's disk and save the profile Weir reads at start.
    Measure(MeasureArgs),
}

#[derive(Args, Clone)]
struct CheckArgs {
    /// Weir's data directory (its filesystem and disk are checked).
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// Shards Weir will run (Weir's --smp); default one per available core.
    #[arg(long)]
    smp: Option<usize>,
    /// Partitions this broker will own (sizes the open-files check).
    #[arg(long, default_value_t = PARTITIONS_PLANNED_DEFAULT)]
    partitions: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Read /proc and /sys under this directory instead of / (for fixture trees).
    #[arg(long, default_value = "/", hide = true)]
    root: PathBuf,
}

#[derive(Args)]
struct StateArgs {
    /// Where apply records the previous values.
    #[arg(long, default_value = apply::STATE_PATH_DEFAULT)]
    state_file: PathBuf,
    #[arg(long, default_value = "/", hide = true)]
    root: PathBuf,
}

#[derive(Args)]
struct ApplyArgs {
    #[command(flatten)]
    check: CheckArgs,
    /// Print what would be written, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where the previous values are recorded for `revert`.
    #[arg(long, default_value = apply::STATE_PATH_DEFAULT)]
    state_file: PathBuf,
}

#[derive(Args)]
struct MeasureArgs {
    /// Directory to measure: Weir's data dir (a scratch dir inside it is removed afterwards).
    #[arg(long)]
    data_dir: PathBuf,
    /// Total measurement time.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Where to save the profile; default <data-dir>/io-profile.toml.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Print the profile as JSON too.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run_check(&cli.check),
        Some(Command::Check(args)) => run_check(&args),
        Some(Command::Apply(args)) => run_apply(&args),
        Some(Command::Revert(args)) => run_revert(&args),
        Some(Command::Measure(args)) => run_measure(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("weir-tune: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn context<'a>(args: &CheckArgs, host: &'a Host, facts: &'a dyn SystemFacts) -> CheckContext<'a> {
    CheckContext {
        host,
        facts,
        data_dir: args.data_dir.clone(),
        smp: args.smp,
        partitions: args.partitions,
    }
}

fn run_check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let host = Host::new(&args.root);
    let findings = checks::all(&context(args, &host, &LiveSystem));
    if args.json {
        println!("{}", report::findings_json(&findings));
    } else {
        print!("{}", report::findings_table(&findings));
    }
    let failed = findings.iter().any(|f| f.verdict == Verdict::Fail);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_apply(args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let host = Host::new(&args.check.root);
    let findings = checks::all(&context(&args.check, &host, &LiveSystem));
    let planned = apply::plan(&host, &findings);
    if args.dry_run {
        if args.check.json {
            println!("{}", serde_json::to_string_pretty(&planned)?);
        } else {
            print!("{}", report::plan_table(&planned));
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Against the real host only root can write; a fixture root is anyone's.
    if args.check.root == Path::new("/") && !LiveSystem.is_root() {
        bail!("apply writes sysctl and sysfs files: run it as root (or see `apply --dry-run`)");
    }
    let outcomes = apply::apply(&host, &planned, &args.state_file)?;
    print_outcomes(&outcomes, args.check.json)?;
    if outcomes
        .iter()
        .any(|o| matches!(o.result, WriteResult::Written { .. }))
    {
        eprintln!(
            "previous values recorded in {}; `weir-tune revert --state-file {}` restores them",
            args.state_file.display(),
            args.state_file.display()
        );
    }
    Ok(exit_for(&outcomes))
}

fn run_revert(args: &StateArgs) -> anyhow::Result<ExitCode> {
    let host = Host::new(&args.root);
    if args.root == Path::new("/") && !LiveSystem.is_root() && args.state_file.exists() {
        bail!("revert writes sysctl and sysfs files: run it as root");
    }
    let outcomes = apply::revert(&host, &args.state_file)?;
    if outcomes.is_empty() {
        println!(
            "Nothing to revert: {} does not exist.",
            args.state_file.display()
        );
    } else {
        print!("{}", report::outcomes_table(&outcomes));
    }
    Ok(exit_for(&outcomes))
}

fn print_outcomes(outcomes: &[apply::WriteOutcome], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(outcomes)?);
    } else {
        print!("{}", report::outcomes_table(outcomes));
    }
    Ok(())
}

fn exit_for(outcomes: &[apply::WriteOutcome]) -> ExitCode {
    let failed = outcomes
        .iter()
        .any(|o| matches!(o.result, WriteResult::Failed(_)));
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn run_measure(args: &MeasureArgs) -> anyhow::Result<ExitCode> {
    let options = MeasureOptions::new(&args.data_dir, Duration::from_secs(args.seconds));
    eprintln!(
        "measuring {} for {} s (bandwidth, fdatasync latency, write concurrency)...",
        args.data_dir.display(),
        args.seconds
    );
    let mut profile = measure::measure(&options).context("disk measurement failed")?;
    let (filesystem, device) = checks::disk::data_dir_location(&Host::live(), &args.data_dir);
    profile.filesystem = filesystem;
    profile.device = device;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| profile::default_path(&args.data_dir));
    profile::save(&profile, &output)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&profile)?);
    } else {
        print!("{}", measure_summary(&profile));
    }
    eprintln!("saved to {}", output.display());
    Ok(ExitCode::SUCCESS)
}

fn measure_summary(profile: &weir_tune::IoProfile) -> String {
    let mib_per_s = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let sync = &profile.fdatasync;
    let mut out = format!(
        "data dir            {} ({} on {})\n\
         sequential write    {:.1} MiB/s (1 MiB appends, fdatasync every 8 MiB)\n\
         fdatasync latency   p50 {} us, p99 {} us, p999 {} us, max {} us ({} x 4 KiB append + fdatasync)\n\
         write concurrency   knee at {} writers (256 KiB append + fdatasync each)\n",
        profile.data_dir.display(),
        profile.filesystem.as_deref().unwrap_or("?"),
        profile.device.as_deref().unwrap_or("?"),
        mib_per_s(profile.sequential_write.bandwidth_bytes_per_s),
        sync.latency_us_p50,
        sync.latency_us_p99,
        sync.latency_us_p999,
        sync.latency_us_max,
        sync.samples,
        profile.concurrency.knee_depth,
    );
    for step in &profile.concurrency.steps {
        out.push_str(&format!(
            "  {:>3} writers       {:.1} MiB/s\n",
            step.depth,
            mib_per_s(step.bandwidth_bytes_per_s)
        ));
    }
    out
}
