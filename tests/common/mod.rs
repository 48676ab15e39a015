//! Starts the real `weir` binary on a free port with a temporary data dir, and speaks the
//! Kafka protocol to it over plain sockets with kafka-protocol's encoders.

#![allow(dead_code)]

pub mod requests;
pub mod rng;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

pub struct Broker {
    pub addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
    child: Option<Child>,
    log: PathBuf,
    /// The data dir when it is not `data_dir/data` (`start_on`: on a test file system).
    data_path: Option<PathBuf>,
    /// The arguments of the first start, repeated by every restart.
    extra: Vec<String>,
    /// Environment for the next start (a `WEIR_FAULT`, say); cleared with `env.clear()`.
    pub env: Vec<(String, String)>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    pub fn start(extra: &[&str]) -> Broker {
        Broker::start_with_env(extra, &[])
    }

    /// Like `start`, with extra environment variables for the broker process.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Broker {
        let mut broker = Broker::unstarted(None, &[]);
        broker.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        broker.spawn(extra);
        broker
    }

    /// Starts the broker with its data dir at `data_path` (a mount of a test file system,
    /// say); its log stays in a temporary dir. Restarts keep `extra`.
    pub fn start_on(data_path: PathBuf, extra: &[&str]) -> Broker {
        let mut broker = Broker::unstarted(Some(data_path), extra);
        broker.spawn(extra);
        broker
    }

    fn unstarted(data_path: Option<PathBuf>, extra: &[&str]) -> Broker {
        let data_dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = data_dir.path().join("broker.log");
        Broker {
            addr,
            data_dir,
            child: None,
            log,
            data_path,
            extra: extra.iter().map(|arg| arg.to_string()).collect(),
            env: Vec::new(),
        }
    }

    fn spawn(&mut self, extra: &[&str]) {
        let extra: Vec<&str> = if extra.is_empty() {
            self.extra.iter().map(String::as_str).collect()
        } else {
            extra.to_vec()
        };
        let extra = &extra[..];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["--listen", &self.addr.to_string(), "--data-dir"])
            .arg(self.data_path())
            // Two shards unless a test asks otherwise: cross-shard paths are always exercised.
            .args(if extra.contains(&"--smp") {
                &[][..]
            } else {
                &["--smp", "2"][..]
            })
            // Metrics on an ephemeral port unless a test asks for one: parallel tests' brokers
            // must not collide on the default 9644.
            .args(if extra.contains(&"--metrics-listen") {
                &[][..]
            } else {
                &["--metrics-listen", "127.0.0.1:0"][..]
            })
            .args(extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        // Ready means answering, not merely connectable: a killed broker's listener lingers
        // for a moment (until the kernel tears down its io_uring) and completes handshakes.
        while !self.answers_api_versions() {
            assert!(
                Instant::now() < deadline,
                "broker did not start: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_api_versions(&self) -> bool {
        let Ok(stream) = TcpStream::connect(self.addr) else {
            return false;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let request = kafka_protocol::messages::ApiVersionsRequest::default();
        Client::from_stream(stream)
            .try_call::<_, kafka_protocol::messages::ApiVersionsResponse>(
                ApiKey::ApiVersions,
                0,
                &request,
            )
            .is_some()
    }

    pub fn data_path(&self) -> PathBuf {
        self.data_path
            .clone()
            .unwrap_or_else(|| self.data_dir.path().join("data"))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, expect exit code 0, start again on the same data dir.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "broker exited with {status}: {}",
            self.log_text()
        );
        self.spawn(&[]);
    }

    /// SIGKILL: no flush, no goodbye, as a crash or an OOM kill would do it.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("broker is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts the broker again on the same data dir and port.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "broker is still running");
        self.spawn(&[]);
    }

    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("broker is running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "broker did not stop: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the broker to exit by itself; panics if it is still running at `timeout`.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("broker is running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "broker still running after {timeout:?}: {}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// The broker process's id (for /proc), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failed test is diagnosed from CI output alone: show what the broker said.
        if std::thread::panicking() {
            eprintln!(
                "--- broker log ---\n{}--- end of broker log ---",
                self.log_text()
            );
        }
    }
}

pub struct Client {
    pub stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    pub fn from_stream(stream: TcpStream) -> Client {
        Client {
            stream,
            correlation_id: 0,
        }
    }

    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Client {
            stream,
            correlation_id: 0,
        }
    }

    /// Sends one request and returns the decoded response.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp {
        self.try_call(key, version, request)
            .expect("broker answered")
    }

    /// Like `call`, but None when the connection is gone (the broker was killed). A response
    /// that does not decode is a bug either way and panics.
    pub fn try_call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Option<Resp> {
        self.send_request(key, version, request)?;
        self.read_response(key, version)
    }

    /// Sends one request without reading its answer (for a test that reads it later).
    pub fn send_request<Req: Encodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Option<()> {
        self.correlation_id += 1;
        let mut body = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(kafka_protocol::protocol::StrBytes::from_static_str(
                "weir-test",
            )))
            .encode(&mut body, key.request_header_version(version))
            .unwrap();
        request
            .encode(&mut body, version)
            .unwrap_or_else(|e| panic!("encoding {key:?} v{version}: {e}"));
        let mut frame = BytesMut::with_capacity(4 + body.len());
        frame.put_u32(body.len() as u32);
        frame.put_slice(&body);
        self.stream.write_all(&frame).ok()
    }

    /// Reads and decodes the answer to the last request sent.
    pub fn read_response<Resp: Decodable>(&mut self, key: ApiKey, version: i16) -> Option<Resp> {
        let mut frame = self.read_frame()?;
        let header =
            ResponseHeader::decode(&mut frame, key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        Some(
            Resp::decode(&mut frame, version)
                .unwrap_or_else(|e| panic!("decoding {key:?} v{version}: {e}")),
        )
    }

    pub fn send_frame(&mut self, body: &[u8]) {
        let mut frame = BytesMut::with_capacity(4 + body.len());
        frame.put_u32(body.len() as u32);
        frame.put_slice(body);
        self.stream.write_all(&frame).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next response frame, or None if the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut prefix = [0u8; 4];
        if self.stream.read_exact(&mut prefix).is_err() {
            return None;
        }
        let mut frame = vec![0; u32::from_be_bytes(prefix) as usize];
        self.stream.read_exact(&mut frame).ok()?;
        Some(Bytes::from(frame))
    }

    /// True once the broker has closed this connection; false if it is still open after
    /// five seconds (a timeout is not a close).
    pub fn is_closed(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut byte = [0u8; 1];
        let closed = match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        closed
    }
}

