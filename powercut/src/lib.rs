//! weir-powercut: a FUSE file system for power-loss tests. It keeps the whole tree in
//! memory twice, as processes see it and as a disk would hold it after a power cut, and
//! moves bytes and names from the first to the second only where fsync(2) promises it
//! (POSIX), or where ext4's journal happens to (Journal mode). `PowerCutMount::cut` drops
//! what was never made durable and remounts, so nothing the kernel cached survives either.
//! Test tooling only: it must never hold data anyone wants to keep.

mod error;
mod fs;
mod model;
mod mount;

pub use error::{ModelError, MountError};
pub use model::{
    Attr, CutReport, DurabilityMode, Ino, Model, NodeKind, Stats, ROOT_INO, SECTOR_BYTES,
};
pub use mount::PowerCutMount;
