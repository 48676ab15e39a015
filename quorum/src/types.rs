//! The quorum's Raft types: node ids are Kafka's broker/controller ids, and a log entry's
//! payload is one metadata record, encoded by the metadata layer that applies it.

use serde::{Deserialize, Serialize};

use crate::runtime::GlommioRuntime;

/// One metadata record, as the metadata layer encoded it. The quorum orders and replicates
/// records; it does not look inside them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record(pub Vec<u8>);

impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record of {} bytes", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// Weir's Raft type configuration.
    pub TypeConfig:
        D = Record,
        R = (),
        AsyncRuntime = GlommioRuntime,
);

pub type NodeId = u64;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Vec<u8>>;
pub type Raft = openraft::Raft<TypeConfig, crate::state_machine::StateMachine>;
