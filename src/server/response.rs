//! A response on its way to the socket: bytes built in memory and, for Fetch, ranges of
//! segment files that go to the socket with sendfile.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::Encodable;
use weir_storage::FileSlice;

pub enum ResponsePart {
    Bytes(Bytes),
    File(FileSlice),
}

/// One whole response frame, length prefix included.
pub struct Response {
    pub parts: Vec<ResponsePart>,
    /// The nonzero error codes it carries, for the error metric (empty: no allocation).
    pub error_codes: Vec<i16>,
}

impl Response {
    pub fn from_frame(frame: Bytes) -> Self {
        Response {
            parts: vec![ResponsePart::Bytes(frame)],
            error_codes: Vec::new(),
        }
    }
}

/// Starts a frame: a length placeholder and the response header. Finish with `finish_frame`.
pub fn begin_frame(correlation_id: i32, header_version: i16, body_hint: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(4 + 8 + body_hint);
    buf.put_u32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)
        .expect("a response header always encodes");
    buf
}

/// Writes the frame length (everything after the 4-byte prefix, file parts included).
pub fn finish_frame(buf: &mut BytesMut, file_bytes: usize) {
    let len = (buf.len() - 4 + file_bytes) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
}

/// Encodes a whole response with kafka-protocol's encoder.
pub fn encode<T: Encodable>(
    correlation_id: i32,
    header_version: i16,
    body: &T,
    version: i16,
) -> Result<Response, anyhow::Error> {
    let size = body.compute_size(version)?;
    let mut buf = begin_frame(correlation_id, header_version, size);
    body.encode(&mut buf, version)?;
    finish_frame(&mut buf, 0);
    Ok(Response::from_frame(buf.freeze()))
}
