//! One consumer group's state: members, generation, the chosen protocol, committed offsets,
//! and the classic group state machine's current state (Kafka's `GroupMetadata`).
//!
//! Pure data and decisions; the coordinator drives transitions, timers and persistence.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use bytes::Bytes;
use futures::channel::oneshot;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;

use super::records::{GroupValue, MemberValue, OffsetValue};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The names Kafka uses in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup caller is told (built into the response by the API layer).
#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// For the leader only: every member's id, instance id and metadata for the protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// JoinGroup v9: the leader need not assign (a static leader rejoined a stable group).
    pub skip_assignment: bool,
}

impl JoinOutcome {
    pub fn error(error: ResponseError, member_id: &str) -> Self {
        JoinOutcome {
            error: Some(error),
            generation: -1,
            member_id: member_id.to_owned(),
            ..JoinOutcome::default()
        }
    }
}

/// What a SyncGroup caller is told.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub fn error(error: ResponseError) -> Self {
        SyncOutcome {
            error: Some(error),
            ..SyncOutcome::default()
        }
    }
}

pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// Set while the member's JoinGroup waits for the rebalance to complete.
    pub awaiting_join: Option<oneshot::Sender<JoinOutcome>>,
    /// Set while the member's SyncGroup waits for the leader's assignment.
    pub awaiting_sync: Option<oneshot::Sender<SyncOutcome>>,
    /// Heartbeats (and joins, syncs, commits) push this forward by the session timeout.
    pub session_deadline: Instant,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    pub fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    pub fn to_value(&self, protocol: Option<&str>) -> MemberValue {
        MemberValue {
            member_id: self.member_id.clone(),
            group_instance_id: self.group_instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            session_timeout_ms: self.session_timeout_ms,
            subscription: protocol.map(|p| self.metadata_for(p)).unwrap_or_default(),
            assignment: self.assignment.clone(),
        }
    }
}

/// A committed offset in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

impl From<OffsetValue> for Committed {
    fn from(v: OffsetValue) -> Self {
        Committed {
            offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: v.metadata,
            commit_timestamp: v.commit_timestamp,
        }
    }
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    /// Wall-clock ms of the last state change (Kafka's currentStateTimestamp): offsets of an
    /// empty group expire counting from when it became empty.
    pub state_timestamp: i64,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// In join order: the first member becomes leader when there is none.
    pub members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED (KIP-394), not yet joined, with the
    /// deadline after which the id is forgotten.
    pub pending_members: HashMap<String, Instant>,
    /// group.instance.id → member id of the static members (KIP-345).
    pub static_members: HashMap<String, String>,
    /// PreparingRebalance: when the join phase ends even if members are missing.
    pub join_deadline: Option<Instant>,
    /// The initial rebalance of an empty group (group.initial.rebalance.delay.ms): the join
    /// phase is held open for the delay, extended per arriving member up to `join_deadline`.
    pub initial_join_until: Option<Instant>,
    pub offsets: HashMap<(String, i32), Committed>,
}

impl Group {
    pub fn new(id: &str, now_ms: i64) -> Self {
        Group {
            id: id.to_owned(),
            state: GroupState::Empty,
            state_timestamp: now_ms,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            join_deadline: None,
            initial_join_until: None,
            offsets: HashMap::new(),
        }
    }

    pub fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp = now_ms;
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// A static member's request carrying another member id than the one its instance id
    /// maps to comes from a zombie that was replaced (KIP-345).
    pub fn is_fenced(&self, member_id: &str, group_instance_id: Option<&str>) -> bool {
        group_instance_id
            .and_then(|instance| self.static_members.get(instance))
            .is_some_and(|current| current != member_id)
    }

