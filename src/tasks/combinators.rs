//! Combinators: `gather`, `wait_for`, `shield`, `wait` and `as_completed` (SEMANTICS.md G1-G6,
//! WF1-WF2, S1, W1-W4).
//!
//! Each returns a future of the loop; none needs a task. The done-callbacks on the inputs
//! hold the combinator (so a combinator whose caller dropped it still completes and runs its
//! callbacks, as asyncio's closures keep its outer futures alive), and the combinator holds
//! its inputs strongly (their values and details are lent out through it). The loop's close
//! breaks that cycle for inputs that never complete: each combinator registers with the
//! loop's `watch_close` and detaches from its inputs there. Cancelling a `gather` or a
//! `wait_for` propagates to the inputs at once.

use std::any::Any;
use std::collections::HashMap;
use std::ffi::{CString, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::lock::Mutex;

use crate::abi::*;
use crate::callback::{Callback, Owned};
use crate::futures::done::next_token;
use crate::futures::future::{Behaviour, DoneCb, Exception, ExceptionView, Future, WeakFuture};
use crate::runtime::eventloop::Loop;
use crate::runtime::handles::Handle;
use crate::tasks::chain::ensure_future;

/// The message of the exception a timed-out `wait_for` / `as_completed` slot ends with.
const TIMED_OUT: &std::ffi::CStr = c"timed out";

/// A borrowed `afut_t *` in an array handed to C (the combinator keeps the future alive).
#[repr(transparent)]
#[derive(Clone, Copy)]
pub(crate) struct FuturePtr(pub *mut afut_t);

// SAFETY: a handle of a reference-counted, thread-safe future that the owning combinator keeps
// alive; the library never dereferences it through this type.
unsafe impl Send for FuturePtr {}
// SAFETY: as above; shared access only copies the pointer.
unsafe impl Sync for FuturePtr {}

fn upgrade(w: &WeakFuture) -> Option<Future> {
    w.upgrade()
}

/// Reads a done future's exception as a copy that borrows its detail (the caller keeps the
/// source alive), marking it retrieved. None for a result or a cancellation.
fn borrow_exception(f: &Future) -> Option<Exception> {
    f.copy_exception()
}

fn cancelled_as_exception(f: &Future) -> Exception {
    Exception {
        code: AFUT_ERR_CANCELLED,
        message: f.cancel_message_owned(),
        detail: Owned::borrowed(std::ptr::null_mut()),
    }
}

fn timeout_exception() -> Exception {
    Exception {
        code: AFUT_ERR_TIMEOUT,
        message: Some(TIMED_OUT.to_owned()),
        detail: Owned::borrowed(std::ptr::null_mut()),
    }
}

/// Deduplicates the inputs (asyncio's `set()` / gather's one-child-per-object) and binds each
/// to the loop with `ensure_future`. Returns the unique futures and, per input, its index.
fn unique_inputs(event_loop: &Loop, futs: &[Future]) -> (Vec<Future>, Vec<usize>) {
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut unique = Vec::new();
    let mut index = Vec::with_capacity(futs.len());
    for f in futs {
        let key = f.as_ptr() as usize;
        let i = *seen.entry(key).or_insert_with(|| {
            unique.push(ensure_future(event_loop, f));
            unique.len() - 1
        });
        index.push(i);
    }
    (unique, index)
}

// ------------------------------------------------------------------------------------------
// gather

struct Gather {
    children: Vec<Future>,
    /// The token of the done-callback registered on every child.
    token: u64,
    /// One entry per argument, in argument order: the result value of the gather.
    slots: Box<[FuturePtr]>,
    return_exceptions: bool,
    remaining: Mutex<usize>,
}

impl Behaviour for Gather {
    /// Improvement over asyncio (gh-85071): the gather ends CANCELLED at once, with the
    /// message, and every child is cancelled.
    fn cancel(&self, fut: &Future, msg: Option<CString>) -> bool {
        if fut.is_done() {
            // asyncio's _GatheringFuture.cancel returns False for a done gather before
            // Future.cancel could clear the never-retrieved mark: its exception stays
            // reportable.
            return false;
        }
        for c in &self.children {
            c.cancel_propagated(msg.clone(), None);
        }
        // A child task awaiting this gather may have cancelled it already (through its
        // awaited future): that still counts as this call's doing.
        fut.cancel_plain(msg) || fut.is_cancelled()
    }

    /// A pending gather's children hold it (asyncio's children's callbacks keep the outer
    /// future alive until it completes); once the loop is closed nothing can complete them,
    /// so let go of it.
    fn loop_closed(&self, _fut: &Future) {
        for c in &self.children {
            c.remove_token(self.token);
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `afut_gather`.
pub(crate) fn gather(event_loop: &Loop, futs: &[Future], return_exceptions: bool) -> Future {
    let (children, index) = unique_inputs(event_loop, futs);
    let slots: Box<[FuturePtr]> = index.iter().map(|&i| FuturePtr(children[i].as_ptr())).collect();
    let n = children.len();
    let token = next_token();
    let g = Gather { children, token, slots, return_exceptions, remaining: Mutex::new(n) };
    let outer = Future::with_behaviour(Some(event_loop.link()), Some(Box::new(g)));
    let gather = outer.behaviour().and_then(|b| b.as_any().downcast_ref::<Gather>()).expect("a gather");
    if n == 0 {
        // G1: already done, with an empty result (NULL).
        let _ = outer.set_result(Owned::borrowed(std::ptr::null_mut()));
        return outer;
    }
    let mut done_now = Vec::new();
    let mut waiting = false;
    for child in &gather.children {
        if child.is_done() {
            done_now.push(child.clone());
            continue;
        }
        // The child holds the gather: a gather whose caller dropped it still completes and
        // runs its callbacks (asyncio keeps it alive the same way).
        let keep = outer.clone();
        let cb = DoneCb::rust(token, move |c: &Future| gather_child_done(&keep, c));
        waiting = true;
        if let Err((_, cb)) = child.add_done_callback(cb) {
            // Done meanwhile and its loop closed: process it here.
            drop(cb);
            done_now.push(child.clone());
        }
    }
    if waiting {
        event_loop.watch_close(&outer);
    }
    // G6: children already done are processed now, so the gather may be done on return.
    for child in done_now {
        gather_child_done(&outer, &child);
    }
    outer
}

/// asyncio gather's `_done_callback`.
fn gather_child_done(outer: &Future, child: &Future) {
    let Some(g) = outer.behaviour().and_then(|b| b.as_any().downcast_ref::<Gather>()) else { return };
    if outer.is_done() {
        // G3: a later child's exception is marked retrieved, not logged.
        if !child.is_cancelled() {
            let _ = child.exception();
        }
        return;
    }
    if !g.return_exceptions {
        if child.is_cancelled() {
            // G3: FINISHED with a CancelledError exception carrying the child's message.
            let _ = outer.set_exception(cancelled_as_exception(child));
            return;
        }
        if let Some(e) = borrow_exception(child) {
            let _ = outer.set_exception(e);
            return;
        }
    }
    let last = {
        let mut r = g.remaining.lock();
        *r -= 1;
        *r == 0
    };
    if last {
        if g.return_exceptions {
            // G4: the exceptions are part of the result, so they count as retrieved, but only
            // now that the gather completes (as asyncio reads them when it builds the result):
            // a gather dropped or cancelled before that leaves them to be reported.
            for c in g.children.iter().filter(|c| !c.is_cancelled()) {
                let _ = c.exception();
            }
        }
        let _ = outer.set_result(Owned::borrowed(g.slots.as_ptr() as *mut c_void));
    }
}

/// `afut_gather_child`: the future at `index` (borrowed from the gather), NULL if `fut` is not
/// a gather or `index` is out of range.
pub(crate) fn gather_child(fut: &Future, index: usize) -> Option<*mut afut_t> {
    let g = fut.behaviour()?.as_any().downcast_ref::<Gather>()?;
    g.slots.get(index).map(|p| p.0)
}

// ------------------------------------------------------------------------------------------
// wait_for

struct WaitFor {
    event_loop: Loop,
    inner: Future,
    /// The token of the done-callback registered on `inner`.
    token: u64,
    timed_out: AtomicBool,
    timer: Mutex<Option<Handle>>,
}

impl WaitFor {
    fn cancel_timer(&self) {
        // Taken out first: the timer's callback is dropped with no lock held.
        let timer = self.timer.lock().take();
        if let Some(h) = timer {
            self.event_loop.cancel(h);
        }
    }
}

impl Drop for WaitFor {
    fn drop(&mut self) {
        self.cancel_timer();
    }
}

impl Behaviour for WaitFor {
    /// Cancelling the wait_for cancels the inner future at once (bpo-23219); the wait_for
    /// itself ends CANCELLED at once.
    fn cancel(&self, fut: &Future, msg: Option<CString>) -> bool {
        if fut.is_done() {
            return fut.cancel_plain(msg);
        }
        self.cancel_timer();
        self.inner.cancel_propagated(msg.clone(), None);
        fut.cancel_plain(msg)
    }

    /// The inner future holds the wait_for while it is pending; a closed loop lets it go.
    fn loop_closed(&self, _fut: &Future) {
        self.inner.remove_token(self.token);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn wait_for_of(f: &Future) -> Option<&WaitFor> {
    f.behaviour()?.as_any().downcast_ref::<WaitFor>()
}

/// `afut_wait_for`. `timeout_s` is not NaN (checked by the caller).
pub(crate) fn wait_for(event_loop: &Loop, fut: &Future, timeout_s: f64) -> Future {
    let inner = ensure_future(event_loop, fut);
    let token = next_token();
    let w = WaitFor {
        event_loop: event_loop.clone(),
        inner: inner.clone(),
        token,
        timed_out: AtomicBool::new(false),
        timer: Mutex::new(None),
    };
    let outer = Future::with_behaviour(Some(event_loop.link()), Some(Box::new(w)));
    // The inner future holds the wait_for, so that one whose caller dropped it still
    // completes and runs its callbacks.
    let keep = outer.clone();
    let on_done = DoneCb::rust(token, move |i: &Future| {
        let outer = keep;
        let Some(w) = wait_for_of(&outer) else { return };
        w.cancel_timer();
        if outer.is_done() {
            if !i.is_cancelled() {
                let _ = i.exception();
            }
            return;
        }
        if w.timed_out.load(Ordering::Acquire) && i.is_cancelled() {
            let _ = outer.set_exception(timeout_exception());
        } else if let Some(e) = i.copy_exception().filter(|e| e.code == AFUT_ERR_CANCELLED) {
            // The inner failed with a CancelledError (a gather whose child was cancelled):
            // asyncio's wait_for awaits it, so that error cancels the wait_for itself, with
            // its message.
            outer.cancel_plain(e.message);
        } else {
            // The result (also one that won the race against the timeout, or a cancellation
            // the inner swallowed), an exception, or a cancellation by someone else.
            outer.mirror(i);
        }
    });
    if let Err((_, cb)) = inner.add_done_callback(on_done) {
        // The loop is closed: nothing will ever run; end the wait_for like its inner.
        drop(cb);
        outer.cancel_plain(None);
        return outer;
    }
    event_loop.watch_close(&outer);
    let w = wait_for_of(&outer).expect("a wait_for");
    if timeout_s == f64::INFINITY {
        return outer; // WF1: a plain await
    }
    if timeout_s <= 0.0 {
        // WF1: done -> its result (next iteration); else cancel it now and wait for it.
        if !inner.is_done() {
            w.timed_out.store(true, Ordering::Release);
            inner.cancel(None);
        }
        return outer;
    }
    let weak = outer.downgrade();
    let expire = Callback::rust(move || {
        let Some(outer) = upgrade(&weak) else { return };
        let Some(w) = wait_for_of(&outer) else { return };
        w.timer.lock().take();
        // WF2: a result that is already there wins; else cancel and wait until it is done.
        if !outer.is_done() && !w.inner.is_done() {
            w.timed_out.store(true, Ordering::Release);
            w.inner.cancel(None);
        }
    });
    if let Ok(h) = event_loop.schedule(expire, Some(event_loop.time() + timeout_s)) {
        *w.timer.lock() = Some(h);
    }
    outer
}

// ------------------------------------------------------------------------------------------
// shield

/// A shield's outer future: a plain future, plus the link to its inner one. The link is weak:
/// the outer never keeps the inner alive (asyncio's outer holds no reference to it either).
struct Shield {
    inner: WeakFuture,
    /// The token of the done-callback registered on `inner`.
    token: u64,
}

impl Behaviour for Shield {
    /// The inner future holds the outer one while both are pending; a closed loop lets it go.
    fn loop_closed(&self, _fut: &Future) {
        if let Some(inner) = upgrade(&self.inner) {
            inner.remove_token(self.token);
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `afut_shield` (S1), asyncio's `shield`: the outer future follows the inner one, but
/// cancelling the outer leaves the inner running.
pub(crate) fn shield(event_loop: &Loop, fut: &Future) -> Future {
    let inner = ensure_future(event_loop, fut);
    if inner.is_done() {
        return inner; // test_shield_shortcut
    }
    let token = next_token();
    let outer =
        Future::with_behaviour(Some(event_loop.link()), Some(Box::new(Shield { inner: inner.downgrade(), token })));
    // The inner future holds the outer one (asyncio's `_inner_done_callback` closure), so an
    // outer whose caller dropped it still completes and runs its callbacks.
    let keep = outer.clone();
    let copy = DoneCb::rust(token, move |i: &Future| {
        let outer = keep;
        if outer.is_cancelled() {
            if !i.is_cancelled() {
                let _ = i.exception();
            }
        } else if i.is_cancelled() {
            // asyncio cancels the outer without a message of its own.
            outer.cancel_plain(None);
        } else {
            outer.mirror(i);
        }
    });
    if let Err((_, cb)) = inner.add_done_callback(copy) {
        drop(cb);
        return inner;
    }
    event_loop.watch_close(&outer);
    let i = inner.clone();
    let _ = outer.add_done_callback(DoneCb::rust(next_token(), move |_o: &Future| {
        // However the outer ended (cancelled, or completed by its caller), the shield is
        // over: the inner is detached, so that what it ends with is its own business
        // (asyncio's `_outer_done_callback`).
        if !i.is_done() {
            i.remove_token(token);
        }
    }));
    outer
}

// ------------------------------------------------------------------------------------------
// wait

struct WaitSets {
    /// The storage `view` points into.
    _done: Vec<FuturePtr>,
    _pending: Vec<FuturePtr>,
    view: afut_wait_result_t,
}

// SAFETY: the raw pointers in `view` point into `done` / `pending` (owned alongside) and to
// futures the wait keeps alive; they are only read by C through the borrowed result.
unsafe impl Send for WaitSets {}
// SAFETY: as above; never mutated once built.
unsafe impl Sync for WaitSets {}

struct WaitMany {
    event_loop: Loop,
    members: Vec<Future>,
    tokens: Vec<u64>,
    return_when: i32,
    state: Mutex<WaitState>,
}

struct WaitState {
    counter: usize,
    timer: Option<Handle>,
    sets: Option<Box<WaitSets>>,
}

impl WaitMany {
    /// W2's `finally`: cancel the timer, remove the callbacks from every member.
    fn cleanup(&self) {
        // Taken out first: the timer's callback is dropped with no lock held.
        let timer = self.state.lock().timer.take();
        if let Some(h) = timer {
            self.event_loop.cancel(h);
        }
        for (m, t) in self.members.iter().zip(&self.tokens) {
            m.remove_token(*t);
        }
    }
}

impl Behaviour for WaitMany {
    /// Cancelling the wait leaves the members untouched (asyncio: only the waiter is cancelled).
    fn cancel(&self, fut: &Future, msg: Option<CString>) -> bool {
        let cancelled = fut.cancel_plain(msg);
        if cancelled {
            self.cleanup();
        }
        cancelled
    }

    /// The members hold the wait while it is pending; a closed loop lets it go.
    fn loop_closed(&self, _fut: &Future) {
        self.cleanup();
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn wait_many_of(f: &Future) -> Option<&WaitMany> {
    f.behaviour()?.as_any().downcast_ref::<WaitMany>()
}

fn wait_finish(outer: &Future) {
    let Some(w) = wait_many_of(outer) else { return };
    if outer.is_done() {
        return;
    }
    w.cleanup();
    let (mut done, mut pending) = (Vec::new(), Vec::new());
    for m in &w.members {
        if m.is_done() { done.push(FuturePtr(m.as_ptr())) } else { pending.push(FuturePtr(m.as_ptr())) }
    }
    let ptr_of = |v: &Vec<FuturePtr>| if v.is_empty() { std::ptr::null() } else { v.as_ptr() as *const *mut afut_t };
    let view = afut_wait_result_t {
        done: ptr_of(&done),
        n_done: done.len(),
        pending: ptr_of(&pending),
        n_pending: pending.len(),
    };
    let sets = Box::new(WaitSets { _done: done, _pending: pending, view });
    let value = &sets.view as *const afut_wait_result_t as *mut c_void;
    {
        let mut st = w.state.lock();
        if st.sets.is_some() {
            return;
        }
        st.sets = Some(sets);
    }
    let _ = outer.set_result(Owned::borrowed(value));
}

/// The sets of a completed wait (`afut_wait_many_result`).
pub(crate) fn wait_many_result(f: &Future) -> Option<*const afut_wait_result_t> {
    let w = wait_many_of(f)?;
    if f.is_cancelled() {
        return None;
    }
    let st = w.state.lock();
    st.sets.as_ref().map(|s| &s.view as *const afut_wait_result_t)
}

/// `afut_wait_many` (asyncio.wait). Arguments are checked by the caller (W1).
pub(crate) fn wait_many(event_loop: &Loop, futs: &[Future], timeout_s: f64, return_when: i32) -> Future {
    let (members, _) = unique_inputs(event_loop, futs);
    let tokens: Vec<u64> = members.iter().map(|_| next_token()).collect();
    let counter = members.len();
    let w = WaitMany {
        event_loop: event_loop.clone(),
        members,
        tokens,
        return_when,
        state: Mutex::new(WaitState { counter, timer: None, sets: None }),
    };
    let outer = Future::with_behaviour(Some(event_loop.link()), Some(Box::new(w)));
    let w = wait_many_of(&outer).expect("a wait");
    for (m, &token) in w.members.iter().zip(&w.tokens) {
        // The members hold the wait (as asyncio's callbacks hold its waiter), so a wait whose
        // caller dropped it still completes and runs its done-callbacks.
        let keep = outer.clone();
        // W2: even a done member is seen through a callback, so wait takes an iteration.
        let cb = DoneCb::rust(token, move |f: &Future| {
            let outer = keep;
            let Some(w) = wait_many_of(&outer) else { return };
            // Read before the wait's lock is taken (the locks never nest); it marks the
            // exception retrieved even when the counter decides.
            let failed = w.return_when == AFUT_FIRST_EXCEPTION
                && !f.is_cancelled()
                && matches!(f.exception(), Ok(ExceptionView::Exception(_)));
            let finish = {
                let mut st = w.state.lock();
                st.counter = st.counter.saturating_sub(1);
                match w.return_when {
                    AFUT_FIRST_COMPLETED => true,
                    AFUT_FIRST_EXCEPTION => failed || st.counter == 0,
                    _ => st.counter == 0,
                }
            };
            if finish {
                wait_finish(&outer);
            }
        });
        let _ = m.add_done_callback(cb);
    }
    event_loop.watch_close(&outer);
    if timeout_s != f64::INFINITY {
        let weak = outer.downgrade();
        let expire = Callback::rust(move || {
            if let Some(outer) = upgrade(&weak) {
                if let Some(w) = wait_many_of(&outer) {
                    w.state.lock().timer = None;
                }
                wait_finish(&outer); // W4: no TimeoutError, nothing cancelled
            }
        });
        if let Ok(h) = event_loop.schedule(expire, Some(event_loop.time() + timeout_s.max(0.0))) {
            w.state.lock().timer = Some(h);
        }
    }
    outer
}

// ------------------------------------------------------------------------------------------
// as_completed

struct AsCompleted {
    event_loop: Loop,
    slots: Vec<Future>,
    /// The inputs (kept alive: a wrapper of a loop-less input has no other owner) and the
    /// token of the callback on each. The callbacks hold this state: the cycle ends when
    /// each input is done or on timeout.
    members: Vec<(Future, u64)>,
    state: Mutex<AsCompletedState>,
}

struct AsCompletedState {
    timer: Option<Handle>,
    remaining: usize,
}

/// The behaviour of every `as_completed` slot: the loop's close detaches the state from the
/// inputs (their callbacks hold the state, and the state holds them: an input that never
/// completes would otherwise keep them all alive). The state holds the slots, so the one
/// registered with `watch_close` lives as long as that cycle does.
struct AsCompletedSlot {
    state: std::sync::Weak<AsCompleted>,
}

impl Behaviour for AsCompletedSlot {
    fn loop_closed(&self, _fut: &Future) {
        if let Some(state) = self.state.upgrade() {
            state.detach();
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl AsCompleted {
    /// Removes the callback from every input (each holds the state); they are dropped here,
    /// with no lock held.
    fn detach(&self) {
        for (m, token) in &self.members {
            m.remove_token(*token);
        }
    }

    /// The member that completed goes to the first slot nobody has completed or cancelled.
    fn member_done(&self, member: &Future) {
        let last = {
            let mut st = self.state.lock();
            st.remaining = st.remaining.saturating_sub(1);
            st.remaining == 0
        };
        if let Some(slot) = self.slots.iter().find(|s| !s.is_done()) {
            slot.mirror(member);
        }
        if last {
            // Taken out first: the timer's callback is dropped with no lock held.
            let timer = self.state.lock().timer.take();
            if let Some(h) = timer {
                self.event_loop.cancel(h);
            }
        }
    }

    fn expire(&self) {
        self.state.lock().timer = None;
        self.detach();
        for s in &self.slots {
            let _ = s.set_exception(timeout_exception());
        }
    }
}

/// `afut_as_completed`: one new future per unique input; the i-th completes like the i-th
/// input to complete. On timeout the slots still pending fail with `AFUT_ERR_TIMEOUT`.
pub(crate) fn as_completed(event_loop: &Loop, futs: &[Future], timeout_s: f64) -> Vec<Future> {
    let (members, _) = unique_inputs(event_loop, futs);
    let state = Arc::new_cyclic(|weak: &std::sync::Weak<AsCompleted>| AsCompleted {
        event_loop: event_loop.clone(),
        slots: members
            .iter()
            .map(|_| {
                Future::with_behaviour(Some(event_loop.link()), Some(Box::new(AsCompletedSlot { state: weak.clone() })))
            })
            .collect(),
        members: members.iter().map(|m| (m.clone(), next_token())).collect(),
        state: Mutex::new(AsCompletedState { timer: None, remaining: members.len() }),
    });
    let slots = state.slots.clone();
    for (m, (_, token)) in members.iter().zip(&state.members) {
        let s = state.clone();
        let _ = m.add_done_callback(DoneCb::rust(*token, move |f: &Future| s.member_done(f)));
    }
    if let Some(first) = slots.first() {
        event_loop.watch_close(first);
    }
    if timeout_s != f64::INFINITY && !members.is_empty() {
        let s = state.clone();
        if let Ok(h) =
            event_loop.schedule(Callback::rust(move || s.expire()), Some(event_loop.time() + timeout_s.max(0.0)))
        {
            state.state.lock().timer = Some(h);
        }
    }
    slots
}
