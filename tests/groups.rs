//! Consumer groups over raw sockets against the real broker: the classic state machine step
//! by step (what client libraries hide), every advertised version of every group API, and
//! group state surviving restarts.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Broker, Client};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const GROUP_FLAGS: &[&str] = &[
    "--group-initial-rebalance-delay-ms",
    "0",
    "--group-min-session-timeout-ms",
    "500",
    "--offsets-topic-num-partitions",
    "4",
];

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

fn create_topic(client: &mut Client, name: &str, partitions: i32) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 5, &request);
    assert_eq!(response.topics[0].error_code, 0);
}

fn find_coordinator(client: &mut Client, group: &str) -> FindCoordinatorResponse {
    client.call(
        ApiKey::FindCoordinator,
        3,
        &FindCoordinatorRequest::default().with_key(s(group)),
    )
}

fn join_request(group: &str, member_id: &str, session_ms: i32) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"subscription"))])
}

/// JoinGroup v5 with the KIP-394 dance: the first answer hands out the member id.
fn join(client: &mut Client, group: &str, member_id: &str) -> JoinGroupResponse {
    let mut response: JoinGroupResponse =
        client.call(ApiKey::JoinGroup, 5, &join_request(group, member_id, 3000));
    if response.error_code == code(ResponseError::MemberIdRequired) {
        assert!(member_id.is_empty());
        assert!(
            !response.member_id.is_empty(),
            "the id comes with the error"
        );
        let id = response.member_id.to_string();
        response = client.call(ApiKey::JoinGroup, 5, &join_request(group, &id, 3000));
    }
    response
}

fn sync(
    client: &mut Client,
    group: &str,
    generation: i32,
    member_id: &str,
    assignments: &[(&str, &'static [u8])],
) -> SyncGroupResponse {
    let request = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member_id))
        .with_assignments(
            assignments
                .iter()
                .map(|(id, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(id))
                        .with_assignment(Bytes::from_static(a))
                })
                .collect(),
        );
    client.call(ApiKey::SyncGroup, 3, &request)
}

fn heartbeat(client: &mut Client, group: &str, generation: i32, member_id: &str) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member_id));
    let response: HeartbeatResponse = client.call(ApiKey::Heartbeat, 3, &request);
    response.error_code
}

fn commit(
    client: &mut Client,
    group: &str,
    generation: i32,
    member_id: &str,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Vec<i16> {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(
                offsets
                    .iter()
                    .map(|&(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(o)
                            .with_committed_metadata(Some(s("meta")))
                    })
                    .collect(),
            )]);
    let response: OffsetCommitResponse = client.call(ApiKey::OffsetCommit, 8, &request);
    response.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

fn fetch_offsets(client: &mut Client, group: &str, topic: &str, partitions: &[i32]) -> Vec<i64> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partition_indexes(partitions.to_vec())]));
    let response: OffsetFetchResponse = client.call(ApiKey::OffsetFetch, 7, &request);
    assert_eq!(response.error_code, 0);
    response.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect()
}

fn describe(client: &mut Client, group: &str) -> describe_groups_response::DescribedGroup {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let mut response: DescribeGroupsResponse = client.call(ApiKey::DescribeGroups, 5, &request);
    response.groups.remove(0)
}

