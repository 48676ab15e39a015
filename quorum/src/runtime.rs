//! openraft's `AsyncRuntime` on the glommio executor the quorum's shard already runs, so the
//! Raft core, its replication tasks and its timers are ordinary local tasks there: no second
//! runtime, no thread of its own, nothing `Send`.
//!
//! Channels, watch and mutex are tokio's `sync` types, which work on any executor (they only
//! use wakers); openraft's own monoio and compio adapters do the same.

use std::future::Future;
use std::ops::{Add, AddAssign, Deref, Sub, SubAssign};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use glommio::timer::Timer;
use openraft_rt::{
    mutex, oneshot, watch, AsyncRuntime, Mpsc, MpscReceiver, MpscSender, MpscWeakSender,
    OptionalSend, OptionalSync, SendError, TryRecvError,
};
use tokio::sync::{mpsc as tokio_mpsc, oneshot as tokio_oneshot, watch as tokio_watch};

/// openraft's runtime, backed by whichever glommio executor the calling thread runs.
#[derive(Debug)]
pub struct GlommioRuntime {
    /// Only for openraft's `block_on` (its test suite); Weir itself spawns the Raft node on
    /// an executor it already has.
    executor: Option<glommio::LocalExecutor>,
}

/// A detached task's handle. Dropping it leaves the task running, as openraft expects (it is
/// how tokio's handles behave); glommio's `Task` would cancel it instead.
pub struct JoinHandle<T>(glommio::task::JoinHandle<T>);

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|out| out.ok_or(Cancelled))
    }
}

/// The task was cancelled before it finished (its executor went away).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("task cancelled")]
pub struct Cancelled;

/// The deadline of a `timeout` passed first.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

pin_project_lite::pin_project! {
    /// A future raced against a timer.
    pub struct Timeout<F> {
        #[pin]
        future: F,
        timer: Timer,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.future.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        Pin::new(this.timer).poll(cx).map(|_| Err(Elapsed))
    }
}

/// glommio's timer, resolving to `()` as openraft's `Sleep` must.
pub struct Sleep(Timer);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// `std::time::Instant` under openraft's trait.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd)]
pub struct Instant(std::time::Instant);

impl Add<Duration> for Instant {
    type Output = Self;
    fn add(self, rhs: Duration) -> Self {
        Self(self.0 + rhs)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        self.0 += rhs;
    }
}

impl Sub<Duration> for Instant {
    type Output = Self;
    fn sub(self, rhs: Duration) -> Self {
        Self(self.0 - rhs)
    }
}

impl Sub<Self> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Self) -> Duration {
        self.0 - rhs.0
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, rhs: Duration) {
        self.0 -= rhs;
    }
}

impl openraft_rt::Instant for Instant {
    fn now() -> Self {
        Self(std::time::Instant::now())
    }
}

impl AsyncRuntime for GlommioRuntime {
    type JoinError = Cancelled;
    type JoinHandle<T: OptionalSend + 'static> = JoinHandle<T>;
    type Sleep = Sleep;
    type Instant = Instant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    type ThreadLocalRng = rand::rngs::ThreadRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        JoinHandle(glommio::spawn_local(future).detach())
    }

    fn sleep(duration: Duration) -> Sleep {
        Sleep(Timer::new(duration))
    }

    fn sleep_until(deadline: Instant) -> Sleep {
        Self::sleep(
            deadline
                .0
                .saturating_duration_since(std::time::Instant::now()),
        )
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Timeout<F> {
        Timeout {
            future,
            timer: Timer::new(duration),
        }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Instant,
        future: F,
    ) -> Timeout<F> {
        Self::timeout(
            deadline
                .0
                .saturating_duration_since(std::time::Instant::now()),
            future,
        )
    }

    fn is_panic(_: &Cancelled) -> bool {
        // A panicking task takes the whole process down (Weir's fail-fast hook), so a join
        // error is only ever a cancellation.
        false
    }

    fn thread_rng() -> rand::rngs::ThreadRng {
        rand::rng()
    }

    type Mpsc = TokioMpsc;
    type Watch = TokioWatch;
    type Oneshot = TokioOneshot;
    type Mutex<T: OptionalSend + 'static> = TokioMutex<T>;

    fn new(_threads: usize) -> Self {
        Self { executor: None }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        // Invariant: only openraft's runtime test suite calls this, on a thread of its own;
        // a failure to build an executor there is a broken test host.
        let executor = self
            .executor
            .get_or_insert_with(glommio::LocalExecutor::default);
        executor.run(future)
    }
}

pub struct TokioMpsc;
pub struct Sender<T>(tokio_mpsc::Sender<T>);
pub struct Receiver<T>(tokio_mpsc::Receiver<T>);
pub struct WeakSender<T>(tokio_mpsc::WeakSender<T>);

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Clone for WeakSender<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl Mpsc for TokioMpsc {
    type Sender<T: OptionalSend> = Sender<T>;
    type Receiver<T: OptionalSend> = Receiver<T>;
    type WeakSender<T: OptionalSend> = WeakSender<T>;

    fn channel<T: OptionalSend>(buffer: usize) -> (Sender<T>, Receiver<T>) {
        let (tx, rx) = tokio_mpsc::channel(buffer);
        (Sender(tx), Receiver(rx))
    }
}

