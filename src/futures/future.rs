//! Future: asyncio's `Future` state machine, safe to use from any thread.
//!
//! The state sits behind one mutex that is never held while C code runs. Completion takes the
//! callback list out under the lock (with the new state already set), releases the lock, then
//! hands the callbacks to the loop's ready queue as one contiguous run (SEMANTICS.md R1, F4,
//! F5). A loop-less future (concurrent.futures style) runs them right there instead, in the
//! completing thread.

use std::any::Any;
use std::ffi::{CStr, CString, c_char, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Condvar;

use crate::abi::*;
use crate::callback::Owned;
use crate::clock;
use crate::futures::done::{CallbackList, DoneCallback, HasHandle};
use crate::lock::Mutex;

/// A done-callback of a [`Future`].
pub(crate) type DoneCb = DoneCallback<Future>;
/// The done-callbacks of a [`Future`], in registration order.
pub(crate) type Callbacks = CallbackList<Future>;

/// What a future needs from the event loop it is bound to. The loop (`runtime::eventloop`)
/// implements it; a future holds its loop only through this trait, so this layer knows
/// nothing of the loop's insides.
pub(crate) trait LoopLink: Send + Sync + 'static {
    /// Queues a completed future's callbacks as one contiguous run (SEMANTICS.md F5). On a closed
    /// loop they come back unqueued.
    fn schedule_done(&self, fut: &Future, callbacks: Callbacks) -> Result<(), (afut_status_t, Callbacks)>;
    /// True on the thread currently inside the loop's `run_*` call.
    fn is_running_on_this_thread(&self) -> bool;
    /// Delivers a report to the loop's exception handler (or stderr), with no lock held.
    fn report(&self, message: &CStr, future: Option<&FutureInner>, exception: Option<&afut_exception_t>);
    /// The loop itself, for the layers above that know its type.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// What a task or combinator adds to its future. Attached at creation, consulted by
/// [`Future`] for the public `set_result` / `set_exception` / `cancel`.
pub(crate) trait Behaviour: Send + Sync + 'static {
    /// True for a task (`afut_is_task`, "Task" in reports and describe()).
    fn is_task(&self) -> bool {
        false
    }
    /// `AFUT_OK` if a public `set_result` / `set_exception` may complete the future now,
    /// else the status to refuse it with.
    fn check_complete(&self, _fut: &Future) -> afut_status_t {
        AFUT_OK
    }
    /// The public cancel. The default is the plain Future cancel.
    fn cancel(&self, fut: &Future, msg: Option<CString>) -> bool {
        fut.cancel_plain(msg)
    }
    /// The cancel came back to this future while its own cancel was still being passed on
    /// (a cycle: a task awaiting a task that awaits it). The default is the plain cancel.
    fn cancel_again(&self, fut: &Future, msg: Option<CString>) -> bool {
        fut.cancel_plain(msg)
    }
    /// The future's loop was closed (futures registered with the loop's `watch_close` only).
    fn loop_closed(&self, _fut: &Future) {}
    /// The word `afut_describe` uses for a pending future ("pending" when None).
    fn pending_word(&self) -> Option<&'static str> {
        None
    }
    fn as_any(&self) -> &dyn Any;
}

/// Tags in the first 8 bytes of every future, read by `afut_isfuture`.
pub(crate) const TAG_FUTURE: u64 = 0x2174_7546_7475_6661; // "afutFut!"
/// Set while the never-retrieved report runs: the future may be inspected, not kept.
pub(crate) const TAG_FINALIZING: u64 = 0x2174_7546_6e69_6646; // "FinFut!"

/// An exception as stored by `afut_set_exception`.
pub(crate) struct Exception {
    pub(crate) code: i32,
    pub(crate) message: Option<CString>,
    pub(crate) detail: Owned,
}

impl Exception {
    fn as_c(&self) -> afut_exception_t {
        afut_exception_t {
            code: self.code,
            message: self.message.as_ref().map_or(std::ptr::null(), |m| m.as_ptr()),
            detail: self.detail.ptr(),
        }
    }
}

enum Outcome {
    Pending,
    Result(Owned),
    /// Boxed: exceptions are the rare case, and this keeps the state small. The flag is
    /// asyncio's `__log_traceback`: an exception nobody has looked at yet.
    Exception(Box<Exception>, bool),
    Cancelled(Option<CString>),
    /// Finished with the outcome of another finished future (a `wrap_future` wrapper): its
    /// value or exception is read from there, and this reference keeps it alive. The flag: an
    /// exception nobody has looked at through this future yet.
    Mirrored(Future, bool),
}

struct State {
    outcome: Outcome,
    callbacks: Callbacks,
    /// Created by the first `wait()`, so that futures nobody blocks on do not pay for it.
    waiters: Option<Arc<Condvar>>,
}

impl State {
    /// Marks the exception as seen (asyncio clears `__log_traceback`).
    fn set_retrieved(&mut self) {
        if let Outcome::Exception(_, flag) | Outcome::Mirrored(_, flag) = &mut self.outcome {
            *flag = false;
        }
    }

    /// Marks a freshly set exception as not seen yet.
    fn mark_unretrieved(&mut self) {
        if let Outcome::Exception(_, flag) | Outcome::Mirrored(_, flag) = &mut self.outcome {
            *flag = true;
        }
    }

    fn is_unretrieved(&self) -> bool {
        matches!(self.outcome, Outcome::Exception(_, true) | Outcome::Mirrored(_, true))
    }
}

/// The shared body of a future. `#[repr(C)]` so that the tag is its first 8 bytes.
#[repr(C)]
pub(crate) struct FutureInner {
    tag: AtomicU64,
    state: Mutex<State>,
    event_loop: Option<Arc<dyn LoopLink>>,
    /// What makes this future a task or a combinator (None: a plain future). Boxed twice so
    /// that plain futures pay one word for it.
    behaviour: Option<Box<Box<dyn Behaviour>>>,
}

/// A reference to a future (one count of its reference count).
#[derive(Clone)]
pub(crate) struct Future(pub(crate) Arc<FutureInner>);

