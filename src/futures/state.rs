//! The state word of a future: one atomic 64-bit word that says pending or done, holds the
//! list of done-callbacks while pending, and is what every thread synchronises on.
//!
//! # The word
//!
//! | bits | name | meaning |
//! |---|---|---|
//! | 0 | `DONE` | the outcome is set (the completion won its compare-and-swap) |
//! | 1 | `BUSY` | a short exclusive step is under way (see below); the word belongs to its holder |
//! | 2 | `INLINE` | pending: the inline slot holds the first callback; done: it holds the one callback waiting for dispatch |
//! | 3 | `CHAIN` | done: the slot holds a chain of callbacks (two or more) waiting for dispatch |
//! | 4 | `UNRETRIEVED` | done with an exception nobody has looked at yet (asyncio's `__log_traceback`) |
//! | 5 | `WAITERS` | pending: a thread may be blocked in `afut_wait` |
//! | 6 | `QUEUED` | done: the callbacks wait in the slot for the loop's dispatch |
//! | 7-8 | kind | done: what the outcome is (the future layer's `KIND_*`) |
//! | 9 | `NEXT_BOXED` | done and queued: the next queue node is a boxed node, not a future |
//! | 10-61 | pointer | pending: the newest overflow callback node; done: the next node in the loop's remote queue (address / 8) |
//!
//! # The protocol
//!
//! - **Pending -> done** is one compare-and-swap (`begin_complete`) that sets `DONE` and
//!   takes the whole callback list (the inline slot and the overflow list) with it: an add
//!   that comes later sees `DONE` and is scheduled on its own, one that came earlier is in the
//!   list the completion took. The completion also sets `BUSY` and, if a loop will run the
//!   callbacks, `QUEUED`: they stay in the slot, and the future itself goes into the loop's
//!   queue (with a counted reference), linked through the pointer field.
//! - **The first callback** is written into the inline slot under `BUSY` (claimed by a
//!   compare-and-swap, released by a plain store). **Further callbacks** are pushed onto the
//!   overflow list with one compare-and-swap of the word, no lock: the node's `next` is the
//!   old pointer field.
//! - **`BUSY`** makes the word briefly exclusive, for steps that write more than one word:
//!   the first add (the slot), the completion (the outcome and the callbacks' dispatch form),
//!   removal of callbacks and counting them (rare). Its holder runs no C code, takes no lock,
//!   makes no system call and allocates only on the rare paths; every other writer of the
//!   word uses a compare-and-swap that expects `BUSY` clear and backs off (spins, then yields)
//!   while it is set, and the holder releases it with a plain store. Readers of a done
//!   future's outcome wait the same way until the completion published it. Once a done
//!   future is published, `BUSY` is never set again; later writers (clearing `UNRETRIEVED`,
//!   relinking the queue pointer) touch disjoint bits with read-modify-write operations.

use std::mem::ManuallyDrop;
use std::ptr;

use crate::sync::{AtomicU64, BROKEN, Ordering, UnsafeCell, backoff};

const DONE: u64 = 1 << 0;
const BUSY: u64 = 1 << 1;
const INLINE: u64 = 1 << 2;
const CHAIN: u64 = 1 << 3;
const UNRETRIEVED: u64 = 1 << 4;
const WAITERS: u64 = 1 << 5;
const QUEUED: u64 = 1 << 6;
const KIND_SHIFT: u32 = 7;
const KIND_MASK: u64 = 3 << KIND_SHIFT;
const NEXT_BOXED: u64 = 1 << 9;
const PTR_SHIFT: u32 = 10;
const PTR_BITS: u32 = 52;
const PTR_MASK: u64 = ((1 << PTR_BITS) - 1) << PTR_SHIFT;

/// A link in the loop's remote queue: the address of the next node, with bit 0 set when
/// that node is a boxed node rather than a future; 0 for none.
pub(crate) type Link = u64;

/// The bit of a [`Link`] that marks a boxed node.
pub(crate) const LINK_BOXED: Link = 1;

