//! The replicated state: committed records applied in order to whatever the metadata layer
//! plugs in ([`Apply`]), and its snapshot, kept durably in `raft-snapshot` so that the log
//! behind it can be purged.
//!
//! On restart the applied state is empty; openraft installs the saved snapshot, then
//! re-applies the committed entries after it. So `Apply` need not persist anything itself.

use std::cell::RefCell;
use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::EntryPayload;
use serde::{Deserialize, Serialize};

use crate::files::{self, blocking, invalid};
use crate::types::{LogId, Record, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

const SNAPSHOT_FILE: &str = "raft-snapshot";

/// What the quorum's committed records are applied to: the metadata image.
pub trait Apply: 'static {
    /// Applies one committed record, in log order. A record it cannot decode must be
    /// skipped (and counted), never a panic: every node skips it alike.
    fn apply(&mut self, index: u64, record: &Record);
    /// The whole state, for a snapshot.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state with a snapshot's.
    fn restore(&mut self, snapshot: &[u8]) -> io::Result<()>;
}

/// A snapshot as saved: its meta beside the application's bytes.
#[derive(Serialize, Deserialize)]
struct SavedSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

struct Inner {
    dir: PathBuf,
    app: Box<dyn Apply>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    current: Option<(SnapshotMeta, Vec<u8>)>,
}

/// openraft's state machine and snapshot builder over an [`Apply`].
#[derive(Clone)]
pub struct StateMachine {
    inner: Rc<RefCell<Inner>>,
}

impl StateMachine {
    /// The state machine over `app`, with the snapshot saved in `dir` if there is one.
    /// Blocking: call it before the node starts or on the blocking pool.
    pub fn open(dir: &Path, app: Box<dyn Apply>) -> io::Result<Self> {
        files::create_dir_durably(dir)?;
        let path = dir.join(SNAPSHOT_FILE);
        let current = match files::read_replaced(&path)? {
            Some(bytes) => {
                let saved: SavedSnapshot = serde_json::from_slice(&bytes)
                    .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
                Some((saved.meta, saved.data))
            }
            None => None,
        };
        Ok(Self {
            inner: Rc::new(RefCell::new(Inner {
                dir: dir.to_path_buf(),
                app,
                last_applied: None,
                membership: StoredMembership::default(),
                current,
            })),
        })
    }

    /// Runs `f` on the applied state (the metadata layer reads its image through this).
    pub fn with_app<T>(&self, f: impl FnOnce(&dyn Apply) -> T) -> T {
        f(self.inner.borrow().app.as_ref())
    }

    /// The last log id applied.
    pub fn last_applied(&self) -> Option<LogId> {
        self.inner.borrow().last_applied
    }

    async fn save(&self, meta: SnapshotMeta, data: Vec<u8>) -> io::Result<()> {
        let saved = serde_json::to_vec(&SavedSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        })
        .map_err(io::Error::other)?;
        let dir = self.inner.borrow().dir.clone();
        blocking(move || files::replace(&dir, SNAPSHOT_FILE, &saved)).await?;
        self.inner.borrow_mut().current = Some((meta, data));
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (meta, data) = {
            let inner = self.inner.borrow();
            let meta = SnapshotMeta {
                last_log_id: inner.last_applied,
                last_membership: inner.membership.clone(),
            };
            (meta, inner.app.snapshot())
        };
        self.save(meta.clone(), data.clone()).await?;
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let inner = self.inner.borrow();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            {
                let mut inner = self.inner.borrow_mut();
                match &entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(record) => inner.app.apply(log_id.index(), record),
                    EntryPayload::Membership(membership) => {
                        inner.membership = StoredMembership::new(Some(log_id), membership.clone());
                    }
                }
                inner.last_applied = Some(log_id);
            }
            if let Some(responder) = responder {
                responder.send(());
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        {
            let mut inner = self.inner.borrow_mut();
            inner.app.restore(&snapshot)?;
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership.clone();
        }
        let already_saved = self
            .inner
            .borrow()
            .current
            .as_ref()
            .is_some_and(|(saved, _)| saved == meta);
        if already_saved {
            return Ok(());
        }
        self.save(meta.clone(), snapshot).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self
            .inner
            .borrow()
            .current
            .as_ref()
            .map(|(meta, data)| Snapshot {
                meta: meta.clone(),
                snapshot: data.clone(),
            }))
    }
}

impl Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("last_applied", &self.inner.borrow().last_applied)
            .finish()
    }
}
