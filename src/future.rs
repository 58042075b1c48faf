//! Future: asyncio's `Future` state machine, safe to use from any thread.
//!
//! The state sits behind one mutex that is never held while C code runs. Completion takes the
//! callback list out under the lock (with the new state already set), releases the lock, then
//! hands the callbacks to the loop's ready queue as one contiguous run (SEMANTICS.md R1, F4,
//! F5). A loop-less future (concurrent.futures style) runs them right there instead, in the
//! completing thread.

use std::ffi::{CStr, CString, c_char, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::callback::{CallbackList, DoneCallback, DoneFn, Owned};
use crate::clock;
use crate::eventloop::Loop;
use crate::ffi::types::afut_t;
use crate::report::afut_exception_t;
use crate::status::*;

/// Tags in the first 8 bytes of every future, read by `afut_isfuture`.
pub(crate) const TAG_FUTURE: u64 = 0x2174_7546_7475_6661; // "afutFut!"
/// Set while the never-retrieved report runs: the future may be inspected, not kept.
pub(crate) const TAG_FINALIZING: u64 = 0x2174_7546_6e69_6646; // "FinFut!"

/// An exception as stored by `afut_set_exception`.
pub struct Exception {
    pub code: i32,
    pub message: Option<CString>,
    pub detail: Owned,
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
    /// Boxed: exceptions are the rare case, and this keeps the state small.
    Exception(Box<Exception>),
    Cancelled(Option<CString>),
}

struct State {
    outcome: Outcome,
    callbacks: CallbackList,
    /// asyncio's `__log_traceback`: an exception nobody has looked at yet.
    unretrieved: bool,
    /// Threads blocked in `wait()`.
    waiters: u32,
    /// A future whose value this one borrows (a wrapper from `wrap_future`).
    keepalive: Option<Future>,
}

/// The shared body of a future. `#[repr(C)]` so that the tag is its first 8 bytes.
#[repr(C)]
pub struct FutureInner {
    tag: AtomicU64,
    state: Mutex<State>,
    done_cv: Condvar,
    event_loop: Option<Loop>,
    /// issue 5: what makes this future a task or a combinator (None: a plain future). Boxed
    /// twice so that plain futures pay one word for it.
    behaviour: Option<Box<Box<dyn crate::task::Behaviour>>>,
}

/// A reference to a future (one count of its reference count).
#[derive(Clone)]
pub struct Future(pub(crate) Arc<FutureInner>);

/// The outcome as `afut_exception()` reports it.
pub enum ExceptionView {
    NoException,
    Exception(afut_exception_t),
}

impl Future {
    pub fn new(event_loop: Option<Loop>) -> Future {
        Future::with_behaviour(event_loop, None)
    }

    /// issue 5: a future with its own behaviour (a task, a gather, ...).
    pub fn with_behaviour(event_loop: Option<Loop>, behaviour: Option<Box<dyn crate::task::Behaviour>>) -> Future {
        Future(Arc::new(FutureInner {
            tag: AtomicU64::new(TAG_FUTURE),
            state: Mutex::new(State {
                outcome: Outcome::Pending,
                callbacks: CallbackList::Empty,
                unretrieved: false,
                waiters: 0,
                keepalive: None,
            }),
            done_cv: Condvar::new(),
            event_loop,
            behaviour: behaviour.map(Box::new),
        }))
    }

    /// The handle C sees. The pointer stays valid while this reference lives.
    pub fn as_ptr(&self) -> *mut afut_t {
        Arc::as_ptr(&self.0) as *mut afut_t
    }

    pub fn inner(&self) -> &FutureInner {
        &self.0
    }

    pub fn downgrade(&self) -> std::sync::Weak<FutureInner> {
        Arc::downgrade(&self.0)
    }

    pub fn same(&self, other: &Future) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub fn set_result(&self, value: Owned) -> Result<(), (afut_status_t, Owned)> {
        if let Some(s) = self.refused_by_behaviour() {
            return Err((s, value));
        }
        self.complete(Outcome::Result(value)).map_err(|(s, o)| match o {
            Outcome::Result(v) => (s, v),
            _ => unreachable!(),
        })
    }

    pub fn set_exception(&self, exc: Exception) -> Result<(), (afut_status_t, Exception)> {
        if let Some(s) = self.refused_by_behaviour() {
            return Err((s, exc));
        }
        self.complete(Outcome::Exception(Box::new(exc))).map_err(|(s, o)| match o {
            Outcome::Exception(e) => (s, *e),
            _ => unreachable!(),
        })
    }

    /// asyncio `cancel(msg)`: clears the unretrieved mark whatever happens (F12, B8); true
    /// if this call cancelled a pending future.
    pub fn cancel(&self, msg: Option<CString>) -> bool {
        match &self.0.behaviour {
            Some(b) => b.cancel(self, msg),
            None => self.cancel_plain(msg),
        }
    }

    // ----- issue 5: hooks for tasks and combinators (see crate::task::Behaviour) -----

    /// The plain Future cancel, bypassing any behaviour.
    pub(crate) fn cancel_plain(&self, msg: Option<CString>) -> bool {
        self.complete(Outcome::Cancelled(msg)).is_ok()
    }

    /// The behaviour attached at creation, if any.
    pub fn behaviour(&self) -> Option<&dyn crate::task::Behaviour> {
        self.0.behaviour.as_deref().map(|b| &**b)
    }

    /// Some(status) if the behaviour refuses a public set_result / set_exception now.
    fn refused_by_behaviour(&self) -> Option<afut_status_t> {
        let status = self.0.behaviour.as_ref().map_or(AFUT_OK, |b| b.check_complete(self));
        (status != AFUT_OK).then_some(status)
    }
    // ----- end of issue 5 hooks -----

    /// Sets the outcome of a pending future and schedules its callbacks.
    fn complete(&self, outcome: Outcome) -> Result<(), (afut_status_t, Outcome)> {
        let mut st = self.0.state.lock();
        if matches!(outcome, Outcome::Cancelled(_)) {
            st.unretrieved = false;
        }
        if !matches!(st.outcome, Outcome::Pending) {
            return Err((AFUT_ERR_INVALID_STATE, outcome));
        }
        let is_exception = matches!(outcome, Outcome::Exception(_));
        st.outcome = outcome;
        let callbacks = std::mem::take(&mut st.callbacks);
        let wake_waiters = st.waiters > 0;
        // Set last, after the callbacks were taken (F14).
        st.unretrieved = is_exception;
        drop(st);
        if wake_waiters {
            self.0.done_cv.notify_all();
        }
        self.dispatch(callbacks);
        Ok(())
    }

    /// Runs or schedules callbacks of a done future; no lock is held.
    fn dispatch(&self, callbacks: CallbackList) {
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
    pub fn add_done_callback(&self, cb: DoneCallback) -> Result<(), (afut_status_t, DoneCallback)> {
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
    pub fn remove_done_callback(&self, func: DoneFn, userdata: *mut c_void) -> usize {
        let removed = self.remove_where(|cb| cb.matches(func, userdata));
        let n = removed.len();
        drop(removed);
        n
    }

    /// Removes a library-internal callback by its token.
    pub fn remove_token(&self, token: u64) -> bool {
        !self.remove_where(|cb| cb.has_token(token)).is_empty()
    }

    fn remove_where(&self, pred: impl Fn(&DoneCallback) -> bool) -> Vec<DoneCallback> {
        self.0.state.lock().callbacks.extract(pred)
    }

    /// `afut_result`: the value (borrowed from the future), or the status of its outcome.
    pub fn result(&self) -> Result<*mut c_void, afut_status_t> {
        let mut st = self.0.state.lock();
        match &st.outcome {
            Outcome::Pending => Err(AFUT_ERR_INVALID_STATE),
            Outcome::Result(v) => Ok(v.ptr()),
            Outcome::Exception(_) => {
                st.unretrieved = false;
                Err(AFUT_ERR_EXCEPTION)
            }
            Outcome::Cancelled(_) => Err(AFUT_ERR_CANCELLED),
        }
    }

    /// `afut_exception`: the exception (borrowed), none for a result, or the status.
    pub fn exception(&self) -> Result<ExceptionView, afut_status_t> {
        let mut st = self.0.state.lock();
        match &st.outcome {
            Outcome::Pending => Err(AFUT_ERR_INVALID_STATE),
            Outcome::Result(_) => Ok(ExceptionView::NoException),
            Outcome::Exception(e) => {
                let view = ExceptionView::Exception(e.as_c());
                st.unretrieved = false;
                Ok(view)
            }
            Outcome::Cancelled(_) => Err(AFUT_ERR_CANCELLED),
        }
    }

    pub fn event_loop(&self) -> Option<&Loop> {
        self.0.event_loop.as_ref()
    }

    pub fn is_done(&self) -> bool {
        self.0.is_done()
    }

    pub fn is_cancelled(&self) -> bool {
        matches!(self.0.state.lock().outcome, Outcome::Cancelled(_))
    }

    /// The cancel message (borrowed; stable for the future's life), NULL if none.
    pub fn cancel_message(&self) -> *const c_char {
        match &self.0.state.lock().outcome {
            Outcome::Cancelled(Some(m)) => m.as_ptr(),
            _ => std::ptr::null(),
        }
    }

    /// An owned copy of the cancel message (None if not cancelled or cancelled without one).
    pub fn cancel_message_owned(&self) -> Option<CString> {
        match &self.0.state.lock().outcome {
            Outcome::Cancelled(m) => m.clone(),
            _ => None,
        }
    }

    /// Copies `source`'s outcome into this (pending) future, borrowing its value and detail and
    /// keeping `source` alive meanwhile (the wrapper side of `wrap_future`). Nothing happens
    /// if this future is already done (asyncio `_copy_future_state`, F21).
    pub fn mirror(&self, source: &Future) {
        let copied = {
            let st = source.0.state.lock();
            match &st.outcome {
                Outcome::Pending => return,
                Outcome::Result(v) => Outcome::Result(Owned::borrowed(v.ptr())),
                Outcome::Exception(e) => Outcome::Exception(Box::new(Exception {
                    code: e.code,
                    message: e.message.clone(),
                    detail: Owned::borrowed(e.detail.ptr()),
                })),
                Outcome::Cancelled(m) => Outcome::Cancelled(m.clone()),
            }
        };
        {
            let mut st = self.0.state.lock();
            if !matches!(st.outcome, Outcome::Pending) {
                return;
            }
            st.keepalive = Some(source.clone());
        }
        if matches!(copied, Outcome::Exception(_)) {
            // The wrapper now carries the exception and reports it if nobody reads it;
            // the source's copy counts as seen.
            source.0.state.lock().unretrieved = false;
        }
        let _ = self.complete(copied);
    }

    /// `afut_wait`: blocks until done or `timeout_s` passes.
    pub fn wait(&self, timeout_s: f64) -> afut_status_t {
        if self.0.event_loop.as_ref().is_some_and(|l| l.is_running_on_this_thread()) {
            return AFUT_ERR_WRONG_THREAD;
        }
        let deadline = if timeout_s.is_nan() {
            return AFUT_ERR_INVALID_ARGUMENT;
        } else if timeout_s == f64::INFINITY {
            None
        } else {
            // A negative timeout acts as 0; a deadline too far to represent is "forever".
            clock::instant_of(clock::now() + timeout_s.max(0.0))
                .or_else(|| (timeout_s > 0.0).then(Instant::now))
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
            st.waiters += 1;
            match deadline {
                None => self.0.done_cv.wait(&mut st),
                Some(d) => {
                    self.0.done_cv.wait_until(&mut st, d);
                }
            }
            st.waiters -= 1;
        }
    }

    pub fn describe(&self) -> String {
        self.0.describe()
    }
}

impl FutureInner {
    /// issue 5: "Task" for a task, "Future" otherwise (describe and reports).
    fn kind_word(&self) -> &'static str {
        if self.behaviour.as_ref().is_some_and(|b| b.is_task()) { "Task" } else { "Future" }
    }

    pub fn tag(&self) -> u64 {
        self.tag.load(Ordering::Acquire)
    }

    pub fn is_done(&self) -> bool {
        !matches!(self.state.lock().outcome, Outcome::Pending)
    }

    /// asyncio-style repr: `<Future pending cb=[2]>`, `<Future finished result=0x1f2e>`, ...
    pub fn describe(&self) -> String {
        let st = self.state.lock();
        let body = match &st.outcome {
            Outcome::Pending if st.callbacks.is_empty() => "pending".to_string(),
            Outcome::Pending => format!("pending cb=[{}]", st.callbacks.len()),
            Outcome::Cancelled(_) => "cancelled".to_string(),
            Outcome::Result(v) if v.ptr().is_null() => "finished result=NULL".to_string(),
            Outcome::Result(v) => format!("finished result={:#x}", v.ptr() as usize),
            Outcome::Exception(e) => match &e.message {
                Some(m) => format!("finished exception=code {}: {}", e.code, m.to_string_lossy()),
                None => format!("finished exception=code {}", e.code),
            },
        };
        format!("<{} {body}>", self.kind_word())
    }
}

impl Drop for FutureInner {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        if st.unretrieved {
            // Clear first: nothing the handler does can make this report twice (F15 [C]).
            st.unretrieved = false;
            if let (Some(l), Outcome::Exception(e)) = (&self.event_loop, &st.outcome) {
                let exc = e.as_c();
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
pub fn copy_message(msg: Option<&CStr>) -> Option<CString> {
    msg.map(CStr::to_owned)
}