/// The outcome as `afut_exception()` reports it.
pub(crate) enum ExceptionView {
    NoException,
    Exception(afut_exception_t),
}

impl Future {
    pub(crate) fn new(event_loop: Option<Arc<dyn LoopLink>>) -> Future {
        Future::with_behaviour(event_loop, None)
    }

    /// A future with its own behaviour (a task, a gather, ...).
    pub(crate) fn with_behaviour(
        event_loop: Option<Arc<dyn LoopLink>>,
        behaviour: Option<Box<dyn Behaviour>>,
    ) -> Future {
        Future(Arc::new(FutureInner {
            tag: AtomicU64::new(TAG_FUTURE),
            state: Mutex::new(State { outcome: Outcome::Pending, callbacks: CallbackList::Empty, waiters: None }),
            event_loop,
            behaviour: behaviour.map(Box::new),
        }))
    }

    /// The handle C sees. The pointer stays valid while this reference lives.
    pub(crate) fn as_ptr(&self) -> *mut afut_t {
        Arc::as_ptr(&self.0) as *mut afut_t
    }

    pub(crate) fn inner(&self) -> &FutureInner {
        &self.0
    }

    pub(crate) fn downgrade(&self) -> std::sync::Weak<FutureInner> {
        Arc::downgrade(&self.0)
    }

    pub(crate) fn same(&self, other: &Future) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub(crate) fn set_result(&self, value: Owned) -> Result<(), (afut_status_t, Owned)> {
        if let Some(s) = self.refused_by_behaviour() {
            return Err((s, value));
        }
        self.complete(Outcome::Result(value), false).map_err(|(s, o)| match o {
            Outcome::Result(v) => (s, v),
            _ => unreachable!(),
        })
    }

    pub(crate) fn set_exception(&self, exc: Exception) -> Result<(), (afut_status_t, Exception)> {
        if let Some(s) = self.refused_by_behaviour() {
            return Err((s, exc));
        }
        self.complete(Outcome::Exception(Box::new(exc), false), true).map_err(|(s, o)| match o {
            Outcome::Exception(e, _) => (s, *e),
            _ => unreachable!(),
        })
    }

    /// asyncio `cancel(msg)`: clears the unretrieved mark whatever happens (F12, B8); true
    /// if this call cancelled a pending future.
    pub(crate) fn cancel(&self, msg: Option<CString>) -> bool {
        match &self.0.behaviour {
            // A behaviour may pass the cancel on to other futures (a task to what it awaits,
            // a gather to its children): see `propagation` for how depth and cycles are kept
            // in bounds.
            Some(b) => {
                propagation::enter(self, |again| if again { b.cancel_again(self, msg) } else { b.cancel(self, msg) })
            }
            None => self.cancel_plain(msg),
        }
    }

    /// Cancels this future on behalf of another future's cancel (a task cancelling what it
    /// awaits, a gather its children). Runs at once, unless the propagation is already very
    /// deep on this thread: then it is queued and run by the outermost cancel before that
    /// returns, so that a chain of any depth needs constant stack. `then` receives what the
    /// cancel returned.
    pub(crate) fn cancel_propagated(&self, msg: Option<CString>, then: Option<propagation::Then>) {
        propagation::propagate(self, msg, then);
    }

    // ----- hooks for tasks and combinators (see Behaviour) -----

    /// The plain Future cancel, bypassing any behaviour.
    pub(crate) fn cancel_plain(&self, msg: Option<CString>) -> bool {
        self.complete(Outcome::Cancelled(msg), false).is_ok()
    }

    /// The behaviour attached at creation, if any.
    pub(crate) fn behaviour(&self) -> Option<&dyn Behaviour> {
        self.0.behaviour.as_deref().map(|b| &**b)
    }

    /// Some(status) if the behaviour refuses a public set_result / set_exception now.
    fn refused_by_behaviour(&self) -> Option<afut_status_t> {
        let status = self.0.behaviour.as_ref().map_or(AFUT_OK, |b| b.check_complete(self));
        (status != AFUT_OK).then_some(status)
    }
    // ----- end of the hooks -----

    /// Sets the outcome of a pending future and schedules its callbacks. `unretrieved`: the
    /// outcome is an exception nobody has seen yet.
    fn complete(&self, outcome: Outcome, unretrieved: bool) -> Result<(), (afut_status_t, Outcome)> {
        let mut st = self.0.state.lock();
        if matches!(outcome, Outcome::Cancelled(_)) {
            st.set_retrieved();
        }
        if !matches!(st.outcome, Outcome::Pending) {
            return Err((AFUT_ERR_INVALID_STATE, outcome));
        }
        // The old outcome is Pending, which owns nothing: forgetting it skips its drop glue.
        std::mem::forget(std::mem::replace(&mut st.outcome, outcome));
        let callbacks = std::mem::take(&mut st.callbacks);
        let waiters = st.waiters.clone();
        // Set last, after the callbacks were taken (F14).
        if unretrieved {
            st.mark_unretrieved();
        }
        drop(st);
        if let Some(cv) = waiters {
            cv.notify_all();
        }
        self.dispatch(callbacks);
        Ok(())
    }

    /// Runs or schedules callbacks of a done future; no lock is held.
    fn dispatch(&self, callbacks: Callbacks) {
        if callbacks.is_empty() {
            return;
        }
        match &self.0.event_loop {
            // A closed loop refuses them: they are dropped here, each userdata freed once.
            Some(l) => drop(l.schedule_done(self, callbacks)),
            None => {
                // A callback may drop the last reference the caller held: keep one of our
                // own until every callback ran.
                let this = self.clone();
                for cb in callbacks {
                    cb.run(&this);
                }
            }
        }
    }

    /// `afut_add_done_callback`: appended while pending; scheduled at once (never inline)
    /// when done; run at once in this thread for a done loop-less future.
    pub(crate) fn add_done_callback(&self, cb: DoneCb) -> Result<(), (afut_status_t, DoneCb)> {
        let mut st = self.0.state.lock();
        if matches!(st.outcome, Outcome::Pending) {
            st.callbacks.push(cb);
            return Ok(());
        }
        drop(st);
        match &self.0.event_loop {
            Some(l) => l
                .schedule_done(self, CallbackList::One(cb))
                .map_err(|(s, list)| (s, list.into_iter().next().expect("the refused callback"))),
            None => {
                let this = self.clone();
                cb.run(&this);
                Ok(())
            }
        }
    }

