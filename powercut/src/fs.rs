//! Translates FUSE requests into `Model` calls. Keeps no state of its own beyond the epoch
//! it was mounted in: every answer comes from the model, so what the kernel is told always
//! matches what a cut will keep or drop.
//!
//! Writeback caching stays off (fuser does not ask for FUSE_WRITEBACK_CACHE), so every
//! write reaches the model when the process issues it and every fsync arrives as
//! FUSE_FSYNC; FUSE_FSYNCDIR is implemented (an ENOSYS would make the kernel stop sending
//! it, and directory fsyncs are half of what this file system checks).

use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::error::ModelError;
use crate::model::{Attr, Ino, Model, NodeKind};

/// How long the kernel may cache attributes and entries. Short: the mount is replaced at
/// every cut anyway, and nothing but this file system changes the tree.
const TTL: Duration = Duration::from_secs(1);
const BLOCK_BYTES: u32 = 4096;

pub struct PowerCutFs {
    model: Arc<Mutex<Model>>,
    /// The model's epoch when this mount started; after a cut every request answers EIO.
    epoch: u64,
}

impl PowerCutFs {
    pub fn new(model: Arc<Mutex<Model>>) -> PowerCutFs {
        let epoch = lock(&model).epoch();
        PowerCutFs { model, epoch }
    }

    /// The model, if no cut happened since this mount started.
    fn model(&self) -> Result<MutexGuard<'_, Model>, ModelError> {
        let model = lock(&self.model);
        if model.epoch() != self.epoch {
            return Err(ModelError::StaleAfterCut);
        }
        Ok(model)
    }

    fn entry(&self, reply: ReplyEntry, result: Result<(Ino, Attr), ModelError>) {
        match result {
            Ok((ino, attr)) => reply.entry(&TTL, &file_attr(ino, attr), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }
}

/// A panic in a FUSE handler would leave the mount hanging; a poisoned lock means the model
/// may be half-updated, which a test must not trust, so it panics loudly instead of going on.
pub(crate) fn lock(model: &Mutex<Model>) -> MutexGuard<'_, Model> {
    model
        .lock()
        .expect("the model lock is never held across a panic (handlers do not panic)")
}

fn errno(error: ModelError) -> Errno {
    Errno::from_i32(error.errno())
}

fn empty(reply: ReplyEmpty, result: Result<(), ModelError>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

fn file_attr(ino: Ino, attr: Attr) -> FileAttr {
    let now = SystemTime::now();
    let (kind, perm, nlink) = match attr.kind {
        NodeKind::File => (FileType::RegularFile, 0o644, 1),
        NodeKind::Directory => (FileType::Directory, 0o755, 2),
    };
    FileAttr {
        ino: INodeNo(ino),
        size: attr.size,
        blocks: attr.size.div_ceil(512),
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind,
        perm,
        nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: BLOCK_BYTES,
        flags: 0,
    }
}

fn file_type(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Directory => FileType::Directory,
    }
}

impl Filesystem for PowerCutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = self.model().and_then(|model| {
            let ino = model.lookup(parent.0, name)?;
            Ok((ino, model.attr(ino)?))
        });
        self.entry(reply, result);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.model().and_then(|model| model.attr(ino.0)) {
            Ok(attr) => reply.attr(&TTL, &file_attr(ino.0, attr)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Only the size matters to durability; modes, owners and times are not modelled.
        let result = self.model().and_then(|mut model| {
            if let Some(size) = size {
                model.set_size(ino.0, size)?;
            }
            model.attr(ino.0)
        });
        match result {
            Ok(attr) => reply.attr(&TTL, &file_attr(ino.0, attr)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let result = self.model().and_then(|mut model| {
            let ino = model.create(parent.0, name, NodeKind::File)?;
            Ok((ino, model.attr(ino)?))
        });
        self.entry(reply, result);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self.model().and_then(|mut model| {
            let ino = model.create(parent.0, name, NodeKind::Directory)?;
            Ok((ino, model.attr(ino)?))
        });
        self.entry(reply, result);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(
            reply,
            self.model().and_then(|mut m| m.unlink(parent.0, name)),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(
            reply,
            self.model().and_then(|mut m| m.rmdir(parent.0, name)),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        // RENAME_EXCHANGE and RENAME_WHITEOUT: nothing in the broker uses them.
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let result = self
            .model()
            .and_then(|mut m| m.rename(parent.0, name, newparent.0, newname, no_replace));
        empty(reply, result);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // No FOPEN_KEEP_CACHE and no FOPEN_DIRECT_IO: the page cache serves sendfile, and is
        // dropped at each open so it cannot outlive what the model holds.
        match self.model().and_then(|model| model.attr(ino.0)) {
            Ok(_) => reply.opened(FileHandle(self.epoch), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let result = self.model().and_then(|mut model| {
            let ino = model.create(parent.0, name, NodeKind::File)?;
            Ok((ino, model.attr(ino)?))
        });
        match result {
            Ok((ino, attr)) => reply.created(
                &TTL,
                &file_attr(ino, attr),
                Generation(0),
                FileHandle(self.epoch),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.model() {
            Ok(model) => match model.read(ino.0, offset, size) {
                Ok(data) => reply.data(data),
                Err(e) => reply.error(errno(e)),
            },
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.model().and_then(|mut m| m.write(ino.0, offset, data)) {
            // A FUSE write is at most max_write (well under 4 GiB): the length fits.
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) promises nothing about durability; neither does this.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // fdatasync and fsync alike: the model keeps no metadata fdatasync could skip.
        empty(reply, self.model().and_then(|mut m| m.fsync(ino.0)));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.model().and_then(|model| model.read_dir(ino.0)) {
            Ok(_) => reply.opened(FileHandle(self.epoch), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.model().and_then(|model| model.read_dir(ino.0)) {
            Ok(entries) => entries,
            Err(e) => return reply.error(errno(e)),
        };
        // "." and ".." first; the kernel resolves ".." itself, any inode number will do.
        let dots = [
            (ino.0, NodeKind::Directory, ".".into()),
            (ino.0, NodeKind::Directory, "..".into()),
        ];
        let all = dots.into_iter().chain(entries);
        for (index, (child, kind, name)) in all.enumerate().skip(offset as usize) {
            let next_offset = index as u64 + 1;
            if reply.add(INodeNo(child), next_offset, file_type(kind), &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.model().and_then(|mut m| m.fsync_directory(ino.0)),
        );
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Plenty of room: the broker's disk checks must not refuse to write.
        const BLOCKS: u64 = 16 << 20;
        reply.statfs(
            BLOCKS,
            BLOCKS,
            BLOCKS,
            1 << 20,
            1 << 20,
            BLOCK_BYTES,
            255,
            BLOCK_BYTES,
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = self
            .model()
            .and_then(|mut m| m.allocate(ino.0, offset, length, mode));
        empty(reply, result);
    }
}
