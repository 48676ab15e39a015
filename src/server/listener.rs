//! Accepting connections. Every shard binds the same address with SO_REUSEPORT (glommio
//! sets it), so the kernel spreads connections over shards; a connection lives on the shard
//! that accepted it and reaches other shards' partitions through cross-shard calls.

use std::net::SocketAddr;
use std::rc::Rc;

use futures::future::{select, Either};
use glommio::net::TcpListener;

use crate::shard_context::ShardContext;
use crate::shutdown::Shutdown;

/// Open connections per shard; past this an accepted connection is closed at once. Each
/// costs a task, a read buffer and an in-flight queue.
pub const CONNECTIONS_PER_SHARD_MAX: usize = 10_000;

pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| std::io::Error::other(e.to_string()))
}

/// Accepts until shutdown begins.
pub async fn accept_loop(ctx: Rc<ShardContext>, listener: TcpListener, shutdown: Shutdown) {
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        let accepted = match select(Box::pin(listener.accept()), Box::pin(shutdown.wait())).await {
            Either::Left((accepted, _)) => accepted,
            Either::Right(_) => return,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!("accept: {e}");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.get() >= CONNECTIONS_PER_SHARD_MAX {
            tracing::warn!(
                "refusing connection: {CONNECTIONS_PER_SHARD_MAX} already open on this shard"
            );
            continue;
        }
        open.set(open.get() + 1);
        let (ctx, open) = (ctx.clone(), open.clone());
        glommio::spawn_local(async move {
            super::connection::serve(ctx, stream).await;
            open.set(open.get() - 1);
        })
        .detach();
    }
}