/// Encodes an 8-aligned address into the pointer field.
#[inline]
fn encode(addr: usize) -> u64 {
    let v = (addr as u64) >> 3;
    // Addresses handed out by the system allocator are far below 2^55 (user space on x86-64
    // and aarch64 ends below 2^48, or 2^57 with 5-level paging only for mappings that ask
    // for it). Checked, because a wrong pointer here would be undefined behaviour later.
    assert!(addr & 7 == 0 && v < (1 << PTR_BITS), "afut: unexpected heap address {addr:#x}");
    v << PTR_SHIFT
}

#[inline]
fn decode(word: u64) -> usize {
    (((word & PTR_MASK) >> PTR_SHIFT) << 3) as usize
}

/// The pointer field and `NEXT_BOXED` for a queue link.
#[inline]
fn encode_link(link: Link) -> u64 {
    if link == 0 {
        return 0;
    }
    encode((link & !LINK_BOXED) as usize) | if link & LINK_BOXED != 0 { NEXT_BOXED } else { 0 }
}

/// An overflow done-callback (the second and later ones).
struct Node<C> {
    cb: C,
    next: *mut Node<C>,
}

fn new_node<C>(cb: C, next: *mut Node<C>) -> *mut Node<C> {
    // Nodes are 8-aligned (they hold pointers), as `encode` needs.
    Box::into_raw(Box::new(Node { cb, next }))
}

/// The inline slot: empty, the first callback, or (done, two or more callbacks waiting for
/// dispatch) a chain in registration order. Which one is said by `INLINE` / `CHAIN`.
union Slot<C> {
    one: ManuallyDrop<C>,
    chain: *mut Node<C>,
    empty: (),
}

/// Callbacks in registration order, owned: yields them one by one and drops (never runs)
/// the ones left when dropped.
pub(crate) struct Callbacks<C> {
    first: Option<C>,
    chain: *mut Node<C>,
}

// SAFETY: a `Callbacks` owns its nodes exclusively (they were taken out of the state word or
// the slot by the only party entitled to them); sending it sends the callbacks, which are Send.
unsafe impl<C: Send> Send for Callbacks<C> {}

impl<C> Callbacks<C> {
    pub(crate) fn none() -> Self {
        Callbacks { first: None, chain: ptr::null_mut() }
    }

    fn new(first: Option<C>, chain: *mut Node<C>) -> Self {
        Callbacks { first, chain }
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none() && self.chain.is_null()
    }
}

impl<C> Iterator for Callbacks<C> {
    type Item = C;

    fn next(&mut self) -> Option<C> {
        if let Some(cb) = self.first.take() {
            return Some(cb);
        }
        if self.chain.is_null() {
            return None;
        }
        // SAFETY: `chain` is a node this value owns (see the type's invariant); it is unlinked
        // and freed here exactly once.
        let node = unsafe { Box::from_raw(self.chain) };
        self.chain = node.next;
        Some(node.cb)
    }
}

impl<C> Drop for Callbacks<C> {
    #[inline]
    fn drop(&mut self) {
        if self.first.is_some() || !self.chain.is_null() {
            for cb in self.by_ref() {
                drop(cb);
            }
        }
    }
}

/// Reverses a LIFO list of nodes (newest first) into registration order.
fn reverse<C>(mut head: *mut Node<C>) -> *mut Node<C> {
    let mut out = ptr::null_mut();
    while !head.is_null() {
        // SAFETY: the caller owns every node of the list (taken out of the word under BUSY or
        // by the completion's compare-and-swap).
        let node = unsafe { &mut *head };
        head = node.next;
        node.next = out;
        out = node;
    }
    out
}

/// A future's state word and inline callback slot.
pub(crate) struct Core<C> {
    state: AtomicU64,
    slot: UnsafeCell<Slot<C>>,
}

// SAFETY: the slot is only touched under the protocol above: by the BUSY holder, by the
// completion that owns the word, or by the dispatch that took the queued future after publication,
// each synchronised with the previous owner through the state word (acquire/release).
unsafe impl<C: Send> Sync for Core<C> {}
// SAFETY: as above; the callbacks it owns are Send.
unsafe impl<C: Send> Send for Core<C> {}

/// A won completion: the word is `DONE | BUSY` and belongs to the caller until [`Begun::finish`].
#[must_use]
pub(crate) struct Begun {
    prev: u64,
    queued: bool,
}

