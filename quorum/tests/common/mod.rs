//! What the quorum's tests share: a state machine that records what it applied, and an
//! in-process network between nodes on one executor that can cut a node off.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::rc::Rc;

use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use weir_quorum::types::{Snapshot, Vote};
use weir_quorum::{Apply, NodeId, Raft, Record, TypeConfig};

/// What a node applied: (log index, record bytes), in order.
pub type AppliedLog = Rc<RefCell<Vec<(u64, Vec<u8>)>>>;

/// A state machine that records what it applied.
#[derive(Default)]
pub struct Applied(pub AppliedLog);

impl Apply for Applied {
    fn apply(&mut self, index: u64, record: &Record) {
        self.0.borrow_mut().push((index, record.0.clone()));
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&*self.0.borrow()).unwrap()
    }

    fn restore(&mut self, snapshot: &[u8]) -> io::Result<()> {
        *self.0.borrow_mut() = serde_json::from_slice(snapshot).map_err(io::Error::other)?;
        Ok(())
    }
}

/// The nodes that are up, and which are cut off from the rest.
#[derive(Clone, Default)]
pub struct Router {
    pub nodes: Rc<RefCell<BTreeMap<NodeId, Raft>>>,
    pub cut: Rc<RefCell<BTreeSet<NodeId>>>,
}

impl Router {
    fn reach(&self, from: NodeId, to: NodeId) -> Result<Raft, Unreachable<TypeConfig>> {
        let cut = self.cut.borrow();
        if cut.contains(&from) || cut.contains(&to) {
            return Err(Unreachable::from_string(format!("{from} -> {to} is cut")));
        }
        self.nodes
            .borrow()
            .get(&to)
            .cloned()
            .ok_or_else(|| Unreachable::from_string(format!("node {to} is down")))
    }
}

/// One node's view of the network.
pub struct Network {
    pub router: Router,
    pub from: NodeId,
}

pub struct Connection {
    router: Router,
    from: NodeId,
    to: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Connection {
        Connection {
            router: self.router.clone(),
            from: self.from,
            to: target,
        }
    }
}

fn remote<E: std::error::Error + 'static>(e: E) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(&e))
}

impl RaftNetworkV2<TypeConfig> for Connection {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let raft = self
            .router
            .reach(self.from, self.to)
            .map_err(RPCError::Unreachable)?;
        raft.append_entries(rpc).await.map_err(remote)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let raft = self
            .router
            .reach(self.from, self.to)
            .map_err(RPCError::Unreachable)?;
        raft.vote(rpc).await.map_err(remote)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let raft = self
            .router
            .reach(self.from, self.to)
            .map_err(StreamingError::Unreachable)?;
        raft.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))
    }
}
