//! `weir-bench` against stock Apache Kafka (the jars `scripts/kafka-peer.sh install` puts in
//! `.kafka-peer/`, which CI's `scripts/install-test-deps.sh` runs): a benchmark that only
//! works against Weir measures nothing. One Kafka for the file, started and stopped by
//! `scripts/kafka-peer.sh` on free ports with a temporary data dir; then, on a topic created
//! by the run (Kafka answers NOT_LEADER_OR_FOLLOWER for a moment after Metadata names a new
//! partition's leader), a fixed-rate run over 16 partitions whose counts must be exact, a
//! max-rate run, and a fixed-rate run whose load generator is paused now and then (its
//! open batches then write timestamp deltas past 64 ms; that wrapped the buffer counter and
//! hung the run in its drain phase).
//!
//! Missing jars fail the test, never skip it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_exact_counts, bench_at, check_output, free_port};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka-peer.sh")
}

/// A running Kafka, stopped (SIGTERM, then SIGKILL) when dropped.
struct Kafka {
    addr: String,
    data_dir: tempfile::TempDir,
}

impl Kafka {
    fn start() -> Kafka {
        let libs = Command::new("bash")
            .arg(script())
            .arg("libs")
            .output()
            .expect("bash runs scripts/kafka-peer.sh");
        assert!(
            libs.status.success(),
            "stock Kafka's jars are missing: run `scripts/kafka-peer.sh install` (CI does, \
             through scripts/install-test-deps.sh)\n{}",
            String::from_utf8_lossy(&libs.stderr)
        );
        let data_dir = tempfile::tempdir().expect("temp dir");
        let (port, controller_port) = (free_port(), free_port());
        let started = Instant::now();
        let output = Command::new("bash")
            .arg(script())
            .args(["start", "--heap", "512m", "--port", &port.to_string()])
            .args(["--controller-port", &controller_port.to_string()])
            .arg("--data-dir")
            .arg(data_dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("bash runs scripts/kafka-peer.sh");
        let kafka = Kafka {
            addr: format!("127.0.0.1:{port}"),
            data_dir,
        };
        assert!(
            output.status.success(),
            "Kafka did not start: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!(
            "Kafka up on {} in {:.1} s",
            kafka.addr,
            started.elapsed().as_secs_f64()
        );
        kafka
    }

    fn log(&self) -> String {
        let log =
            std::fs::read_to_string(self.data_dir.path().join("kafka.log")).unwrap_or_default();
        // The tail is what tells why; Kafka's start-up alone is thousands of lines.
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .status();
    }
}

fn fixed_rate_over_16_partitions_counts_are_exact(kafka: &Kafka) {
    let result = bench_at(
        &kafka.addr,
        &|| kafka.log(),
        &[
            "--partitions",
            "16",
            "--rate",
            "20000",
            "--duration-s",
            "2",
            "--warmup-s",
            "0",
            "--acks",
            "-1",
        ],
    );
    // 20,000 msg/s for 2 s: the schedule sends exactly 40,000 messages.
    assert_exact_counts(&result, 40_000);
    assert!(result.delivery.exactly_once);
}

fn max_rate_with_keys_and_several_clients_is_exactly_once(kafka: &Kafka) {
    let result = bench_at(
        &kafka.addr,
        &|| kafka.log(),
        &[
            "--partitions",
            "16",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--rate",
            "0",
            "--message-size",
            "24..1k",
            "--keys",
            "random:1000",
            "--acks",
            "1",
            "--duration-s",
            "2",
            "--warmup-s",
            "0",
        ],
    );
    assert!(result.delivery.acked > 10_000, "{:?}", result.delivery);
    assert_eq!(result.delivery.consumed_unique, result.delivery.acked);
    assert!(result.delivery.exactly_once);
}

/// Pauses the load generator (SIGSTOP) for 300 ms five times during a fixed-rate run, as a
/// busy host deschedules it: the run must still end, with every message delivered once.
fn a_paused_load_generator_still_drains(kafka: &Kafka) {
    let out = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir-bench"))
        .args(["run", "--bootstrap", &kafka.addr, "--host-limits", "false"])
        .args(["--quiet", "--partitions", "16", "--rate", "20000"])
        .args([
            "--duration-s",
            "5",
            "--warmup-s",
            "0",
            "--drain-timeout-s",
            "10",
        ])
        .arg("--out")
        .arg(out.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir-bench runs");
    let pid = Pid::from_raw(child.id() as i32);
    std::thread::sleep(Duration::from_millis(1_500));
    for _ in 0..5 {
        let _ = kill(pid, Signal::SIGSTOP);
        std::thread::sleep(Duration::from_millis(300));
        let _ = kill(pid, Signal::SIGCONT);
        std::thread::sleep(Duration::from_millis(300));
    }
    // 5 s of load, the ack drain and the consumers' drain are far inside this.
    let deadline = Instant::now() + Duration::from_secs(45);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("weir-bench still running 45 s after a 5 s run: hung after the pauses");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().expect("output");
    let result = check_output(&output, out.path(), &|| kafka.log());
    assert_eq!(result.delivery.acked, 100_000, "{:?}", result.delivery);
    assert!(result.delivery.exactly_once);
}

/// One test, so one Kafka start (seconds of JVM) serves every run and the runs do not
/// share the two cores with each other.
#[test]
fn weir_bench_works_against_stock_kafka() {
    assert!(
        Path::new(&script()).exists(),
        "scripts/kafka-peer.sh is missing"
    );
    let kafka = Kafka::start();
    fixed_rate_over_16_partitions_counts_are_exact(&kafka);
    max_rate_with_keys_and_several_clients_is_exactly_once(&kafka);
    a_paused_load_generator_still_drains(&kafka);
}
