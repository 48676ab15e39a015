//! The real mount: bytes and names through the kernel, then a cut.

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;

use weir_powercut::{DurabilityMode, PowerCutMount};

#[test]
fn a_cut_keeps_exactly_what_was_fsynced() {
    let dir = std::env::temp_dir().join(format!("weir-powercut-{}", std::process::id()));
    let mut mount =
        PowerCutMount::mount(&dir, DurabilityMode::Posix).unwrap_or_else(|e| panic!("{e}"));
    let root = mount.path().to_owned();
    std::fs::create_dir(root.join("d")).unwrap();
    std::fs::File::open(&root).unwrap().sync_all().unwrap();
    // Read and write: sendfile below reads from it.
    let mut kept = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(root.join("d/kept"))
        .unwrap();
    kept.write_all(b"durable").unwrap();
    kept.sync_data().unwrap();
    std::fs::File::open(root.join("d"))
        .unwrap()
        .sync_all()
        .unwrap();
    kept.write_at(b"-volatile", 7).unwrap();
    kept.set_len(100).unwrap();
    let mut lost = std::fs::File::create(root.join("d/lost")).unwrap();
    lost.write_all(b"fsynced, but its name is not").unwrap();
    lost.sync_all().unwrap();
    let stats = mount.stats();
    assert!(
        stats.unsynced_bytes > 0 && stats.unsynced_directories == 1,
        "{stats:?}"
    );
    // Sendfile from the mount works through the page cache.
    let out = std::fs::File::create(std::env::temp_dir().join("weir-powercut-sendfile")).unwrap();
    let mut offset: libc::off_t = 0;
    // SAFETY: both descriptors are open files owned by this test.
    let sent = unsafe {
        libc::sendfile(
            std::os::fd::AsRawFd::as_raw_fd(&out),
            std::os::fd::AsRawFd::as_raw_fd(&kept),
            &mut offset,
            16,
        )
    };
    assert_eq!(sent, 16, "sendfile: {}", std::io::Error::last_os_error());
    drop((kept, lost));

    mount.cut(None).unwrap();
    let mut text = String::new();
    std::fs::File::open(root.join("d/kept"))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "durable");
    assert!(!root.join("d/lost").exists());
    drop(mount);
    assert!(!root.join("d").exists(), "unmounted on drop");
}