    /// Removes every pending `(func, userdata)` entry; their userdata is freed after the lock
    /// is released. Returns how many.
    pub(crate) fn remove_done_callback(&self, func: DoneFn, userdata: *mut c_void) -> usize {
        let removed = self.remove_where(|cb| cb.matches(func, userdata));
        let n = removed.len();
        drop(removed);
        n
    }

    /// Removes a library-internal callback by its token.
    pub(crate) fn remove_token(&self, token: u64) -> bool {
        !self.remove_where(|cb| cb.has_token(token)).is_empty()
    }

    fn remove_where(&self, pred: impl Fn(&DoneCb) -> bool) -> Vec<DoneCb> {
        self.0.state.lock().callbacks.extract(pred)
    }

    /// `afut_result`: the value (borrowed from the future), or the status of its outcome.
    pub(crate) fn result(&self) -> Result<*mut c_void, afut_status_t> {
        let mut st = self.0.state.lock();
        match &st.outcome {
            Outcome::Pending => Err(AFUT_ERR_INVALID_STATE),
            Outcome::Result(v) => Ok(v.ptr()),
            Outcome::Exception(..) => {
                st.set_retrieved();
                Err(AFUT_ERR_EXCEPTION)
            }
            Outcome::Cancelled(_) => Err(AFUT_ERR_CANCELLED),
            Outcome::Mirrored(source, _) => {
                let source = source.clone();
                st.set_retrieved();
                drop(st);
                source.result()
            }
        }
    }

    /// `afut_exception`: the exception (borrowed), none for a result, or the status.
    pub(crate) fn exception(&self) -> Result<ExceptionView, afut_status_t> {
        let mut st = self.0.state.lock();
        match &st.outcome {
            Outcome::Pending => Err(AFUT_ERR_INVALID_STATE),
            Outcome::Result(_) => Ok(ExceptionView::NoException),
            Outcome::Exception(e, _) => {
                let view = ExceptionView::Exception(e.as_c());
                st.set_retrieved();
                Ok(view)
            }
            Outcome::Cancelled(_) => Err(AFUT_ERR_CANCELLED),
            Outcome::Mirrored(source, _) => {
                let source = source.clone();
                st.set_retrieved();
                drop(st);
                source.exception()
            }
        }
    }

    /// The loop this future is bound to (None: loop-less).
    pub(crate) fn event_loop(&self) -> Option<&Arc<dyn LoopLink>> {
        self.0.event_loop.as_ref()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.0.is_done()
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        matches!(self.0.state.lock().outcome, Outcome::Cancelled(_))
    }

    /// The cancel message (borrowed; stable for the future's life), NULL if none.
    pub(crate) fn cancel_message(&self) -> *const c_char {
        match &self.0.state.lock().outcome {
            Outcome::Cancelled(Some(m)) => m.as_ptr(),
            _ => std::ptr::null(),
        }
    }

    /// A done future's exception as a copy (message copied, detail borrowed: the caller keeps
    /// this future alive while it uses it), marking it retrieved. None for a result, a
    /// cancellation or a pending future.
    pub(crate) fn copy_exception(&self) -> Option<Exception> {
        let mut st = self.0.state.lock();
        match &st.outcome {
            Outcome::Exception(e, _) => {
                let copy =
                    Exception { code: e.code, message: e.message.clone(), detail: Owned::borrowed(e.detail.ptr()) };
                st.set_retrieved();
                Some(copy)
            }
            Outcome::Mirrored(source, _) => {
                let source = source.clone();
                st.set_retrieved();
                drop(st);
                source.copy_exception()
            }
            _ => None,
        }
    }

    /// An owned copy of the cancel message (None if not cancelled or cancelled without one).
    pub(crate) fn cancel_message_owned(&self) -> Option<CString> {
        match &self.0.state.lock().outcome {
            Outcome::Cancelled(m) => m.clone(),
            _ => None,
        }
    }

    /// Gives this (pending) future the outcome of the finished `source` (the wrapper side of
    /// `wrap_future`): a cancellation is copied, message included; a result or an exception is
    /// read from `source`, which this future keeps alive, so the value and detail are borrowed
    /// from it. Nothing happens if this future is already done (asyncio
    /// `_copy_future_state`, F21).
    pub(crate) fn mirror(&self, source: &Future) {
        let (copied, exception) = {
            let mut st = source.0.state.lock();
            match &st.outcome {
                Outcome::Pending => return,
                Outcome::Cancelled(m) => (Outcome::Cancelled(m.clone()), false),
                Outcome::Result(_) => (Outcome::Mirrored(source.clone(), false), false),
                Outcome::Exception(..) => {
                    // The wrapper now carries the exception and reports it if nobody reads
                    // it; the source's copy counts as seen.
                    st.set_retrieved();
                    (Outcome::Mirrored(source.clone(), false), true)
                }
                Outcome::Mirrored(root, _) => {
                    // Point at the future that holds the outcome, not at the wrapper: a chain
                    // of wrappers then reads and frees its outcome in constant time and stack,
                    // whatever its length.
                    // The root is read after the source's lock is released (locks never nest).
                    let root = root.clone();
                    st.set_retrieved();
                    drop(st);
                    let exception = root.holds_exception();
                    (Outcome::Mirrored(root, false), exception)
                }
            }
        };
        let _ = self.complete(copied, exception);
    }

    /// True if the future finished with an exception (without marking it retrieved).
    fn holds_exception(&self) -> bool {
        let root = match &self.0.state.lock().outcome {
            Outcome::Exception(..) => return true,
            Outcome::Mirrored(root, _) => root.clone(),
            _ => return false,
        };
        root.holds_exception()
    }