impl Begun {
    /// True if a thread may be blocked in `afut_wait` on this future.
    pub(crate) fn had_waiters(&self) -> bool {
        self.prev & WAITERS != 0
    }
}

/// What a finished completion leaves to do.
pub(crate) enum Finished<C> {
    /// No loop (or no callback): the word is published; run (or drop) these callbacks now.
    Now(Callbacks<C>),
    /// The callbacks stay in the slot for the loop; the word (still `BUSY` in memory) must be
    /// published with [`Core::publish`] by whoever queues the future.
    Queue(u64),
}

impl<C> Core<C> {
    pub(crate) fn new() -> Self {
        Core { state: AtomicU64::new(0), slot: UnsafeCell::new(Slot { empty: () }) }
    }

    #[inline]
    fn load(&self) -> u64 {
        self.state.load(Ordering::Acquire)
    }

    /// Reads the word again while waiting out a BUSY holder. A plain load, never a
    /// read-modify-write: the holder releases BUSY with a plain store and owns the word until
    /// then (an RMW that writes back the same value is harmless on real hardware, but loom
    /// 0.7 lets a plain store slip between an RMW's read and write, tokio-rs/loom#254).
    fn reload(&self) -> u64 {
        self.state.load(Ordering::Acquire)
    }

    /// Adds a callback to a pending future (in registration order). `Err(cb)`: the future is
    /// done (or completing), the caller schedules the callback on its own.
    pub(crate) fn add(&self, cb: C) -> Result<(), C> {
        let mut cb = Some(cb);
        let mut node: *mut Node<C> = ptr::null_mut();
        let mut s = self.load();
        let mut round = 0;
        loop {
            if s & DONE != 0 {
                let cb = if node.is_null() {
                    cb.take().expect("the callback")
                } else {
                    // SAFETY: the node was never published (every compare-and-swap failed).
                    unsafe { Box::from_raw(node) }.cb
                };
                return Err(cb);
            }
            if s & BUSY != 0 {
                backoff(&mut round);
                s = self.reload();
                continue;
            }
            if s & (INLINE | PTR_MASK) == 0 && node.is_null() {
                // No callback yet: this one goes into the inline slot.
                if BROKEN {
                    // The deliberately broken variant (see `sync::BROKEN`): no claim.
                    self.write_one(cb.take().expect("the callback"));
                    self.state.store(s | INLINE, Ordering::Release);
                    return Ok(());
                }
                match self.state.compare_exchange_weak(s, s | BUSY, Ordering::Acquire, Ordering::Acquire) {
                    Ok(_) => {
                        self.write_one(cb.take().expect("the callback"));
                        // Nobody else writes the word while BUSY is set.
                        self.state.store(s | INLINE, Ordering::Release);
                        return Ok(());
                    }
                    Err(now) => {
                        s = now;
                        continue;
                    }
                }
            }
            if node.is_null() {
                node = new_node(cb.take().expect("the callback"), ptr::null_mut());
            }
            // SAFETY: the node is ours until the compare-and-swap publishes it.
            unsafe { (*node).next = decode(s) as *mut Node<C> };
            let new = (s & !PTR_MASK) | encode(node as usize);
            match self.state.compare_exchange_weak(s, new, Ordering::Release, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(now) => s = now,
            }
        }
    }

    fn write_one(&self, cb: C) {
        // SAFETY: called by the thread that set BUSY on a pending future with no inline
        // callback: nobody else reads or writes the slot until BUSY is released.
        self.slot.with_mut(|slot| unsafe { ptr::write(slot, Slot { one: ManuallyDrop::new(cb) }) });
    }

    fn read_one(&self) -> C {
        // SAFETY: the caller owns the word (BUSY, the dispatch after publication, or the last
        // reference) and
        // INLINE says the slot holds a callback; reading it moves it out (the flag is
        // dropped or the slot overwritten by the caller).
        self.slot.with(|slot| unsafe { ManuallyDrop::into_inner(ptr::read(&(*slot).one)) })
    }

    fn read_chain(&self) -> *mut Node<C> {
        // SAFETY: as for `read_one`, with CHAIN set.
        self.slot.with(|slot| unsafe { (*slot).chain })
    }

