//! Process-wide shutdown: SIGINT/SIGTERM set one flag that every shard watches.
//!
//! Signals are blocked in every thread and taken synchronously by the main thread
//! (`sigwait`), so no handler runs on a reactor thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

/// How often a shard looks at the flag while waiting; bounds shutdown latency.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    pub fn begin(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_started(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Resolves once shutdown has begun. Shard side.
    pub async fn wait(&self) {
        while !self.is_started() {
            glommio::timer::sleep(POLL_INTERVAL).await;
        }
    }
}

fn signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}

/// Blocks SIGINT/SIGTERM in the calling thread and every thread it spawns afterwards.
pub fn block_signals() -> nix::Result<()> {
    signals().thread_block()
}

/// Waits (blocking the calling thread) for SIGINT or SIGTERM, then begins shutdown.
pub fn wait_for_signal(shutdown: &Shutdown) -> nix::Result<Signal> {
    let signal = signals().wait()?;
    shutdown.begin();
    Ok(signal)
}
