//! A broker never lives on half-alive: a panic on any shard ends the process at once with a
//! non-zero exit, and SIGTERM finishes within `--shutdown-timeout-ms` even when a shard is
//! wedged (issue 16). Faults are injected into the real binary through `WEIR_FAULT`.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::Broker;

#[test]
fn a_panicking_shard_ends_the_process_and_the_next_start_serves() {
    let mut broker = Broker::start_with_env(&[], &[("WEIR_FAULT", "panic-shard=1:1500")]);
    assert!(broker.is_running(), "the fault fires only after start-up");
    let status = broker.wait_for_exit(Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(101),
        "exit status {status:?}: {}",
        broker.log_text()
    );
    let log = broker.log_text();
    assert!(log.contains("injected panic on shard 1"), "{log}");
    assert!(log.contains("exiting at once"), "{log}");
    broker.env.clear();
    broker.start_again();
    assert!(broker.is_running());
    let status = broker.stop();
    assert!(status.success(), "{status:?}: {}", broker.log_text());
}

#[test]
fn sigterm_with_a_wedged_shard_exits_non_zero_within_the_timeout() {
    let mut broker = Broker::start_with_env(
        &["--shutdown-timeout-ms", "2000"],
        &[("WEIR_FAULT", "wedge-shard-on-shutdown=0")],
    );
    let began = Instant::now();
    let status = broker.stop();
    let took = began.elapsed();
    assert!(
        !status.success() && status.signal().is_none(),
        "a wedged shutdown exits with an error code, got {status:?}"
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(15),
        "SIGTERM took {took:?}"
    );
    let log = broker.log_text();
    assert!(log.contains("did not finish within 2000 ms"), "{log}");
    assert!(!log.contains("stopped cleanly"), "{log}");
    broker.env.clear();
    broker.start_again();
    assert!(
        broker.log_text().contains("last shutdown unclean"),
        "{}",
        broker.log_text()
    );
}