/// Polls until `check` holds or ten seconds pass.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_members_rebalance_commit_leave_and_expire() {
    let broker = Broker::start(GROUP_FLAGS);
    let mut admin = broker.connect();
    create_topic(&mut admin, "events", 4);
    let found = find_coordinator(&mut admin, "g1");
    assert_eq!(found.error_code, 0);
    assert_eq!(found.port, i32::from(broker.addr.port()));

    // A alone: leader of generation 1.
    let mut a = broker.connect();
    let joined = join(&mut a, "g1", "");
    assert_eq!(joined.error_code, 0);
    let a_id = joined.member_id.to_string();
    assert_eq!(joined.leader, joined.member_id);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    let synced = sync(&mut a, "g1", 1, &a_id, &[(&a_id, b"all")]);
    assert_eq!(
        (synced.error_code, &synced.assignment[..]),
        (0, &b"all"[..])
    );
    assert_eq!(heartbeat(&mut a, "g1", 1, &a_id), 0);
    assert_eq!(describe(&mut admin, "g1").group_state.as_str(), "Stable");

    // B joins: its JoinGroup waits until A rejoins; A learns of the rebalance by heartbeat.
    let addr = broker.addr;
    let b_thread = thread::spawn(move || {
        let mut b = Client::connect(addr);
        let joined = join(&mut b, "g1", "");
        (b, joined)
    });
    eventually("A is told to rejoin", || {
        heartbeat(&mut a, "g1", 1, &a_id) == code(ResponseError::RebalanceInProgress)
    });
    // Commits with the old generation still count while the group prepares (Kafka allows
    // the revoking member to commit).
    assert_eq!(commit(&mut a, "g1", 1, &a_id, "events", &[(0, 5)]), vec![0]);
    let rejoined = join(&mut a, "g1", &a_id);
    let (mut b, b_joined) = b_thread.join().unwrap();
    assert_eq!((rejoined.error_code, b_joined.error_code), (0, 0));
    assert_eq!(rejoined.generation_id, 2);
    assert_eq!(b_joined.generation_id, 2);
    assert_eq!(
        rejoined.leader.as_str(),
        a_id,
        "the leader stays the leader"
    );
    assert_eq!(rejoined.members.len(), 2, "the leader sees every member");
    assert!(b_joined.members.is_empty(), "followers see none");
    let b_id = b_joined.member_id.to_string();

    // B's SyncGroup waits for the leader's assignment.
    let b_sync = thread::spawn(move || {
        let synced = sync(&mut b, "g1", 2, &b_id, &[]);
        (b, b_id, synced)
    });
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        describe(&mut admin, "g1").group_state.as_str(),
        "CompletingRebalance"
    );
    assert_eq!(
        commit(&mut a, "g1", 2, &a_id, "events", &[(0, 6)]),
        vec![code(ResponseError::RebalanceInProgress)],
        "no commits between join and sync"
    );
    let synced = sync(
        &mut a,
        "g1",
        2,
        &a_id,
        &[(&a_id, b"p0p1"), (&b_id_of(&rejoined, &a_id), b"p2p3")],
    );
    assert_eq!(&synced.assignment[..], b"p0p1");
    let (mut b, b_id, b_synced) = b_sync.join().unwrap();
    assert_eq!(
        (b_synced.error_code, &b_synced.assignment[..]),
        (0, &b"p2p3"[..])
    );

    // Generation checks on commit.
    assert_eq!(
        commit(&mut b, "g1", 1, &b_id, "events", &[(2, 1)]),
        vec![code(ResponseError::IllegalGeneration)]
    );
    assert_eq!(
        commit(&mut b, "g1", 2, "stranger", "events", &[(2, 1)]),
        vec![code(ResponseError::UnknownMemberId)]
    );
    assert_eq!(
        commit(&mut b, "g1", 2, &b_id, "events", &[(2, 7), (3, 8), (9, 1)]),
        vec![0, 0, code(ResponseError::UnknownTopicOrPartition)]
    );
    assert_eq!(
        fetch_offsets(&mut admin, "g1", "events", &[0, 1, 2, 3]),
        vec![5, -1, 7, 8]
    );
    let described = describe(&mut admin, "g1");
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.protocol_data.as_str(), "range");
    assert_eq!(described.members.len(), 2);
    assert!(described
        .members
        .iter()
        .any(|m| m.member_id.as_str() == b_id && &m.member_assignment[..] == b"p2p3"));

    // B leaves: A is told to rejoin, and alone makes generation 3.
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g1")))
        .with_members(vec![MemberIdentity::default().with_member_id(s(&b_id))]);
    let left: LeaveGroupResponse = b.call(ApiKey::LeaveGroup, 4, &leave);
    assert_eq!((left.error_code, left.members[0].error_code), (0, 0));
    assert_eq!(
        heartbeat(&mut a, "g1", 2, &a_id),
        code(ResponseError::RebalanceInProgress)
    );
    let alone = join(&mut a, "g1", &a_id);
    assert_eq!((alone.error_code, alone.generation_id), (0, 3));
    assert_eq!(
        sync(&mut a, "g1", 3, &a_id, &[(&a_id, b"all")]).error_code,
        0
    );

    // A stops heartbeating: after its session (3 s) it is gone and the group is empty.
    eventually("A's session expires", || {
        describe(&mut admin, "g1").group_state.as_str() == "Empty"
    });
    assert_eq!(
        heartbeat(&mut a, "g1", 3, &a_id),
        code(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        fetch_offsets(&mut admin, "g1", "events", &[0, 2, 3]),
        vec![5, 7, 8],
        "offsets outlive the members"
    );
}

