//! Weir's metadata quorum: the Raft log that every node applies to its metadata image
//! (DESIGN.md, Cluster). Consensus is openraft's; this crate gives it a runtime on the
//! shard's glommio executor, durable storage for its vote, log and snapshot, and a state
//! machine that applies committed records to what the metadata layer plugs in.

pub mod files;
pub mod log_store;
pub mod runtime;
pub mod state_machine;
pub mod types;

pub use log_store::LogStore;
pub use state_machine::{Apply, StateMachine};
pub use types::{NodeId, Raft, Record, TypeConfig};