    /// `afut_wait`: blocks until done or `timeout_s` passes.
    pub(crate) fn wait(&self, timeout_s: f64) -> afut_status_t {
        if self.0.event_loop.as_ref().is_some_and(|l| l.is_running_on_this_thread()) {
            return AFUT_ERR_WRONG_THREAD;
        }
        let deadline = if timeout_s.is_nan() {
            return AFUT_ERR_INVALID_ARGUMENT;
        } else if timeout_s == f64::INFINITY {
            None
        } else {
            // A negative timeout acts as 0; a deadline too far to represent (1e19 s, DBL_MAX)
            // is "forever", never "now".
            clock::instant_of(clock::now() + timeout_s.max(0.0))
        };
        let mut st = self.0.state.lock();
        loop {
            if !matches!(st.outcome, Outcome::Pending) {
                return AFUT_OK;
            }
            match deadline {
                Some(d) if Instant::now() >= d => return AFUT_ERR_TIMEOUT,
                _ => {}
            }
            let cv = st.waiters.get_or_insert_with(|| Arc::new(Condvar::new())).clone();
            match deadline {
                None => cv.wait(st.raw()),
                Some(d) => {
                    cv.wait_until(st.raw(), d);
                }
            }
        }
    }

    pub(crate) fn describe(&self) -> String {
        self.0.describe()
    }
}

impl FutureInner {
    /// "Task" for a task, "Future" otherwise (describe and reports).
    fn kind_word(&self) -> &'static str {
        if self.behaviour.as_ref().is_some_and(|b| b.is_task()) { "Task" } else { "Future" }
    }

    pub(crate) fn tag(&self) -> u64 {
        self.tag.load(Ordering::Acquire)
    }

    pub(crate) fn is_done(&self) -> bool {
        !matches!(self.state.lock().outcome, Outcome::Pending)
    }

    /// asyncio-style repr: `<Future pending cb=[2]>`, `<Future finished result=0x1f2e>`, ...
    pub(crate) fn describe(&self) -> String {
        // Asked before taking the state lock: a behaviour takes its own lock, and locks
        // never nest.
        let pending = self.behaviour.as_ref().and_then(|b| b.pending_word()).unwrap_or("pending");
        let st = self.state.lock();
        let body = match &st.outcome {
            Outcome::Pending if st.callbacks.is_empty() => pending.to_string(),
            Outcome::Pending => format!("{pending} cb=[{}]", st.callbacks.len()),
            Outcome::Cancelled(_) => "cancelled".to_string(),
            Outcome::Result(v) if v.ptr().is_null() => "finished result=NULL".to_string(),
            Outcome::Result(v) => format!("finished result={:#x}", v.ptr() as usize),
            Outcome::Exception(e, _) => match &e.message {
                Some(m) => format!("finished exception=code {}: {}", e.code, m.to_string_lossy()),
                None => format!("finished exception=code {}", e.code),
            },
            Outcome::Mirrored(source, _) => {
                let source = source.clone();
                drop(st);
                let text = source.describe();
                let body = text.split_once(' ').map_or("finished", |(_, b)| b.trim_end_matches('>'));
                return format!("<{} {body}>", self.kind_word());
            }
        };
        format!("<{} {body}>", self.kind_word())
    }
}

impl Drop for FutureInner {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        if st.is_unretrieved() {
            // Clear first: nothing the handler does can make this report twice (F15 [C]).
            st.set_retrieved();
            let exc = match &st.outcome {
                Outcome::Exception(e, _) => Some(e.as_c()),
                Outcome::Mirrored(source, _) => match source.exception() {
                    Ok(ExceptionView::Exception(e)) => Some(e),
                    _ => None,
                },
                _ => None,
            };
            if let (Some(l), Some(exc)) = (&self.event_loop, exc) {
                let l = l.clone();
                // The handler may inspect the future but not keep it (B7): afut_ref and
                // every call that would take a new reference refuse a finalizing future.
                self.tag.store(TAG_FINALIZING, Ordering::Release);
                let this: &FutureInner = self;
                let msg = if self.kind_word() == "Task" {
                    c"Task exception was never retrieved"
                } else {
                    c"Future exception was never retrieved"
                };
                l.report(msg, Some(this), Some(&exc));
            }
        }
        self.tag.store(0, Ordering::Release);
        // What may own other futures (a behaviour's inputs, a mirrored source, callbacks that
        // capture futures or whose userdata_free releases some) is released through
        // `propagation::release`, which keeps the stack flat however deep the structure is.
        // The rest drops with the fields: value_free / detail_free run then.
        let st = self.state.get_mut();
        if self.behaviour.is_some() || !st.callbacks.is_empty() || matches!(st.outcome, Outcome::Mirrored(..)) {
            let outcome = match st.outcome {
                Outcome::Mirrored(..) => std::mem::replace(&mut st.outcome, Outcome::Pending),
                _ => Outcome::Pending,
            };
            propagation::release(propagation::Remains {
                _outcome: outcome,
                _callbacks: std::mem::take(&mut st.callbacks),
                _behaviour: self.behaviour.take(),
            });
        }
    }
}

/// Keeps cancels and frees that travel through chains of futures in bounds: constant stack
/// at any depth, and an end to cycles.
///
/// A cancel may propagate (a task cancels what it awaits, a gather its children, ...) and a
/// free may release other futures (a gather its children, a task what it awaits, a wrapper
/// the future it mirrors). Done by plain recursion, a chain 1e5 deep overflows any thread's
/// stack. So both recurse only up to [`DEPTH_LIMIT`] levels on a thread, which keeps asyncio's
/// depth-first order for every structure of ordinary depth; deeper work is queued and run by
/// the outermost call on that thread, before it returns.
///
/// A cancel that comes back to a future whose own cancel is still under way on this thread
/// went round a cycle (task A awaits B, B awaits A): that future's behaviour then gets
/// `cancel_again`, which ends the cycle instead of going round it forever (asyncio itself
/// raises RecursionError there).
mod propagation {
    use std::cell::{Cell, RefCell};
    use std::collections::{HashSet, VecDeque};
    use std::ffi::CString;

    use super::{Behaviour, Callbacks, Future, Outcome};

    /// How deep cancels and frees recurse on one thread before they are queued.
    const DEPTH_LIMIT: u32 = 64;

    /// What runs after a propagated cancel, with its return value.
    pub(crate) type Then = Box<dyn FnOnce(bool) + Send>;

