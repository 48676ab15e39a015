//! Request and response framing with kafka-protocol's message types.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::error::BenchError;

/// Largest response frame accepted. Bounded because the length prefix comes from the
/// network; a fetch response is at most `max_bytes` (50 MiB here) plus framing.
pub const RESPONSE_FRAME_BYTES_MAX: usize = 128 * 1024 * 1024;

pub const CLIENT_ID: &str = "weir-bench";

/// Encodes one request frame (length prefix included) into `out`, which is cleared first
/// so one buffer serves every request of a connection.
pub fn encode_request<Req: Encodable>(
    out: &mut BytesMut,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> Result<(), BenchError> {
    out.clear();
    out.put_u32(0); // length, patched below
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)))
        .encode(out, key.request_header_version(version))
        .map_err(|e| encode_error("request header", e))?;
    request
        .encode(out, version)
        .map_err(|e| encode_error(key_name(key), e))?;
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Decodes a response frame (length prefix already removed), checking the correlation id.
pub fn decode_response<Resp: Decodable>(
    mut frame: Bytes,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
) -> Result<Resp, BenchError> {
    let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
        .map_err(|e| decode_error("response header", e))?;
    if header.correlation_id != correlation_id {
        return Err(BenchError::CorrelationMismatch {
            expected: correlation_id,
            got: header.correlation_id,
        });
    }
    Resp::decode(&mut frame, version).map_err(|e| decode_error(key_name(key), e))
}

pub fn frame_len(prefix: [u8; 4]) -> Result<usize, BenchError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len <= RESPONSE_FRAME_BYTES_MAX {
        Ok(len)
    } else {
        Err(BenchError::FrameTooLarge {
            len,
            max: RESPONSE_FRAME_BYTES_MAX,
        })
    }
}

fn key_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::Metadata => "Metadata",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::CreateTopics => "CreateTopics",
        _ => "request",
    }
}

fn encode_error(what: &'static str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Encode {
        what,
        message: e.to_string(),
    }
}

fn decode_error(what: &'static str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Decode {
        what,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

    #[test]
    fn frames_carry_their_length() {
        let mut out = BytesMut::new();
        encode_request(
            &mut out,
            ApiKey::Metadata,
            9,
            42,
            &MetadataRequest::default(),
        )
        .expect("encodes");
        let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(len, out.len() - 4);
    }

    #[test]
    fn wrong_correlation_id_is_an_error() {
        let mut body = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(7)
            .encode(&mut body, ApiKey::Metadata.response_header_version(9))
            .expect("encodes");
        MetadataResponse::default()
            .encode(&mut body, 9)
            .expect("encodes");
        let result = decode_response::<MetadataResponse>(body.freeze(), ApiKey::Metadata, 9, 8);
        assert!(matches!(
            result,
            Err(BenchError::CorrelationMismatch {
                expected: 8,
                got: 7
            })
        ));
    }

    #[test]
    fn oversized_frames_are_refused_before_allocation() {
        assert!(frame_len(u32::MAX.to_be_bytes()).is_err());
        assert_eq!(frame_len(16u32.to_be_bytes()).ok(), Some(16));
    }
}
