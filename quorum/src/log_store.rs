//! The quorum's durable Raft log and vote, in one directory:
//!
//! - `raft-log`: the entries, one checked frame each (`files::put_frame`), appended and
//!   fdatasynced before openraft is told they are flushed; a suffix is cut with ftruncate;
//! - `raft-state`: the vote and the last purged log id, replaced atomically.
//!
//! Entries are also kept in memory: the metadata log stays small (snapshots bound it), and
//! replication reads it often. Purged entries stay in the file until the dead prefix is most of
//! it; then the live entries are rewritten to a new file renamed over the old one.
//!
//! On open, a tail that is an incomplete frame, or a bad frame followed only by zeros or by
//! nothing, is a torn append that was never acknowledged, and is cut off. A bad frame with
//! good data after it is damage: open fails rather than guess which entries are real, because
//! a voter that silently forgets entries it acknowledged can break Raft's safety.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::{Deserialize, Serialize};

use crate::files::{self, blocking, invalid, Frame};
use crate::types::{Entry, LogId, TypeConfig, Vote};

const LOG_FILE: &str = "raft-log";
const STATE_FILE: &str = "raft-state";
/// The log file is rewritten without its purged prefix once that prefix is this large and
/// more than half the file.
const REWRITE_DEAD_BYTES: u64 = 4 << 20;

/// The vote and purge point, saved together.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct HardState {
    vote: Option<Vote>,
    purged: Option<LogId>,
}

struct Stored {
    entry: Entry,
    /// Byte offset of the entry's frame in the log file.
    at: u64,
}

struct Inner {
    dir: PathBuf,
    /// Shared with the blocking pool, which does the writes and syncs.
    file: Arc<File>,
    /// Length of the log file: where the next frame goes.
    end: u64,
    entries: BTreeMap<u64, Stored>,
    state: HardState,
}

/// openraft's log storage and log reader (one shared state: the quorum's storage runs on
/// one executor, so an `Rc<RefCell>` is the whole of its synchronisation).
#[derive(Clone)]
pub struct LogStore {
    inner: Rc<RefCell<Inner>>,
}

fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(io::Error::other)
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, cutting off a torn tail. Blocking: call it before
    /// the node starts or on the blocking pool.
    pub fn open(dir: &Path) -> io::Result<Self> {
        files::create_dir_durably(dir)?;
        let state: HardState = match files::read_replaced(&dir.join(STATE_FILE))? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| invalid(format!("{}: {e}", dir.join(STATE_FILE).display())))?,
            None => HardState::default(),
        };
        let path = dir.join(LOG_FILE);
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if !existed {
            files::sync_dir(dir)?;
        }
        let bytes = std::fs::read(&path)?;
        let purged_index = state.purged.as_ref().map(|id| id.index());
        let (entries, end) = read_entries(&bytes, purged_index, &path)?;
        if end < bytes.len() as u64 {
            tracing::warn!(
                path = %path.display(),
                cut = bytes.len() as u64 - end,
                "cutting a torn tail off the Raft log"
            );
            file.set_len(end)?;
            file.sync_data()?;
        }
        let entries = entries
            .into_iter()
            .filter(|(index, _)| Some(*index) > purged_index)
            .collect();
        Ok(Self {
            inner: Rc::new(RefCell::new(Inner {
                dir: dir.to_path_buf(),
                file: Arc::new(file),
                end,
                entries,
                state,
            })),
        })
    }

    async fn save_state(&self, state: HardState) -> io::Result<()> {
        let payload = encode(&state)?;
        let dir = self.inner.borrow().dir.clone();
        blocking(move || files::replace(&dir, STATE_FILE, &payload)).await?;
        self.inner.borrow_mut().state = state;
        Ok(())
    }

    /// Rewrites the log file with only its live entries, when the purged prefix is most of it.
    async fn maybe_rewrite(&self) -> io::Result<()> {
        let (dir, frames, dead) = {
            let inner = self.inner.borrow();
            let dead = inner.entries.values().next().map_or(inner.end, |s| s.at);
            if dead < REWRITE_DEAD_BYTES || dead * 2 < inner.end {
                return Ok(());
            }
            let mut frames = Vec::with_capacity((inner.end - dead) as usize);
            for stored in inner.entries.values() {
                files::put_frame(&mut frames, &encode(&stored.entry)?);
            }
            (inner.dir.clone(), frames, dead)
        };
        let len = frames.len() as u64;
        let file = blocking(move || {
            files::replace_raw(&dir, LOG_FILE, &frames)?;
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(dir.join(LOG_FILE))
        })
        .await?;
        let mut inner = self.inner.borrow_mut();
        inner.file = Arc::new(file);
        inner.end = len;
        for stored in inner.entries.values_mut() {
            stored.at -= dead;
        }
        Ok(())
    }
}