    /// The fields of a freed future that may own other futures.
    pub(crate) struct Remains {
        pub(crate) _outcome: Outcome,
        pub(crate) _callbacks: Callbacks,
        pub(crate) _behaviour: Option<Box<Box<dyn Behaviour>>>,
    }

    struct Deferred {
        target: Future,
        msg: Option<CString>,
        then: Option<Then>,
    }

    thread_local! {
        static CANCEL_DEPTH: Cell<u32> = const { Cell::new(0) };
        /// The futures whose cancel is under way on this thread, outermost first.
        static CANCELLING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
        /// Every future cancelled since the outermost cancel began (only while it runs).
        static ROUND: RefCell<Option<HashSet<usize>>> = const { RefCell::new(None) };
        /// True while the outermost cancel runs queued propagations.
        static DRAINING: Cell<bool> = const { Cell::new(false) };
        static CANCELS: RefCell<VecDeque<Deferred>> = const { RefCell::new(VecDeque::new()) };
        static FREE_DEPTH: Cell<u32> = const { Cell::new(0) };
        static FREES: RefCell<Vec<Remains>> = const { RefCell::new(Vec::new()) };
    }

    /// Runs `cancel(again)` for `fut`, `again` being true when `fut`'s cancel is already under
    /// way on this thread (a cycle). The outermost call also runs every queued propagation.
    pub(super) fn enter(fut: &Future, cancel: impl FnOnce(bool) -> bool) -> bool {
        let key = fut.as_ptr() as usize;
        // Within the depth limit, "again" means exactly "an ancestor in this propagation", so
        // structures of ordinary depth (diamonds included) behave as asyncio's recursion does.
        // Queued propagations cannot see their ancestors: there a future already cancelled in
        // this round counts as met again, so that even a cycle longer than the limit ends.
        let again = CANCELLING.with(|c| c.borrow().contains(&key))
            || (DRAINING.get() && ROUND.with(|r| r.borrow().as_ref().is_some_and(|set| set.contains(&key))));
        let depth = CANCEL_DEPTH.get();
        if depth == 0 {
            ROUND.with(|r| *r.borrow_mut() = Some(HashSet::new()));
        }
        ROUND.with(|r| {
            if let Some(set) = r.borrow_mut().as_mut() {
                set.insert(key);
            }
        });
        CANCEL_DEPTH.set(depth + 1);
        CANCELLING.with(|c| c.borrow_mut().push(key));
        let result = cancel(again);
        CANCELLING.with(|c| c.borrow_mut().pop());
        if depth == 0 {
            // The outermost cancel: run what was queued, each from a shallow stack again.
            DRAINING.set(true);
            CANCEL_DEPTH.set(1);
            while let Some(d) = CANCELS.with(|q| q.borrow_mut().pop_front()) {
                let r = d.target.cancel(d.msg);
                if let Some(then) = d.then {
                    then(r);
                }
            }
            DRAINING.set(false);
            ROUND.with(|r| r.borrow_mut().take());
        }
        CANCEL_DEPTH.set(depth);
        result
    }

    pub(super) fn propagate(target: &Future, msg: Option<CString>, then: Option<Then>) {
        if CANCEL_DEPTH.get() >= DEPTH_LIMIT {
            CANCELS.with(|q| q.borrow_mut().push_back(Deferred { target: target.clone(), msg, then }));
            return;
        }
        let r = target.cancel(msg);
        if let Some(then) = then {
            then(r);
        }
    }

    /// Drops what a freed future owned, queueing it when frees are already deep on this
    /// thread; the outermost free drains the queue.
    pub(super) fn release(remains: Remains) {
        let depth = FREE_DEPTH.get();
        if depth >= DEPTH_LIMIT {
            FREES.with(|q| q.borrow_mut().push(remains));
            return;
        }
        FREE_DEPTH.set(depth + 1);
        drop(remains);
        if depth == 0 {
            while let Some(r) = FREES.with(|q| q.borrow_mut().pop()) {
                drop(r);
            }
        }
        FREE_DEPTH.set(depth);
    }
}

/// Makes an owned copy of a C message (NULL stays None).
pub(crate) fn copy_message(msg: Option<&CStr>) -> Option<CString> {
    msg.map(CStr::to_owned)
}

impl HasHandle for Future {
    fn handle(&self) -> *mut afut_t {
        self.as_ptr()
    }
}

#[cfg(test)]
mod tests {
    //! The state machine without an event loop: a [`FakeLoop`] stands in for the runtime and
    //! records what a future hands it. No test here makes a system call (Miri runs them all).

    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    /// A pending future with one done-callback is one allocation of at most 128 bytes from
    /// malloc's point of view (its request, plus malloc's 8-byte header, rounded to 16):
    /// the Arc's two counts plus `FutureInner` must stay within 120 bytes.
    #[test]
    fn a_future_fits_in_one_128_byte_malloc_chunk() {
        let request = std::mem::size_of::<FutureInner>() + 2 * std::mem::size_of::<usize>();
        assert!(request <= 120, "FutureInner grew: the Arc allocation asks for {request} bytes");
    }

    // ----- test doubles -----

    /// A loop that queues what `schedule_done` gets (for [`FakeLoop::run`] to run later) and
    /// records each call and each report.
    #[derive(Default)]
    struct FakeLoop {
        closed: AtomicBool,
        running_here: AtomicBool,
        /// The number of callbacks of each `schedule_done` call, in order.
        calls: Mutex<Vec<usize>>,
        queue: Mutex<Vec<(Future, DoneCb)>>,
        /// (message, exception code, the future's tag during the report).
        reports: Mutex<Vec<(String, i32, u64)>>,
    }

    impl FakeLoop {
        fn new() -> Arc<FakeLoop> {
            Arc::new(FakeLoop::default())
        }

        fn link(self: &Arc<Self>) -> Option<Arc<dyn LoopLink>> {
            Some(self.clone())
        }

        /// Runs the queued callbacks, in order, as a loop iteration would.
        fn run(&self) -> usize {
            let batch = std::mem::take(&mut *self.queue.lock());
            let n = batch.len();
            for (fut, cb) in batch {
                cb.run(&fut);
            }
            n
        }
    }

