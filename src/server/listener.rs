//! Accepting connections. Every shard binds the same address with SO_REUSEPORT (glommio
//! sets it), so the kernel spreads connections over shards; a connection lives on the shard
//! that accepted it and reaches other shards' partitions through cross-shard calls.

use std::net::SocketAddr;
use std::rc::Rc;

use futures::future::{select, Either};
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};

use glommio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

use crate::shard_context::ShardContext;
use crate::shutdown::Shutdown;

/// Open connections per shard; past this an accepted connection is closed at once. Each
/// costs a task, a read buffer and an in-flight queue.
pub const CONNECTIONS_PER_SHARD_MAX: usize = 10_000;

/// Accept backlog per shard's listening socket (capped by the kernel's `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 1024;

/// A shard's listening socket.
pub struct Listener {
    inner: TcpListener,
    /// The listener's descriptor, owned by `inner`; kept to stop listening at shutdown.
    fd: RawFd,
}

impl Listener {
    /// Takes the socket out of LISTEN at once. Dropping it is not enough: the pending io_uring
    /// accept holds the socket open until the kernel tears the ring down, after the process
    /// has exited, and meanwhile it would still complete handshakes, so a client connecting
    /// to a restarted broker could land in the dead one's queue and be reset.
    fn stop_listening(&self) {
        // SAFETY: `fd` is owned by `inner`, which is alive; shutdown(2) touches no memory.
        if unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) } != 0 {
            tracing::debug!("shutdown of listener: {}", std::io::Error::last_os_error());
        }
    }
}

/// Binds this shard's listening socket. SO_REUSEPORT lets every shard bind the same address
/// (the kernel spreads connections); SO_REUSEADDR, which accepted sockets inherit, lets a
/// restarted broker bind at once even while connections of a crashed one linger in
/// FIN-WAIT-2 (Kafka sets it for the same reason).
pub fn bind(addr: SocketAddr) -> std::io::Result<Listener> {
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
    let fd = socket.into_raw_fd();
    // SAFETY: the descriptor is a freshly made listening TCP socket whose ownership moves to
    // the glommio listener; nothing else holds it.
    let inner = unsafe { TcpListener::from_raw_fd(fd) };
    Ok(Listener { inner, fd })
}

/// Accepts until shutdown begins.
pub async fn accept_loop(ctx: Rc<ShardContext>, listener: Listener, shutdown: Shutdown) {
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        let accept = Box::pin(listener.inner.accept());
        let accepted = match select(accept, Box::pin(shutdown.wait())).await {
            Either::Left((accepted, _)) => accepted,
            Either::Right(_) => {
                listener.stop_listening();
                return;
            }
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
        let metrics = &ctx.metrics;
        metrics.connections_open.set(open.get() as u64);
        metrics
            .connections_accepted
            .set(metrics.connections_accepted.get() + 1);
        let (ctx, open) = (ctx.clone(), open.clone());
        glommio::spawn_local(async move {
            super::connection::serve(ctx.clone(), stream).await;
            open.set(open.get() - 1);
            ctx.metrics.connections_open.set(open.get() as u64);
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The accept loop polls `accept` again every time the shutdown poll's 20 ms timer wakes
    /// it. glommio 0.9 pushed a new clone of the task's waker on each poll of a pending
    /// accept (or any I/O), so an idle broker overflowed the task's i16 reference count after
    /// ~32k polls, 11 minutes, and panicked (`Waker invariant broken`, issue 16). The vendored
    /// patch keeps one waker per task; without it this test panics.
    #[test]
    fn a_pending_accept_polled_over_and_over_keeps_one_waker() {
        glommio::LocalExecutor::default().run(async {
            let listener = bind("127.0.0.1:0".parse().unwrap()).expect("binds");
            let address = listener.inner.local_addr().expect("bound");
            let mut accept = Box::pin(listener.inner.accept());
            for _ in 0..40_000 {
                assert!(futures::poll!(accept.as_mut()).is_pending());
            }
            let client = std::net::TcpStream::connect(address).expect("connects");
            let accepted = accept.await.expect("accepted");
            assert_eq!(
                accepted.peer_addr().expect("peer"),
                client.local_addr().expect("local")
            );
        });
    }
}
