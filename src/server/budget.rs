//! The shard's budget for request bytes read and not yet answered: Kafka's
//! `queued.max.request.bytes`, per shard. When it is spent, connections stop reading their
//! sockets (the frame read awaits budget; TCP flow control pushes back on the client). No
//! request is failed and no frame is read past it.
//!
//! A frame is admitted by its declared length once the length prefix is read, before any of
//! its body: an admitted frame can always be read to its end, so frames that hold budget
//! never wait on each other for more (admitting chunk by chunk as bytes arrive deadlocks when
//! partial frames hold the whole budget, e.g. 300 producers sending 1 MiB requests at once
//! into a 256 MiB budget). The buffer itself grows only as bytes arrive (`frame.rs`), so a
//! lying prefix costs budget, not memory.
//!
//! Two FIFO lanes keep small requests (heartbeats, metadata, small produces and fetches)
//! served while large ones wait: a frame up to `SMALL_REQUEST_BYTES_MAX` may always use the
//! last eighth of the budget, which large frames never take, and the rest when no large frame
//! is waiting. A large frame is charged at most the large lane's capacity: a frame larger
//! than that (yet within `socket.request.max.bytes`) is admitted when it is the only large
//! frame holding budget, and its bytes past the lane are the one overdraw allowed (as Kafka's
//! non-strict `SimpleMemoryPool`, which lets one allocation overdraw a pool not exhausted).
//! So memory held by frames is at most the budget, or the budget plus one oversized frame.
//!
//! Not glommio's `Semaphore`: it wakes any waiter that fits and moves past a larger head, so
//! a large frame could wait forever behind a stream of smaller ones, and it has no overdraw.
//!
//! Hot path: admission is a few cell reads when nothing waits; a waiter costs one `Rc`.
//! Shard-local (`Rc`, cells): a permit never leaves the shard that read its frame.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Frames up to this size are small: they may use the reserve large frames never take. One
/// read chunk (`frame::READ_CHUNK_BYTES`), about 4 default 16 KiB producer batches.
pub const SMALL_REQUEST_BYTES_MAX: usize = 64 * 1024;

/// Default `queued.max.request.bytes` per shard. Kafka's default is -1 (no bound); Weir bounds
/// it so memory has a ceiling without tuning: 256 MiB per shard leaves the large lane (224 MiB)
/// room for two default-size maximum frames (`socket.request.max.bytes`, 100 MiB) at once, and
/// caps request memory at 256 MiB per core (plus each produce's copy in the pending window,
/// see `storage/src/log/append.rs`), which a host with 1 GiB or more per core affords.
pub const QUEUED_MAX_REQUEST_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// Smallest budget accepted: the small-request reserve (an eighth) must hold a small frame.
pub const QUEUED_MAX_REQUEST_BYTES_MIN: u64 = 8 * SMALL_REQUEST_BYTES_MAX as u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    Small,
    Large,
}