    impl LoopLink for FakeLoop {
        fn schedule_done(&self, fut: &Future, callbacks: Callbacks) -> Result<(), (afut_status_t, Callbacks)> {
            if self.closed.load(Ordering::Acquire) {
                return Err((AFUT_ERR_LOOP_CLOSED, callbacks));
            }
            self.calls.lock().push(callbacks.len());
            self.queue.lock().extend(callbacks.into_iter().map(|cb| (fut.clone(), cb)));
            Ok(())
        }

        fn is_running_on_this_thread(&self) -> bool {
            self.running_here.load(Ordering::Acquire)
        }

        fn report(&self, message: &CStr, future: Option<&FutureInner>, exception: Option<&afut_exception_t>) {
            let tag = future.map_or(0, FutureInner::tag);
            let code = exception.map_or(0, |e| e.code);
            self.reports.lock().push((message.to_string_lossy().into_owned(), code, tag));
        }

        fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
            self
        }
    }

    /// A C destructor that counts its calls in the `AtomicUsize` it is given.
    unsafe extern "C" fn count_free(p: *mut c_void) {
        // SAFETY: every test passes a pointer to a live AtomicUsize.
        unsafe { &*(p as *const AtomicUsize) }.fetch_add(1, Ordering::Relaxed);
    }

    /// A C done-callback that counts its calls in the `AtomicUsize` it is given.
    unsafe extern "C" fn count_run(_fut: *mut afut_t, p: *mut c_void) {
        // SAFETY: as for count_free.
        unsafe { &*(p as *const AtomicUsize) }.fetch_add(1, Ordering::Relaxed);
    }

    /// Another C done-callback, so that `(func, userdata)` pairs can differ by function.
    unsafe extern "C" fn count_run_twice(_fut: *mut afut_t, p: *mut c_void) {
        // SAFETY: as for count_free.
        unsafe { &*(p as *const AtomicUsize) }.fetch_add(2, Ordering::Relaxed);
    }

    fn ptr(counter: &AtomicUsize) -> *mut c_void {
        counter as *const AtomicUsize as *mut c_void
    }

    fn counted(counter: &AtomicUsize) -> Owned {
        Owned::new(ptr(counter), Some(count_free))
    }

    fn n(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::Relaxed)
    }

    /// A Rust done-callback that appends `id` to `log`.
    fn logging(id: u32, log: &Arc<Mutex<Vec<u32>>>) -> DoneCb {
        let log = log.clone();
        DoneCb::rust(id as u64, move |_| log.lock().push(id))
    }

    fn exception(code: i32, message: Option<&CStr>, detail: Owned) -> Exception {
        Exception { code, message: copy_message(message), detail }
    }

    // ----- states -----

    #[test]
    fn set_result_completes_once_and_gives_a_second_value_back() {
        let (v1, v2) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let f = Future::new(None);
        assert!(!f.is_done() && !f.is_cancelled());
        assert_eq!(f.result().err(), Some(AFUT_ERR_INVALID_STATE));
        assert_eq!(f.exception().err(), Some(AFUT_ERR_INVALID_STATE));
        assert!(f.set_result(counted(&v1)).is_ok());
        assert!(f.is_done() && !f.is_cancelled());
        assert_eq!(f.result().ok(), Some(ptr(&v1)));
        assert!(matches!(f.exception(), Ok(ExceptionView::NoException)));
        let (status, back) = f.set_result(counted(&v2)).expect_err("a done future refuses a value");
        assert_eq!(status, AFUT_ERR_INVALID_STATE);
        assert_eq!(back.ptr(), ptr(&v2), "the refused value comes back");
        back.disarm();
        let (status, _) = f.set_exception(exception(5, None, Owned::borrowed(std::ptr::null_mut()))).err().unwrap();
        assert_eq!(status, AFUT_ERR_INVALID_STATE);
        assert!(!f.cancel(None), "cancel on a done future is false");
        assert_eq!(f.result().ok(), Some(ptr(&v1)), "the outcome did not change");
        assert_eq!((n(&v1), n(&v2)), (0, 0));
        drop(f);
        assert_eq!((n(&v1), n(&v2)), (1, 0), "the value is freed with the future, once");
    }

    #[test]
    fn cancel_is_final_and_keeps_its_message() {
        let f = Future::new(None);
        assert!(f.cancel(Some(c"bye".to_owned())));
        assert!(f.is_done() && f.is_cancelled());
        assert_eq!(f.cancel_message_owned().as_deref(), Some(c"bye"));
        let borrowed = f.cancel_message();
        assert!(!f.cancel(Some(c"again".to_owned())), "a second cancel is false");
        assert_eq!(f.cancel_message(), borrowed, "the message pointer is stable");
        assert_eq!(f.cancel_message_owned().as_deref(), Some(c"bye"));
        assert_eq!(f.result().err(), Some(AFUT_ERR_CANCELLED));
        assert_eq!(f.exception().err(), Some(AFUT_ERR_CANCELLED));
        assert!(f.copy_exception().is_none());
        let (status, back) = f.set_result(Owned::borrowed(std::ptr::null_mut())).err().unwrap();
        assert_eq!(status, AFUT_ERR_INVALID_STATE);
        back.disarm();
        let g = Future::new(None);
        assert!(g.cancel(None));
        assert!(g.cancel_message().is_null() && g.cancel_message_owned().is_none());
    }

    #[test]
    fn an_exception_is_read_back_with_its_message_and_detail() {
        let detail = AtomicUsize::new(0);
        let f = Future::new(None);
        assert!(f.set_exception(exception(7, Some(c"boom"), counted(&detail))).is_ok());
        assert_eq!(f.result().err(), Some(AFUT_ERR_EXCEPTION));
        let Ok(ExceptionView::Exception(e)) = f.exception() else { panic!("an exception") };
        assert_eq!(e.code, 7);
        // SAFETY: the message is owned by `f`, alive here.
        assert_eq!(unsafe { CStr::from_ptr(e.message) }, c"boom");
        assert_eq!(e.detail, ptr(&detail));
        let copy = f.copy_exception().expect("a copy");
        assert_eq!((copy.code, copy.message.as_deref(), copy.detail.ptr()), (7, Some(c"boom"), ptr(&detail)));
        drop(copy);
        assert_eq!(n(&detail), 0, "the copy borrows the detail");
        drop(f);
        assert_eq!(n(&detail), 1, "the detail is freed with the future, once");
    }

    // ----- callbacks -----

    #[test]
    fn callbacks_go_to_the_loop_as_one_run_in_order_never_inline() {
        let lp = FakeLoop::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let f = Future::new(lp.link());
        for id in 1..=3 {
            assert!(f.add_done_callback(logging(id, &log)).is_ok());
        }
        assert!(lp.calls.lock().is_empty(), "nothing is scheduled while pending");
        assert!(f.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok());
        assert!(log.lock().is_empty(), "no callback runs inside set_result");
        assert_eq!(*lp.calls.lock(), [3], "one schedule_done with the three callbacks");
        assert_eq!(lp.run(), 3);
        assert_eq!(*log.lock(), [1, 2, 3], "registration order");
        // Added once done: scheduled at once, as its own run, still never inline.
        assert!(f.add_done_callback(logging(4, &log)).is_ok());
        assert_eq!(*log.lock(), [1, 2, 3]);
        assert_eq!(*lp.calls.lock(), [3, 1]);
        lp.run();
        assert_eq!(*log.lock(), [1, 2, 3, 4]);
    }

    #[test]
    fn a_closed_loop_refuses_the_callbacks_and_each_userdata_is_freed_unrun() {
        let lp = FakeLoop::new();
        let (runs, frees) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let f = Future::new(lp.link());
        let cb = || DoneCb::c(count_run, Owned::new(ptr(&runs), None));
        assert!(f.add_done_callback(DoneCb::c(count_run, counted(&frees))).is_ok());
        assert!(f.add_done_callback(cb()).is_ok());
        lp.closed.store(true, Ordering::Release);
        assert!(f.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok(), "completing still works");
        assert_eq!((n(&runs), n(&frees)), (0, 1), "dropped unrun, the userdata freed once");
        // Adding to a done future of a closed loop fails: the callback comes back.
        let (status, back) = f.add_done_callback(DoneCb::c(count_run, counted(&frees))).err().unwrap();
        assert_eq!(status, AFUT_ERR_LOOP_CLOSED);
        back.disarm();
        assert_eq!((n(&runs), n(&frees)), (0, 1), "a refused callback's userdata stays the caller's");
    }

    #[test]
    fn a_loopless_future_runs_its_callbacks_in_the_completing_thread_in_order() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let f = Future::new(None);
        assert!(f.add_done_callback(logging(1, &log)).is_ok());
        assert!(f.add_done_callback(logging(2, &log)).is_ok());
        let g = f.clone();
        std::thread::spawn(move || g.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok()).join().unwrap();
        assert_eq!(*log.lock(), [1, 2], "ran inside set_result, on the completing thread");
        assert!(f.add_done_callback(logging(3, &log)).is_ok());
        assert_eq!(*log.lock(), [1, 2, 3], "added once done: runs at once");
    }

    #[test]
    fn remove_done_callback_removes_every_equal_entry_and_frees_each_once() {
        // One value per function, as C passes them: Rust does not promise that two
        // reifications of one function compare equal (Miri makes them differ), C does.
        let (run, run_twice): (DoneFn, DoneFn) = (count_run, count_run_twice);
        // The userdata is the counter the callback bumps (no destructor here; frees below).
        let (a, b) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let f = Future::new(None);
        let entry = |func: DoneFn, data: &AtomicUsize| DoneCb::c(func, Owned::new(ptr(data), None));
        assert!(f.add_done_callback(entry(run, &a)).is_ok());
        assert!(f.add_done_callback(entry(run, &b)).is_ok());
        assert!(f.add_done_callback(entry(run, &a)).is_ok());
        assert!(f.add_done_callback(entry(run_twice, &a)).is_ok());
        assert_eq!(f.remove_done_callback(run, ptr(&a)), 2, "both (count_run, a) entries");
        assert_eq!(f.remove_done_callback(run, ptr(&a)), 0);
        assert!(f.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok());
        assert_eq!((n(&a), n(&b)), (2, 1), "(count_run, b) ran once, (count_run_twice, a) once");
        assert_eq!(f.remove_done_callback(run, ptr(&b)), 0, "nothing to remove once done");
        // Removed entries free their userdata once, at removal.
        let frees = AtomicUsize::new(0);
        let g = Future::new(None);
        assert!(g.add_done_callback(DoneCb::c(run, counted(&frees))).is_ok());
        assert!(g.add_done_callback(DoneCb::c(run, counted(&frees))).is_ok());
        assert_eq!(g.remove_done_callback(run, ptr(&frees)), 2);
        assert_eq!(n(&frees), 2);
        drop(g);
        assert_eq!(n(&frees), 2);
    }

    #[test]
    fn remove_token_removes_only_that_internal_callback() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let f = Future::new(None);
        for id in 1..=3 {
            assert!(f.add_done_callback(logging(id, &log)).is_ok());
        }
        assert!(f.remove_token(2));
        assert!(!f.remove_token(2));
        assert!(f.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok());
        assert_eq!(*log.lock(), [1, 3]);
    }

    #[test]
    fn callbacks_left_on_a_freed_future_free_their_userdata_unrun() {
        let (runs, frees) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let f = Future::new(None);
        assert!(f.add_done_callback(DoneCb::c(count_run, counted(&frees))).is_ok());
        assert!(f.add_done_callback(DoneCb::c(count_run, Owned::new(ptr(&runs), None))).is_ok());
        drop(f);
        assert_eq!((n(&runs), n(&frees)), (0, 1));
    }

    // ----- the unretrieved mark -----

    fn failed(lp: &Arc<FakeLoop>) -> Future {
        let f = Future::new(lp.link());
        assert!(f.set_exception(exception(9, Some(c"lost"), Owned::borrowed(std::ptr::null_mut()))).is_ok());
        f
    }

    #[test]
    fn an_unretrieved_exception_is_reported_once_when_the_last_reference_goes() {
        let lp = FakeLoop::new();
        let f = failed(&lp);
        let second = f.clone();
        drop(f);
        assert!(lp.reports.lock().is_empty(), "not while a reference is left");
        drop(second);
        let reports = lp.reports.lock().clone();
        assert_eq!(reports, [("Future exception was never retrieved".to_string(), 9, TAG_FINALIZING)]);
    }

    #[test]
    fn reading_or_cancelling_counts_as_retrieving() {
        let lp = FakeLoop::new();
        let f = failed(&lp);
        assert_eq!(f.result().err(), Some(AFUT_ERR_EXCEPTION));
        drop(f);
        let f = failed(&lp);
        assert!(f.exception().is_ok());
        drop(f);
        let f = failed(&lp);
        assert!(f.copy_exception().is_some());
        drop(f);
        let f = failed(&lp);
        assert!(!f.cancel(None), "cancel is false on a done future, but clears the mark");
        drop(f);
        assert!(lp.reports.lock().is_empty(), "{:?}", *lp.reports.lock());
        // Neither a result nor a cancellation is ever reported, nor a loop-less future.
        let f = Future::new(lp.link());
        assert!(f.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok());
        drop(f);
        let f = Future::new(lp.link());
        assert!(f.cancel(None));
        drop(f);
        let f = Future::new(None);
        assert!(f.set_exception(exception(3, None, Owned::borrowed(std::ptr::null_mut()))).is_ok());
        drop(f);
        assert!(lp.reports.lock().is_empty());
    }

    #[test]
    fn a_mirror_takes_over_the_exception_and_its_report() {
        let lp = FakeLoop::new();
        let source = Future::new(None);
        assert!(source.set_exception(exception(4, Some(c"deep"), Owned::borrowed(std::ptr::null_mut()))).is_ok());
        let wrapper = Future::new(lp.link());
        wrapper.mirror(&source);
        assert!(wrapper.is_done() && !wrapper.is_cancelled());
        drop(wrapper);
        assert_eq!(lp.reports.lock().len(), 1, "the wrapper reports the unread exception");
        assert_eq!(lp.reports.lock()[0].1, 4);
        // A wrapper of a wrapper reads through both; reading it counts for the chain.
        let value = AtomicUsize::new(0);
        let first = Future::new(None);
        assert!(first.set_result(Owned::new(ptr(&value), None)).is_ok());
        let middle = Future::new(None);
        middle.mirror(&first);
        let last = Future::new(lp.link());
        last.mirror(&middle);
        assert_eq!(last.result().ok(), Some(ptr(&value)), "the value is borrowed from the first");
        assert_eq!(last.describe(), format!("<Future finished result={:#x}>", ptr(&value) as usize));
        // A cancelled source is copied, message included.
        let cancelled = Future::new(None);
        assert!(cancelled.cancel(Some(c"stop".to_owned())));
        let copy = Future::new(None);
        copy.mirror(&cancelled);
        assert_eq!(copy.cancel_message_owned().as_deref(), Some(c"stop"));
        // A pending source, or a done destination, changes nothing.
        let pending = Future::new(None);
        let untouched = Future::new(None);
        untouched.mirror(&pending);
        assert!(!untouched.is_done());
        copy.mirror(&first);
        assert!(copy.is_cancelled());
    }

    // ----- wait -----

    #[test]
    fn wait_with_a_timeout_on_a_loopless_future() {
        let f = Future::new(None);
        assert_eq!(f.wait(f64::NAN), AFUT_ERR_INVALID_ARGUMENT);
        assert_eq!(f.wait(0.0), AFUT_ERR_TIMEOUT, "0 polls");
        assert_eq!(f.wait(-1.0), AFUT_ERR_TIMEOUT, "a negative timeout acts as 0");
        let start = clock::now();
        assert_eq!(f.wait(0.02), AFUT_ERR_TIMEOUT);
        assert!(clock::now() - start >= 0.02, "never times out early");
        let g = f.clone();
        let completer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(10));
            g.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok()
        });
        assert_eq!(f.wait(f64::INFINITY), AFUT_OK, "woken by the completion");
        assert!(completer.join().unwrap());
        assert_eq!(f.wait(0.0), AFUT_OK, "a done future answers at once");
    }

    #[test]
    fn wait_refuses_the_thread_running_the_loop() {
        let lp = FakeLoop::new();
        let f = Future::new(lp.link());
        lp.running_here.store(true, Ordering::Release);
        assert_eq!(f.wait(f64::INFINITY), AFUT_ERR_WRONG_THREAD);
        lp.running_here.store(false, Ordering::Release);
        assert_eq!(f.wait(0.0), AFUT_ERR_TIMEOUT);
    }

    // ----- describe -----

    #[test]
    fn describe_reads_like_asyncio_repr() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let f = Future::new(None);
        assert_eq!(f.describe(), "<Future pending>");
        assert!(f.add_done_callback(logging(1, &log)).is_ok());
        assert!(f.add_done_callback(logging(2, &log)).is_ok());
        assert_eq!(f.describe(), "<Future pending cb=[2]>");
        assert!(f.set_result(Owned::borrowed(std::ptr::null_mut())).is_ok());
        assert_eq!(f.describe(), "<Future finished result=NULL>");
        let f = Future::new(None);
        assert!(f.set_result(Owned::borrowed(std::ptr::without_provenance_mut(0x1f2e))).is_ok());
        assert_eq!(f.describe(), "<Future finished result=0x1f2e>");
        let f = Future::new(None);
        assert!(f.set_exception(exception(5, Some(c"boom"), Owned::borrowed(std::ptr::null_mut()))).is_ok());
        assert_eq!(f.describe(), "<Future finished exception=code 5: boom>");
        let f = Future::new(None);
        assert!(f.set_exception(exception(6, None, Owned::borrowed(std::ptr::null_mut()))).is_ok());
        assert_eq!(f.describe(), "<Future finished exception=code 6>");
        let f = Future::new(None);
        assert!(f.cancel(None));
        assert_eq!(f.describe(), "<Future cancelled>");
    }
}