/// The member id of the other member in the leader's join answer.
fn b_id_of(leader_view: &JoinGroupResponse, leader: &str) -> String {
    leader_view
        .members
        .iter()
        .find(|m| m.member_id.as_str() != leader)
        .expect("two members")
        .member_id
        .to_string()
}

#[test]
fn join_errors_come_with_kafkas_codes() {
    let broker = Broker::start(GROUP_FLAGS);
    let mut c = broker.connect();
    find_coordinator(&mut c, "g");
    let bad_session: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join_request("g", "", 100));
    assert_eq!(
        bad_session.error_code,
        code(ResponseError::InvalidSessionTimeout)
    );
    let no_group: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join_request("", "", 3000));
    assert_eq!(no_group.error_code, code(ResponseError::InvalidGroupId));
    let unknown: JoinGroupResponse =
        c.call(ApiKey::JoinGroup, 5, &join_request("g", "nobody", 3000));
    assert_eq!(unknown.error_code, code(ResponseError::UnknownMemberId));
    let joined = join(&mut c, "g", "");
    assert_eq!(joined.error_code, 0);
    let other_type = join_request("g", "", 3000).with_protocol_type(s("connect"));
    let mut other = broker.connect();
    let refused: JoinGroupResponse = other.call(ApiKey::JoinGroup, 5, &other_type);
    assert_eq!(
        refused.error_code,
        code(ResponseError::InconsistentGroupProtocol)
    );
    assert_eq!(
        sync(&mut c, "g", 99, &joined.member_id, &[]).error_code,
        code(ResponseError::IllegalGeneration)
    );
    let delete: DeleteGroupsResponse = c.call(
        ApiKey::DeleteGroups,
        2,
        &DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(s("g")), GroupId(s("none"))]),
    );
    assert_eq!(
        delete.results[0].error_code,
        code(ResponseError::NonEmptyGroup)
    );
    assert_eq!(
        delete.results[1].error_code,
        code(ResponseError::GroupIdNotFound)
    );
}

#[test]
fn committed_offsets_and_stable_groups_survive_restart() {
    let mut broker = Broker::start(GROUP_FLAGS);
    let mut c = broker.connect();
    create_topic(&mut c, "t", 2);
    find_coordinator(&mut c, "keep");
    let joined = join(&mut c, "keep", "");
    let id = joined.member_id.to_string();
    assert_eq!(
        sync(&mut c, "keep", 1, &id, &[(&id, b"t0t1")]).error_code,
        0
    );
    assert_eq!(
        commit(&mut c, "keep", 1, &id, "t", &[(0, 11), (1, 22)]),
        vec![0, 0]
    );
    // A simple (generation -1) commit for a group that is not managed.
    assert_eq!(commit(&mut c, "simple", -1, "", "t", &[(1, 3)]), vec![0]);
    broker.restart();
    let mut c = broker.connect();
    assert_eq!(fetch_offsets(&mut c, "keep", "t", &[0, 1]), vec![11, 22]);
    assert_eq!(fetch_offsets(&mut c, "simple", "t", &[0, 1]), vec![-1, 3]);
    // The member keeps its generation across the restart: no rebalance for a heartbeating
    // consumer.
    assert_eq!(heartbeat(&mut c, "keep", 1, &id), 0);
    let described = describe(&mut c, "keep");
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(&described.members[0].member_assignment[..], b"t0t1");

    // DeleteGroups of an empty group drops its offsets, also after another restart.
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("keep")))
        .with_member_id(s(&id));
    let left: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, 1, &leave);
    assert_eq!(left.error_code, 0);
    eventually("the group is empty", || {
        describe(&mut c, "keep").group_state.as_str() == "Empty"
    });
    let delete: DeleteGroupsResponse = c.call(
        ApiKey::DeleteGroups,
        1,
        &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("keep"))]),
    );
    assert_eq!(delete.results[0].error_code, 0);
    broker.restart();
    let mut c = broker.connect();
    assert_eq!(fetch_offsets(&mut c, "keep", "t", &[0, 1]), vec![-1, -1]);
    assert_eq!(describe(&mut c, "keep").group_state.as_str(), "Dead");
    assert_eq!(fetch_offsets(&mut c, "simple", "t", &[1]), vec![3]);
}

