//! The in-memory file system behind the mount: a tree of inodes kept twice, as it would be
//! after a power cut (`durable`) and as processes see it now (`volatile`). Every write,
//! truncate or directory change lands in `volatile`; fsync and fdatasync copy a file's
//! content to `durable`, fsync of a directory copies its entry list. A cut throws
//! `volatile` away. Knows nothing of FUSE (`fs.rs` translates requests), so the
//! durability rules are unit-tested here without a mount.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};

use crate::error::ModelError;

pub type Ino = u64;
pub const ROOT_INO: Ino = 1;
/// Torn writes keep a prefix cut at a sector boundary: a disk writes whole sectors.
pub const SECTOR_BYTES: u64 = 512;

/// When directory entries (create, mkdir, rename, unlink, rmdir) become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DurabilityMode {
    /// What POSIX promises: an entry is durable once its parent directory is fsynced.
    #[default]
    Posix,
    /// ext4 data=ordered: any fsync commits the journal, and with it every pending
    /// directory-entry operation of the whole file system.
    Journal,
}

impl std::str::FromStr for DurabilityMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "posix" => Ok(DurabilityMode::Posix),
            "journal" => Ok(DurabilityMode::Journal),
            other => Err(format!("unknown durability mode {other:?} (posix|journal)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Directory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File(Vec<u8>),
    Directory(BTreeMap<OsString, Ino>),
}

impl Node {
    fn kind(&self) -> NodeKind {
        match self {
            Node::File(_) => NodeKind::File,
            Node::Directory(_) => NodeKind::Directory,
        }
    }

    fn empty(kind: NodeKind) -> Node {
        match kind {
            NodeKind::File => Node::File(Vec::new()),
            NodeKind::Directory => Node::Directory(BTreeMap::new()),
        }
    }
}

/// One complete state of the file system: inodes by number, the root always present.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tree {
    nodes: HashMap<Ino, Node>,
}

impl Tree {
    fn with_root() -> Tree {
        Tree {
            nodes: HashMap::from([(ROOT_INO, Node::empty(NodeKind::Directory))]),
        }
    }

    fn node(&self, ino: Ino) -> Result<&Node, ModelError> {
        self.nodes.get(&ino).ok_or(ModelError::NotFound)
    }

    fn file_mut(&mut self, ino: Ino) -> Result<&mut Vec<u8>, ModelError> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(data)) => Ok(data),
            Some(Node::Directory(_)) => Err(ModelError::IsDirectory),
            None => Err(ModelError::NotFound),
        }
    }

    fn entries(&self, ino: Ino) -> Result<&BTreeMap<OsString, Ino>, ModelError> {
        match self.nodes.get(&ino) {
            Some(Node::Directory(entries)) => Ok(entries),
            Some(Node::File(_)) => Err(ModelError::NotDirectory),
            None => Err(ModelError::NotFound),
        }
    }

    fn entries_mut(&mut self, ino: Ino) -> Result<&mut BTreeMap<OsString, Ino>, ModelError> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Directory(entries)) => Ok(entries),
            Some(Node::File(_)) => Err(ModelError::NotDirectory),
            None => Err(ModelError::NotFound),
        }
    }

    /// Drops inodes no entry reaches: unlinked files, and after a cut the files whose
    /// entries never became durable.
    fn collect_garbage(&mut self) {
        let mut reachable = BTreeSet::from([ROOT_INO]);
        let mut pending = vec![ROOT_INO];
        while let Some(ino) = pending.pop() {
            if let Some(Node::Directory(entries)) = self.nodes.get(&ino) {
                for &child in entries.values() {
                    if reachable.insert(child) {
                        pending.push(child);
                    }
                }
            }
        }
        self.nodes.retain(|ino, _| reachable.contains(ino));
    }
}

/// The last write to a file since its last fsync: what a cut may tear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UnsyncedWrite {
    offset: u64,
    len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub kind: NodeKind,
    pub size: u64,
}

/// For verbose logs: how much a cut would drop right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Bytes written (or truncated away) since the written file's last fsync.
    pub unsynced_bytes: u64,
    /// Files with content changes not yet durable.
    pub unsynced_files: usize,
    /// Directories whose entry list differs from the durable one.
    pub unsynced_directories: usize,
    pub fsyncs: u64,
    pub directory_fsyncs: u64,
    pub cuts: u64,
}

