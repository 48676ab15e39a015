//! ListGroups: every group on every shard, optionally filtered by state (v4+) and type (v5+;
//! Weir's groups are all of the "classic" type).

use std::rc::Rc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{str_bytes, Answer, RequestContext};
use crate::shard_context::ShardContext;

const GROUP_TYPE: &str = "classic";

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: ListGroupsRequest,
) -> Answer {
    let version = request.version;
    let states: Vec<String> = body
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types_match = body.types_filter.is_empty()
        || body
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case(GROUP_TYPE));
    let mut groups = Vec::new();
    for shard_groups in ctx
        .shard
        .broadcast(|c| async move { c.groups.list() })
        .await
    {
        for (group_id, protocol_type, state) in shard_groups? {
            let state_matches =
                states.is_empty() || states.contains(&state.name().to_ascii_lowercase());
            if !(state_matches && types_match) {
                continue;
            }
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&group_id)))
                .with_protocol_type(str_bytes(&protocol_type));
            if version >= 4 {
                listed = listed.with_group_state(str_bytes(state.name()));
            }
            if version >= 5 {
                listed = listed.with_group_type(str_bytes(GROUP_TYPE));
            }
            groups.push(listed);
        }
    }
    groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    request.reply(&ListGroupsResponse::default().with_groups(groups))
}
