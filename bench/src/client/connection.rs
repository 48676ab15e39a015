//! A pipelined connection on a glommio executor, split in two halves so one task can write
//! requests while another reads responses (Kafka answers in request order on a connection).

use bytes::{Bytes, BytesMut};
use futures::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::net::TcpStream;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;

use super::codec::{encode_request, frame_len};
use crate::error::BenchError;

pub struct RequestWriter {
    half: WriteHalf<TcpStream>,
    /// Reused for every request so encoding does not allocate once warmed up.
    buf: BytesMut,
    next_correlation_id: i32,
    addr: String,
}

pub struct ResponseReader {
    half: ReadHalf<TcpStream>,
    addr: String,
}

pub async fn connect(addr: &str) -> Result<(RequestWriter, ResponseReader), BenchError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| BenchError::io(addr, e.into()))?;
    // Requests are whole frames written at once; Nagle would only delay the last segment.
    stream
        .set_nodelay(true)
        .map_err(|e| BenchError::io(addr, e.into()))?;
    let (read, write) = stream.split();
    Ok((
        RequestWriter {
            half: write,
            buf: BytesMut::with_capacity(64 * 1024),
            next_correlation_id: 1,
            addr: addr.to_string(),
        },
        ResponseReader {
            half: read,
            addr: addr.to_string(),
        },
    ))
}

impl RequestWriter {
    /// The correlation id the next `send` will use.
    pub fn next_correlation_id(&self) -> i32 {
        self.next_correlation_id
    }

    /// Writes one request and returns its correlation id.
    pub async fn send<Req: Encodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<i32, BenchError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        encode_request(&mut self.buf, key, version, correlation_id, request)?;
        self.half
            .write_all(&self.buf)
            .await
            .map_err(|e| BenchError::io(&self.addr, e))?;
        Ok(correlation_id)
    }
}

impl ResponseReader {
    /// The next response frame, length prefix removed.
    pub async fn next_frame(&mut self) -> Result<Bytes, BenchError> {
        let mut prefix = [0u8; 4];
        self.half
            .read_exact(&mut prefix)
            .await
            .map_err(|e| BenchError::io(&self.addr, e))?;
        let len = frame_len(prefix)?;
        let mut frame = BytesMut::zeroed(len);
        self.half
            .read_exact(&mut frame)
            .await
            .map_err(|e| BenchError::io(&self.addr, e))?;
        Ok(frame.freeze())
    }
}