    /// The protocols every member supports, each named once.
    fn common_protocols(&self) -> Vec<&str> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut common: Vec<&str> = first.protocols.iter().map(|(n, _)| n.as_str()).collect();
        for member in members {
            common.retain(|name| member.protocols.iter().any(|(n, _)| n == name));
        }
        common
    }

    /// Whether a member with these protocols can join: same protocol type, and at least one
    /// protocol in common with every current member.
    pub fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && self
                .common_protocols()
                .iter()
                .any(|c| protocols.iter().any(|(n, _)| n == c))
    }

    /// Kafka's vote: among the protocols all members support, each member votes for the one
    /// it lists first; the most votes wins, ties to the earliest candidate.
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.common_protocols();
        let mut votes = vec![0usize; candidates.len()];
        for member in self.members.values() {
            if let Some(i) = member
                .protocols
                .iter()
                .find_map(|(n, _)| candidates.iter().position(|c| c == n))
            {
                votes[i] += 1;
            }
        }
        let best = votes.iter().copied().max()?;
        let i = votes.iter().position(|&v| v == best)?;
        Some(candidates[i].to_owned())
    }

    pub fn all_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    pub fn max_rebalance_timeout_ms(&self) -> i32 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    /// The consumer-protocol subscriptions name this topic (OffsetDelete must refuse then).
    pub fn subscribed_to(&self, topic: &str) -> bool {
        let Some(protocol) = &self.protocol else {
            return false;
        };
        if self.protocol_type.as_deref() != Some("consumer") {
            return false;
        }
        self.members.values().any(|m| {
            super::records::subscribed_topics(&m.metadata_for(protocol))
                .is_none_or(|topics| topics.iter().any(|t| t == topic))
        })
    }

    /// The record stored after a rebalance completes (and read back on restart).
    pub fn to_value(&self) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_timestamp,
            members: self
                .members
                .values()
                .map(|m| m.to_value(self.protocol.as_deref()))
                .collect(),
        }
    }

    /// Removes a member; a waiting JoinGroup or SyncGroup of it is told it is unknown.
    pub fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let mut member = self.members.shift_remove(member_id)?;
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        if let Some(tx) = member.awaiting_join.take() {
            let _ = tx.send(JoinOutcome::error(
                ResponseError::UnknownMemberId,
                member_id,
            ));
        }
        if let Some(tx) = member.awaiting_sync.take() {
            let _ = tx.send(SyncOutcome::error(ResponseError::UnknownMemberId));
        }
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        Some(member)
    }

    /// Ids of the members currently in the group, for logging and tests.
    pub fn member_ids(&self) -> HashSet<&str> {
        self.members.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, protocols: &[&str]) -> Member {
        Member {
            member_id: id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "h".into(),
            rebalance_timeout_ms: 1000,
            session_timeout_ms: 1000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(p.to_string())))
                .collect(),
            assignment: Bytes::new(),
            awaiting_join: None,
            awaiting_sync: None,
            session_deadline: Instant::now(),
        }
    }

    #[test]
    fn protocol_is_chosen_by_vote_among_common_ones() {
        let mut group = Group::new("g", 0);
        group.protocol_type = Some("consumer".into());
        group
            .members
            .insert("a".into(), member("a", &["range", "roundrobin"]));
        group
            .members
            .insert("b".into(), member("b", &["roundrobin", "range"]));
        group
            .members
            .insert("c".into(), member("c", &["roundrobin", "sticky"]));
        // Only roundrobin is common to all three.
        assert_eq!(group.select_protocol().as_deref(), Some("roundrobin"));
        assert!(group.supports("consumer", &[("roundrobin".into(), Bytes::new())]));
        assert!(!group.supports("consumer", &[("range".into(), Bytes::new())]));
        assert!(!group.supports("connect", &[("roundrobin".into(), Bytes::new())]));
    }

    #[test]
    fn removing_the_leader_promotes_the_next_member_and_answers_its_waiters() {
        let mut group = Group::new("g", 0);
        group.members.insert("a".into(), member("a", &["range"]));
        group.members.insert("b".into(), member("b", &["range"]));
        group.leader = Some("a".into());
        let (tx, mut rx) = oneshot::channel();
        group.members.get_mut("a").unwrap().awaiting_join = Some(tx);
        group.remove_member("a");
        assert_eq!(group.leader.as_deref(), Some("b"));
        let told = rx.try_recv().unwrap().unwrap();
        assert_eq!(told.error, Some(ResponseError::UnknownMemberId));
    }

    #[test]
    fn a_replaced_static_member_is_fenced() {
        let mut group = Group::new("g", 0);
        group.static_members.insert("i1".into(), "new".into());
        assert!(group.is_fenced("old", Some("i1")));
        assert!(!group.is_fenced("new", Some("i1")));
        assert!(!group.is_fenced("old", None));
    }
}
