//! The group coordinator of one shard: the groups whose `__consumer_offsets` partition this
//! shard owns, and the classic group state machine that drives them (Kafka's
//! `GroupCoordinator`, states Empty → PreparingRebalance → CompletingRebalance → Stable).
//!
//! State is changed synchronously under one `RefCell` borrow per step and never held across
//! an await: where a step must persist a record before answering, it decides, releases the
//! borrow, appends, then re-checks (generation and state) before finishing, as Kafka does
//! when its append callback runs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use kafka_protocol::error::ResponseError;

use super::records::{self, GroupValue, OffsetValue};
use super::state::{Committed, Group, GroupState, JoinOutcome, Member, SyncOutcome};
use super::{partition_for, GroupConfig, OFFSETS_TOPIC, OFFSET_METADATA_MAX_BYTES};
use crate::clock::now_ms;
use crate::shard_context::ShardContext;

/// How often timers (session expiry, rebalance deadlines, the initial join delay) are checked.
/// Kafka's session timeouts are seconds; 50 ms granularity is invisible to clients.
const TICK: Duration = Duration::from_millis(50);

/// How often expired offsets are looked for (Kafka's `offsets.retention.check.interval.ms`
/// default is 10 minutes; checking more often costs little with the groups in memory).
const RETENTION_CHECK_EVERY: Duration = Duration::from_secs(60);

pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets an id with MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
}

pub struct SyncRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

pub struct CommitRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// (topic, partition, offset, leader epoch, metadata)
    pub offsets: Vec<(String, i32, i64, i32, Option<String>)>,
}

