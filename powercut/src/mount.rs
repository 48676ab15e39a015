//! The mount's lifecycle: mount the model at a directory, cut the power (unmount, drop
//! what is volatile, mount a fresh file system on what survived), lazy-unmount on drop.
//!
//! A cut remounts rather than invalidating inodes one by one: a new FUSE superblock starts
//! with an empty page cache and dentry cache, so the kernel cannot serve a byte the model
//! dropped. The processes using the mount must be dead before a cut (the power is off).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, Config, MountOption};

use crate::error::MountError;
use crate::fs::{lock, PowerCutFs};
use crate::model::{CutReport, DurabilityMode, Model, Stats};

/// How long an unmounted session's thread gets to see the connection end.
const SESSION_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PowerCutMount {
    mountpoint: PathBuf,
    model: Arc<Mutex<Model>>,
    session: Option<BackgroundSession>,
}

impl PowerCutMount {
    /// Mounts an empty file system at `mountpoint` (created if missing). Fails, never
    /// skips, when FUSE is unavailable: a power-loss test that silently did not run would
    /// claim a safety it never checked.
    pub fn mount(mountpoint: &Path, mode: DurabilityMode) -> Result<PowerCutMount, MountError> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .map_err(MountError::NoFuseDevice)?;
        std::fs::create_dir_all(mountpoint).map_err(|source| MountError::Mount {
            path: mountpoint.to_owned(),
            source,
        })?;
        let mut mount = PowerCutMount {
            mountpoint: mountpoint.to_owned(),
            model: Arc::new(Mutex::new(Model::new(mode))),
            session: None,
        };
        mount.spawn_session()?;
        Ok(mount)
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    pub fn stats(&self) -> Stats {
        lock(&self.model).stats()
    }

    /// The power cut. Unmounts, replaces the volatile state with the durable one (tearing
    /// each file's last unsynced write at a sector boundary when `tear_seed` is given) and
    /// mounts the survivor at the same place.
    pub fn cut(&mut self, tear_seed: Option<u64>) -> Result<CutReport, MountError> {
        self.unmount()?;
        let report = lock(&self.model).cut(tear_seed);
        self.spawn_session()?;
        Ok(report)
    }

    fn spawn_session(&mut self) -> Result<(), MountError> {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("weir-powercut".to_owned()),
            MountOption::Subtype("weir-powercut".to_owned()),
        ];
        let fs = PowerCutFs::new(self.model.clone());
        let session = fuser::spawn_mount(fs, &self.mountpoint, &config).map_err(|source| {
            MountError::Mount {
                path: self.mountpoint.clone(),
                source,
            }
        })?;
        self.session = Some(session);
        Ok(())
    }

    fn unmount(&mut self) -> Result<(), MountError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        lazy_unmount(&self.mountpoint).map_err(|source| MountError::Unmount {
            path: self.mountpoint.clone(),
            source,
        })?;
        // The session thread ends once the kernel drops the connection. If something still
        // holds the old mount open it lingers; leave that thread behind rather than hang.
        let deadline = Instant::now() + SESSION_EXIT_TIMEOUT;
        while !session.guard.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if session.guard.is_finished() {
            // Its result is the end of a connection we closed on purpose.
            let _ = session.join();
        } else {
            std::mem::forget(session);
        }
        Ok(())
    }
}

impl Drop for PowerCutMount {
    fn drop(&mut self) {
        // Lazy: a failed test may still have a process inside the mount; a plain unmount
        // would fail and leave a dead mount behind that hangs whoever touches it next.
        let _ = self.unmount();
    }
}

/// umount2(MNT_DETACH): detaches now, frees the file system when its last user goes.
fn lazy_unmount(path: &Path) -> std::io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
    let result = unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