#[test]
fn a_static_member_rejoining_with_a_new_id_fences_the_old_one_without_a_rebalance() {
    let broker = Broker::start(GROUP_FLAGS);
    let mut c = broker.connect();
    find_coordinator(&mut c, "st");
    let static_join = |client: &mut Client| -> JoinGroupResponse {
        let request = join_request("st", "", 3000).with_group_instance_id(Some(s("instance-1")));
        client.call(ApiKey::JoinGroup, 5, &request)
    };
    let first = static_join(&mut c);
    assert_eq!(first.error_code, 0, "static members need no KIP-394 round");
    let old_id = first.member_id.to_string();
    assert_eq!(
        sync(&mut c, "st", 1, &old_id, &[(&old_id, b"mine")]).error_code,
        0
    );

    let mut restarted = broker.connect();
    let again = static_join(&mut restarted);
    assert_eq!(again.error_code, 0);
    assert_eq!(again.generation_id, 1, "same generation: no rebalance");
    assert_ne!(again.member_id.as_str(), old_id);
    let synced = sync(&mut restarted, "st", 1, &again.member_id, &[]);
    assert_eq!(
        (synced.error_code, &synced.assignment[..]),
        (0, &b"mine"[..])
    );
    let old_heartbeat = HeartbeatRequest::default()
        .with_group_id(GroupId(s("st")))
        .with_generation_id(1)
        .with_member_id(s(&old_id))
        .with_group_instance_id(Some(s("instance-1")));
    let fenced: HeartbeatResponse = c.call(ApiKey::Heartbeat, 3, &old_heartbeat);
    assert_eq!(fenced.error_code, code(ResponseError::FencedInstanceId));
}

