//! The loop's ready queues, the record of which thread runs the loop, and the wakeup flag.
//!
//! Two queues feed the loop:
//! - **local**: a plain `VecDeque` owned by the thread running the loop (the one whose token
//!   is in `running`). Everything that thread schedules goes there, with no atomic
//!   read-modify-write.
//! - **remote**: what other threads schedule (or any thread while no one runs the loop): a
//!   lock-free stack of intrusive nodes. A completed future is its own node (its state word
//!   holds the link, see `futures::state`), so completing a loop future from another thread
//!   allocates nothing; other items (`call_soon` from a thread, a callback added to a done
//!   future) travel in a boxed node. Producers push with one compare-and-swap; the owner takes
//!   the whole stack with one swap and reverses it into push order.
//!
//! # Order
//!
//! asyncio has one FIFO ready queue. Here, the owner drains the remote stack into the local
//! queue (a) at the start of each iteration, before it takes the batch, and (b) before each
//! push of its own. For two schedulings A then B ordered by happens-before:
//! - both remote: B's push read A's (or a later) head, so A is deeper in the stack and comes
//!   first after the reversal, or A was drained by an earlier drain and is already ahead;
//! - A local, B remote: A is in the local queue when B is pushed; B joins it at a later drain,
//!   behind A;
//! - A remote, B local: B's push is made by the owner after A's push (happens-before), so the
//!   drain (b) that precedes B's push sees A and appends it first;
//! - both local: one thread, FIFO.
//!
//! Batch semantics hold because the batch is the local queue as it stands at the iteration's
//! start (after drain (a)), counted like asyncio's `ntodo`: what the batch schedules is pushed
//! behind it and lands in the next batch. Schedulings not ordered by happens-before may come in either order, as
//! they may with asyncio's `call_soon_threadsafe` from several threads.
//!
//! # Closing
//!
//! `close` replaces the remote stack by a `CLOSED` mark in one swap: a push either got in
//! before (and is handed to the close, which drops it) or sees the mark and gets its item back.
//!
//! # Waking up
//!
//! The [`Flag`] is the wakeup protocol's `signalled` flag (the eventfd itself stays in
//! `runtime::wakeup`). A producer pushes (a read-modify-write of the stack), then reads who
//! runs the loop and the flag, and raises it (writing the eventfd) on the false-to-true edge.
//! The loop, about to sleep, lowers the flag and then looks at the stack with a
//! read-modify-write ([`Queues::look_before_sleep`]): either that look comes after a push in
//! the stack's modification order (and sees it), or the push read what the look wrote, so the
//! producer saw the lowered flag (and the loop's claim of `running`) and raises it. Either way
//! no wakeup is lost, using only acquire/release orderings, which loom models exactly.

use std::collections::VecDeque;

use crate::futures::future::{Completed, Dispatch};
use crate::futures::state::{LINK_BOXED, Link};
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering, UnsafeCell};
use crate::thread_id::current as thread_token;

/// `running` while a brief claim holds the loop ([`Queues::claim_briefly`]); no thread's
/// token (those are `pthread_self` values, addresses).
const BRIEF: u64 = u64::MAX;

/// The remote stack's mark once the loop is closed (never an address: those are 8-aligned).
const CLOSED: Link = 2;

/// A remote node for an item that is not a completed future.
struct Boxed<T> {
    next: Link,
    item: T,
}

/// Where a push went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Into the running thread's own queue: nobody needs waking.
    Local,
    /// Onto the remote stack: the loop may need a wakeup.
    Remote,
}

/// The ready queues of one loop; `T` is the loop's item type.
pub(crate) struct Queues<T> {
    /// Token of the thread inside run_* / close (0: none): the owner of `local`.
    running: AtomicU64,
    local: UnsafeCell<VecDeque<T>>,
    /// The local queue's length when its owner last released it, for other threads.
    local_hint: AtomicUsize,
    /// The remote stack, newest first (0: empty; `CLOSED`).
    head: AtomicU64,
    /// The owner's buffer for reversing a drained stack.
    scratch: UnsafeCell<Vec<Link>>,
}

// SAFETY: `local` and `scratch` are touched only by the thread whose token is in `running`
// (the owner); ownership passes from one thread to the next through `running` (a release
// store when a run ends, an acquiring compare-and-swap when the next one starts). The remote
// stack is lock-free; its nodes and items are Send.
unsafe impl<T: Send> Sync for Queues<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Queues<T> {}