/// Every whole, checked entry from the front of the log file, and where the good part ends.
/// Indexes must follow each other, except across a gap that lies wholly at or below the
/// purge point: a snapshot installed from the leader purges the log up to its last index
/// (durably, first) and the entries after it are appended after the older ones still in the
/// file.
fn read_entries(
    bytes: &[u8],
    purged: Option<u64>,
    path: &Path,
) -> io::Result<(BTreeMap<u64, Stored>, u64)> {
    let mut entries = BTreeMap::new();
    let mut at = 0usize;
    let mut previous: Option<u64> = None;
    while at < bytes.len() {
        match files::take_frame(&bytes[at..]) {
            Frame::Whole { payload, len } => {
                let entry: Entry = serde_json::from_slice(payload).map_err(|e| {
                    invalid(format!(
                        "{} at byte {at}: undecodable entry: {e}",
                        path.display()
                    ))
                })?;
                let index = entry.index();
                let follows = |p: u64| index == p + 1 || (index > p && purged >= Some(index - 1));
                if previous.is_some_and(|p| !follows(p)) {
                    return Err(invalid(format!(
                        "{} at byte {at}: entry {index} follows entry {}",
                        path.display(),
                        previous.unwrap_or_default()
                    )));
                }
                previous = Some(index);
                entries.insert(
                    index,
                    Stored {
                        entry,
                        at: at as u64,
                    },
                );
                at += len;
            }
            Frame::Incomplete => break,
            // A write torn inside the last frame (some of its sectors never written) leaves
            // a bad frame with nothing after it; damage has good data after it.
            Frame::Bad
                if bytes[at + files::claimed_end(&bytes[at..])..]
                    .iter()
                    .all(|&b| b == 0) =>
            {
                break
            }
            Frame::Bad => {
                return Err(invalid(format!(
                    "{} is damaged at byte {at} with data after it",
                    path.display()
                )))
            }
        }
    }
    Ok((entries, at as u64))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let inner = self.inner.borrow();
        Ok(inner
            .entries
            .range(range)
            .map(|(_, stored)| stored.entry.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.inner.borrow().state.vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let inner = self.inner.borrow();
        let purged = inner.state.purged;
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|stored| stored.entry.log_id())
            .or(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut state = self.inner.borrow().state.clone();
        state.vote = Some(*vote);
        self.save_state(state).await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry>,
    {
        let (file, start, frames, staged) = {
            let inner = self.inner.borrow();
            let mut expected = inner
                .entries
                .keys()
                .next_back()
                .copied()
                .or(inner.state.purged.as_ref().map(|id| id.index()))
                .map(|last| last + 1);
            let mut frames = Vec::new();
            let mut staged = Vec::new();
            for entry in entries {
                let index = entry.index();
                // openraft truncates a conflicting suffix before it appends, so entries always
                // extend the log; anything else would corrupt the file's index order.
                if expected.is_some_and(|e| index != e) {
                    return Err(invalid(format!(
                        "append of entry {index} where {} is next",
                        expected.unwrap_or_default()
                    )));
                }
                expected = Some(index + 1);
                let at = inner.end + frames.len() as u64;
                files::put_frame(&mut frames, &encode(&entry)?);
                staged.push(Stored { entry, at });
            }
            (inner.file.clone(), inner.end, frames, staged)
        };
        let len = frames.len() as u64;
        let written = blocking(move || {
            file.write_all_at(&frames, start)?;
            file.sync_data()
        })
        .await;
        if let Err(e) = written {
            callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
        {
            let mut inner = self.inner.borrow_mut();
            inner.end = start + len;
            for stored in staged {
                inner.entries.insert(stored.entry.index(), stored);
            }
        }
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let first_cut = last_log_id.map_or(0, |id| id.index() + 1);
        let (file, at) = {
            let inner = self.inner.borrow();
            match inner.entries.range(first_cut..).next() {
                Some((_, stored)) => (inner.file.clone(), stored.at),
                None => return Ok(()),
            }
        };
        blocking(move || {
            file.set_len(at)?;
            file.sync_data()
        })
        .await?;
        let mut inner = self.inner.borrow_mut();
        inner.entries.split_off(&first_cut);
        inner.end = at;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let mut state = self.inner.borrow().state.clone();
        if state.purged.as_ref() >= Some(&log_id) {
            return Ok(());
        }
        state.purged = Some(log_id);
        // The purge point is durable before the entries go, so a restart never finds a gap
        // between it and the first entry it keeps.
        self.save_state(state).await?;
        {
            let mut inner = self.inner.borrow_mut();
            let kept = inner.entries.split_off(&(log_id.index() + 1));
            inner.entries = kept;
        }
        self.maybe_rewrite().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_tail_is_cut_and_damage_before_good_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let mut bytes = Vec::new();
        for index in 1..=3u64 {
            let entry = Entry::new_blank(openraft::testing::log_id::<TypeConfig>(1, 1, index));
            files::put_frame(&mut bytes, &encode(&entry).unwrap());
        }
        let whole = bytes.len();
        let (entries, end) = read_entries(&bytes, None, &path).unwrap();
        assert_eq!((entries.len(), end), (3, whole as u64));

        // A frame cut short, and a frame whose data never reached the disk (zeros).
        let mut torn = bytes.clone();
        torn.extend_from_slice(&bytes[..10]);
        assert_eq!(read_entries(&torn, None, &path).unwrap().1, whole as u64);
        let mut zeroed = bytes.clone();
        zeroed.extend_from_slice(&[0u8; 100]);
        assert_eq!(read_entries(&zeroed, None, &path).unwrap().1, whole as u64);

        // The last frame with its later sectors unwritten (zeros): torn, cut.
        let mut holed = bytes.clone();
        let last = holed.len();
        holed[last - 20..].fill(0);
        let (entries, end) = read_entries(&holed, None, &path).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(end < whole as u64);

        // A flipped bit in the middle entry, with the third after it: refused.
        let mut damaged = bytes.clone();
        damaged[whole / 2] ^= 0x40;
        assert!(read_entries(&damaged, None, &path).is_err());

        // A gap in the indexes: refused.
        let mut gap = Vec::new();
        for index in [1u64, 3] {
            let entry = Entry::new_blank(openraft::testing::log_id::<TypeConfig>(1, 1, index));
            files::put_frame(&mut gap, &encode(&entry).unwrap());
        }
        assert!(read_entries(&gap, None, &path).is_err());
        // ... unless the purge point covers it (a snapshot was installed in between).
        assert_eq!(read_entries(&gap, Some(2), &path).unwrap().0.len(), 2);
        assert!(read_entries(&gap, Some(1), &path).is_err());
    }
}
