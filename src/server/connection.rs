//! One client connection: a read loop that frames and dispatches requests, and a writer
//! that sends their responses strictly in request order (Kafka clients pipeline requests and
//! match responses by order as well as correlation id).
//!
//! Hot path. A request runs as its own task so a slow one (a long-poll fetch, a durable
//! produce) does not stop the next from being read; the in-flight queue is bounded, so a
//! client that never reads its responses stops being read from instead of growing memory.
//! Each request holds its frame's share of the shard's request budget (`budget.rs`) until its
//! response is written, or, on a closed connection, until its task ends.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::rc::Rc;

use bytes::Bytes;
use futures::future::{select, Either};
use futures::io::{AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use futures::AsyncReadExt as _;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use super::budget::RequestPermit;
use super::frame::{read_frame, Frame, FrameError};
use super::response::{Response, ResponsePart};
use super::sendfile::send_file_slice;
use crate::api::{self, DispatchError};
use crate::shard_context::ShardContext;

/// Requests read but not yet answered, per connection. librdkafka pipelines up to
/// `max.in.flight` (default 1,000,000) requests; past this bound the connection stops reading.
pub const IN_FLIGHT_REQUESTS_MAX: usize = 128;
/// Read buffer per connection: small requests (heartbeats, metadata) cost one syscall.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// The answer to one request: None for a request that gets no response (acks=0 produce).
type Answer = Result<Option<Response>, anyhow::Error>;
/// A request's task: its answer, and the budget its frame holds until the answer is written.
/// The permit lives in the task, so a request whose connection closed keeps its budget until
/// it ends (a produce still appending holds the frame and its copy in the pending window).
type Request = JoinHandle<(Answer, RequestPermit)>;

pub async fn serve(ctx: Rc<ShardContext>, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_string(), |a| a.to_string());
    if let Err(e) = prepare_socket(&stream) {
        tracing::warn!("{peer}: preparing socket: {e}");
        return;
    }
    // Kafka shows a member's host as "/" + its IP (DescribeGroups' client_host).
    let host: Rc<str> = stream
        .peer_addr()
        .map_or_else(|_| "/unknown".into(), |a| format!("/{}", a.ip()).into());
    let fd = stream.as_raw_fd();
    let (read_half, write_half) = stream.split();
    let (queue, answers) = local_channel::new_bounded(IN_FLIGHT_REQUESTS_MAX);
    let writer = glommio::spawn_local(write_answers(write_half, fd, answers));
    let reader = read_requests(
        &ctx,
        host,
        BufReader::with_capacity(READ_BUFFER_BYTES, read_half),
        queue,
    );
    match select(Box::pin(reader), writer).await {
        // The client closed or sent a broken frame: answer what was read, then close.
        Either::Left((read, writer)) => {
            if let Err(e) = read {
                tracing::info!("{peer}: closing connection: {e}");
            }
            if let Err(e) = writer.await {
                tracing::info!("{peer}: closing connection: {e}");
            }
        }
        // A request could not be answered (undecodable body) or the socket failed: drop the
        // reader too, so the socket closes now rather than when the client gives up.
        Either::Right((written, _reader)) => {
            if let Err(e) = written {
                tracing::info!("{peer}: closing connection: {e}");
            }
        }
    }
}

fn prepare_socket(stream: &TcpStream) -> std::io::Result<()> {
    // Responses are whole frames written at once; Nagle would only add latency.
    stream
        .set_nodelay(true)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    // sendfile must not block the reactor on a full socket buffer (see sendfile.rs).
    let fd = stream.as_raw_fd();
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(())
}

async fn read_requests(
    ctx: &Rc<ShardContext>,
    host: Rc<str>,
    mut reader: BufReader<ReadHalf<TcpStream>>,
    queue: LocalSender<Request>,
) -> Result<(), anyhow::Error> {
    let max = ctx.config.socket_request_max_bytes;
    loop {
        let (frame, permit): (Bytes, RequestPermit) =
            match read_frame(&mut reader, max, &ctx.request_budget).await {
                Ok(Some(Frame { bytes, permit })) => (bytes, permit),
                Ok(None) => return Ok(()),
                Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Ok(())
                }
                Err(e) => return Err(e.into()),
            };
        let frame_head = [
            frame.first().copied().unwrap_or(0),
            frame.get(1).copied().unwrap_or(0),
        ];
        let answer = match api::dispatch(ctx, frame, &host) {
            Ok(handler) => {
                // Metrics: the API key is the frame's first two bytes (dispatch checked them).
                let api_key = i16::from_be_bytes([frame_head[0], frame_head[1]]);
                let started = std::time::Instant::now();
                let ctx = ctx.clone();
                glommio::spawn_local(async move {
                    let answer = handler.await;
                    ctx.metrics
                        .record_request(api_key, started.elapsed(), answer.is_err());
                    if let Ok(Some(response)) = &answer {
                        ctx.metrics.count_errors(api_key, &response.error_codes);
                    }
                    (answer, permit)
                })
                .detach()
            }
            Err(DispatchError::Respond(response)) => {
                glommio::spawn_local(async move { (Ok(Some(response)), permit) }).detach()
            }
            Err(DispatchError::Close(reason)) => return Err(anyhow::anyhow!(reason)),
        };
        if queue.send(answer).await.is_err() {
            // The writer stopped (the socket failed); nothing more will be answered.
            return Ok(());
        }
    }
}

async fn write_answers(
    mut writer: WriteHalf<TcpStream>,
    fd: RawFd,
    answers: LocalReceiver<Request>,
) -> Result<(), anyhow::Error> {
    while let Some(handle) = answers.recv().await {
        let (answer, permit) = handle
            .await
            .ok_or_else(|| anyhow::anyhow!("request task was cancelled"))?;
        let Some(response) = answer? else { continue };
        for part in &response.parts {
            match part {
                ResponsePart::Bytes(bytes) => writer.write_all(bytes).await?,
                ResponsePart::File(slice) => {
                    // SAFETY: `fd` belongs to the stream inside `writer`, which this task owns
                    // for the whole loop, so the descriptor stays open while it is borrowed.
                    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
                    send_file_slice(&mut writer, socket, slice).await?;
                }
            }
        }
        // Written: the request's bytes are free (Kafka releases its pool memory here too).
        drop(permit);
    }
    writer.close().await.ok();
    Ok(())
}
