"""Hand-built Kafka frames for the raw-socket tests: just enough encoding to send requests a
well-behaved client never would, and to parse the few responses the tests look into.

Request header v1: api_key i16, api_version i16, correlation_id i32, client_id (i16 length,
nullable). Header v2 (flexible versions) adds a tagged-field section, a varint 0 when empty.
Every frame is an i32 big-endian length prefix followed by that many bytes.
"""

import socket
import struct
import time

API_PRODUCE = 0
API_METADATA = 3
API_API_VERSIONS = 18
API_INIT_PRODUCER_ID = 22

ERROR_NONE = 0
ERROR_CORRUPT_MESSAGE = 2
ERROR_UNSUPPORTED_VERSION = 35
ERROR_INVALID_RECORD = 87


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli), the checksum of record batch v2."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def varint(n):
    """Zig-zag varint, as records encode their lengths and deltas."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def string(s):
    if s is None:
        return struct.pack(">h", -1)
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


def request_header(api_key, api_version, correlation_id, client_id="weir-raw", flexible=False):
    header = struct.pack(">hhi", api_key, api_version, correlation_id) + string(client_id)
    return header + (b"\x00" if flexible else b"")


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def record_batch(values, base_timestamp_ms=1_700_000_000_000, attributes=0, record_count=None,
                 last_offset_delta=None, magic=2, producer_id=-1, producer_epoch=-1, base_sequence=-1,
                 compress=None, offset_deltas=None, timestamp_deltas=None):
    """One magic-2 record batch holding `values` (bytes), keys null, no headers, with a correct
    CRC. The keyword arguments forge header fields (the CRC still matches); `producer_id`,
    `producer_epoch` and `base_sequence` make it an idempotent producer's. `compress` (bytes to
    bytes) compresses the records section: set the codec in `attributes` to match.
    `offset_deltas` and `timestamp_deltas` replace the records' own (0, 1, 2... and 0)."""
    records = b""
    for i, value in enumerate(values):
        body = (
            b"\x00"  # attributes
            + varint(timestamp_deltas[i] if timestamp_deltas else 0)  # timestamp delta
            + varint(offset_deltas[i] if offset_deltas else i)  # offset delta
            + varint(-1)  # null key
            + varint(len(value))
            + value
            + varint(0)  # no headers
        )
        records += varint(len(body)) + body
    if last_offset_delta is None:
        last_offset_delta = len(values) - 1
    if compress is not None:
        records = compress(records)
    after_crc = (
        struct.pack(">hiqqqhi", attributes, last_offset_delta, base_timestamp_ms, base_timestamp_ms,
                    producer_id, producer_epoch, base_sequence)
        + struct.pack(">i", len(values) if record_count is None else record_count)
        + records
    )
    crc = crc32c(after_crc)
    after_length = struct.pack(">ibI", 0, magic, crc) + after_crc  # leader epoch, magic, crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


def produce_request_v3(correlation_id, topic, partition, batch, acks=-1, timeout_ms=10_000):
    body = (
        string(None)  # transactional_id
        + struct.pack(">hi", acks, timeout_ms)
        + struct.pack(">i", 1)
        + string(topic)
        + struct.pack(">i", 1)
        + struct.pack(">i", partition)
        + struct.pack(">i", len(batch))
        + batch
    )
    return frame(request_header(API_PRODUCE, 3, correlation_id) + body)


def parse_produce_response_v3(payload):
    """Returns (correlation_id, [(topic, partition, error_code, base_offset)])."""
    r = Reader(payload)
    correlation_id = r.i32()
    out = []
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            partition, error_code, base_offset = r.i32(), r.i16(), r.i64()
            r.i64()  # log_append_time_ms
            out.append((topic, partition, error_code, base_offset))
    r.i32()  # throttle_time_ms
    return correlation_id, out


