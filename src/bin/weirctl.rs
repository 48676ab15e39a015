//! `weirctl`: the admin CLI. Speaks the Kafka protocol to any broker (Weir, Kafka, Redpanda).
//! Human tables by default, `--json` for scripts; exits 1 on a broker error, 2 on bad usage.

use std::time::Duration;

use clap::{Parser, Subcommand};
use weir::admin::client::Client;
use weir::admin::groups::ResetTo;
use weir::admin::records::StartAt;
use weir::admin::{self, groups, records, topics, AdminError};

#[derive(Parser)]
#[command(
    name = "weirctl",
    version,
    about = "Administer a Kafka-compatible broker"
)]
struct Cli {
    /// Broker to talk to (host:port).
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092", global = true)]
    bootstrap: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 30_000, global = true)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Topics: list, describe, create, delete, alter-config, add-partitions.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Consumer groups: list, describe (with lag), delete, reset-offsets.
    #[command(subcommand)]
    Group(GroupCommand),
    /// The cluster: describe.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Produce records (the values given, or one per line of stdin).
    Produce {
        topic: String,
        values: Vec<String>,
        #[arg(long, default_value_t = 0)]
        partition: i32,
        #[arg(long)]
        key: Option<String>,
    },
    /// Consume a few records of one partition.
    Consume {
        topic: String,
        #[arg(long, default_value_t = 0)]
        partition: i32,
        /// earliest, latest, or an offset.
        #[arg(long, default_value = "earliest")]
        from: String,
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// How long to wait for `count` records, in milliseconds.
        #[arg(long, default_value_t = 5_000)]
        wait_ms: i32,
    },
}

#[derive(Subcommand)]
enum TopicCommand {
    List,
    Describe {
        topic: String,
    },
    Create {
        topic: String,
        #[arg(long, default_value_t = -1)]
        partitions: i32,
        /// name=value, repeatable.
        #[arg(long = "config", value_parser = parse_pair)]
        configs: Vec<(String, String)>,
    },
    Delete {
        topic: String,
    },
    AlterConfig {
        topic: String,
        /// name=value to set, repeatable.
        #[arg(long, value_parser = parse_pair)]
        set: Vec<(String, String)>,
        /// name to return to its default, repeatable.
        #[arg(long)]
        delete: Vec<String>,
    },
    AddPartitions {
        topic: String,
        /// The new total partition count.
        #[arg(long)]
        total: i32,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    List,
    Describe {
        group: String,
    },
    Delete {
        group: String,
    },
    /// Move an (empty) group's offsets on a topic; prints the plan unless --execute.
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long, group = "target")]
        to_earliest: bool,
        #[arg(long, group = "target")]
        to_latest: bool,
        #[arg(long, group = "target")]
        to_offset: Option<i64>,
        /// YYYY-MM-DDTHH:MM:SS[.mmm] (UTC) or epoch milliseconds.
        #[arg(long, group = "target")]
        to_datetime: Option<String>,
        #[arg(long)]
        execute: bool,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    Describe,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected name=value, got {text:?}"))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let timeout = Duration::from_millis(cli.timeout_ms);
    match run(&cli, timeout) {
        Ok(output) => {
            print!("{}", output.render(cli.json));
            std::process::ExitCode::SUCCESS
        }
        Err(Usage(message)) => {
            eprintln!("weirctl: {message}");
            std::process::ExitCode::from(2)
        }
        Err(Broker(e)) => {
            eprintln!("weirctl: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

enum Failure {
    Usage(String),
    Broker(AdminError),
}
use Failure::{Broker, Usage};

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        Broker(e)
    }
}

fn run(cli: &Cli, timeout: Duration) -> Result<admin::output::Output, Failure> {
    let mut client = Client::connect(&cli.bootstrap, timeout).map_err(|e| Broker(e.into()))?;
    Ok(match &cli.command {
        Command::Topic(TopicCommand::List) => topics::list(&mut client)?,
        Command::Topic(TopicCommand::Describe { topic }) => topics::describe(&mut client, topic)?,
        Command::Topic(TopicCommand::Create {
            topic,
            partitions,
            configs,
        }) => topics::create(&mut client, topic, *partitions, configs)?,
        Command::Topic(TopicCommand::Delete { topic }) => topics::delete(&mut client, topic)?,
        Command::Topic(TopicCommand::AlterConfig { topic, set, delete }) => {
            if set.is_empty() && delete.is_empty() {
                return Err(Usage(
                    "alter-config needs --set name=value or --delete name".into(),
                ));
            }
            topics::alter_config(&mut client, topic, set, delete)?
        }
        Command::Topic(TopicCommand::AddPartitions { topic, total }) => {
            topics::add_partitions(&mut client, topic, *total)?
        }
        Command::Group(GroupCommand::List) => groups::list(&mut client)?,
        Command::Group(GroupCommand::Describe { group }) => {
            groups::describe(&mut admin::coordinator(client, group, timeout)?, group)?
        }
        Command::Group(GroupCommand::Delete { group }) => {
            groups::delete(&mut admin::coordinator(client, group, timeout)?, group)?
        }
        Command::Group(GroupCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            to_datetime,
            execute,
        }) => {
            let to = match (to_earliest, to_latest, to_offset, to_datetime) {
                (true, _, _, _) => ResetTo::Earliest,
                (_, true, _, _) => ResetTo::Latest,
                (_, _, Some(o), _) => ResetTo::Offset(*o),
                (_, _, _, Some(t)) => ResetTo::Timestamp(
                    admin::parse_datetime(t).ok_or_else(|| Usage(format!("bad --to-datetime {t:?}")))?,
                ),
                _ => {
                    return Err(Usage(
                        "reset-offsets needs one of --to-earliest, --to-latest, --to-offset, --to-datetime".into(),
                    ))
                }
            };
            let mut coordinator = admin::coordinator(client, group, timeout)?;
            groups::reset_offsets(&mut coordinator, group, topic, to, *execute)?
        }
        Command::Cluster(ClusterCommand::Describe) => admin::describe_cluster(&mut client)?,
        Command::Produce {
            topic,
            values,
            partition,
            key,
        } => {
            let values = if values.is_empty() {
                std::io::stdin().lines().map_while(Result::ok).collect()
            } else {
                values.clone()
            };
            if values.is_empty() {
                return Err(Usage(
                    "nothing to produce: give values or lines on stdin".into(),
                ));
            }
            records::produce(&mut client, topic, *partition, key.as_deref(), &values)?
        }
        Command::Consume {
            topic,
            partition,
            from,
            count,
            wait_ms,
        } => {
            let start = match from.as_str() {
                "earliest" => StartAt::Earliest,
                "latest" => StartAt::Latest,
                offset => StartAt::Offset(offset.parse().map_err(|_| {
                    Usage(format!(
                        "--from takes earliest, latest or an offset, not {offset:?}"
                    ))
                })?),
            };
            records::consume(&mut client, topic, *partition, start, *count, *wait_ms)?
        }
    })
}