impl<T: OptionalSend> MpscSender<TokioMpsc, T> for Sender<T> {
    async fn send(&self, msg: T) -> Result<(), SendError<T>> {
        self.0.send(msg).await.map_err(|e| SendError(e.0))
    }

    fn downgrade(&self) -> WeakSender<T> {
        WeakSender(self.0.downgrade())
    }
}

impl<T> MpscReceiver<T> for Receiver<T> {
    async fn recv(&mut self) -> Option<T> {
        self.0.recv().await
    }

    fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.0.try_recv().map_err(|e| match e {
            tokio_mpsc::error::TryRecvError::Empty => TryRecvError::Empty,
            tokio_mpsc::error::TryRecvError::Disconnected => TryRecvError::Disconnected,
        })
    }
}

impl<T: OptionalSend> MpscWeakSender<TokioMpsc, T> for WeakSender<T> {
    fn upgrade(&self) -> Option<Sender<T>> {
        self.0.upgrade().map(Sender)
    }
}

pub struct TokioOneshot;
pub struct OneshotSender<T>(tokio_oneshot::Sender<T>);

impl oneshot::Oneshot for TokioOneshot {
    type Sender<T: OptionalSend> = OneshotSender<T>;
    type Receiver<T: OptionalSend> = tokio_oneshot::Receiver<T>;
    type ReceiverError = tokio_oneshot::error::RecvError;

    fn channel<T: OptionalSend>() -> (OneshotSender<T>, tokio_oneshot::Receiver<T>) {
        let (tx, rx) = tokio_oneshot::channel();
        (OneshotSender(tx), rx)
    }
}

impl<T: OptionalSend> oneshot::OneshotSender<T> for OneshotSender<T> {
    fn send(self, t: T) -> Result<(), T> {
        self.0.send(t)
    }
}

pub struct TokioMutex<T>(tokio::sync::Mutex<T>);

impl<T: OptionalSend + 'static> mutex::Mutex<T> for TokioMutex<T> {
    type Guard<'a> = tokio::sync::MutexGuard<'a, T>;

    fn new(value: T) -> Self {
        Self(tokio::sync::Mutex::new(value))
    }

    fn lock(&self) -> impl Future<Output = Self::Guard<'_>> + OptionalSend {
        self.0.lock()
    }
}

pub struct TokioWatch;
pub struct WatchSender<T>(tokio_watch::Sender<T>);
pub struct WatchReceiver<T>(tokio_watch::Receiver<T>);
pub struct WatchRef<'a, T>(tokio_watch::Ref<'a, T>);

impl watch::Watch for TokioWatch {
    type Sender<T: OptionalSend + OptionalSync> = WatchSender<T>;
    type Receiver<T: OptionalSend + OptionalSync> = WatchReceiver<T>;
    type Ref<'a, T: OptionalSend + 'a> = WatchRef<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (WatchSender<T>, WatchReceiver<T>) {
        let (tx, rx) = tokio_watch::channel(init);
        (WatchSender(tx), WatchReceiver(rx))
    }
}

impl<T> Clone for WatchSender<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: OptionalSend + OptionalSync> watch::WatchSender<TokioWatch, T> for WatchSender<T> {
    fn send(&self, value: T) -> Result<(), watch::SendError<T>> {
        self.0.send(value).map_err(|e| watch::SendError(e.0))
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        self.0.send_if_modified(modify)
    }

    fn borrow_watched(&self) -> WatchRef<'_, T> {
        WatchRef(self.0.borrow())
    }

    fn subscribe(&self) -> WatchReceiver<T> {
        WatchReceiver(self.0.subscribe())
    }
}

impl<T> Clone for WatchReceiver<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: OptionalSend + OptionalSync> watch::WatchReceiver<TokioWatch, T> for WatchReceiver<T> {
    async fn changed(&mut self) -> Result<(), watch::RecvError> {
        self.0.changed().await.map_err(|_| watch::RecvError(()))
    }

    fn borrow_watched(&self) -> WatchRef<'_, T> {
        WatchRef(self.0.borrow())
    }

    fn borrow_and_update(&mut self) -> WatchRef<'_, T> {
        WatchRef(self.0.borrow_and_update())
    }
}

impl<T> Deref for WatchRef<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// openraft's own conformance suite for runtimes: spawn, sleep, timeouts, every channel
    /// kind and the mutex, each on the glommio executor.
    #[test]
    fn the_runtime_passes_openrafts_runtime_suite() {
        openraft_rt::testing::Suite::<GlommioRuntime>::test_all();
    }
}