/// A minimal uncompressed v2 record batch of `values`, CRC included.
pub fn record_batch(values: &[&[u8]]) -> Vec<u8> {
    let mut records = BytesMut::new();
    for (i, value) in values.iter().enumerate() {
        let mut record = BytesMut::new();
        record.put_i8(0); // attributes
        put_varint(&mut record, 0); // timestamp delta
        put_varint(&mut record, i as i64); // offset delta
        put_varint(&mut record, -1); // null key
        put_varint(&mut record, value.len() as i64);
        record.put_slice(value);
        put_varint(&mut record, 0); // headers
        put_varint(&mut records, record.len() as i64);
        records.put_slice(&record);
    }
    let mut batch = BytesMut::new();
    batch.put_i64(0);
    batch.put_i32(0); // length, patched below
    batch.put_i32(0); // partition leader epoch
    batch.put_i8(2); // magic
    batch.put_u32(0); // crc, patched below
    batch.put_i16(0); // attributes
    batch.put_i32(values.len() as i32 - 1);
    batch.put_i64(1_700_000_000_000);
    batch.put_i64(1_700_000_000_000);
    batch.put_i64(-1);
    batch.put_i16(-1);
    batch.put_i32(-1);
    batch.put_i32(values.len() as i32);
    batch.put_slice(&records);
    let len = (batch.len() - 12) as i32;
    batch[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch.to_vec()
}

/// Like `record_batch`, from an idempotent producer: `producer_id`, `producer_epoch` and
/// the batch's first sequence number in the header, CRC included.
pub fn idempotent_record_batch(
    values: &[&[u8]],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Vec<u8> {
    let mut batch = record_batch(values);
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn put_varint(buf: &mut BytesMut, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Splits a fetched record set into (base offset, batch bytes).
pub fn batches(mut records: Bytes) -> Vec<(i64, Bytes)> {
    let mut out = Vec::new();
    while records.len() >= 12 {
        let base = (&records[..8]).get_i64();
        let len = 12 + (&records[8..12]).get_i32() as usize;
        if records.len() < len {
            break; // a partial batch at the end of a fetch, as Kafka may send
        }
        out.push((base, records.split_to(len)));
    }
    out
}

/// A local address nothing listens on (for `--metrics-listen`).
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Sums a per-shard metric over the shards, from the broker's `/metrics` at `metrics`.
pub fn metric(metrics: std::net::SocketAddr, name: &str) -> u64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(metrics).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}
