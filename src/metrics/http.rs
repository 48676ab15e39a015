//! The metrics endpoint: a minimal HTTP/1.1 server on shard 0 answering `GET /metrics`
//! (and `/`) with the Prometheus text format, one request per connection. Scrapes are rare
//! (seconds apart), so gathering the shards' snapshots with one cross-shard call each and
//! rendering on shard 0 costs the data path nothing measurable.

use std::net::SocketAddr;
use std::rc::Rc;

use futures::future::{select, Either};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use super::{render, snapshot};
use crate::shard_context::ShardContext;
use crate::shutdown::Shutdown;

/// Longest request head read; a scrape's is a few hundred bytes.
const REQUEST_HEAD_MAX: usize = 8192;

pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| std::io::Error::other(e.to_string()))
}

/// Serves scrapes until shutdown.
pub async fn serve(ctx: Rc<ShardContext>, listener: TcpListener, shutdown: Shutdown) {
    loop {
        let stream = match select(Box::pin(listener.accept()), Box::pin(shutdown.wait())).await {
            Either::Left((Ok(stream), _)) => stream,
            Either::Left((Err(e), _)) => {
                tracing::warn!("metrics: accept: {e}");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
            Either::Right(_) => return,
        };
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            if let Err(e) = answer(&ctx, stream).await {
                tracing::debug!("metrics: {e}");
            }
        })
        .detach();
    }
}

async fn answer(ctx: &Rc<ShardContext>, mut stream: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > REQUEST_HEAD_MAX {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (status, content_type, body) = match (method, path) {
        (b"GET", b"/metrics" | b"/") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            gather(ctx).await,
        ),
        (b"GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.close().await
}

/// Every shard's snapshot, rendered.
pub async fn gather(ctx: &Rc<ShardContext>) -> String {
    let mut shards = Vec::with_capacity(ctx.shard.count());
    for result in ctx
        .shard
        .broadcast(|c| async move { snapshot::take(&c) })
        .await
    {
        match result {
            Ok(s) => shards.push(s),
            Err(e) => tracing::warn!("metrics: {e}"),
        }
    }
    render::render(&shards)
}
