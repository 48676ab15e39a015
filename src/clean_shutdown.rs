//! The clean-shutdown marker (Kafka's `.kafka_cleanshutdown`): written, synced, once every
//! shard has flushed and synced every partition at shutdown; taken (removed, synced) at
//! start before anything can be written. Present at start means the logs are exactly as a
//! clean shutdown left them, so recovery can skip re-validating the active segments.
//! Absent, each partition re-validates its active segment only from its own recovery
//! checkpoint (`weir_storage::log::RecoveryCheckpoint`), which the shutdown's flush brought up
//! to the log end and the run since has kept within a few seconds of it, so a crash costs
//! a rescan of the last seconds of writes rather than of whole segments.

use std::path::Path;

use weir_storage::LastShutdown;

const MARKER: &str = ".clean-shutdown";

/// How the last run ended; the marker is gone afterwards, so a crash from here on is
/// recovered in full next time.
pub fn take(data_dir: &Path) -> std::io::Result<LastShutdown> {
    let path = data_dir.join(MARKER);
    match std::fs::remove_file(&path) {
        Ok(()) => {
            sync_dir(data_dir)?;
            Ok(LastShutdown::Clean)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LastShutdown::Unclean),
        Err(e) => Err(e),
    }
}

/// Records a clean shutdown. Only after every log is flushed and synced.
pub fn mark(data_dir: &Path) -> std::io::Result<()> {
    let path = data_dir.join(MARKER);
    std::fs::File::create(&path)?.sync_all()?;
    sync_dir(data_dir)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(take(dir.path()).unwrap(), LastShutdown::Unclean);
        mark(dir.path()).unwrap();
        assert_eq!(take(dir.path()).unwrap(), LastShutdown::Clean);
        assert_eq!(take(dir.path()).unwrap(), LastShutdown::Unclean);
    }
}