    /// Takes BUSY on a pending future; None if it is done.
    fn lock_pending(&self) -> Option<u64> {
        let mut s = self.load();
        let mut round = 0;
        loop {
            if s & DONE != 0 {
                return None;
            }
            if s & BUSY != 0 {
                backoff(&mut round);
                s = self.reload();
                continue;
            }
            match self.state.compare_exchange_weak(s, s | BUSY, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => return Some(s),
                Err(now) => s = now,
            }
        }
    }

    /// Takes the callbacks of a state `s` this thread owns (BUSY or exclusive), in
    /// registration order.
    fn take_pending_callbacks(&self, s: u64) -> Callbacks<C> {
        let first = (s & INLINE != 0).then(|| self.read_one());
        Callbacks::new(first, reverse(decode(s) as *mut Node<C>))
    }

    /// Removes the callbacks `pred` picks from a pending future, keeping the others in
    /// order. Nothing for a done future (its callbacks are already on their way).
    pub(crate) fn remove(&self, pred: impl Fn(&C) -> bool) -> Vec<C> {
        let Some(s) = self.lock_pending() else { return Vec::new() };
        if s & (INLINE | PTR_MASK) == 0 {
            self.state.store(s, Ordering::Release);
            return Vec::new();
        }
        let mut kept = Vec::new();
        let mut removed = Vec::new();
        for cb in self.take_pending_callbacks(s) {
            if pred(&cb) { removed.push(cb) } else { kept.push(cb) }
        }
        // Rebuild: the first kept callback inline, the rest as overflow nodes (newest first).
        let mut word = s & !(INLINE | PTR_MASK);
        let mut rest = kept.into_iter();
        if let Some(first) = rest.next() {
            self.write_one(first);
            word |= INLINE;
            let mut head: *mut Node<C> = ptr::null_mut();
            for cb in rest {
                head = new_node(cb, head);
            }
            if !head.is_null() {
                word |= encode(head as usize);
            }
        }
        self.state.store(word, Ordering::Release);
        removed
    }

    /// How many callbacks a pending future holds; None if it is done.
    pub(crate) fn pending_count(&self) -> Option<usize> {
        let s = self.lock_pending()?;
        let mut n = usize::from(s & INLINE != 0);
        let mut node = decode(s) as *const Node<C>;
        while !node.is_null() {
            n += 1;
            // SAFETY: under BUSY the list belongs to this thread; nodes stay alive.
            node = unsafe { (*node).next };
        }
        self.state.store(s, Ordering::Release);
        Some(n)
    }