#[test]
fn every_advertised_version_of_every_group_api_answers() {
    let broker = Broker::start(GROUP_FLAGS);
    let mut c = broker.connect();
    create_topic(&mut c, "v", 1);
    let versions: ApiVersionsResponse =
        c.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    let range = |key: ApiKey| {
        let api = versions
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .unwrap_or_else(|| panic!("{key:?} is advertised"));
        api.min_version..=api.max_version
    };
    for v in range(ApiKey::FindCoordinator) {
        let request = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("a"), s("b")])
        } else {
            FindCoordinatorRequest::default().with_key(s("a"))
        };
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, v, &request);
        if v >= 4 {
            assert_eq!(r.coordinators.len(), 2, "v{v}");
            assert!(r.coordinators.iter().all(|k| k.error_code == 0), "v{v}");
        } else {
            assert_eq!(r.error_code, 0, "v{v}");
        }
    }
    for v in range(ApiKey::JoinGroup) {
        let group = format!("join-v{v}");
        let request = join_request(&group, "", 3000);
        let mut r: JoinGroupResponse = c.call(ApiKey::JoinGroup, v, &request);
        if v >= 4 {
            assert_eq!(r.error_code, code(ResponseError::MemberIdRequired), "v{v}");
            let request = join_request(&group, &r.member_id, 3000);
            r = c.call(ApiKey::JoinGroup, v, &request);
        }
        assert_eq!((r.error_code, r.generation_id), (0, 1), "JoinGroup v{v}");
        let member = r.member_id.to_string();
        for sv in range(ApiKey::SyncGroup) {
            let mut request = SyncGroupRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id(1)
                .with_member_id(s(&member))
                .with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(s(&member))
                    .with_assignment(Bytes::from_static(b"x"))]);
            if sv >= 5 {
                request = request
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range")));
            }
            let r: SyncGroupResponse = c.call(ApiKey::SyncGroup, sv, &request);
            assert_eq!(
                (r.error_code, &r.assignment[..]),
                (0, &b"x"[..]),
                "SyncGroup v{sv}"
            );
        }
        for hv in range(ApiKey::Heartbeat) {
            let request = HeartbeatRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id(1)
                .with_member_id(s(&member));
            let r: HeartbeatResponse = c.call(ApiKey::Heartbeat, hv, &request);
            assert_eq!(r.error_code, 0, "Heartbeat v{hv}");
        }
        for cv in range(ApiKey::OffsetCommit) {
            let request = OffsetCommitRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id_or_member_epoch(1)
                .with_member_id(s(&member))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("v")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(i64::from(cv))])]);
            let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, cv, &request);
            assert_eq!(
                r.topics[0].partitions[0].error_code, 0,
                "OffsetCommit v{cv}"
            );
        }
        let last_commit = i64::from(*range(ApiKey::OffsetCommit).end());
        for fv in range(ApiKey::OffsetFetch) {
            let offset = if fv >= 8 {
                let request = OffsetFetchRequest::default().with_groups(vec![
                    OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(s(&group)))
                        .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                            .with_name(TopicName(s("v")))
                            .with_partition_indexes(vec![0])])),
                ]);
                let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, fv, &request);
                r.groups[0].topics[0].partitions[0].committed_offset
            } else {
                let request = OffsetFetchRequest::default()
                    .with_group_id(GroupId(s(&group)))
                    .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s("v")))
                        .with_partition_indexes(vec![0])]));
                let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, fv, &request);
                r.topics[0].partitions[0].committed_offset
            };
            assert_eq!(offset, last_commit, "OffsetFetch v{fv}");
        }
        for dv in range(ApiKey::DescribeGroups) {
            let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&group))]);
            let r: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, dv, &request);
            assert_eq!(
                r.groups[0].group_state.as_str(),
                "Stable",
                "DescribeGroups v{dv}"
            );
            assert_eq!(r.groups[0].members.len(), 1, "DescribeGroups v{dv}");
        }
        // Every LeaveGroup version gets used: JoinGroup's range (0..=9) covers it (0..=5).
        let lv = v.min(*range(ApiKey::LeaveGroup).end());
        let leave = LeaveGroupRequest::default().with_group_id(GroupId(s(&group)));
        let leave = if lv >= 3 {
            leave.with_members(vec![MemberIdentity::default().with_member_id(s(&member))])
        } else {
            leave.with_member_id(s(&member))
        };
        let r: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, lv, &leave);
        assert_eq!(r.error_code, 0, "LeaveGroup v{lv}");
    }
    for lv in range(ApiKey::ListGroups) {
        let mut request = ListGroupsRequest::default();
        if lv >= 4 {
            request = request.with_states_filter(vec![s("empty")]);
        }
        let r: ListGroupsResponse = c.call(ApiKey::ListGroups, lv, &request);
        assert!(
            r.groups.iter().any(|g| g.group_id.as_str() == "join-v0"),
            "ListGroups v{lv}"
        );
    }
    for ov in range(ApiKey::OffsetDelete) {
        let request = OffsetDeleteRequest::default()
            .with_group_id(GroupId(s("join-v0")))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("v")))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0)
                ])]);
        let r: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, ov, &request);
        assert_eq!(r.error_code, 0, "OffsetDelete v{ov}");
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
    }
    assert_eq!(fetch_offsets(&mut c, "join-v0", "v", &[0]), vec![-1]);
    for dv in range(ApiKey::DeleteGroups) {
        let group = format!("join-v{}", dv + 1);
        let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(&group))]);
        let r: DeleteGroupsResponse = c.call(ApiKey::DeleteGroups, dv, &request);
        assert_eq!(r.results[0].error_code, 0, "DeleteGroups v{dv}");
    }
}