/// What a cut did, for the test's log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CutReport {
    pub dropped: Stats,
    /// (inode, bytes of its last unsynced write that survived) for each torn write.
    pub torn_writes: Vec<(Ino, u64)>,
}

#[derive(Debug)]
pub struct Model {
    mode: DurabilityMode,
    volatile: Tree,
    durable: Tree,
    /// Never reused, across cuts too: a number names one inode for the model's lifetime.
    next_ino: Ino,
    /// Counts cuts; a handle opened under an older epoch answers EIO.
    epoch: u64,
    unsynced_bytes: HashMap<Ino, u64>,
    last_unsynced_write: HashMap<Ino, UnsyncedWrite>,
    unsynced_directories: BTreeSet<Ino>,
    fsyncs: u64,
    directory_fsyncs: u64,
}

impl Model {
    pub fn new(mode: DurabilityMode) -> Model {
        Model {
            mode,
            volatile: Tree::with_root(),
            durable: Tree::with_root(),
            next_ino: ROOT_INO + 1,
            epoch: 0,
            unsynced_bytes: HashMap::new(),
            last_unsynced_write: HashMap::new(),
            unsynced_directories: BTreeSet::new(),
            fsyncs: 0,
            directory_fsyncs: 0,
        }
    }

    pub fn mode(&self) -> DurabilityMode {
        self.mode
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn attr(&self, ino: Ino) -> Result<Attr, ModelError> {
        Ok(match self.volatile.node(ino)? {
            Node::File(data) => Attr {
                kind: NodeKind::File,
                size: data.len() as u64,
            },
            Node::Directory(entries) => Attr {
                kind: NodeKind::Directory,
                size: entries.len() as u64,
            },
        })
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Ino, ModelError> {
        self.volatile
            .entries(parent)?
            .get(name)
            .copied()
            .ok_or(ModelError::NotFound)
    }

    /// Entries of a directory as (inode, kind, name), in name order (stable for readdir
    /// offsets).
    pub fn read_dir(&self, ino: Ino) -> Result<Vec<(Ino, NodeKind, OsString)>, ModelError> {
        let entries = self.volatile.entries(ino)?;
        Ok(entries
            .iter()
            .map(|(name, &child)| {
                let kind = self.volatile.nodes[&child].kind();
                (child, kind, name.clone())
            })
            .collect())
    }

    /// A new file or directory; its entry is volatile until the parent is fsynced.
    pub fn create(&mut self, parent: Ino, name: &OsStr, kind: NodeKind) -> Result<Ino, ModelError> {
        if name.is_empty() || name == "." || name == ".." {
            return Err(ModelError::Invalid);
        }
        if self.volatile.entries(parent)?.contains_key(name) {
            return Err(ModelError::Exists);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.volatile.nodes.insert(ino, Node::empty(kind));
        self.volatile
            .entries_mut(parent)?
            .insert(name.to_owned(), ino);
        self.unsynced_directories.insert(parent);
        Ok(ino)
    }

    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<&[u8], ModelError> {
        let data = match self.volatile.node(ino)? {
            Node::File(data) => data,
            Node::Directory(_) => return Err(ModelError::IsDirectory),
        };
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(size as usize).min(data.len());
        Ok(&data[start..end])
    }

    pub fn write(&mut self, ino: Ino, offset: u64, bytes: &[u8]) -> Result<(), ModelError> {
        let data = self.volatile.file_mut(ino)?;
        let start = usize::try_from(offset).map_err(|_| ModelError::Invalid)?;
        let end = start.checked_add(bytes.len()).ok_or(ModelError::Invalid)?;
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(bytes);
        *self.unsynced_bytes.entry(ino).or_default() += bytes.len() as u64;
        self.last_unsynced_write.insert(
            ino,
            UnsyncedWrite {
                offset,
                len: bytes.len() as u64,
            },
        );
        Ok(())
    }

    /// truncate(2)/ftruncate(2), growing with zeros or shrinking.
    pub fn set_size(&mut self, ino: Ino, size: u64) -> Result<(), ModelError> {
        let data = self.volatile.file_mut(ino)?;
        let new_len = usize::try_from(size).map_err(|_| ModelError::Invalid)?;
        let changed = data.len().abs_diff(new_len) as u64;
        data.resize(new_len, 0);
        *self.unsynced_bytes.entry(ino).or_default() += changed;
        // A truncate after the last write may have cut into it; a tear then has nothing
        // well-defined left to keep, so there is no torn write until the next write.
        self.last_unsynced_write.remove(&ino);
        Ok(())
    }

    /// fallocate(2): mode 0 allocates and may grow the file, FALLOC_FL_KEEP_SIZE only
    /// allocates (invisible in this model). Anything else (punch hole, collapse, zero
    /// range) is EOPNOTSUPP, as on file systems without it.
    pub fn allocate(
        &mut self,
        ino: Ino,
        offset: u64,
        len: u64,
        mode: i32,
    ) -> Result<(), ModelError> {
        let end = offset.checked_add(len).ok_or(ModelError::Invalid)?;
        match mode {
            0 => {
                let size = self.attr(ino)?.size;
                if end > size {
                    self.set_size(ino, end)?;
                }
                Ok(())
            }
            libc::FALLOC_FL_KEEP_SIZE => self.volatile.file_mut(ino).map(|_| ()),
            _ => Err(ModelError::Unsupported),
        }
    }

    pub fn unlink(&mut self, parent: Ino, name: &OsStr) -> Result<(), ModelError> {
        let ino = self.lookup(parent, name)?;
        if self.volatile.node(ino)?.kind() == NodeKind::Directory {
            return Err(ModelError::IsDirectory);
        }
        self.remove_entry(parent, name)
    }

    pub fn rmdir(&mut self, parent: Ino, name: &OsStr) -> Result<(), ModelError> {
        let ino = self.lookup(parent, name)?;
        if !self.volatile.entries(ino)?.is_empty() {
            return Err(ModelError::NotEmpty);
        }
        self.remove_entry(parent, name)
    }

    /// The inode itself stays until a cut or garbage collection: an open handle of an
    /// unlinked file still reads and writes it, as on a real file system.
    fn remove_entry(&mut self, parent: Ino, name: &OsStr) -> Result<(), ModelError> {
        self.volatile.entries_mut(parent)?.remove(name);
        self.unsynced_directories.insert(parent);
        Ok(())
    }

    /// rename(2), replacing an existing target unless `no_replace` (RENAME_NOREPLACE).
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), ModelError> {
        let ino = self.lookup(parent, name)?;
        let kind = self.volatile.node(ino)?.kind();
        self.volatile.entries(new_parent)?;
        if kind == NodeKind::Directory && self.is_ancestor(ino, new_parent) {
            return Err(ModelError::Invalid);
        }
        if let Ok(target) = self.lookup(new_parent, new_name) {
            if target == ino {
                return Ok(());
            }
            if no_replace {
                return Err(ModelError::Exists);
            }
            match (kind, self.volatile.node(target)?) {
                (NodeKind::File, Node::Directory(_)) => return Err(ModelError::IsDirectory),
                (NodeKind::Directory, Node::File(_)) => return Err(ModelError::NotDirectory),
                (NodeKind::Directory, Node::Directory(entries)) if !entries.is_empty() => {
                    return Err(ModelError::NotEmpty)
                }
                _ => {}
            }
        }
        self.volatile.entries_mut(parent)?.remove(name);
        self.volatile
            .entries_mut(new_parent)?
            .insert(new_name.to_owned(), ino);
        self.unsynced_directories.insert(parent);
        self.unsynced_directories.insert(new_parent);
        Ok(())
    }

    /// True if `ancestor` is `ino` or a directory above it (a rename into its own subtree).
    fn is_ancestor(&self, ancestor: Ino, ino: Ino) -> bool {
        let mut pending = vec![ancestor];
        while let Some(dir) = pending.pop() {
            if dir == ino {
                return true;
            }
            if let Ok(entries) = self.volatile.entries(dir) {
                pending.extend(entries.values().copied());
            }
        }
        false
    }

    /// fsync(2) or fdatasync(2) of `ino`: for a file, its content and size become
    /// durable (not its name: that is the parent's fsync); for a directory, its entries.
    pub fn fsync(&mut self, ino: Ino) -> Result<(), ModelError> {
        match self.volatile.node(ino)? {
            Node::Directory(_) => return self.fsync_directory(ino),
            Node::File(data) => {
                let data = data.clone();
                self.durable.nodes.insert(ino, Node::File(data));
            }
        }
        self.fsyncs += 1;
        self.unsynced_bytes.remove(&ino);
        self.last_unsynced_write.remove(&ino);
        if self.mode == DurabilityMode::Journal {
            self.commit_all_directories();
        }
        Ok(())
    }

    /// fsync(2) of a directory: its entry list becomes durable.
    pub fn fsync_directory(&mut self, ino: Ino) -> Result<(), ModelError> {
        self.volatile.entries(ino)?;
        self.directory_fsyncs += 1;
        match self.mode {
            DurabilityMode::Posix => self.commit_directory(ino),
            DurabilityMode::Journal => self.commit_all_directories(),
        }
        Ok(())
    }

    fn commit_all_directories(&mut self) {
        let directories: Vec<Ino> = self.unsynced_directories.iter().copied().collect();
        for ino in directories {
            self.commit_directory(ino);
        }
    }

    /// Copies a directory's entries to the durable tree. A child whose own inode was never
    /// made durable appears as it would after a crash: an empty file or directory.
    fn commit_directory(&mut self, ino: Ino) {
        self.unsynced_directories.remove(&ino);
        let Ok(entries) = self.volatile.entries(ino) else {
            return; // Removed since: its parent's entry list decides whether it survives.
        };
        let entries = entries.clone();
        for &child in entries.values() {
            if !self.durable.nodes.contains_key(&child) {
                let kind = self.volatile.nodes[&child].kind();
                self.durable.nodes.insert(child, Node::empty(kind));
            }
        }
        self.durable.nodes.insert(ino, Node::Directory(entries));
    }

    pub fn stats(&self) -> Stats {
        Stats {
            unsynced_bytes: self.unsynced_bytes.values().sum(),
            unsynced_files: self.unsynced_bytes.len(),
            unsynced_directories: self.unsynced_directories.len(),
            fsyncs: self.fsyncs,
            directory_fsyncs: self.directory_fsyncs,
            cuts: self.epoch,
        }
    }

    /// The power cut: the volatile state becomes the durable one. With `tear_seed`, each
    /// file's last unsynced write may leave a prefix, cut at a sector boundary, on disk.
    pub fn cut(&mut self, tear_seed: Option<u64>) -> CutReport {
        let dropped = self.stats();
        let mut torn_writes = Vec::new();
        if let Some(seed) = tear_seed {
            let mut writes: Vec<(Ino, UnsyncedWrite)> = self
                .last_unsynced_write
                .iter()
                .map(|(&ino, &write)| (ino, write))
                .collect();
            writes.sort_by_key(|&(ino, _)| ino);
            for (ino, write) in writes {
                if let Some(kept) = self.tear(ino, write, seed) {
                    torn_writes.push((ino, kept));
                }
            }
        }
        self.durable.collect_garbage();
        self.volatile = self.durable.clone();
        self.unsynced_bytes.clear();
        self.last_unsynced_write.clear();
        self.unsynced_directories.clear();
        self.epoch += 1;
        CutReport {
            dropped,
            torn_writes,
        }
    }

    /// Puts a sector-aligned prefix of `write` into the durable content of `ino`; returns
    /// the bytes kept, None if the file has no durable inode (nothing on disk to tear).
    fn tear(&mut self, ino: Ino, write: UnsyncedWrite, seed: u64) -> Option<u64> {
        let Some(Node::File(volatile)) = self.volatile.nodes.get(&ino) else {
            return None;
        };
        let end = write.offset + write.len;
        let boundaries: Vec<u64> = std::iter::once(write.offset)
            .chain(
                (write.offset / SECTOR_BYTES + 1..=end / SECTOR_BYTES)
                    .map(|sector| sector * SECTOR_BYTES),
            )
            .collect();
        let pick = splitmix64(seed ^ ino.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let kept_end = boundaries[(pick % boundaries.len() as u64) as usize];
        let kept = volatile[write.offset as usize..kept_end as usize].to_vec();
        let Some(Node::File(durable)) = self.durable.nodes.get_mut(&ino) else {
            return None;
        };
        if durable.len() < kept_end as usize {
            durable.resize(kept_end as usize, 0);
        }
        durable[write.offset as usize..kept_end as usize].copy_from_slice(&kept);
        Some(kept.len() as u64)
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