    /// Marks that a thread is about to block in `afut_wait`; false if the future is done.
    pub(crate) fn register_waiter(&self) -> bool {
        let mut s = self.load();
        let mut round = 0;
        loop {
            if s & DONE != 0 {
                return false;
            }
            if s & WAITERS != 0 {
                return true;
            }
            if s & BUSY != 0 {
                backoff(&mut round);
                s = self.reload();
                continue;
            }
            match self.state.compare_exchange_weak(s, s | WAITERS, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }

    /// Pending -> done: one compare-and-swap that also takes the callback list. `Err(())` if
    /// the future is already done. `queue`: a loop will run the callbacks (they stay in the
    /// slot for its dispatch, if there are any).
    pub(crate) fn begin_complete(&self, queue: bool) -> Result<Begun, ()> {
        let mut s = self.load();
        let mut round = 0;
        loop {
            if s & DONE != 0 {
                return Err(());
            }
            if s & BUSY != 0 {
                backoff(&mut round);
                s = self.reload();
                continue;
            }
            let queued = queue && s & (INLINE | PTR_MASK) != 0;
            let new = DONE | BUSY | if queued { QUEUED } else { 0 };
            match self.state.compare_exchange_weak(s, new, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => return Ok(Begun { prev: s, queued }),
                Err(now) => s = now,
            }
        }
    }

    /// Ends a won completion once the outcome is written: `kind` (0-3) and whether it is an
    /// exception nobody has seen yet go into the word.
    pub(crate) fn finish(&self, begun: Begun, kind: u8, unretrieved: bool) -> Finished<C> {
        let s = begun.prev;
        let mut word = DONE | ((kind as u64) << KIND_SHIFT) & KIND_MASK | if unretrieved { UNRETRIEVED } else { 0 };
        if !begun.queued {
            let callbacks = self.take_pending_callbacks(s);
            self.state.store(word, Ordering::Release);
            return Finished::Now(callbacks);
        }
        word |= QUEUED;
        let list = decode(s) as *mut Node<C>;
        if list.is_null() {
            // One callback: it stays where it is.
            word |= INLINE;
        } else {
            // Two or more: one chain in registration order, the inline one first (an
            // allocation, on this less common path).
            let mut chain = reverse(list);
            if s & INLINE != 0 {
                chain = new_node(self.read_one(), chain);
            }
            // SAFETY: the slot is this thread's (BUSY); a chain pointer replaces the moved-out
            // callback.
            self.slot.with_mut(|slot| unsafe { ptr::write(slot, Slot { chain }) });
            word |= CHAIN;
        }
        Finished::Queue(word)
    }

    /// Publishes a queued completion's word (clearing BUSY), with `next` as its queue link.
    pub(crate) fn publish(&self, word: u64, next: Link) {
        self.state.store(word | encode_link(next), Ordering::Release);
    }

    /// Changes the queue link of a published future from `old` to `new`.
    pub(crate) fn relink(&self, old: Link, new: Link) {
        self.state.fetch_xor(encode_link(old) ^ encode_link(new), Ordering::AcqRel);
    }

    /// The queue link of a published, queued future.
    pub(crate) fn link(&self) -> Link {
        let s = self.load();
        let addr = decode(s) as u64;
        if addr == 0 {
            0
        } else if s & NEXT_BOXED != 0 {
            addr | LINK_BOXED
        } else {
            addr
        }
    }

    /// The dispatch takes the callbacks waiting in the slot (once).
    pub(crate) fn take_dispatch(&self) -> Callbacks<C> {
        let s = self.load();
        if s & INLINE != 0 {
            Callbacks::new(Some(self.read_one()), ptr::null_mut())
        } else if s & CHAIN != 0 {
            Callbacks::new(None, self.read_chain())
        } else {
            Callbacks::none()
        }
    }

    /// True if the completion left the callbacks for a loop's dispatch (the future went into
    /// its loop's queue); stays true once set.
    pub(crate) fn is_queued(&self) -> bool {
        self.load() & QUEUED != 0
    }

    /// True once the completion's compare-and-swap won (the outcome may still be being written).
    pub(crate) fn is_done(&self) -> bool {
        self.load() & DONE != 0
    }

    /// The published word of a done future, waiting out a completion still writing its
    /// outcome; None while pending.
    #[inline]
    pub(crate) fn done_state(&self) -> Option<u64> {
        let mut s = self.load();
        let mut round = 0;
        loop {
            if s & DONE == 0 {
                return None;
            }
            if s & BUSY == 0 {
                return Some(s);
            }
            #[cfg(all(test, loom))]
            assert!(round < 90, "done_state spinning on {s:#x}");
            backoff(&mut round);
            s = self.reload();
        }
    }

    /// The outcome kind of a published word.
    pub(crate) fn kind(word: u64) -> u8 {
        ((word & KIND_MASK) >> KIND_SHIFT) as u8
    }

    /// True if a published word carries an exception nobody has seen.
    pub(crate) fn unretrieved(word: u64) -> bool {
        word & UNRETRIEVED != 0
    }

    /// Marks a done future's exception as seen (asyncio clears `__log_traceback`).
    pub(crate) fn set_retrieved(&self) {
        if self.load() & UNRETRIEVED != 0 {
            self.state.fetch_and(!UNRETRIEVED, Ordering::AcqRel);
        }
    }

    /// Takes the callbacks of a pending future that is being destroyed (no other reference).
    pub(crate) fn take_for_drop(&self) -> Callbacks<C> {
        let s = self.load();
        if s & DONE != 0 {
            // A done future's callbacks were taken by its completion or its dispatch.
            return Callbacks::none();
        }
        self.state.store(s & !(INLINE | PTR_MASK), Ordering::Relaxed);
        self.take_pending_callbacks(s)
    }
}
