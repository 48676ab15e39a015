//! Drives the real `weir` broker with the real `weir-bench` binary: a short fixed-rate run
//! whose counts must be exact, and a short max-rate run with keys, several producers and
//! consumers, and variable sizes that must deliver every message exactly once.
//!
//! The broker is `target/release/weir` of this workspace (or `$WEIR_BIN`), built first if
//! missing, started on a free port with a temporary data dir as `tests/common` does for the
//! broker's own tests.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_bench::report::RunResult;

struct Broker {
    addr: SocketAddr,
    child: Child,
    data_dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn weir_binary() -> PathBuf {
    if let Ok(path) = std::env::var("WEIR_BIN") {
        return PathBuf::from(path);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace.join("target"));
    let binary = target.join("release").join("weir");
    if !binary.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--bin", "weir"])
            .current_dir(&workspace)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the broker failed");
    }
    binary
}

impl Broker {
    fn start() -> Broker {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("address");
        let log = std::fs::File::create(data_dir.path().join("broker.log")).expect("log file");
        let child = Command::new(weir_binary())
            .args([
                "--listen",
                &addr.to_string(),
                "--smp",
                "2",
                "--metrics-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("broker starts");
        let broker = Broker {
            addr,
            child,
            data_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "broker did not listen: {}",
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- broker log ---\n{}--- end ---", self.log());
        }
    }
}

/// Runs `weir-bench run` against the broker and returns the parsed result.json.
fn bench(broker: &Broker, args: &[&str]) -> RunResult {
    let out = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_weir-bench"))
        .args([
            "run",
            "--bootstrap",
            &broker.addr.to_string(),
            "--host-limits",
            "false",
            "--quiet",
            "--out",
        ])
        .arg(out.path())
        .args(args)
        .output()
        .expect("weir-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "weir-bench failed: {}\n{stdout}\n{}\nbroker log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        broker.log()
    );
    assert!(
        stdout.contains("every acknowledged message consumed exactly once"),
        "{stdout}"
    );
    for plot in ["latency-percentiles.svg", "over-time.svg"] {
        let svg = std::fs::read_to_string(out.path().join(plot)).expect("plot written");
        assert!(svg.starts_with("<svg"), "{plot}");
    }
    let json = std::fs::read_to_string(out.path().join("result.json")).expect("result.json");
    RunResult::from_json(&json).expect("result.json parses")
}

#[test]
fn fixed_rate_counts_are_exact() {
    let broker = Broker::start();
    let result = bench(
        &broker,
        &[
            "--partitions",
            "2",
            "--rate",
            "1000",
            "--duration-s",
            "2",
            "--warmup-s",
            "0",
            "--acks",
            "-1",
        ],
    );
    // 1,000 msg/s for 2 s: the schedule sends exactly 2,000 messages.
    assert_eq!(result.delivery.acked, 2_000, "{:?}", result.delivery);
    assert_eq!(result.delivery.consumed_unique, 2_000);
    assert_eq!(result.produce.messages_total, 2_000);
    assert_eq!(result.consume.messages_total, 2_000);
    assert_eq!(result.produce.bytes_total, 2_000 * 100);
    assert_eq!((result.delivery.lost, result.delivery.duplicates), (0, 0));
    assert!(result.delivery.exactly_once);
    // Every message was intended inside the measured window, so each has a latency sample.
    assert_eq!(result.produce_latency.count, 2_000);
    assert_eq!(result.end_to_end_latency.count, 2_000);
    assert!(result.produce_latency.p50_us > 0.0);
    assert!(result.end_to_end_latency.p50_us >= result.produce_latency.p50_us * 0.1);
    assert!(result.series.len() >= 2, "a sample per second");
    assert_eq!(result.errors.produce_failed_msgs, 0);
}

#[test]
fn max_rate_with_keys_and_several_clients_is_exactly_once() {
    let broker = Broker::start();
    let result = bench(
        &broker,
        &[
            "--partitions",
            "4",
            "--producers",
            "2",
            "--consumers",
            "3",
            "--rate",
            "0",
            "--message-size",
            "24..512",
            "--keys",
            "round-robin:50",
            "--acks",
            "1",
            "--batch-bytes",
            "16384",
            "--duration-s",
            "1",
            "--warmup-s",
            "0",
        ],
    );
    assert!(result.delivery.acked > 1_000, "{:?}", result.delivery);
    assert_eq!(result.delivery.consumed_unique, result.delivery.acked);
    assert_eq!(result.consume.messages_total, result.produce.messages_total);
    assert_eq!(result.delivery.out_of_order, 0);
    assert!(result.delivery.exactly_once);
}
