//! DescribeGroups: state, protocol, members and (once Stable) their metadata and assignments.
//! An unknown group is described as Dead with no error, as Kafka does.

use std::rc::Rc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::group_route::coordinator_shard;
use super::{str_bytes, Answer, RequestContext};
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: DescribeGroupsRequest,
) -> Answer {
    let version = request.version;
    let mut groups = Vec::with_capacity(body.groups.len());
    for group_id in body.groups {
        let owner = match coordinator_shard(ctx, &group_id) {
            Ok(owner) => owner,
            Err(error) => {
                groups.push(
                    DescribedGroup::default()
                        .with_group_id(group_id)
                        .with_error_code(error.code()),
                );
                continue;
            }
        };
        let id = group_id.0.to_string();
        let described = ctx
            .shard
            .invoke_on(owner, move |c| async move { c.groups.describe(&id) })
            .await?;
        let members = described
            .members
            .into_iter()
            .map(
                |(member_id, instance, client_id, host, metadata, assignment)| {
                    let member = DescribedGroupMember::default()
                        .with_member_id(str_bytes(&member_id))
                        .with_client_id(str_bytes(&client_id))
                        .with_client_host(str_bytes(&host))
                        .with_member_metadata(metadata)
                        .with_member_assignment(assignment);
                    if version >= 4 {
                        member.with_group_instance_id(instance.as_deref().map(str_bytes))
                    } else {
                        member
                    }
                },
            )
            .collect();
        groups.push(
            DescribedGroup::default()
                .with_group_id(group_id)
                .with_group_state(str_bytes(described.state.name()))
                .with_protocol_type(str_bytes(&described.protocol_type))
                .with_protocol_data(str_bytes(&described.protocol))
                .with_members(members)
                .with_authorized_operations(super::authorized_operations::group(
                    body.include_authorized_operations,
                )),
        );
    }
    request.reply(&DescribeGroupsResponse::default().with_groups(groups))
}
