//! Shared by the integration tests: the real `weir` broker on a free port with a temporary
//! data dir, and `weir-bench run` against it.
//!
//! The broker is `target/release/weir` of this workspace (or `$WEIR_BIN`), built first if
//! missing, started as the broker's own tests (the workspace's `tests/common`) start it.

// Every test crate compiles this module and uses its own part of it.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_bench::report::RunResult;
use weir_bench::workload::Compression;

pub struct Broker {
    pub addr: SocketAddr,
    child: Child,
    data_dir: tempfile::TempDir,
}

pub fn free_port() -> u16 {
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

/// True once a Kafka broker answers ApiVersions at `addr`. A successful connect alone is not
/// proof: while nothing listens yet, a connect can pick `addr`'s own port as its source and
/// connect to itself (TCP simultaneous open), and the client started next is then refused.
fn answers_api_versions(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    const CORRELATION_ID: i32 = 0x5745_4952;
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    if stream.local_addr().ok() == Some(addr) {
        return false;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    // ApiVersions v0: size, api key 18, version 0, correlation id, null client id.
    let mut request = Vec::with_capacity(14);
    request.extend_from_slice(&10i32.to_be_bytes());
    request.extend_from_slice(&18i16.to_be_bytes());
    request.extend_from_slice(&0i16.to_be_bytes());
    request.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    request.extend_from_slice(&(-1i16).to_be_bytes());
    let mut head = [0u8; 8];
    stream.write_all(&request).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && head[4..8] == CORRELATION_ID.to_be_bytes()
}

impl Broker {
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// Like `start`, with more flags for the broker.
    pub fn start_with(extra: &[&str]) -> Broker {
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
            .args(extra)
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
        while !answers_api_versions(addr) {
            assert!(
                Instant::now() < deadline,
                "broker did not listen: {}",
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    /// Where the broker keeps its partitions (`<topic>-<partition>/` as Kafka lays them out).
    pub fn data_path(&self) -> PathBuf {
        self.data_dir.path().join("data")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (not exited, not killed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident memory of the broker process, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }

    pub fn log(&self) -> String {
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
pub fn bench(broker: &Broker, args: &[&str]) -> RunResult {
    bench_at(&broker.addr.to_string(), &|| broker.log(), args)
}

/// Runs `weir-bench run` against any broker at `addr` (`broker_log` for failure messages),
/// checks it succeeded with every message delivered exactly once, and returns the result.
/// A run that outlives its `--duration-s` by `BENCH_GRACE` is killed and fails the test, so a
/// hang shows as a failure with the broker's log rather than a CI job that never ends.
pub fn bench_at(addr: &str, broker_log: &dyn Fn() -> String, args: &[&str]) -> RunResult {
    let out = tempfile::tempdir().expect("temp dir");
    let stdout_path = out.path().join("stdout");
    let stderr_path = out.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir-bench"))
        .args([
            "run",
            "--bootstrap",
            addr,
            "--host-limits",
            "false",
            "--quiet",
            "--out",
        ])
        .arg(out.path())
        .args(args)
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("weir-bench runs");
    let duration_s: u64 = args
        .iter()
        .position(|&a| a == "--duration-s")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let deadline = Instant::now() + Duration::from_secs(duration_s) + BENCH_GRACE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("weir-bench waits") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "weir-bench {args:?} still running {BENCH_GRACE:?} past its duration: killed\n\
                 {}\n{}\nbroker log:\n{}",
                std::fs::read_to_string(&stdout_path).unwrap_or_default(),
                std::fs::read_to_string(&stderr_path).unwrap_or_default(),
                broker_log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::process::Output {
        status,
        stdout: std::fs::read(&stdout_path).expect("stdout"),
        stderr: std::fs::read(&stderr_path).expect("stderr"),
    };
    check_output(&output, out.path(), broker_log)
}

/// How long past its measured duration a run may take: warm-up, topic creation, the drain
/// and the verifying consumers, with room for a loaded 2-core CI machine.
const BENCH_GRACE: Duration = Duration::from_secs(120);

/// The checks of `bench_at` on a finished `weir-bench run` that wrote into `out`.
pub fn check_output(
    output: &std::process::Output,
    out: &std::path::Path,
    broker_log: &dyn Fn() -> String,
) -> RunResult {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "weir-bench failed: {}\n{stdout}\n{}\nbroker log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        broker_log()
    );
    assert!(
        stdout.contains("every acknowledged message consumed exactly once"),
        "{stdout}"
    );
    for plot in ["latency-percentiles.svg", "over-time.svg"] {
        let svg = std::fs::read_to_string(out.join(plot)).expect("plot written");
        assert!(svg.starts_with("<svg"), "{plot}");
    }
    let json = std::fs::read_to_string(out.join("result.json")).expect("result.json");
    RunResult::from_json(&json).expect("result.json parses")
}

/// The counts of a fixed-rate run whose schedule sends exactly `messages`: every one produced,
/// acknowledged and consumed once, none failed.
pub fn assert_exact_counts(result: &RunResult, messages: u64) {
    assert_eq!(result.delivery.acked, messages, "{:?}", result.delivery);
    assert_eq!(result.delivery.consumed_unique, messages);
    assert_eq!(result.produce.messages_total, messages);
    assert_eq!(result.consume.messages_total, messages);
    assert_eq!(result.errors.produce_failed_msgs, 0, "{:?}", result.errors);
}

/// The codec bits of the attributes of the first record batch of partition 0, as stored:
/// base offset (8), length (4), leader epoch (4), magic (1), CRC (4), then attributes (2).
pub fn first_batch_codec(broker: &Broker, topic: &str) -> u16 {
    let segment = broker
        .data_path()
        .join(format!("{topic}-0"))
        .join("00000000000000000000.log");
    let bytes = std::fs::read(&segment).expect("the first segment");
    assert!(bytes.len() >= 23, "a batch header in {}", segment.display());
    assert_eq!(bytes[16], 2, "magic 2");
    u16::from_be_bytes([bytes[21], bytes[22]]) & 0x7
}

/// Kafka's codec ids in a batch's attributes.
pub fn codec_id(compression: Compression) -> u16 {
    match compression {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}