/// JoinGroup v5 with the KIP-394 dance and this member's rebalance timeout.
fn join_with_rebalance_timeout(
    client: &mut Client,
    group: &str,
    member_id: &str,
    rebalance_timeout_ms: i32,
) -> JoinGroupResponse {
    let request =
        |id: &str| join_request(group, id, 30_000).with_rebalance_timeout_ms(rebalance_timeout_ms);
    let response: JoinGroupResponse = client.call(ApiKey::JoinGroup, 5, &request(member_id));
    if response.error_code != code(ResponseError::MemberIdRequired) {
        return response;
    }
    let id = response.member_id.to_string();
    client.call(ApiKey::JoinGroup, 5, &request(&id))
}

#[test]
fn a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_left_out() {
    let broker = Broker::start(GROUP_FLAGS);
    let mut a = broker.connect();
    assert_eq!(find_coordinator(&mut a, "slow").error_code, 0);
    // A long session, a short rebalance timeout: only the rebalance timeout can drop A.
    let joined = join_with_rebalance_timeout(&mut a, "slow", "", 1500);
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    let a_id = joined.member_id.to_string();
    assert_eq!(
        sync(&mut a, "slow", 1, &a_id, &[(&a_id, b"all")]).error_code,
        0
    );

    let started = Instant::now();
    let mut b = broker.connect();
    let b_joined = join_with_rebalance_timeout(&mut b, "slow", "", 1500);
    let waited = started.elapsed();
    assert_eq!(b_joined.error_code, 0);
    assert_eq!(b_joined.generation_id, 2);
    assert_eq!(
        b_joined.leader, b_joined.member_id,
        "B leads the group A left"
    );
    assert_eq!(b_joined.members.len(), 1, "A did not rejoin in time");
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(10),
        "the rebalance waited A's rebalance timeout, not its session: {waited:?}"
    );
    assert_eq!(
        heartbeat(&mut a, "slow", 1, &a_id),
        code(ResponseError::UnknownMemberId),
        "A is no longer a member"
    );
}

#[test]
fn the_first_rebalance_waits_the_initial_delay_for_more_members() {
    let broker = Broker::start(&[
        "--group-initial-rebalance-delay-ms",
        "1500",
        "--group-min-session-timeout-ms",
        "500",
        "--offsets-topic-num-partitions",
        "4",
    ]);
    let mut probe = broker.connect();
    assert_eq!(find_coordinator(&mut probe, "late").error_code, 0);
    let started = Instant::now();
    let addr = broker.addr;
    let first = thread::spawn(move || {
        let mut a = Client::connect(addr);
        (join(&mut a, "late", ""), started.elapsed())
    });
    thread::sleep(Duration::from_millis(300));
    let mut b = broker.connect();
    let b_joined = join(&mut b, "late", "");
    let (a_joined, a_waited) = first.join().unwrap();
    assert_eq!((a_joined.error_code, b_joined.error_code), (0, 0));
    assert_eq!(
        (a_joined.generation_id, b_joined.generation_id),
        (1, 1),
        "both members in the first generation: no second rebalance"
    );
    let leader_view = if a_joined.members.is_empty() {
        &b_joined
    } else {
        &a_joined
    };
    assert_eq!(leader_view.members.len(), 2);
    assert!(
        a_waited >= Duration::from_millis(1400),
        "the first join waited for the delay: {a_waited:?}"
    );
}

/// Kafka answers INVALID_TOPIC_EXCEPTION ("Cannot append to internal topic") to a client
/// producing to `__consumer_offsets`: only the coordinator writes it, and the group load
/// replays it at every start, so a client's bytes there must never reach the log.
#[test]
fn produce_to_the_offsets_topic_is_refused_and_groups_still_load() {
    let mut broker = Broker::start(GROUP_FLAGS);
    let mut c = broker.connect();
    create_topic(&mut c, "t", 1);
    find_coordinator(&mut c, "g");
    assert_eq!(commit(&mut c, "g", -1, "", "t", &[(0, 7)]), vec![0]);
    for partition in 0..4 {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(TopicName(s("__consumer_offsets")))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(Bytes::from(common::record_batch(&[b"junk"])))),
                ])]);
        let response: ProduceResponse = c.call(ApiKey::Produce, 9, &request);
        let answer = &response.responses[0].partition_responses[0];
        assert_eq!(
            answer.error_code,
            code(ResponseError::InvalidTopicException),
            "partition {partition}"
        );
        assert_eq!(answer.base_offset, -1);
    }
    broker.restart();
    let mut c = broker.connect();
    assert_eq!(fetch_offsets(&mut c, "g", "t", &[0]), vec![7]);
}