impl<T: From<Dispatch> + Send> Default for Queues<T> {
    fn default() -> Self {
        Queues {
            running: AtomicU64::new(0),
            local: UnsafeCell::new(VecDeque::new()),
            local_hint: AtomicUsize::new(0),
            head: AtomicU64::new(0),
            scratch: UnsafeCell::new(Vec::new()),
        }
    }
}

impl<T: From<Dispatch> + Send> Queues<T> {
    // ----- who runs the loop -----

    /// Makes this thread the loop's runner (and the local queue's owner); false if another
    /// run (or close) holds it. A brief claim ([`Queues::claim_briefly`]) is waited out.
    pub(crate) fn claim(&self) -> bool {
        loop {
            match self.running.compare_exchange(0, thread_token(), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                // A brief claim ends in a moment (its holder may have been preempted).
                Err(BRIEF) => std::thread::yield_now(),
                Err(_) => return false,
            }
        }
    }

    /// Holds the loop for a moment, between runs, without being a run: no run may start
    /// meanwhile (a `claim` waits), and to every other look the loop is not running. The
    /// holder may touch the local queue; [`Queues::release`] ends it. False if a run holds
    /// the loop.
    pub(crate) fn claim_briefly(&self) -> bool {
        self.running.compare_exchange(0, BRIEF, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Makes this thread the runner whatever the record says (a poisoned loop's close, when
    /// no run holds it); a brief claim is waited out.
    pub(crate) fn force_claim(&self) {
        loop {
            let cur = self.running.load(Ordering::Acquire);
            if cur == BRIEF {
                std::thread::yield_now();
            } else if self.running.compare_exchange(cur, thread_token(), Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return;
            }
        }
    }

    /// Ends this thread's run: publishes the local queue's length, then hands ownership on.
    pub(crate) fn release(&self) {
        // SAFETY: only the owner releases (the run guard of the claiming thread).
        let len = self.local.with(|l| unsafe { (*l).len() });
        self.local_hint.store(len, Ordering::Relaxed);
        self.running.store(0, Ordering::Release);
    }

    /// The runner's token (0: none, or only a brief claim).
    pub(crate) fn runner(&self) -> u64 {
        match self.running.load(Ordering::Acquire) {
            BRIEF => 0,
            r => r,
        }
    }

    /// Whether a thread other than this one may be waiting for the loop's work (so that a
    /// remote push must raise the wakeup flag): a host watching the fd (`host_mode`) while
    /// no run is in progress, or a run on another thread.
    pub(crate) fn waiter_elsewhere(&self, host_mode: bool) -> bool {
        match self.runner() {
            0 => host_mode,
            _ => !self.is_owner(),
        }
    }

    /// True on the thread that runs the loop.
    #[inline]
    pub(crate) fn is_owner(&self) -> bool {
        // Only this thread ever writes its own token there: a plain load is enough.
        self.running.load(Ordering::Relaxed) == thread_token()
    }

    // ----- scheduling (any thread) -----

    /// Queues an item: into the local queue on the running thread, else onto the remote
    /// stack. A closed loop gives it back.
    pub(crate) fn push(&self, item: T) -> Result<Pushed, T> {
        if self.is_owner() {
            if self.closed_for_owner() {
                return Err(item);
            }
            self.push_local(item);
            return Ok(Pushed::Local);
        }
        let node = Box::into_raw(Box::new(Boxed { next: 0, item }));
        let link = node as Link | LINK_BOXED;
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            if head == CLOSED {
                // SAFETY: never published: still ours.
                return Err(unsafe { Box::from_raw(node) }.item);
            }
            // SAFETY: never published yet: ours to write.
            unsafe { (*node).next = head };
            match self.head.compare_exchange_weak(head, link, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(Pushed::Remote),
                Err(now) => head = now,
            }
        }
    }

    /// Queues a completed future for its dispatch (publishing it). A closed loop gives it
    /// back, published, to be dropped by the caller.
    pub(crate) fn push_completed(&self, completed: Completed) -> Result<Pushed, Dispatch> {
        if self.is_owner() {
            if self.closed_for_owner() {
                return Err(completed.publish());
            }
            self.push_local(T::from(completed.publish()));
            return Ok(Pushed::Local);
        }
        let mut head = self.head.load(Ordering::Relaxed);
        if head == CLOSED {
            return Err(completed.publish());
        }
        // Publishing writes the link too: one store, then one compare-and-swap when nobody
        // else pushes meanwhile.
        let node = completed.publish_linked(head);
        let link = node.link_value();
        loop {
            match self.head.compare_exchange_weak(head, link, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    node.into_link();
                    return Ok(Pushed::Remote);
                }
                Err(now) if now == CLOSED => return Err(node),
                Err(now) => {
                    if now != head {
                        node.relink(head, now);
                    }
                    head = now;
                }
            }
        }
    }

    // ----- the owner's side -----

    /// True once the loop's queues are closed, asked by the owner (the closing thread, or a
    /// callback or destructor it runs during the close: a task ended by the close completes
    /// then, and its dispatch must be refused like any other, not left in a local queue that
    /// nobody drains any more).
    fn closed_for_owner(&self) -> bool {
        self.head.load(Ordering::Relaxed) == CLOSED
    }

    fn push_local(&self, item: T) {
        // A remote item scheduled before this one (happens-before) must run first.
        self.drain_remote();
        // SAFETY: called on the owner's thread only (`is_owner` or the owner's own paths).
        self.local.with_mut(|l| unsafe { (*l).push_back(item) });
    }

    /// Moves the remote stack, in push order, to the end of the local queue.
    #[inline]
    fn drain_remote(&self) {
        let head = self.head.load(Ordering::Acquire);
        if head == 0 || head == CLOSED {
            return;
        }
        let head = self.head.swap(0, Ordering::AcqRel);
        self.append(head);
    }

    /// Appends a taken stack (newest first) to the local queue in push order.
    fn append(&self, head: Link) {
        if head == 0 || head == CLOSED {
            return;
        }
        // SAFETY: as below; a stack of one node needs no reversal.
        if unsafe { self.next_of(head) } == 0 {
            // SAFETY: the one node of the taken stack, converted once.
            let item = unsafe { self.item_of(head) };
            // SAFETY: owner only.
            self.local.with_mut(|l| unsafe { (*l).push_back(item) });
            return;
        }
        // SAFETY: owner-only scratch and local queue; every node of the taken stack is now
        // the owner's (the swap acquired each push's release).
        self.scratch.with_mut(|scratch| unsafe {
            let scratch = &mut *scratch;
            let mut link = head;
            while link != 0 {
                scratch.push(link);
                link = self.next_of(link);
            }
            self.local.with_mut(|l| {
                let l = &mut *l;
                for &link in scratch.iter().rev() {
                    l.push_back(self.item_of(link));
                }
            });
            scratch.clear();
        });
    }

    /// The link after a node of a taken stack.
    ///
    /// # Safety
    /// `link` is a node of a stack the owner took (so it is the owner's, and alive).
    unsafe fn next_of(&self, link: Link) -> Link {
        // SAFETY: the caller's promise; a boxed node's `next` was written before its push
        // released it, a future's link is in its state word.
        unsafe {
            if link & LINK_BOXED != 0 {
                (*((link & !LINK_BOXED) as *const Boxed<T>)).next
            } else {
                Dispatch::peek_next(link)
            }
        }
    }

    /// Turns a node of a taken stack into its item (freeing a boxed node), once.
    ///
    /// # Safety
    /// As for `next_of`, and each node is converted once, after its `next` was read.
    unsafe fn item_of(&self, link: Link) -> T {
        // SAFETY: the caller's promise.
        unsafe {
            if link & LINK_BOXED != 0 {
                Box::from_raw((link & !LINK_BOXED) as *mut Boxed<T>).item
            } else {
                T::from(Dispatch::from_link(link))
            }
        }
    }

    /// Owner: starts an iteration's batch (asyncio's `ntodo`): drains the remote stack into
    /// the local queue and returns how many items the queue holds. The batch is that many
    /// items from the front; what runs from now on is pushed behind them and lands in the next
    /// batch. No buffer moves: the queue stays where it is.
    #[inline]
    pub(crate) fn begin_batch(&self) -> usize {
        self.drain_remote();
        // SAFETY: owner only.
        self.local.with(|l| unsafe { (*l).len() })
    }

    /// Owner, host mode: like [`Queues::begin_batch`], but looks at the stack with a
    /// read-modify-write even when it seems empty, so that a producer that pushed after it
    /// saw the signal cleared (see the module doc).
    pub(crate) fn begin_batch_after_clear(&self) -> usize {
        let head = self.head.fetch_or(0, Ordering::AcqRel);
        if head != 0 && head != CLOSED {
            let head = self.head.swap(0, Ordering::AcqRel);
            self.append(head);
        }
        // SAFETY: owner only.
        self.local.with(|l| unsafe { (*l).len() })
    }

    /// Owner: appends an item to the batch just begun (a due timer), before anything the
    /// batch will schedule.
    pub(crate) fn push_to_batch(&self, item: T) {
        // SAFETY: owner only.
        self.local.with_mut(|l| unsafe { (*l).push_back(item) });
    }

    /// Owner: the next item of the queue (the batch's, while the caller counts).
    #[inline]
    pub(crate) fn pop(&self) -> Option<T> {
        // SAFETY: owner only; the borrow ends before the item runs.
        self.local.with_mut(|l| unsafe { (*l).pop_front() })
    }

    /// Owner: nothing queued (a plain look).
    pub(crate) fn is_empty(&self) -> bool {
        // SAFETY: owner only.
        let local = self.local.with(|l| unsafe { (*l).is_empty() });
        let head = self.head.load(Ordering::Acquire);
        local && (head == 0 || head == CLOSED)
    }

    /// Owner, about to sleep (after lowering the flag): nothing queued, looked at with a
    /// read-modify-write of the stack (see the module doc).
    pub(crate) fn look_before_sleep(&self) -> bool {
        // SAFETY: owner only.
        let local = self.local.with(|l| unsafe { (*l).is_empty() });
        let head = self.head.fetch_or(0, Ordering::AcqRel);
        local && (head == 0 || head == CLOSED)
    }

    /// Any thread: nothing queued, as far as it can tell: exact on the running thread and
    /// whenever no run is in progress (the local queue's length as its last owner released
    /// it); a moment's view of another thread's run otherwise.
    pub(crate) fn is_empty_hint(&self) -> bool {
        if self.is_owner() {
            return self.is_empty();
        }
        let head = self.head.load(Ordering::Acquire);
        self.local_hint.load(Ordering::Relaxed) == 0 && (head == 0 || head == CLOSED)
    }

    /// Owner (the closing thread): closes the remote stack and hands back everything queued,
    /// to be dropped with no lock held.
    pub(crate) fn close(&self) -> VecDeque<T> {
        let head = self.head.swap(CLOSED, Ordering::AcqRel);
        self.append(head);
        // SAFETY: owner only.
        self.local.with_mut(|l| unsafe { std::mem::take(&mut *l) })
    }
}

impl<T> Drop for Queues<T> {
    fn drop(&mut self) {
        // A loop is closed before it goes (its last reference is dropped after close), so the
        // stack is empty or CLOSED. Anything else would be a leak: drop it.
        let head = self.head.load(Ordering::Acquire);
        let mut link = if head == CLOSED { 0 } else { head };
        while link != 0 {
            // SAFETY: exclusive (`&mut self`): every node left is ours.
            unsafe {
                if link & LINK_BOXED != 0 {
                    let node = Box::from_raw((link & !LINK_BOXED) as *mut Boxed<T>);
                    link = node.next;
                } else {
                    let next = Dispatch::peek_next(link);
                    drop(Dispatch::from_link(link));
                    link = next;
                }
            }
        }
    }
}

/// The wakeup protocol's `signalled` flag: raised by producers (the raiser of the
/// false-to-true edge writes the eventfd), lowered by the loop.
pub(crate) struct Flag(AtomicBool);

impl Default for Flag {
    fn default() -> Self {
        Flag(AtomicBool::new(false))
    }
}

impl Flag {
    /// Raises the flag. True if this call made the false-to-true edge (its caller writes the
    /// eventfd); false if it was already raised (coalesced).
    pub(crate) fn raise(&self) -> bool {
        // A plain load first: while the loop has not consumed the last signal, producers only
        // read the flag's cache line instead of writing it.
        !self.0.load(Ordering::Acquire) && !self.0.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn is_raised(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Lowers the flag (from then on the next push raises it again). A read-modify-write,
    /// not a plain store: it runs once per sleep (or per host iteration), and loom 0.7 lets a
    /// plain store slip between the read and the write of a racing `raise`'s swap
    /// (tokio-rs/loom#254), which would make it report lost wakeups that cannot happen.
    pub(crate) fn lower(&self) {
        self.0.swap(false, Ordering::AcqRel);
    }
}
