//! DescribeLogDirs: the log directory and, per partition in it, its size on disk (what
//! `kafka-log-dirs --describe`, AdminClient's `describeLogDirs` and rebalancing tools read).
//! Weir has one log directory, the data dir; a partition's offset lag is 0 (there is no
//! future replica moving between directories).

use std::rc::Rc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::{group_by_owner, str_bytes, Answer, RequestContext};
use crate::shard_context::ShardContext;

/// A partition whose size the owner shard reports: (topic index, partition index) in the
/// response, and the partition it names.
struct Job {
    slot: (usize, usize),
    topic: String,
    partition: i32,
}

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: DescribeLogDirsRequest,
) -> Answer {
    let image = ctx.image();
    // Null asks for every partition; a named topic or partition this broker does not have is
    // left out of the answer, as Kafka does, not refused.
    let wanted: Vec<(String, Vec<i32>)> = match body.topics {
        None => image
            .topics
            .values()
            .map(|t| (t.name.clone(), (0..t.partitions.len() as i32).collect()))
            .collect(),
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect(),
    };
    let mut topics = Vec::new();
    let mut jobs = Vec::new();
    for (name, partitions) in wanted {
        let mut found = Vec::new();
        for partition in partitions {
            if let Some(owner) = image.owner(&name, partition) {
                let slot = (topics.len(), found.len());
                found.push(DescribeLogDirsPartition::default().with_partition_index(partition));
                let topic = name.clone();
                jobs.push((
                    owner,
                    Job {
                        slot,
                        topic,
                        partition,
                    },
                ));
            }
        }
        if !found.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(str_bytes(&name)))
                    .with_partitions(found),
            );
        }
    }
    let calls = group_by_owner(ctx.shard.count(), jobs)
        .into_iter()
        .map(|(owner, jobs)| ctx.shard.invoke_on(owner, move |c| sizes(c, jobs)));
    for sizes in futures::future::join_all(calls).await {
        for ((ti, pi), size) in sizes? {
            topics[ti].partitions[pi].partition_size = size;
        }
    }
    // Canonicalizing the path and statvfs are blocking syscalls: off the reactor, in one trip.
    // The disk's space is asked only of versions that carry it (4+).
    let data_dir = ctx.config.data_dir.clone();
    let with_space = request.version >= 4;
    let (path, space) = glommio::executor()
        .spawn_blocking(move || {
            let space = if with_space {
                nix::sys::statvfs::statvfs(&data_dir).ok()
            } else {
                None
            };
            let path = std::fs::canonicalize(&data_dir).unwrap_or(data_dir);
            (path, space)
        })
        .await;
    // Kafka answers -1 for both where it cannot tell (and versions before 4 carry neither).
    let (total, usable) = space.map_or((-1, -1), |s| {
        let block = s.fragment_size() as i64;
        (
            s.blocks() as i64 * block,
            s.blocks_available() as i64 * block,
        )
    });
    let result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(&path.to_string_lossy()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable);
    request.reply(&DescribeLogDirsResponse::default().with_results(vec![result]))
}

/// On the owner shard: each partition's bytes on disk (0 for one it no longer has open).
async fn sizes(ctx: Rc<ShardContext>, jobs: Vec<Job>) -> Vec<((usize, usize), i64)> {
    jobs.into_iter()
        .map(|job| {
            let size = ctx
                .partition(&job.topic, job.partition)
                .map_or(0, |log| log.size_bytes() as i64);
            (job.slot, size)
        })
        .collect()
}
