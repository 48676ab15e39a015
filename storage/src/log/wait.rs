//! The list of tasks waiting for a partition's state to change (the high watermark moving,
//! a flush finishing, a write failing).
//!
//! A waiter registers its waker under a key and removes it when dropped, so a Fetch long
//! poll that loses its race against a timer leaves nothing behind: an idle partition with
//! consumers polling it must never accumulate wakers. Single-threaded; never wakes a task
//! while the list is borrowed.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub(super) struct WaitList {
    next_key: Cell<u64>,
    wakers: RefCell<Vec<(u64, Waker)>>,
    /// The drained list, kept to be swapped back in so waking costs no allocation.
    spare: RefCell<Vec<(u64, Waker)>>,
}

impl WaitList {
    /// Resolves once `done()` is true, checking it on every wake.
    pub(super) fn until<F: Fn() -> bool>(&self, done: F) -> Wait<'_, F> {
        Wait {
            list: self,
            done,
            key: None,
        }
    }

    /// Wakes every waiter; each re-checks its condition and re-registers if not done.
    pub(super) fn wake_all(&self) {
        let mut woken = self.spare.take();
        std::mem::swap(&mut woken, &mut self.wakers.borrow_mut());
        for (_, waker) in woken.drain(..) {
            waker.wake();
        }
        *self.spare.borrow_mut() = woken;
    }

    fn register(&self, key: &mut Option<u64>, waker: &Waker) {
        let mut wakers = self.wakers.borrow_mut();
        if let Some(key) = *key {
            if let Some((_, registered)) = wakers.iter_mut().find(|(k, _)| *k == key) {
                if !registered.will_wake(waker) {
                    registered.clone_from(waker);
                }
                return;
            }
        }
        let new_key = self.next_key.get();
        self.next_key.set(new_key + 1);
        wakers.push((new_key, waker.clone()));
        *key = Some(new_key);
    }

    fn remove(&self, key: u64) {
        let mut wakers = self.wakers.borrow_mut();
        if let Some(i) = wakers.iter().position(|(k, _)| *k == key) {
            wakers.swap_remove(i);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.wakers.borrow().len()
    }
}

pub(super) struct Wait<'a, F: Fn() -> bool> {
    list: &'a WaitList,
    done: F,
    key: Option<u64>,
}

impl<F: Fn() -> bool + Unpin> Future for Wait<'_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if (this.done)() {
            if let Some(key) = this.key.take() {
                this.list.remove(key);
            }
            return Poll::Ready(());
        }
        this.list.register(&mut this.key, cx.waker());
        Poll::Pending
    }
}

impl<F: Fn() -> bool> Drop for Wait<'_, F> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.list.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn a_dropped_waiter_leaves_nothing_behind() {
        glommio::LocalExecutorBuilder::default()
            .make()
            .expect("a test executor can be built")
            .run(async {
                let list = Rc::new(WaitList::default());
                let flag = Rc::new(Cell::new(false));
                for _ in 0..100 {
                    let wait = list.until(|| flag.get());
                    let timer = glommio::timer::sleep(std::time::Duration::from_micros(1));
                    futures_lite::future::or(wait, timer).await;
                }
                assert_eq!(list.len(), 0, "timed-out waits deregister");
                let waiter = {
                    let (list, flag) = (list.clone(), flag.clone());
                    glommio::spawn_local(async move { list.until(|| flag.get()).await })
                };
                glommio::executor().yield_task_queue_now().await;
                assert_eq!(list.len(), 1);
                list.wake_all();
                glommio::executor().yield_task_queue_now().await;
                assert_eq!(list.len(), 1, "a spurious wake re-registers once");
                flag.set(true);
                list.wake_all();
                waiter.await;
                assert_eq!(list.len(), 0);
            });
    }
}
