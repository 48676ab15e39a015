//! Accepting connections. Every shard binds the same address with SO_REUSEPORT (glommio
//! sets it), so the kernel spreads connections over shards; a connection lives on the shard
//! that accepted it and reaches other shards' partitions through cross-shard calls.

use std::net::SocketAddr;
use std::rc::Rc;

use futures::future::{select, Either};
use std::os::fd::{FromRawFd, IntoRawFd};

use glommio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

use crate::shard_context::ShardContext;
use crate::shutdown::Shutdown;

/// Open connections per shard; past this an accepted connection is closed at once. Each
/// costs a task, a read buffer and an in-flight queue.
pub const CONNECTIONS_PER_SHARD_MAX: usize = 10_000;

/// Accept backlog per shard's listening socket (capped by the kernel's `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 1024;

/// Binds this shard's listening socket. SO_REUSEPORT lets every shard bind the same address
/// (the kernel spreads connections); SO_REUSEADDR, which accepted sockets inherit, lets a
/// restarted broker bind at once even while connections of a crashed one linger in
/// FIN-WAIT-2 (Kafka sets it for the same reason).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    // SAFETY: the descriptor is a freshly made listening TCP socket whose ownership moves to
    // the glommio listener; nothing else holds it.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
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
