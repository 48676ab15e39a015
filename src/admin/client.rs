//! A small blocking Kafka client for the admin CLI: one connection per broker, requests at
//! fixed versions that Weir and Kafka 3.x/4.x both serve (checked against the broker's
//! ApiVersions once per connection, so an older broker gets a clear error, not garbage).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Largest response accepted (a Fetch of a few records is far smaller).
const RESPONSE_MAX_BYTES: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("talking to {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}: {api:?} v{version}: {message}")]
    Protocol {
        addr: String,
        api: ApiKey,
        version: i16,
        message: String,
    },
    #[error("{addr} does not serve {api:?} v{version} (it serves {served})")]
    Unsupported {
        addr: String,
        api: ApiKey,
        version: i16,
        served: String,
    },
}

pub struct Client {
    addr: String,
    stream: TcpStream,
    correlation_id: i32,
    /// (api key, min, max) the broker serves.
    versions: Vec<(i16, i16, i16)>,
}

impl Client {
    /// Connects and learns the broker's API versions.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Client, ClientError> {
        let connect_error = |source| ClientError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let socket = addr
            .to_socket_addrs()
            .map_err(connect_error)?
            .next()
            .ok_or_else(|| connect_error(std::io::Error::other("no address")))?;
        let stream = TcpStream::connect_timeout(&socket, timeout).map_err(connect_error)?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(connect_error)?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(connect_error)?;
        stream.set_nodelay(true).map_err(connect_error)?;
        let mut client = Client {
            addr: addr.to_owned(),
            stream,
            correlation_id: 0,
            versions: Vec::new(),
        };
        let versions: ApiVersionsResponse =
            client.send(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())?;
        client.versions = versions
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        Ok(client)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends a request at `version` after checking the broker serves it.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        let served = self.versions.iter().find(|(k, _, _)| *k == api as i16);
        if !served.is_some_and(|&(_, min, max)| (min..=max).contains(&version)) {
            return Err(ClientError::Unsupported {
                addr: self.addr.clone(),
                api,
                version,
                served: served.map_or("no version".into(), |(_, min, max)| {
                    format!("v{min}-v{max}")
                }),
            });
        }
        self.send(api, version, request)
    }

    fn send<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        let protocol = |message: String| ClientError::Protocol {
            addr: self.addr.clone(),
            api,
            version,
            message,
        };
        self.correlation_id += 1;
        let mut body = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("weirctl")))
            .encode(&mut body, api.request_header_version(version))
            .map_err(|e| protocol(e.to_string()))?;
        request
            .encode(&mut body, version)
            .map_err(|e| protocol(e.to_string()))?;
        let mut frame = BytesMut::with_capacity(4 + body.len());
        frame.put_u32(body.len() as u32);
        frame.put_slice(&body);
        let io = |source| ClientError::Io {
            addr: self.addr.clone(),
            source,
        };
        self.stream.write_all(&frame).map_err(io)?;
        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix).map_err(io)?;
        let len = u32::from_be_bytes(prefix) as usize;
        if len > RESPONSE_MAX_BYTES {
            return Err(protocol(format!("{len}-byte response is too large")));
        }
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf).map_err(io)?;
        let mut frame = Bytes::from(buf);
        let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
            .map_err(|e| protocol(e.to_string()))?;
        if header.correlation_id != self.correlation_id {
            return Err(protocol(format!(
                "answer to request {} arrived for {}",
                header.correlation_id, self.correlation_id
            )));
        }
        let response = Resp::decode(&mut frame, version).map_err(|e| protocol(e.to_string()))?;
        if frame.has_remaining() {
            return Err(protocol(format!(
                "{} bytes left after the response",
                frame.remaining()
            )));
        }
        Ok(response)
    }
}
