//! DescribeCluster (KIP-700): the brokers and controller, for admin clients.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{str_bytes, Answer, RequestContext};
use crate::shard_context::ShardContext;

pub fn handle(ctx: &ShardContext, request: RequestContext, body: DescribeClusterRequest) -> Answer {
    let config = &ctx.config;
    let broker = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(config.node_id))
        .with_host(str_bytes(&config.advertised_host))
        .with_port(config.advertised_port);
    let response = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&ctx.image().cluster_id))
        .with_controller_id(BrokerId(config.node_id))
        .with_brokers(vec![broker])
        .with_cluster_authorized_operations(super::authorized_operations::cluster(
            body.include_cluster_authorized_operations,
        ));
    request.reply(&response)
}