/// One group as DescribeGroups shows it.
pub struct DescribedGroup {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// Committed offsets of one topic: (partition, committed), None where nothing is committed.
pub type TopicOffsets = (String, Vec<(i32, Option<Committed>)>);

enum JoinStep {
    Done(JoinOutcome),
    Wait(oneshot::Receiver<JoinOutcome>),
    /// A static member replaced its old id in a stable group: persist, then answer.
    StoreThen(GroupValue, JoinOutcome),
}

enum SyncStep {
    Done(SyncOutcome),
    Wait(oneshot::Receiver<SyncOutcome>),
    /// The leader's assignment: persist it, then hand it to every waiting member.
    Assign {
        value: GroupValue,
        generation: i32,
        assignments: HashMap<String, Bytes>,
        wait: oneshot::Receiver<SyncOutcome>,
    },
}

pub struct GroupCoordinator {
    groups: RefCell<HashMap<String, Group>>,
    config: GroupConfig,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> Self {
        GroupCoordinator {
            groups: RefCell::new(HashMap::new()),
            config,
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Replaces the groups with those rebuilt from the log (start-up).
    pub fn install(&self, groups: HashMap<String, Group>) {
        *self.groups.borrow_mut() = groups;
    }

    // ---- JoinGroup ----

    pub async fn join(&self, ctx: &Rc<ShardContext>, request: JoinRequest) -> JoinOutcome {
        let group_id = request.group_id.clone();
        let member_id = request.member_id.clone();
        match self.join_step(ctx, request) {
            JoinStep::Done(outcome) => outcome,
            JoinStep::Wait(wait) => wait
                .await
                .unwrap_or_else(|_| JoinOutcome::error(ResponseError::UnknownMemberId, &member_id)),
            JoinStep::StoreThen(value, outcome) => {
                match append_group(ctx, &group_id, Some(value)).await {
                    Ok(()) => outcome,
                    Err(error) => JoinOutcome::error(error, &outcome.member_id),
                }
            }
        }
    }

    fn join_step(&self, ctx: &Rc<ShardContext>, request: JoinRequest) -> JoinStep {
        if request.group_id.is_empty() {
            return JoinStep::Done(JoinOutcome::error(
                ResponseError::InvalidGroupId,
                &request.member_id,
            ));
        }
        if request.session_timeout_ms < self.config.min_session_timeout_ms
            || request.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return JoinStep::Done(JoinOutcome::error(
                ResponseError::InvalidSessionTimeout,
                &request.member_id,
            ));
        }
        let now = Instant::now();
        let mut groups = self.groups.borrow_mut();
        if !groups.contains_key(&request.group_id) {
            if !request.member_id.is_empty() {
                return JoinStep::Done(JoinOutcome::error(
                    ResponseError::UnknownMemberId,
                    &request.member_id,
                ));
            }
            groups.insert(
                request.group_id.clone(),
                Group::new(&request.group_id, now_ms()),
            );
        }
        let group = groups
            .get_mut(&request.group_id)
            .expect("inserted above if it was missing");
        if group.state == GroupState::Dead {
            return JoinStep::Done(JoinOutcome::error(
                ResponseError::CoordinatorNotAvailable,
                &request.member_id,
            ));
        }
        if !group.supports(&request.protocol_type, &request.protocols) {
            return JoinStep::Done(JoinOutcome::error(
                ResponseError::InconsistentGroupProtocol,
                &request.member_id,
            ));
        }
        let step = if request.member_id.is_empty() {
            self.join_new_member(group, request, now)
        } else {
            self.join_known_member(group, request, now)
        };
        let store = self.try_complete_join(group, now);
        drop(groups);
        self.store_in_background(ctx, store);
        step
    }

    fn join_new_member(&self, group: &mut Group, request: JoinRequest, now: Instant) -> JoinStep {
        let prefix = request
            .group_instance_id
            .as_deref()
            .unwrap_or(&request.client_id);
        let member_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
        if let Some(instance) = &request.group_instance_id {
            if let Some(old_id) = group.static_members.get(instance).cloned() {
                return self.replace_static_member(group, &old_id, member_id, request, now);
            }
        } else if request.require_known_member_id {
            // KIP-394: the id is handed out first and the member joins with it, so a client
            // that times out and retries does not leave an orphan member behind.
            let deadline = now + millis(request.session_timeout_ms);
            group.pending_members.insert(member_id.clone(), deadline);
            return JoinStep::Done(JoinOutcome::error(
                ResponseError::MemberIdRequired,
                &member_id,
            ));
        }
        self.add_member(group, member_id, request, now)
    }

    fn join_known_member(&self, group: &mut Group, request: JoinRequest, now: Instant) -> JoinStep {
        let member_id = request.member_id.clone();
        if group.pending_members.contains_key(&member_id) {
            return self.add_member(group, member_id, request, now);
        }
        if group.is_fenced(&member_id, request.group_instance_id.as_deref()) {
            return JoinStep::Done(JoinOutcome::error(
                ResponseError::FencedInstanceId,
                &member_id,
            ));
        }
        let Some(member) = group.members.get(&member_id) else {
            return JoinStep::Done(JoinOutcome::error(
                ResponseError::UnknownMemberId,
                &member_id,
            ));
        };
        let unchanged = member.same_protocols(&request.protocols);
        match group.state {
            GroupState::PreparingRebalance => self.update_member(group, request, now),
            GroupState::CompletingRebalance if unchanged => {
                JoinStep::Done(current_generation(group, &member_id, false))
            }
            GroupState::Stable if unchanged && !group.is_leader(&member_id) => {
                JoinStep::Done(current_generation(group, &member_id, false))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                // A changed subscription, or the leader asking for a new assignment (it
                // rejoins when it sees metadata change), rebalances the group.
                let step = self.update_member(group, request, now);
                self.prepare_rebalance(group, now);
                step
            }
            GroupState::Empty | GroupState::Dead => JoinStep::Done(JoinOutcome::error(
                ResponseError::UnknownMemberId,
                &member_id,
            )),
        }
    }

    fn add_member(
        &self,
        group: &mut Group,
        member_id: String,
        request: JoinRequest,
        now: Instant,
    ) -> JoinStep {
        let (tx, rx) = oneshot::channel();
        if group.members.is_empty() {
            group.protocol_type = Some(request.protocol_type.clone());
        }
        if let Some(instance) = &request.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        group.pending_members.remove(&member_id);
        if group.leader.is_none() {
            group.leader = Some(member_id.clone());
        }
        group.members.insert(
            member_id.clone(),
            Member {
                member_id,
                group_instance_id: request.group_instance_id,
                client_id: request.client_id,
                client_host: request.client_host,
                rebalance_timeout_ms: request.rebalance_timeout_ms,
                session_timeout_ms: request.session_timeout_ms,
                protocol_type: request.protocol_type,
                protocols: request.protocols,
                assignment: Bytes::new(),
                awaiting_join: Some(tx),
                awaiting_sync: None,
                session_deadline: now + millis(request.session_timeout_ms),
            },
        );
        match group.state {
            GroupState::PreparingRebalance => {
                // Each member arriving during the initial delay holds the join phase open a
                // little longer (Kafka's InitialDelayedJoin), up to the rebalance timeout.
                if let (Some(until), Some(deadline)) =
                    (&mut group.initial_join_until, group.join_deadline)
                {
                    *until = (now + self.config.initial_rebalance_delay).min(deadline);
                }
            }
            _ => self.prepare_rebalance(group, now),
        }
        JoinStep::Wait(rx)
    }

    /// Takes a known member's new protocols and timeouts and parks its JoinGroup until the
    /// rebalance completes.
    fn update_member(&self, group: &mut Group, request: JoinRequest, now: Instant) -> JoinStep {
        let (tx, rx) = oneshot::channel();
        let member = group
            .members
            .get_mut(&request.member_id)
            .expect("callers checked the member exists");
        member.protocols = request.protocols;
        member.protocol_type = request.protocol_type;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.session_timeout_ms = request.session_timeout_ms;
        member.session_deadline = now + millis(request.session_timeout_ms);
        if let Some(old) = member.awaiting_join.replace(tx) {
            // The client gave up on its earlier JoinGroup and sent another; the earlier one
            // gets no generation.
            let _ = old.send(JoinOutcome::error(
                ResponseError::RebalanceInProgress,
                &request.member_id,
            ));
        }
        JoinStep::Wait(rx)
    }

    /// A static member came back with a new member id (KIP-345): the old id is fenced, and in
    /// a stable group whose protocol choice does not change, nothing is rebalanced.
    fn replace_static_member(
        &self,
        group: &mut Group,
        old_id: &str,
        new_id: String,
        request: JoinRequest,
        now: Instant,
    ) -> JoinStep {
        let Some(mut member) = group.members.shift_remove(old_id) else {
            return self.add_member(group, new_id, request, now);
        };
        if let Some(tx) = member.awaiting_join.take() {
            let _ = tx.send(JoinOutcome::error(ResponseError::FencedInstanceId, old_id));
        }
        if let Some(tx) = member.awaiting_sync.take() {
            let _ = tx.send(SyncOutcome::error(ResponseError::FencedInstanceId));
        }
        let protocols_changed = !member.same_protocols(&request.protocols);
        member.member_id = new_id.clone();
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.protocols = request.protocols;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.session_timeout_ms = request.session_timeout_ms;
        member.session_deadline = now + millis(request.session_timeout_ms);
        let instance = request
            .group_instance_id
            .expect("only static members are replaced");
        group.static_members.insert(instance, new_id.clone());
        if group.is_leader(old_id) {
            group.leader = Some(new_id.clone());
        }
        group.members.insert(new_id.clone(), member);
        match group.state {
            GroupState::Stable
                if !protocols_changed && group.select_protocol() == group.protocol =>
            {
                let leader = group.is_leader(&new_id);
                JoinStep::StoreThen(group.to_value(), current_generation(group, &new_id, leader))
            }
            state => {
                let (tx, rx) = oneshot::channel();
                group
                    .members
                    .get_mut(&new_id)
                    .expect("inserted above")
                    .awaiting_join = Some(tx);
                // In a settled group the replaced member's assignment may be stale: rebalance.
                // A group already preparing one just counts the member as rejoined.
                if matches!(state, GroupState::Stable | GroupState::CompletingRebalance) {
                    self.prepare_rebalance(group, now);
                }
                JoinStep::Wait(rx)
            }
        }
    }

    /// Starts a rebalance: every member must rejoin within the longest rebalance timeout.
    fn prepare_rebalance(&self, group: &mut Group, now: Instant) {
        if group.state == GroupState::CompletingRebalance {
            for member in group.members.values_mut() {
                if let Some(tx) = member.awaiting_sync.take() {
                    let _ = tx.send(SyncOutcome::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let initial = group.state == GroupState::Empty;
        group.transition(GroupState::PreparingRebalance, now_ms());
        let deadline = now + millis(group.max_rebalance_timeout_ms());
        group.join_deadline = Some(deadline);
        group.initial_join_until = (initial && !self.config.initial_rebalance_delay.is_zero())
            .then(|| (now + self.config.initial_rebalance_delay).min(deadline));
        tracing::debug!(group = %group.id, members = group.members.len(), "preparing rebalance");
    }

    /// Completes the join phase if it is over: everyone rejoined, or time is up. Returns a
    /// group record to store when the group ended up empty.
    fn try_complete_join(&self, group: &mut Group, now: Instant) -> Option<(String, GroupValue)> {
        if group.state != GroupState::PreparingRebalance {
            return None;
        }
        let over = match (group.initial_join_until, group.join_deadline) {
            (Some(until), _) => now >= until,
            (None, Some(deadline)) => group.all_joined() || now >= deadline,
            (None, None) => group.all_joined(),
        };
        if !over {
            return None;
        }
        self.complete_join(group, now)
    }

    fn complete_join(&self, group: &mut Group, now: Instant) -> Option<(String, GroupValue)> {
        // Dynamic members that did not rejoin in time are out; static ones keep their place
        // (and their assignment) until their session expires.
        let missing: Vec<String> = group
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in missing {
            group.remove_member(&id);
        }
        group.join_deadline = None;
        group.initial_join_until = None;
        group.generation += 1;
        if group.members.is_empty() {
            group.protocol = None;
            group.leader = None;
            group.transition(GroupState::Empty, now_ms());
            tracing::debug!(group = %group.id, generation = group.generation, "group is empty");
            return Some((group.id.clone(), group.to_value()));
        }
        group.protocol = group.select_protocol();
        if !group
            .leader
            .as_ref()
            .is_some_and(|l| group.members.contains_key(l))
        {
            group.leader = group.members.keys().next().cloned();
        }
        group.transition(GroupState::CompletingRebalance, now_ms());
        tracing::debug!(group = %group.id, generation = group.generation, members = group.members.len(), "rebalance: join phase complete");
        let ids: Vec<String> = group.members.keys().cloned().collect();
        for id in ids {
            let outcome = current_generation(group, &id, false);
            let member = group.members.get_mut(&id).expect("listed above");
            member.session_deadline = now + millis(member.session_timeout_ms);
            if let Some(tx) = member.awaiting_join.take() {
                let _ = tx.send(outcome);
            }
        }
        None
    }

    // ---- SyncGroup ----

    pub async fn sync(&self, ctx: &Rc<ShardContext>, request: SyncRequest) -> SyncOutcome {
        let group_id = request.group_id.clone();
        match self.sync_step(request) {
            SyncStep::Done(outcome) => outcome,
            SyncStep::Wait(wait) => wait
                .await
                .unwrap_or_else(|_| SyncOutcome::error(ResponseError::RebalanceInProgress)),
            SyncStep::Assign {
                value,
                generation,
                assignments,
                wait,
            } => {
                let stored = append_group(ctx, &group_id, Some(value)).await;
                self.finish_assignment(&group_id, generation, assignments, stored);
                wait.await
                    .unwrap_or_else(|_| SyncOutcome::error(ResponseError::RebalanceInProgress))
            }
        }
    }

    fn sync_step(&self, request: SyncRequest) -> SyncStep {
        let now = Instant::now();
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(&request.group_id) else {
            return SyncStep::Done(SyncOutcome::error(ResponseError::UnknownMemberId));
        };
        if group.state == GroupState::Dead {
            return SyncStep::Done(SyncOutcome::error(ResponseError::CoordinatorNotAvailable));
        }
        if group.is_fenced(&request.member_id, request.group_instance_id.as_deref()) {
            return SyncStep::Done(SyncOutcome::error(ResponseError::FencedInstanceId));
        }
        if !group.members.contains_key(&request.member_id) {
            return SyncStep::Done(SyncOutcome::error(ResponseError::UnknownMemberId));
        }
        if request.generation != group.generation {
            return SyncStep::Done(SyncOutcome::error(ResponseError::IllegalGeneration));
        }
        let type_differs = request
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != group.protocol_type.as_ref());
        let name_differs = request
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != group.protocol.as_ref());
        if type_differs || name_differs {
            return SyncStep::Done(SyncOutcome::error(ResponseError::InconsistentGroupProtocol));
        }
        let protocol_type = group.protocol_type.clone();
        let protocol_name = group.protocol.clone();
        let is_leader = group.is_leader(&request.member_id);
        let state = group.state;
        let member = group
            .members
            .get_mut(&request.member_id)
            .expect("checked above");
        member.session_deadline = now + millis(member.session_timeout_ms);
        match state {
            GroupState::Empty => SyncStep::Done(SyncOutcome::error(ResponseError::UnknownMemberId)),
            GroupState::Dead => {
                SyncStep::Done(SyncOutcome::error(ResponseError::CoordinatorNotAvailable))
            }
            GroupState::PreparingRebalance => {
                SyncStep::Done(SyncOutcome::error(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => SyncStep::Done(SyncOutcome {
                error: None,
                protocol_type,
                protocol_name,
                assignment: member.assignment.clone(),
            }),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                member.awaiting_sync = Some(tx);
                if !is_leader {
                    return SyncStep::Wait(rx);
                }
                let assignments: HashMap<String, Bytes> = request.assignments.into_iter().collect();
                let mut value = group.to_value();
                for m in &mut value.members {
                    m.assignment = assignments.get(&m.member_id).cloned().unwrap_or_default();
                }
                SyncStep::Assign {
                    value,
                    generation: group.generation,
                    assignments,
                    wait: rx,
                }
            }
        }
    }

    /// After the leader's assignment was stored: hand every member its part and go Stable,
    /// unless the group moved on meanwhile (then the stored record is simply superseded).
    fn finish_assignment(
        &self,
        group_id: &str,
        generation: i32,
        mut assignments: HashMap<String, Bytes>,
        stored: Result<(), ResponseError>,
    ) {
        let now = Instant::now();
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return;
        };
        if group.state != GroupState::CompletingRebalance || group.generation != generation {
            return;
        }
        if let Err(error) = stored {
            for member in group.members.values_mut() {
                if let Some(tx) = member.awaiting_sync.take() {
                    let _ = tx.send(SyncOutcome::error(error));
                }
            }
            self.prepare_rebalance(group, now);
            return;
        }
        let protocol_type = group.protocol_type.clone();
        let protocol_name = group.protocol.clone();
        for member in group.members.values_mut() {
            member.assignment = assignments.remove(&member.member_id).unwrap_or_default();
            if let Some(tx) = member.awaiting_sync.take() {
                let _ = tx.send(SyncOutcome {
                    error: None,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                    assignment: member.assignment.clone(),
                });
            }
        }
        group.transition(GroupState::Stable, now_ms());
        tracing::debug!(group = %group.id, generation, "group is stable");
    }

    // ---- Heartbeat and LeaveGroup ----

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .get_mut(group_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if group.is_fenced(member_id, group_instance_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        let state = group.state;
        let current = group.generation;
        match state {
            GroupState::Dead => return Err(ResponseError::CoordinatorNotAvailable),
            GroupState::Empty => return Err(ResponseError::UnknownMemberId),
            _ => {}
        }
        let member = group
            .members
            .get_mut(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if generation != current {
            return Err(ResponseError::IllegalGeneration);
        }
        member.session_deadline = Instant::now() + millis(member.session_timeout_ms);
        if state == GroupState::PreparingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Removes members (by member id, or by instance id with an empty member id, as the
    /// admin client does for static members). Returns an error per member, in order.
    pub fn leave(
        &self,
        ctx: &Rc<ShardContext>,
        group_id: &str,
        leaving: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let now = Instant::now();
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return Ok(vec![Some(ResponseError::UnknownMemberId); leaving.len()]);
        };
        if group.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let mut removed = false;
        let mut errors = Vec::with_capacity(leaving.len());
        for (member_id, instance) in leaving {
            let target = match (member_id.is_empty(), instance) {
                (true, Some(instance)) => group.static_members.get(instance).cloned(),
                _ => Some(member_id.clone()),
            };
            let error = match target {
                None => Some(ResponseError::UnknownMemberId),
                Some(_)
                    if group.is_fenced(member_id, instance.as_deref()) && !member_id.is_empty() =>
                {
                    Some(ResponseError::FencedInstanceId)
                }
                Some(id) if group.pending_members.remove(&id).is_some() => None,
                Some(id) => match group.remove_member(&id) {
                    Some(_) => {
                        removed = true;
                        None
                    }
                    None => Some(ResponseError::UnknownMemberId),
                },
            };
            errors.push(error);
        }
        let mut store = None;
        if removed {
            match group.state {
                GroupState::Stable | GroupState::CompletingRebalance => {
                    self.prepare_rebalance(group, now);
                    store = self.try_complete_join(group, now);
                }
                GroupState::PreparingRebalance => store = self.try_complete_join(group, now),
                _ => {}
            }
        }
        drop(groups);
        self.store_in_background(ctx, store);
        Ok(errors)
    }

    // ---- Offsets ----

    /// Commits offsets; an error per offset, in request order.
    pub async fn commit(
        &self,
        ctx: &Rc<ShardContext>,
        request: CommitRequest,
    ) -> Vec<Result<(), ResponseError>> {
        let count = request.offsets.len();
        if let Err(error) = self.check_commit(&request) {
            return vec![Err(error); count];
        }
        let image = ctx.image();
        let timestamp = now_ms();
        let mut results = Vec::with_capacity(count);
        let mut batch = Vec::new();
        for (topic, partition, offset, leader_epoch, metadata) in &request.offsets {
            let known = image.owner(topic, *partition).is_some();
            let metadata = metadata.clone().unwrap_or_default();
            let result = if !known {
                Err(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > OFFSET_METADATA_MAX_BYTES {
                Err(ResponseError::OffsetMetadataTooLarge)
            } else {
                let value = OffsetValue {
                    offset: *offset,
                    leader_epoch: *leader_epoch,
                    metadata,
                    commit_timestamp: timestamp,
                };
                batch.push((
                    records::offset_key(&request.group_id, topic, *partition),
                    Some(records::offset_value(&value)),
                    (topic.clone(), *partition, Committed::from(value)),
                ));
                Ok(())
            };
            results.push(result);
        }
        if batch.is_empty() {
            return results;
        }
        let (kvs, committed): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|(k, v, c)| ((k, v), c)).unzip();
        if let Err(error) = append(ctx, &request.group_id, kvs).await {
            return results.into_iter().map(|r| r.and(Err(error))).collect();
        }
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .entry(request.group_id.clone())
            .or_insert_with(|| Group::new(&request.group_id, now_ms()));
        for (topic, partition, value) in committed {
            group.offsets.insert((topic, partition), value);
        }
        results
    }

    /// Whether this member may commit now (Kafka's doCommitOffsets checks). A commit with
    /// generation -1 and no member id is a "simple" commit, allowed outside group management.
    fn check_commit(&self, request: &CommitRequest) -> Result<(), ResponseError> {
        if request.group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(&request.group_id) else {
            return if request.generation < 0 {
                Ok(())
            } else {
                Err(ResponseError::IllegalGeneration)
            };
        };
        if group.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if request.generation < 0 && group.state == GroupState::Empty {
            return Ok(());
        }
        if group.is_fenced(&request.member_id, request.group_instance_id.as_deref()) {
            return Err(ResponseError::FencedInstanceId);
        }
        if group.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        let current = group.generation;
        let member = group
            .members
            .get_mut(&request.member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if request.generation != current {
            return Err(ResponseError::IllegalGeneration);
        }
        member.session_deadline = Instant::now() + millis(member.session_timeout_ms);
        Ok(())
    }

    /// Committed offsets of a group: of the given topics and partitions, or all of them.
    pub fn committed(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Vec<TopicOffsets> {
        let groups = self.groups.borrow();
        let group = groups.get(group_id);
        match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let found = partitions
                        .into_iter()
                        .map(|p| {
                            let committed = group
                                .and_then(|g| g.offsets.get(&(topic.clone(), p)))
                                .cloned();
                            (p, committed)
                        })
                        .collect();
                    (topic, found)
                })
                .collect(),
            None => {
                let mut by_topic: std::collections::BTreeMap<
                    String,
                    Vec<(i32, Option<Committed>)>,
                > = std::collections::BTreeMap::new();
                for ((topic, partition), committed) in group.iter().flat_map(|g| &g.offsets) {
                    by_topic
                        .entry(topic.clone())
                        .or_default()
                        .push((*partition, Some(committed.clone())));
                }
                by_topic
                    .into_iter()
                    .map(|(topic, mut partitions)| {
                        partitions.sort_by_key(|(p, _)| *p);
                        (topic, partitions)
                    })
                    .collect()
            }
        }
    }

    /// (group, topic, partition, committed offset) of every group here, for lag metrics.
    pub fn all_committed(&self) -> Vec<(String, String, i32, i64)> {
        self.groups
            .borrow()
            .values()
            .flat_map(|g| {
                g.offsets
                    .iter()
                    .map(|((t, p), c)| (g.id.clone(), t.clone(), *p, c.offset))
            })
            .collect()
    }

    // ---- Admin: describe, list, delete ----

    pub fn describe(&self, group_id: &str) -> DescribedGroup {
        let groups = self.groups.borrow();
        let Some(group) = groups.get(group_id) else {
            return DescribedGroup {
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            };
        };
        // As Kafka: member metadata and assignments, and the protocol, only once Stable.
        let stable = group.state == GroupState::Stable;
        let protocol = group.protocol.clone().filter(|_| stable);
        DescribedGroup {
            state: group.state,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone().unwrap_or_default(),
            members: group
                .members
                .values()
                .map(|m| {
                    let (metadata, assignment) = match &protocol {
                        Some(p) => (m.metadata_for(p), m.assignment.clone()),
                        None => (Bytes::new(), Bytes::new()),
                    };
                    (
                        m.member_id.clone(),
                        m.group_instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        metadata,
                        assignment,
                    )
                })
                .collect(),
        }
    }

    /// (group id, protocol type, state) of every live group on this shard.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        self.groups
            .borrow()
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state,
                )
            })
            .collect()
    }

    /// Deletes an empty group and its offsets (DeleteGroups).
    pub async fn delete_group(
        &self,
        ctx: &Rc<ShardContext>,
        group_id: &str,
    ) -> Result<(), ResponseError> {
        let tombstones = {
            let mut groups = self.groups.borrow_mut();
            let group = groups
                .get_mut(group_id)
                .filter(|g| g.state != GroupState::Dead)
                .ok_or(ResponseError::GroupIdNotFound)?;
            if group.state != GroupState::Empty {
                return Err(ResponseError::NonEmptyGroup);
            }
            // Dead while the tombstones are written: joins and commits are refused meanwhile.
            group.transition(GroupState::Dead, now_ms());
            tombstones_for(group, group.offsets.keys())
        };
        let result = append(ctx, group_id, tombstones).await;
        let mut groups = self.groups.borrow_mut();
        match result {
            Ok(()) => {
                groups.remove(group_id);
                Ok(())
            }
            Err(error) => {
                if let Some(group) = groups.get_mut(group_id) {
                    group.transition(GroupState::Empty, now_ms());
                }
                Err(error)
            }
        }
    }

    /// Deletes committed offsets (OffsetDelete); an error per partition, in order. A
    /// partition of a topic the group still consumes is refused.
    pub async fn delete_offsets(
        &self,
        ctx: &Rc<ShardContext>,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let (errors, tombstones, deleted) = {
            let groups = self.groups.borrow();
            let group = groups
                .get(group_id)
                .filter(|g| g.state != GroupState::Dead)
                .ok_or(ResponseError::GroupIdNotFound)?;
            if group.state != GroupState::Empty
                && group.protocol_type.as_deref() != Some("consumer")
            {
                return Err(ResponseError::NonEmptyGroup);
            }
            let mut errors = Vec::with_capacity(partitions.len());
            let mut deleted = Vec::new();
            for (topic, partition) in partitions {
                if group.state != GroupState::Empty && group.subscribed_to(topic) {
                    errors.push(Some(ResponseError::GroupSubscribedToTopic));
                } else {
                    errors.push(None);
                    if group.offsets.contains_key(&(topic.clone(), *partition)) {
                        deleted.push((topic.clone(), *partition));
                    }
                }
            }
            let tombstones: Vec<_> = deleted
                .iter()
                .map(|(t, p)| (records::offset_key(group_id, t, *p), None))
                .collect();
            (errors, tombstones, deleted)
        };
        if !tombstones.is_empty() {
            append(ctx, group_id, tombstones).await?;
            if let Some(group) = self.groups.borrow_mut().get_mut(group_id) {
                for key in deleted {
                    group.offsets.remove(&key);
                }
            }
        }
        Ok(errors)
    }

    // ---- Timers ----

    /// Runs the shard's group timers until the shard stops: session expiry, the end of join
    /// phases, the initial join delay, and offset retention.
    pub async fn run_timers(ctx: Rc<ShardContext>) {
        let mut next_retention = Instant::now() + RETENTION_CHECK_EVERY;
        loop {
            glommio::timer::sleep(TICK).await;
            let now = Instant::now();
            let stores = ctx.groups.expire(now);
            for store in stores {
                ctx.groups.store_in_background(&ctx, Some(store));
            }
            if now >= next_retention {
                next_retention = now + RETENTION_CHECK_EVERY;
                ctx.groups.expire_offsets(&ctx).await;
            }
        }
    }

    /// Session and join-phase deadlines.
    fn expire(&self, now: Instant) -> Vec<(String, GroupValue)> {
        let mut stores = Vec::new();
        let mut groups = self.groups.borrow_mut();
        for group in groups.values_mut() {
            group.pending_members.retain(|_, deadline| *deadline > now);
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| {
                    // A member waiting in JoinGroup or SyncGroup cannot heartbeat; the join
                    // deadline or the leader's own session covers it instead (as in Kafka).
                    m.awaiting_join.is_none()
                        && m.awaiting_sync.is_none()
                        && m.session_deadline <= now
                })
                .map(|m| m.member_id.clone())
                .collect();
            if !expired.is_empty() {
                for id in &expired {
                    tracing::info!(group = %group.id, member = %id, "member session expired");
                    group.remove_member(id);
                }
                if matches!(
                    group.state,
                    GroupState::Stable | GroupState::CompletingRebalance
                ) {
                    self.prepare_rebalance(group, now);
                }
            }
            stores.extend(self.try_complete_join(group, now));
        }
        stores
    }

    /// Offset retention (`offsets.retention.minutes`): a group's offsets expire once it has
    /// been empty for the retention period (KIP-211); a standalone group's (no protocol)
    /// expire one by one from their commit time. An empty group left with no offsets is
    /// deleted.
    async fn expire_offsets(&self, ctx: &Rc<ShardContext>) {
        let retention = self.config.offsets_retention.as_millis() as i64;
        let now = now_ms();
        let mut plans = Vec::new();
        {
            let groups = self.groups.borrow();
            for group in groups.values().filter(|g| g.state == GroupState::Empty) {
                let expired: Vec<&(String, i32)> = group
                    .offsets
                    .iter()
                    .filter(|(_, c)| {
                        let since = if group.protocol_type.is_some() {
                            group.state_timestamp
                        } else {
                            c.commit_timestamp
                        };
                        now - since >= retention
                    })
                    .map(|(k, _)| k)
                    .collect();
                let whole_group = expired.len() == group.offsets.len();
                if expired.is_empty() && !whole_group {
                    continue;
                }
                let tombstones = if whole_group {
                    tombstones_for(group, expired.iter().copied())
                } else {
                    expired
                        .iter()
                        .map(|(t, p)| (records::offset_key(&group.id, t, *p), None))
                        .collect()
                };
                let keys: Vec<(String, i32)> = expired.into_iter().cloned().collect();
                plans.push((group.id.clone(), tombstones, keys, whole_group));
            }
        }
        for (group_id, tombstones, keys, whole_group) in plans {
            if let Err(e) = append(ctx, &group_id, tombstones).await {
                tracing::warn!(group = %group_id, "expiring offsets: {e}");
                continue;
            }
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(&group_id) else {
                continue;
            };
            for key in keys {
                group.offsets.remove(&key);
            }
            if whole_group && group.state == GroupState::Empty && group.offsets.is_empty() {
                tracing::info!(group = %group_id, "group expired");
                groups.remove(&group_id);
            }
        }
    }

    /// Writes a group record off the request path (a group that became empty); failure is
    /// logged: the next completed rebalance writes the group again.
    fn store_in_background(&self, ctx: &Rc<ShardContext>, store: Option<(String, GroupValue)>) {
        let Some((group_id, value)) = store else {
            return;
        };
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            if let Err(e) = append_group(&ctx, &group_id, Some(value)).await {
                tracing::warn!(group = %group_id, "storing group: {e}");
            }
        })
        .detach();
    }
}

/// The join answer for a member of the current generation; the leader (unless it need not
/// assign) also gets every member's metadata to compute the assignment from.
fn current_generation(group: &Group, member_id: &str, skip_assignment: bool) -> JoinOutcome {
    let protocol = group.protocol.clone();
    let members = if group.is_leader(member_id) {
        group
            .members
            .values()
            .map(|m| {
                (
                    m.member_id.clone(),
                    m.group_instance_id.clone(),
                    protocol
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    JoinOutcome {
        error: None,
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: protocol,
        leader: group.leader.clone().unwrap_or_default(),
        member_id: member_id.to_owned(),
        members,
        skip_assignment,
    }
}

/// Tombstones for the given offsets of a group and for the group itself.
fn tombstones_for<'a>(
    group: &Group,
    offsets: impl Iterator<Item = &'a (String, i32)>,
) -> Vec<(Bytes, Option<Bytes>)> {
    offsets
        .map(|(t, p)| (records::offset_key(&group.id, t, *p), None))
        .chain(std::iter::once((records::group_key(&group.id), None)))
        .collect()
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

async fn append_group(
    ctx: &Rc<ShardContext>,
    group_id: &str,
    value: Option<GroupValue>,
) -> Result<(), ResponseError> {
    let record = (
        records::group_key(group_id),
        value.as_ref().map(records::group_value),
    );
    append(ctx, group_id, vec![record]).await
}

/// Appends records for a group to its `__consumer_offsets` partition as one batch and waits
/// until they are durable.
async fn append(
    ctx: &Rc<ShardContext>,
    group_id: &str,
    records: Vec<(Bytes, Option<Bytes>)>,
) -> Result<(), ResponseError> {
    let partitions = ctx
        .image()
        .topic(OFFSETS_TOPIC)
        .map(|t| t.partitions.len() as i32)
        .ok_or(ResponseError::NotCoordinator)?;
    let partition = partition_for(group_id, partitions);
    let log = ctx
        .partition(OFFSETS_TOPIC, partition)
        .ok_or(ResponseError::NotCoordinator)?;
    let records = records.into_iter().map(|(k, v)| (Some(k), v)).collect();
    let batch = crate::plain_batch::encode_batch(records, now_ms());
    log.append(&batch).await.map_err(|e| {
        tracing::error!("appending to {OFFSETS_TOPIC}-{partition}: {e}");
        ResponseError::CoordinatorNotAvailable
    })?;
    Ok(())
}