def parse_api_versions_v0(payload):
    """Returns (correlation_id, error_code, {api_key: (min, max)}) of an ApiVersions v0 response."""
    r = Reader(payload)
    correlation_id, error_code = r.i32(), r.i16()
    apis = {}
    for _ in range(r.i32()):
        key, low, high = r.i16(), r.i16(), r.i16()
        apis[key] = (low, high)
    return correlation_id, error_code, apis


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def _take(self, fmt):
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def i16(self):
        return self._take(">h")

    def i32(self):
        return self._take(">i")

    def i64(self):
        return self._take(">q")

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s


class Conn:
    """One raw TCP connection to the broker with bounded waits everywhere."""

    def __init__(self, bootstrap, timeout_s=10):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.sock.settimeout(timeout_s)

    def send(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self):
        (length,) = struct.unpack(">i", self.recv_exact(4))
        assert 0 <= length < 64 * 1024 * 1024, f"absurd response length {length}"
        return self.recv_exact(length)

    def call(self, data):
        self.send(data)
        return self.recv_frame()

    def closed_by_peer(self, timeout_s=10):
        """True when the broker closes the connection (EOF or reset) within `timeout_s`,
        False when it is still open then. Any bytes sent before the close are discarded."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
        return False

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def api_versions(bootstrap, timeout_s=10):
    """An ApiVersions v0 round trip on a fresh connection: (error_code, {api_key: (min, max)})."""
    with Conn(bootstrap, timeout_s) as conn:
        payload = conn.call(frame(request_header(API_API_VERSIONS, 0, 7)))
    correlation_id, error_code, apis = parse_api_versions_v0(payload)
    assert correlation_id == 7
    return error_code, apis


def metadata_request_v4(correlation_id, topics, allow_auto_topic_creation=True):
    """Metadata v4 (the last non-flexible version); `topics` None asks for all topics."""
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        body = struct.pack(">i", len(topics)) + b"".join(string(t) for t in topics)
    body += struct.pack(">?", allow_auto_topic_creation)
    return frame(request_header(API_METADATA, 4, correlation_id) + body)


def parse_metadata_response_v4(payload):
    """Returns {"correlation_id", "brokers": [(node_id, host, port)], "cluster_id",
    "controller_id", "topics": {name: (error_code, [(partition, error_code, leader, replicas, isr)])}}."""
    r = Reader(payload)
    out = {"correlation_id": r.i32()}
    r.i32()  # throttle_time_ms
    brokers = []
    for _ in range(r.i32()):
        node_id, host, port = r.i32(), r.string(), r.i32()
        r.string()  # rack
        brokers.append((node_id, host, port))
    out["brokers"] = brokers
    out["cluster_id"] = r.string()
    out["controller_id"] = r.i32()
    topics = {}
    for _ in range(r.i32()):
        error_code, name = r.i16(), r.string()
        r._take(">?")  # is_internal
        partitions = []
        for _ in range(r.i32()):
            p_error, index, leader = r.i16(), r.i32(), r.i32()
            replicas = [r.i32() for _ in range(r.i32())]
            isr = [r.i32() for _ in range(r.i32())]
            partitions.append((index, p_error, leader, replicas, isr))
        topics[name] = (error_code, sorted(partitions))
    out["topics"] = topics
    assert r.pos == len(payload), f"{len(payload) - r.pos} bytes left over in a Metadata v4 response"
    return out


def metadata(bootstrap, topics=None, allow_auto_topic_creation=True, timeout_s=10):
    with Conn(bootstrap, timeout_s) as conn:
        response = parse_metadata_response_v4(conn.call(metadata_request_v4(3, topics, allow_auto_topic_creation)))
    assert response["correlation_id"] == 3
    return response


def init_producer_id(conn, correlation_id=22):
    """InitProducerId v0 for an idempotent producer (no transactional id) on `conn`;
    returns the producer id, asserting no error and epoch 0."""
    body = string(None) + struct.pack(">i", 60_000)
    r = Reader(conn.call(frame(request_header(API_INIT_PRODUCER_ID, 0, correlation_id) + body)))
    assert r.i32() == correlation_id
    r.i32()  # throttle_time_ms
    error_code, producer_id, epoch = r.i16(), r.i64(), r.i16()
    assert (error_code, epoch) == (0, 0), (error_code, epoch)
    return producer_id