/// As Kafka, DeleteTopics does not delete an internal topic (the committed offsets live
/// there); the other topics of the same request are deleted.
#[test]
fn the_offsets_topic_keeps_compaction_and_refuses_delete_records() {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::incremental_alter_configs_request as incremental;

    let mut broker = Broker::start(GROUP_FLAGS);
    let mut c = broker.connect();
    create_topic(&mut c, "t", 1);
    find_coordinator(&mut c, "g");
    assert_eq!(commit(&mut c, "g", -1, "", "t", &[(0, 7)]), vec![0]);
    let offsets = || StrBytes::from_static_str("__consumer_offsets");
    let incremental_set = |c: &mut Client, name: &'static str, value: &'static str| {
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(offsets())
                .with_configs(vec![incremental::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str(name))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_static_str(value)))]),
        ]);
        let r: IncrementalAlterConfigsResponse =
            c.call(ApiKey::IncrementalAlterConfigs, 1, &request);
        r.responses[0].error_code
    };
    // Retention deleting every group's offsets: refused, by both config APIs.
    assert_eq!(
        incremental_set(&mut c, "cleanup.policy", "delete"),
        code(ResponseError::InvalidConfig)
    );
    let legacy =
        AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(offsets())
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str("cleanup.policy"))
                .with_value(Some(StrBytes::from_static_str("delete")))])]);
    let r: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, 1, &legacy);
    assert_eq!(
        r.responses[0].error_code,
        code(ResponseError::InvalidConfig)
    );
    // Tuning that keeps compaction stays allowed, as on Kafka.
    assert_eq!(
        incremental_set(&mut c, "cleanup.policy", "compact,delete"),
        0
    );
    assert_eq!(incremental_set(&mut c, "segment.bytes", "1048576"), 0);
    let request = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(TopicName(offsets()))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(-1)])]);
    let r: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, 2, &request);
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        code(ResponseError::InvalidTopicException),
        "Kafka: Cannot delete records of internal topic"
    );
    broker.restart();
    let mut c = broker.connect();
    assert_eq!(fetch_offsets(&mut c, "g", "t", &[0]), vec![7]);
}

#[test]
fn delete_topics_refuses_the_offsets_topic() {
    let broker = Broker::start(GROUP_FLAGS);
    let mut c = broker.connect();
    create_topic(&mut c, "t", 1);
    create_topic(&mut c, "gone", 1);
    find_coordinator(&mut c, "g");
    assert_eq!(commit(&mut c, "g", -1, "", "t", &[(0, 5)]), vec![0]);
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topic_names(vec![
            TopicName(s("__consumer_offsets")),
            TopicName(s("gone")),
        ]);
    let response: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 4, &request);
    let codes: Vec<(String, i16)> = response
        .responses
        .iter()
        .map(|r| (r.name.as_ref().unwrap().to_string(), r.error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            (
                "__consumer_offsets".to_owned(),
                code(ResponseError::InvalidTopicException)
            ),
            ("gone".to_owned(), 0),
        ]
    );
    let metadata: MetadataResponse = c.call(
        ApiKey::Metadata,
        9,
        &MetadataRequest::default().with_topics(None),
    );
    let offsets = metadata
        .topics
        .iter()
        .find(|t| {
            t.name
                .as_ref()
                .is_some_and(|n| n.as_str() == "__consumer_offsets")
        })
        .expect("the offsets topic is still there");
    assert!(offsets.is_internal);
    assert_eq!(fetch_offsets(&mut c, "g", "t", &[0]), vec![5]);
}