/// One connection waiting for budget.
struct Waiter {
    len: usize,
    granted: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

pub struct RequestBudget {
    /// `queued.max.request.bytes`: the sum of charges never passes it.
    capacity: usize,
    /// What large frames may be charged together: the capacity less the small reserve.
    large_capacity: usize,
    charged_small: Cell<usize>,
    charged_large: Cell<usize>,
    /// Declared bytes of the admitted frames: the charges plus one oversized frame's overdraw.
    reserved: Cell<usize>,
    small_waiters: RefCell<VecDeque<Rc<Waiter>>>,
    large_waiters: RefCell<VecDeque<Rc<Waiter>>>,
}

impl RequestBudget {
    pub fn new(capacity_bytes: usize) -> Rc<RequestBudget> {
        assert!(
            capacity_bytes >= QUEUED_MAX_REQUEST_BYTES_MIN as usize,
            "config checks queued.max.request.bytes against its minimum"
        );
        Rc::new(RequestBudget {
            capacity: capacity_bytes,
            large_capacity: capacity_bytes - capacity_bytes / 8,
            charged_small: Cell::new(0),
            charged_large: Cell::new(0),
            reserved: Cell::new(0),
            small_waiters: RefCell::default(),
            large_waiters: RefCell::default(),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Declared bytes of the frames admitted and not yet released (the in-use metric).
    pub fn reserved(&self) -> usize {
        self.reserved.get()
    }

    /// Connections waiting for budget.
    pub fn waiting(&self) -> usize {
        self.small_waiters.borrow().len() + self.large_waiters.borrow().len()
    }

    /// Waits, in FIFO order within the frame's lane, until a frame of `len` bytes fits.
    pub fn acquire(self: &Rc<Self>, len: usize) -> Acquire {
        let lane = lane_of(len);
        let queue_empty = self.queue(lane).borrow().is_empty();
        if queue_empty && self.fits(lane, len) {
            self.charge(lane, len);
            return Acquire {
                budget: self.clone(),
                lane,
                len,
                waiter: None,
            };
        }
        let waiter = Rc::new(Waiter {
            len,
            granted: Cell::new(false),
            waker: RefCell::new(None),
        });
        self.queue(lane).borrow_mut().push_back(waiter.clone());
        Acquire {
            budget: self.clone(),
            lane,
            len,
            waiter: Some(waiter),
        }
    }

    fn queue(&self, lane: Lane) -> &RefCell<VecDeque<Rc<Waiter>>> {
        match lane {
            Lane::Small => &self.small_waiters,
            Lane::Large => &self.large_waiters,
        }
    }

    fn charge_of(&self, lane: Lane, len: usize) -> usize {
        match lane {
            Lane::Small => len,
            Lane::Large => len.min(self.large_capacity),
        }
    }

    fn fits(&self, lane: Lane, len: usize) -> bool {
        let small = self.charged_small.get();
        let large = self.charged_large.get();
        let reserve = self.capacity - self.large_capacity;
        match lane {
            // The reserve always; past it only when no large frame waits, so a large frame
            // is not starved by a stream of small ones.
            Lane::Small => {
                small + len <= reserve
                    || (small + large + len <= self.capacity
                        && self.large_waiters.borrow().is_empty())
            }
            Lane::Large => {
                let charge = self.charge_of(lane, len);
                large + charge <= self.large_capacity && small + large + charge <= self.capacity
            }
        }
    }

    fn charge(&self, lane: Lane, len: usize) {
        let charge = self.charge_of(lane, len);
        match lane {
            Lane::Small => self.charged_small.set(self.charged_small.get() + charge),
            Lane::Large => self.charged_large.set(self.charged_large.get() + charge),
        }
        self.reserved.set(self.reserved.get() + len);
        debug_assert!(
            self.charged_small.get() + self.charged_large.get() <= self.capacity,
            "charges never pass the budget"
        );
    }

    fn release(&self, lane: Lane, len: usize) {
        let charge = self.charge_of(lane, len);
        match lane {
            Lane::Small => self.charged_small.set(self.charged_small.get() - charge),
            Lane::Large => self.charged_large.set(self.charged_large.get() - charge),
        }
        self.reserved.set(self.reserved.get() - len);
        self.grant_waiters();
    }

    /// Admits the waiters at the heads of the lanes while they fit, and wakes them.
    fn grant_waiters(&self) {
        loop {
            let large = self.grant_head(Lane::Large);
            let small = self.grant_head(Lane::Small);
            if !large && !small {
                return;
            }
        }
    }

    fn grant_head(&self, lane: Lane) -> bool {
        let len = match self.queue(lane).borrow().front() {
            Some(head) => head.len,
            None => return false,
        };
        if !self.fits(lane, len) {
            return false;
        }
        let Some(head) = self.queue(lane).borrow_mut().pop_front() else {
            return false;
        };
        self.charge(lane, len);
        head.granted.set(true);
        if let Some(waker) = head.waker.borrow_mut().take() {
            waker.wake();
        }
        true
    }
}

fn lane_of(len: usize) -> Lane {
    if len <= SMALL_REQUEST_BYTES_MAX {
        Lane::Small
    } else {
        Lane::Large
    }
}

/// Resolves to the frame's permit. Dropped before that, it leaves the queue (or gives back
/// budget granted meanwhile).
pub struct Acquire {
    budget: Rc<RequestBudget>,
    lane: Lane,
    len: usize,
    /// None once admitted.
    waiter: Option<Rc<Waiter>>,
}

impl Future for Acquire {
    type Output = RequestPermit;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<RequestPermit> {
        if let Some(waiter) = &self.waiter {
            if !waiter.granted.get() {
                *waiter.waker.borrow_mut() = Some(cx.waker().clone());
                return Poll::Pending;
            }
            self.waiter = None;
        }
        // The charge moves from this future to the permit (a zero-length Acquire is spent).
        let len = std::mem::take(&mut self.len);
        Poll::Ready(RequestPermit {
            budget: self.budget.clone(),
            lane: self.lane,
            len,
        })
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        match self.waiter.take() {
            Some(waiter) if !waiter.granted.get() => {
                let mut queue = self.budget.queue(self.lane).borrow_mut();
                queue.retain(|w| !Rc::ptr_eq(w, &waiter));
                drop(queue);
                // A head that left may have held back others that fit now.
                self.budget.grant_waiters();
            }
            // Admitted (now or while waiting) but never turned into a permit.
            _ if self.len > 0 => self.budget.release(self.lane, self.len),
            _ => {}
        }
    }
}

/// Budget held by one request frame; given back when dropped (after its response is
/// written, or when the request's task ends on a closed connection).
pub struct RequestPermit {
    budget: Rc<RequestBudget>,
    lane: Lane,
    len: usize,
}

impl RequestPermit {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for RequestPermit {
    fn drop(&mut self) {
        self.budget.release(self.lane, self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    const MIB: usize = 1024 * 1024;

    fn now(acquire: &mut Acquire) -> Option<RequestPermit> {
        block_on(poll_once(acquire))
    }

    #[test]
    fn admits_within_the_budget_and_releases_on_drop() {
        let budget = RequestBudget::new(8 * MIB);
        let a = now(&mut budget.acquire(3 * MIB)).unwrap();
        let b = now(&mut budget.acquire(4 * MIB)).unwrap();
        assert_eq!(budget.reserved(), 7 * MIB);
        let mut c = budget.acquire(2 * MIB);
        assert!(now(&mut c).is_none(), "past the large lane (7 MiB)");
        assert_eq!(budget.waiting(), 1);
        drop(a);
        let c = now(&mut c).unwrap();
        assert_eq!((budget.reserved(), budget.waiting()), (6 * MIB, 0));
        drop((b, c));
        assert_eq!(budget.reserved(), 0);
    }

    #[test]
    fn one_oversized_frame_overdraws_alone() {
        let budget = RequestBudget::new(8 * MIB);
        let small = now(&mut budget.acquire(1000)).unwrap();
        let big = now(&mut budget.acquire(100 * MIB)).unwrap();
        assert_eq!(
            budget.reserved(),
            100 * MIB + 1000,
            "the overdraw is visible"
        );
        let mut second = budget.acquire(100 * MIB);
        assert!(
            now(&mut second).is_none(),
            "only one oversized frame at a time"
        );
        let mut large = budget.acquire(2 * MIB);
        assert!(now(&mut large).is_none(), "the large lane is spent");
        let more_small = now(&mut budget.acquire(1000));
        assert!(more_small.is_some(), "small frames use the reserve");
        drop(big);
        let second = now(&mut second);
        assert!(second.is_some(), "FIFO: the next oversized frame");
        assert!(now(&mut large).is_none());
        drop((second, small, more_small));
        assert!(now(&mut large).is_some());
    }

    #[test]
    fn oversized_frame_waits_for_large_frames_to_leave() {
        let budget = RequestBudget::new(8 * MIB);
        let large = now(&mut budget.acquire(MIB)).unwrap();
        let mut big = budget.acquire(50 * MIB);
        assert!(now(&mut big).is_none());
        drop(large);
        assert!(now(&mut big).is_some());
    }

    #[test]
    fn each_lane_is_fifo_and_a_large_head_is_not_bypassed() {
        let budget = RequestBudget::new(8 * MIB);
        let first = now(&mut budget.acquire(6 * MIB)).unwrap();
        let mut head = budget.acquire(3 * MIB);
        let mut behind = budget.acquire(MIB);
        assert!(now(&mut head).is_none());
        assert!(
            now(&mut behind).is_none(),
            "1 MiB would fit, but waits its turn"
        );
        drop(first);
        let head = now(&mut head).unwrap();
        let behind = now(&mut behind).unwrap();
        assert_eq!(budget.reserved(), 4 * MIB);
        drop((head, behind));
    }

    #[test]
    fn small_frames_leave_the_large_share_to_a_waiting_large_frame() {
        let budget = RequestBudget::new(MIB);
        let smalls: Vec<_> = (0..12)
            .map(|_| now(&mut budget.acquire(SMALL_REQUEST_BYTES_MAX)).unwrap())
            .collect();
        let mut large = budget.acquire(MIB / 2);
        assert!(now(&mut large).is_none());
        // With a large frame waiting, small frames are held to the reserve (128 KiB), which
        // the twelve above already pass.
        let mut small = budget.acquire(SMALL_REQUEST_BYTES_MAX);
        assert!(now(&mut small).is_none());
        drop(smalls);
        assert!(now(&mut large).is_some());
        assert!(now(&mut small).is_some());
    }

    #[test]
    fn a_waiter_that_gives_up_leaves_the_queue_and_its_grant() {
        let budget = RequestBudget::new(8 * MIB);
        let first = now(&mut budget.acquire(7 * MIB)).unwrap();
        let mut gone = budget.acquire(7 * MIB);
        let mut next = budget.acquire(7 * MIB);
        assert!(now(&mut gone).is_none());
        drop(gone);
        assert_eq!(budget.waiting(), 1);
        drop(first);
        let next_permit = now(&mut next).unwrap();
        drop(next_permit);
        // Granted while waiting, then dropped unpolled: the grant comes back.
        let first = now(&mut budget.acquire(7 * MIB)).unwrap();
        let granted = budget.acquire(7 * MIB);
        drop(first);
        assert_eq!(budget.reserved(), 7 * MIB);
        drop(granted);
        assert_eq!((budget.reserved(), budget.waiting()), (0, 0));
        drop(next);
    }
}
