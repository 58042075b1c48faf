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

use parking_lot::{Condvar, Mutex};

use crate::abi::*;
use crate::callback::Owned;
use crate::clock;
use crate::futures::done::{CallbackList, DoneCallback, HasHandle};

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
            Some(b) => b.cancel(self, msg),
            None => self.cancel_plain(msg),
        }
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
                Outcome::Mirrored(inner, _) => {
                    // The source mirrors a third future: read that one after releasing the
                    // source's lock (locks never nest).
                    let inner = inner.clone();
                    st.set_retrieved();
                    drop(st);
                    let exception = matches!(inner.exception(), Ok(ExceptionView::Exception(_)));
                    (Outcome::Mirrored(source.clone(), false), exception)
                }
            }
        };
        let _ = self.complete(copied, exception);
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
            // A negative timeout acts as 0; a deadline too far to represent is "forever".
            clock::instant_of(clock::now() + timeout_s.max(0.0)).or_else(|| (timeout_s > 0.0).then(Instant::now))
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
                None => cv.wait(&mut st),
                Some(d) => {
                    cv.wait_until(&mut st, d);
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
        // Fields drop now: value_free / detail_free / pending callbacks' userdata_free run.
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
    use super::*;

    /// A pending future with one done-callback is one allocation of at most 128 bytes from
    /// malloc's point of view (its request, plus malloc's 8-byte header, rounded to 16):
    /// the Arc's two counts plus `FutureInner` must stay within 120 bytes.
    #[test]
    fn a_future_fits_in_one_128_byte_malloc_chunk() {
        let request = std::mem::size_of::<FutureInner>() + 2 * std::mem::size_of::<usize>();
        assert!(request <= 120, "FutureInner grew: the Arc allocation asks for {request} bytes");
    }
}
